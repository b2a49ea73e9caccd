"""The digit recogniser as one ONNX graph: raw PCM in, frame posteriors out (private).

Everything the recogniser carries between chunks is an explicit state input and output,
as in silero-vad: the samples not yet framed (``state_pcm``), the pre-emphasis carry
(``state_preemph``, when the front end pre-emphasises) and the model's recurrent state
(``state_h``, ``state_c``, ...). The endpointer and decoder are a few comparisons per
frame on the graph's ``posteriors`` and ``energy_db`` and stay with the caller.

Framing. ``pcm`` ``(B, N)`` must hold a positive multiple of ``hop_length`` samples (the
metadata's ``chunk_multiple``; 20 ms at 8 kHz is 160 samples, two hops; a caller with
fewer samples keeps them for its next call, as ``listen.js`` and
:class:`OnnxDigitRecognizer` do). ``state_pcm`` keeps the last ``P`` pre-emphasised
samples (:func:`lead_samples`), so each call makes exactly ``N / hop_length`` frames. A
stream starts with ``P`` zeros there: the lead of silence the Python recogniser also
starts every stream with, so frame ``k`` of the graph is frame ``k`` of the Python
recogniser from the first call on, and its model state starts from the recogniser's warm
state (after ``warmup_ms`` of silence). The metadata's ``initial_state`` holds every
part's value for one stream. No branch, no per-stream bookkeeping: every stream of a
batch is at the same place in its frames.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from streamrnn.export import Graph, add_model, read_metadata, write_graph

from ._decode import DECODER_DEFAULTS, FrameDecoder, frames_since
from ._endpoint import Endpointer, energy_reference_db
from ._types import LABELS, Detection, lead_samples

__all__ = ["OnnxDigitRecognizer", "export_onnx", "initial_feeds"]

FRONT_END = "frontend_"  # the name prefix of the front end's nodes


def initial_feeds(meta: dict, batch: int) -> dict:
    """The state inputs (``state_<part>``) of ``batch`` new streams, from the metadata.

    Examples
    --------
    >>> meta = {"state": {"pcm": ["B", 2], "h": [1, "B", 3]}, "state_dtypes": {
    ...     "pcm": "float32", "h": "float32"}, "initial_state": {"pcm": [0, 0],
    ...     "h": [[1, 2, 3]]}}
    >>> {k: v.shape for k, v in initial_feeds(meta, 4).items()}
    {'state_pcm': (4, 2), 'state_h': (1, 4, 3)}
    """
    feeds = {}
    for k, shape in meta["state"].items():
        one = np.asarray(meta["initial_state"][k], dtype=meta["state_dtypes"][k])
        axis = shape.index("B")
        feeds[f"state_{k}"] = np.repeat(np.expand_dims(one, axis), batch, axis=axis)
    return feeds


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


def _front_end(g: Graph, f, pcm: str, buf_in: str, pre_in: str | None):
    """Pre-emphasis, framing, log-mel and frame energy:
    ``(logmel (B, T, n_mels), energy_db (B, T), new_buf, [new_pre])``."""
    f32, hop, win = np.float32, f.hop_length, f.win_length
    x, new_pre = pcm, []
    if pre_in:  # y[n] = x[n] - a x[n - 1], x[-1] carried
        prev = g.op("Concat", pre_in, g.op("Slice", pcm, g.ints(0), g.ints(-1), g.ints(1)),
                    axis=1)
        x = g.op("Sub", pcm, g.op("Mul", g.const(np.array(f.preemphasis, f32)), prev))
        new_pre = [g.op("Slice", pcm, g.ints(-1), g.ints(2**62), g.ints(1))]
    buf = g.op("Concat", buf_in, x, axis=1)  # (B, P + N)
    n = g.op("Gather", g.op("Shape", pcm), g.const(np.array(1, np.int64)), axis=0)
    starts = g.op("Range", g.const(np.array(0, np.int64)), n, g.const(np.array(hop, np.int64)))
    idx = g.op("Add", g.op("Unsqueeze", starts, g.ints(1)),
               g.const(np.arange(win, dtype=np.int64)[None]))  # (T, win)
    frames = g.op("Gather", buf, idx, axis=1)  # (B, T, win)
    cos, sin, fb, _ = _front_end_constants(f)
    # |DFT|^2 @ fb = [re^2, im^2] @ [fb; fb]: one product for both parts, one for the mel
    spec = g.op("MatMul", frames, g.const(np.concatenate([cos, sin], axis=1).astype(f32)))
    power = g.op("Mul", spec, spec)
    # the mel bands and, in one more column, the frame's mel power (their sum) scaled by
    # 10 ** (-reference / 10), so that 10 log10 of it is the energy in dB re full-scale RMS
    fb2 = np.concatenate([fb, fb])
    n_mels, scale = fb.shape[1], 10.0 ** (-energy_reference_db(f) / 10.0)
    weights = np.concatenate([fb2, scale * fb2.sum(1, keepdims=True)], axis=1)
    offsets = np.array([f.log_offset] * n_mels + [scale * n_mels * f.log_offset])
    logs = g.op("Log", g.op("Add", g.op("MatMul", power, g.const(weights.astype(f32))),
                              g.const(offsets.astype(f32))))  # (B, T, n_mels + 1)
    energy = g.op("Mul", g.op("Gather", logs, g.const(np.array(n_mels, np.int64)), axis=2),
                  g.const(np.array(10.0 / math.log(10.0), f32)))  # (B, T)
    logmel = g.op("Slice", logs, g.ints(0), g.ints(n_mels), g.ints(2))
    new_buf = g.op("Slice", buf, g.ints(-lead_samples(f)), g.ints(2**62), g.ints(1))
    return logmel, energy, new_buf, new_pre


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
    n_classes = model.output_size

    g.prefix = FRONT_END  # the front end's nodes: kept float by quantize="int8"
    logmel, energy, new_buf, new_pre = _front_end(g, f, pcm, buf_in, pre_in)
    feats = logmel if f.kind != "mfcc" else g.op(
        "MatMul", logmel, g.const(_front_end_constants(f)[3].astype(f32)))
    feats = g.op("Transpose", feats, perm=[1, 0, 2])  # (T, B, F)
    g.prefix = ""
    logits, new = add_model(g, model, feats, state)
    g.prefix = FRONT_END
    post = g.op("Transpose", g.op("Softmax", logits, axis=-1), perm=[1, 0, 2])
    outs = [post, energy, new_buf, *new_pre, *new.values()]
    g.output("posteriors", outs[0], f32, ["B", "T", n_classes])
    g.output("energy_db", outs[1], f32, ["B", "T"])
    state_shapes = {"pcm": ["B", lead], **({"preemph": ["B", 1]} if pre_in else {}),
                    **{k: [layers, "B", *shapes[k]] for k in shapes}}
    state_dtypes = dict.fromkeys(state_shapes, "float32")
    for name, value in zip(state_shapes, outs[2:], strict=True):
        g.output(f"new_state_{name}", value, np.dtype(state_dtypes[name]), state_shapes[name])
    initial = {"pcm": [0.0] * lead, **({"preemph": [0.0]} if pre_in else {}),
               **{k: v[:, 0].tolist() for k, v in warm.items()}}
    ep = recognizer.endpointer
    facts = {
        "kind": "digit_recognizer",
        "sample_rate": f.sample_rate,
        "hop_length": hop,
        "win_length": win,
        "chunk_multiple": hop,
        "chunk_samples": 2 * hop,
        "lead_samples": lead,
        "labels": [str(x) for x in LABELS],
        "state": state_shapes,
        "state_dtypes": state_dtypes,
        "initial_state": initial,
        "dtype": "float32",
        "input_dtype": "float32",
        "input_size": 1,
        "output_size": n_classes,
        "decoder": {**{k: getattr(recognizer.decoder, k) for k in DECODER_DEFAULTS},
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


def export_onnx(recognizer, path, *, opset: int | None = None,
                quantize: str | None = None) -> None:
    """Write a :class:`DigitRecognizer` as one ONNX graph from raw PCM to posteriors.

    Graph inputs: ``pcm`` ``(B, N)`` float32 in [-1, 1] at the recogniser's rate, ``N`` a
    positive multiple of ``hop_length``; ``state_pcm`` ``(B, P)``; ``state_preemph``
    ``(B, 1)`` (only with pre-emphasis); ``state_<part>`` ``(L, B, H)`` of the model.
    Outputs: ``posteriors`` ``(B, N / hop, 11)`` (the last class is blank), ``energy_db``
    ``(B, N / hop)`` float32 (the endpointer's frame energy) and ``new_state_<name>`` of
    every state input. A stream starts from the metadata's ``initial_state``
    (:func:`initial_feeds`: ``P`` zeros of PCM, the warm model state); the metadata also
    holds the decoder's and endpointer's settings (see :mod:`._export`).

    Shape
    -----
    pcm ``(B, N)`` -> posteriors ``(B, N / hop, 11)``.

    Examples
    --------
    >>> import os, tempfile, numpy as np, onnxruntime as ort
    >>> from streamrnn.apps.speech import DigitRecognizer, export_onnx
    >>> from streamrnn.apps.speech._export import initial_feeds
    >>> from streamrnn.export import read_metadata
    >>> path = os.path.join(tempfile.mkdtemp(), "digits.onnx")
    >>> export_onnx(DigitRecognizer.load(), path)
    >>> meta = read_metadata(path)
    >>> meta["state"], meta["chunk_samples"], meta["lead_samples"]
    ({'pcm': ['B', 160], 'h': [1, 'B', 256], 'frames': [1, 'B', 80]}, 160, 160)
    >>> session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    >>> post, energy, *state = session.run(None, {"pcm": np.zeros((1, 480), np.float32),
    ...                                           **initial_feeds(meta, 1)})
    >>> post.shape, energy.shape, post[0].argmax(-1).tolist()  # silence: blank (10)
    ((1, 6, 11), (1, 6), [10, 10, 10, 10, 10, 10])
    """
    g, facts = recognizer_graph(recognizer)
    with torch.no_grad():
        write_graph(g, path, facts, opset=opset, quantize=quantize, float_prefix=FRONT_END)


class OnnxDigitRecognizer:
    """An exported recogniser (:func:`export_onnx`) run by onnxruntime: push PCM, get digits.

    The Python twin of ``examples/export_node/listen.js``: the graph computes posteriors
    and frame energies with all state carried through its ports; the endpointer and the
    decoder are the Python recogniser's, set from the file's metadata. It emits what
    :class:`DigitRecognizer` emits (float32 rounding aside).

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`export_onnx` (float or ``quantize="int8"``).
    threads : int
        onnxruntime's intra-op threads.

    Shape
    -----
    push: pcm ``(samples,)`` float32 at the model's rate -> list of :class:`Detection`.

    Threads
    -------
    Not safe under concurrent calls, and not locked (a lock per call would cost more
    than the call): use it from one thread at a time, or hold your own lock around each
    call.

    Examples
    --------
    >>> import os, tempfile, soundfile
    >>> from streamrnn.apps.speech import DigitRecognizer, demo_path, export_onnx
    >>> from streamrnn.apps.speech import OnnxDigitRecognizer
    >>> path = os.path.join(tempfile.mkdtemp(), "digits.onnx")
    >>> export_onnx(DigitRecognizer.load(), path)
    >>> rec = OnnxDigitRecognizer(path)
    >>> pcm, rate = soundfile.read(demo_path(), dtype="float32")
    >>> found = []
    >>> for i in range(0, len(pcm), 160):  # 20 ms at a time
    ...     found += rec.push(pcm[i:i + 160])
    >>> [d.digit for d in found + rec.flush()]
    [2, 7, 5, 0, 9]
    """

    def __init__(self, path, *, threads: int = 1) -> None:
        import onnxruntime as ort

        meta = read_metadata(path)
        if meta.get("kind") != "digit_recognizer":
            raise ValueError(f"path {str(path)!r} is not an exported digit recogniser "
                             f"(metadata kind {meta.get('kind')!r})")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options,
                                            providers=["CPUExecutionProvider"])
        self.metadata = meta
        self._names = [o.name for o in self.session.get_outputs()]
        self.hop, self.rate = meta["hop_length"], meta["sample_rate"]
        self._frame = (self.hop, meta["win_length"], meta["lead_samples"], self.rate)
        decoder = {k: v for k, v in meta["decoder"].items() if k != "flush_ms"}
        self.decoder = FrameDecoder(**decoder)
        self.endpointer = Endpointer(**meta["endpointer"])
        self.reset()

    def reset(self) -> None:
        """Start a new stream: front-end and model state, endpointer, decoder."""
        meta = self.metadata
        self._state = initial_feeds(meta, 1)
        self._pending = np.zeros(0, np.float32)
        self.frames = 0
        self.endpointer.reset()
        self.decoder.reset()

    def push(self, pcm) -> list:
        """Feed float32 PCM at the model's rate; return the digits its frames complete."""
        x = np.concatenate([self._pending, np.asarray(pcm, np.float32).reshape(-1)])
        n = len(x) - len(x) % self.hop
        self._pending = x[n:]
        if n == 0:
            return []
        out = dict(zip(self._names, self.session.run(None, {"pcm": x[None, :n], **self._state}),
                       strict=True))
        self._state = {k: out[f"new_{k}"] for k in self._state}
        found = []
        for post, e in zip(out["posteriors"][0], out["energy_db"][0].tolist(), strict=True):
            k = self.frames
            self.frames += 1
            self.endpointer.update(e)
            last = self.endpointer.last_voiced
            digit = self.decoder.update(post, frames_since(last, k), e)
            if digit is not None:
                found.append(Detection.at(digit, k, last, *self._frame))
        return found

    def flush(self) -> list:
        """End the stream with ``flush_ms`` of silence; return the last digits; reset."""
        found = self.push(np.zeros(round(self.metadata["decoder"]["flush_ms"] * self.rate
                                         / 1000), np.float32))
        self.reset()
        return found
