"""The digit recogniser as one ONNX graph: raw PCM in, frame posteriors out (private).

Everything the recogniser carries between chunks is an explicit state input and output,
as in silero-vad: the samples not yet framed (``state_pcm``), the pre-emphasis carry
(``state_preemph``, when the front end pre-emphasises) and the model's recurrent state
(``state_h``, ``state_c``, ...). The endpointer and decoder are a few comparisons per
frame on the graph's ``posteriors`` and ``energy_db`` and stay with the caller.

Framing. ``pcm`` ``(B, N)`` must hold a multiple of ``hop_length`` samples (the metadata's
``chunk_multiple``; 20 ms at 8 kHz is 160 samples, two hops). ``state_pcm`` keeps the
last ``P`` pre-emphasised samples, ``P`` the multiple of ``hop_length`` in
``[win_length - hop_length, win_length)``, so each call makes exactly ``N / hop_length``
frames, for every stream of a batch alike. A stream starts with ``P`` zeros there: the
graph hears ``P`` samples of silence before the stream (the metadata's ``lead_samples``),
so its frame ``k`` is frame ``k - lead_frames`` of the Python recogniser, which gets the
same frames when pushed ``P`` zeros first; the recurrent state starts at the recogniser's
warm state (after ``warmup_ms`` of silence; the metadata's ``initial_state``). A caller
gives the first ``lead_frames`` frames of a stream to no endpointer or decoder
(``examples/export_node/listen.js`` does so): then it emits the digits, times and
latencies of ``streamrnn listen``, the model having heard 20 ms more of the silence it
was warmed up with.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from streamrnn.export import Graph, add_model, if_steps, write_graph

from ._endpoint import energy_reference_db
from ._types import LABELS

__all__ = ["export_onnx", "lead_samples"]


def lead_samples(features) -> int:
    """``P``: the samples ``state_pcm`` keeps (see the module docstring)."""
    hop, win = features.hop_length, features.win_length
    return hop * math.ceil((win - hop) / hop)


def _front_end_constants(features):
    """The window folded into the real-DFT matrices (float64), filterbank, DCT."""
    from streamrnn.adapters.audio.functional import dct_matrix, mel_filterbank, window

    win, n_fft = features.win_length, features.n_fft
    w = window(features.window, win, n_fft).numpy()[:win]  # float64 of float32 values
    k = np.arange(n_fft // 2 + 1)
    angle = 2.0 * np.pi * np.outer(np.arange(win), k) / n_fft  # (win, bins)
    fb = mel_filterbank(features.sample_rate, n_fft, n_mels=features.n_mels,
                        f_min=features.f_min, f_max=features.f_max,
                        mel_scale=features.mel_scale, mel_norm=features.mel_norm).numpy()
    dct = dct_matrix(features.n_mfcc, features.n_mels).numpy() if features.kind == "mfcc" \
        else None
    return w[:, None] * np.cos(angle), -w[:, None] * np.sin(angle), fb, dct


def _check(recognizer) -> None:
    f = recognizer.features
    if f.input_rate != f.sample_rate:
        raise ValueError(f"recognizer.features.input_rate must equal its sample_rate "
                         f"({f.sample_rate}) to be exported (no resampler in the graph), got "
                         f"{f.input_rate}")
    if f.normalize != "none":
        raise ValueError(f"recognizer.features.normalize must be 'none' to be exported, got "
                         f"{f.normalize!r} (running normalisation is not in the graph yet)")


def recognizer_graph(recognizer) -> tuple[Graph, dict]:
    """The graph (PCM -> posteriors, energy) and the facts its metadata records."""
    _check(recognizer)
    f, model = recognizer.features, recognizer.model
    hop, win, lead = f.hop_length, f.win_length, lead_samples(f)
    f32 = np.float32
    warm = recognizer._warm
    shapes = {k: list(v.shape[2:]) for k, v in warm.items()}
    layers = next(iter(warm.values())).shape[0]
    g = Graph("streamrnn_digits")
    pcm = g.input("pcm", f32, ["B", "N"])
    buf_in = g.input("state_pcm", f32, ["B", lead])
    pre_in = g.input("state_preemph", f32, ["B", 1]) if f.preemphasis else None
    state = {k: g.input(f"state_{k}", f32, [layers, "B", *shapes[k]]) for k in shapes}
    carried = [buf_in] + ([pre_in] if pre_in else []) + list(state.values())
    n_classes = model.output_size

    def empty(then):
        batch = then.op("Slice", then.op("Shape", pcm), then.ints(0), then.ints(1),
                        then.ints(0))
        post = then.op("ConstantOfShape", then.op("Concat", batch, then.ints(0, n_classes),
                                                  axis=0), value=_zeros(f32))
        energy = then.op("ConstantOfShape", then.op("Concat", batch, then.ints(0), axis=0),
                         value=_zeros(np.float64))
        return [post, energy, *carried]

    def chunk(b):
        x, new_pre = pcm, []
        if pre_in:  # y[n] = x[n] - a x[n - 1], x[-1] carried
            prev = b.op("Concat", pre_in, b.op("Slice", pcm, b.ints(0), b.ints(-1),
                                                b.ints(1)), axis=1)
            x = b.op("Sub", pcm, b.op("Mul", b.const(np.array(f.preemphasis, f32)), prev))
            new_pre = [b.op("Slice", pcm, b.ints(-1), b.ints(2**62), b.ints(1))]
        buf = b.op("Concat", buf_in, x, axis=1)  # (B, P + N)
        n = b.op("Gather", b.op("Shape", pcm), b.const(np.array(1, np.int64)), axis=0)
        frames_n = b.op("Div", n, b.const(np.array(hop, np.int64)))
        starts = b.op("Mul", b.op("Range", b.const(np.array(0, np.int64)), frames_n,
                                  b.const(np.array(1, np.int64))), b.const(np.array(hop,
                                                                                    np.int64)))
        idx = b.op("Add", b.op("Unsqueeze", starts, b.ints(1)),
                   b.const(np.arange(win, dtype=np.int64)[None]))  # (T, win)
        frames = b.op("Cast", b.op("Gather", buf, idx, axis=1), to=11)  # (B, T, win) f64
        cos, sin, fb, dct = _front_end_constants(f)
        re, im = b.op("MatMul", frames, b.const(cos)), b.op("MatMul", frames, b.const(sin))
        power = b.op("Cast", b.op("Add", b.op("Mul", re, re), b.op("Mul", im, im)), to=1)
        mel = b.op("Add", b.op("MatMul", power, b.const(fb.astype(f32))),
                   b.const(np.array(f.log_offset, f32)))
        logmel = b.op("Log", mel)  # (B, T, n_mels) float32
        feats = logmel if dct is None else b.op("MatMul", logmel, b.const(dct.astype(f32)))
        logits, new = add_model(b, model, b.op("Transpose", feats, perm=[1, 0, 2]), state)
        post = b.op("Transpose", b.op("Softmax", logits, axis=-1), perm=[1, 0, 2])
        power64 = b.op("ReduceSum", b.op("Exp", b.op("Cast", logmel, to=11)), b.ints(-1),
                       keepdims=0)
        energy = b.op("Sub", b.op("Mul", b.op("Log", power64),
                                  b.const(np.array(10.0 / math.log(10.0)))),
                      b.const(np.array(energy_reference_db(f))))
        new_buf = b.op("Slice", buf, b.ints(-lead), b.ints(2**62), b.ints(1))
        return [post, energy, new_buf, *new_pre, *new.values()]

    dtypes = [f32, np.float64] + [f32] * len(carried)
    n_samples = g.op("Gather", g.op("Shape", pcm), g.const(np.array(1, np.int64)), axis=0)
    outs = if_steps(g, n_samples, empty, chunk, dtypes)
    g.output("posteriors", outs[0], f32, ["B", "T", n_classes])
    g.output("energy_db", outs[1], np.float64, ["B", "T"])
    names = ["pcm"] + (["preemph"] if pre_in else []) + list(shapes)
    state_shapes = {"pcm": ["B", lead], **({"preemph": ["B", 1]} if pre_in else {}),
                    **{k: [layers, "B", *shapes[k]] for k in shapes}}
    for name, value in zip(names, outs[2:], strict=True):
        g.output(f"new_state_{name}", value, f32, state_shapes[name])
    ep = recognizer.endpointer
    facts = {
        "kind": "digit_recognizer",
        "sample_rate": f.sample_rate,
        "hop_length": hop,
        "win_length": win,
        "chunk_multiple": hop,
        "chunk_samples": 2 * hop,
        "lead_samples": lead,
        "lead_frames": lead // hop,
        "labels": [str(x) for x in LABELS],
        "state": state_shapes,
        "initial_state": {k: v[:, 0].tolist() for k, v in warm.items()},
        "dtype": "float32",
        "input_dtype": "float32",
        "input_size": 1,
        "output_size": n_classes,
        "decoder": {"threshold": recognizer.threshold, "min_frames": recognizer.min_frames,
                    "release_frames": recognizer.release_frames,
                    "voice_frames": recognizer.voice_frames,
                    "min_range_db": recognizer.min_range_db,
                    "flush_ms": recognizer.flush_ms},
        "endpointer": {"margin_db": ep.margin_db, "min_db": ep.min_db,
                       "floor_frames": ep.floor_frames, "init_db": ep.init_db},
        "config": {"model": model.config(), "features": {
            k: getattr(f, k) for k in ("sample_rate", "kind", "win_length", "hop_length",
                                       "n_fft", "n_mels", "n_mfcc", "f_min", "f_max",
                                       "mel_scale", "mel_norm", "window", "log_offset",
                                       "preemphasis", "normalize")}},
    }
    return g, facts


def _zeros(dtype):
    from onnx import numpy_helper

    return numpy_helper.from_array(np.zeros(1, dtype))


def export_onnx(recognizer, path, *, opset: int | None = None,
                quantize: str | None = None) -> None:
    """Write a :class:`DigitRecognizer` as one ONNX graph from raw PCM to posteriors.

    Graph inputs: ``pcm`` ``(B, N)`` float32 in [-1, 1] at the recogniser's rate, ``N`` a
    multiple of ``hop_length``; ``state_pcm`` ``(B, P)``; ``state_preemph`` ``(B, 1)`` (only
    with pre-emphasis); ``state_<part>`` ``(L, B, H)`` of the model. Outputs:
    ``posteriors`` ``(B, N / hop, 11)`` (the last class is blank), ``energy_db``
    ``(B, N / hop)`` float64 (the endpointer's frame energy) and ``new_state_<name>`` of
    every state input. A stream starts from zeros in ``state_pcm`` / ``state_preemph`` and
    the metadata's ``initial_state`` (the warm state) in the model's parts; the metadata
    also holds the decoder's and endpointer's settings and ``lead_frames`` (the frames
    heard before the stream; see :mod:`._export`).

    Shape
    -----
    pcm ``(B, N)`` -> posteriors ``(B, N / hop, 11)``.

    Examples
    --------
    >>> import os, tempfile, numpy as np, onnxruntime as ort
    >>> from streamrnn.apps.speech import DigitRecognizer, export_onnx
    >>> from streamrnn.export import read_metadata
    >>> path = os.path.join(tempfile.mkdtemp(), "digits.onnx")
    >>> export_onnx(DigitRecognizer.load(), path)
    >>> meta = read_metadata(path)
    >>> meta["state"], meta["chunk_samples"], meta["lead_frames"]
    ({'pcm': ['B', 160], 'h': [1, 'B', 128], 'c': [1, 'B', 128]}, 160, 2)
    >>> session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    >>> warm = {f"state_{k}": np.asarray(v, np.float32)[:, None] for k, v in
    ...         meta["initial_state"].items()}
    >>> post, energy, *state = session.run(None, {
    ...     "pcm": np.zeros((1, 160), np.float32),
    ...     "state_pcm": np.zeros((1, 160), np.float32), **warm})
    >>> post.shape, energy.shape, post[0].argmax(-1).tolist()  # silence: blank (class 10)
    ((1, 2, 11), (1, 2), [10, 10])
    """
    g, facts = recognizer_graph(recognizer)
    with torch.no_grad():
        write_graph(g, path, facts, opset=opset, quantize=quantize)
