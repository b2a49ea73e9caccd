"""Benchmark: live audio end to end, streamrnn vs silero-vad's ONNX model (not a test).

Real-time factor (processing time / audio time, lower is better) of a 16 kHz stream fed
in 20 ms chunks through

- **ours, as specified**: log-mel 40 (``AudioFeatures``, 25 ms window, 10 ms hop) +
  2 x 128 LSTM + readout (11 classes) + softmax, chunk by chunk through the public
  ``AudioFeatures.push`` and ``DigitRecognizer.posteriors`` (the recogniser's Stream),
  random weights (timing only): features, recurrent model and output probabilities, the
  work silero's loop below does too;
- **ours + decoder**: :class:`~streamrnn.apps.speech.DigitRecognizer` ``.push``, the
  same plus what ``streamrnn listen`` adds: frame energy, endpointer and digit decoder
  (silero's own VADIterator logic on top of its model is not timed);
- **ours, generic path**: the same front end and model through ``streamrnn.Stream``
  (which picks the compiled engine), ``push(f, softmax=True)``, no decoder: what any
  recurrent model gets, and what the recogniser runs; and the same with
  ``torch.softmax(stream.push(f), dim=-1)`` instead (one torch call more per chunk);
- **ours, shipped**: ``DigitRecognizer.load()``, the shipped model (8 kHz input; its cell
  is read from the model and printed), on the same signal resampled to 8 kHz, in 20 ms
  chunks (for scale);
- **silero-vad ONNX** (``silero_vad.onnx`` from the silero-vad wheel, run with
  onnxruntime as its ``OnnxWrapper`` does: 512-sample chunks with 64 samples of context,
  state ``(2, 1, 128)`` in and out, one intra- and inter-op thread).

One process, one torch thread and one BLAS thread, medians of repeats of the process CPU time
(``time.process_time``: with one thread it is the work done, and it does not count
waiting for a core on a shared machine). Each repeat runs every row once, in turn, and
the ratios to silero are the medians of the per-repeat ratios. The breakdown times the
front end alone and the model alone on precomputed frames; interleaved, they cost more
than their sum (~+4 us per chunk, 2026-12-07; ~+15 earlier): the model streams its
848 KB of float32 weights through the 1 MiB L2 about 1.6 times a chunk, which evicts the
front end's and the interpreter's working set (a plain 1 MB numpy read between pushes
slows the front end by the same ~6-8 us; a 64 KB one does not), and the model's weights
are partly refetched in turn.

silero-vad is fetched without installing it (it would pull its own torch requirement):
``pip download --no-deps silero-vad`` into a cache folder, and the ``.onnx`` is read out
of the wheel. onnxruntime must be installed (``pip install onnxruntime``).

Run from the repository root::

    python benchmarks/bench_audio_e2e.py [--seconds 30] [--repeats 7] [--silero-onnx PATH]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import soxr
import torch
from threadpoolctl import threadpool_limits

import streamrnn
from streamrnn.adapters.audio import AudioFeatures
from streamrnn.apps.speech import DigitRecognizer
from streamrnn.heads import Readout, RecurrentModel

SR, CHUNK, SILERO_CHUNK, SILERO_CONTEXT = 16000, 320, 512, 64
CACHE = Path.home() / ".cache" / "streamrnn-bench"


def _signal(seconds: float) -> np.ndarray:
    """Gliding tones with vibrato, bursts and noise: float32 in [-1, 1]."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SR)) / SR
    x = 0.3 * np.sin(2 * np.pi * (200 + 100 * np.sin(2 * np.pi * 2 * t)) * t)
    x *= (np.sin(2 * np.pi * 0.7 * t) > 0).astype(np.float64)  # on / off like words
    return (x + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


def silero_onnx(path: str | None) -> Path:
    """The silero-vad ONNX file: ``path``, or extracted from a downloaded wheel (cached)."""
    if path:
        return Path(path)
    target = CACHE / "silero_vad.onnx"
    if target.exists():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "silero-vad",
         "-d", str(CACHE)],
        check=True,
    )  # fmt: skip
    wheel = max(CACHE.glob("silero_vad-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        target.write_bytes(z.read("silero_vad/data/silero_vad.onnx"))
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="signal length")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats (median)")
    parser.add_argument("--silero-onnx", default=None, help="path of silero_vad.onnx")
    args = parser.parse_args()
    torch.set_num_threads(1)
    threadpool_limits(1)  # numpy's BLAS too (the front end's mel product, the kernel)
    import onnxruntime as ort

    x = _signal(args.seconds)
    audio_s = len(x) / SR
    chunks = [x[i : i + CHUNK] for i in range(0, len(x), CHUNK)]
    model = RecurrentModel(streamrnn.LSTM(40, 128, 2, seed=0), Readout(128, 11, seed=1)).eval()
    rec = DigitRecognizer(model, AudioFeatures(SR, n_mels=40))  # 400 / 160 samples

    def ours():
        rec.reset()
        for c in chunks:
            rec.push(c)

    def spec():
        rec.reset()
        for c in chunks:
            f = rec.features.push(c)
            if len(f):
                rec.posteriors(f)

    fe = AudioFeatures(SR, n_mels=40)
    stream = streamrnn.Stream(model)

    def generic():
        fe.reset()
        stream.reset()
        for c in chunks:
            f = fe.push(c)
            if len(f):
                stream.push(f, softmax=True)

    def generic_torch():
        fe.reset()
        stream.reset()
        for c in chunks:
            f = fe.push(c)
            if len(f):
                torch.softmax(stream.push(f), dim=-1)

    def front_end():
        fe.reset()
        for c in chunks:
            fe.push(c)

    frames = [fe.push(c).numpy() for c in chunks]
    fe.reset()

    def model_only():
        rec.reset()
        for f in frames:
            rec.logits(f)

    shipped = DigitRecognizer.load()  # the shipped model (8 kHz, 40 mels)
    cell = shipped.model.config()["cell"]
    shipped_name = f"{cell['num_layers']}x{cell['hidden_size']} {cell['type']}"
    x8 = soxr.resample(x, SR, 8000).astype(np.float32)
    chunks8 = [x8[i : i + 160] for i in range(0, len(x8), 160)]

    def ours_shipped():
        shipped.reset()
        for c in chunks8:
            shipped.push(c)

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    onnx_path = silero_onnx(args.silero_onnx)
    session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
    sr = np.array(SR, dtype=np.int64)
    blocks = [x[None, i : i + SILERO_CHUNK] for i in range(0, len(x) - SILERO_CHUNK + 1,
                                                            SILERO_CHUNK)]  # fmt: skip

    def silero():
        state = np.zeros((2, 1, 128), dtype=np.float32)
        context = np.zeros((1, SILERO_CONTEXT), dtype=np.float32)
        for b in blocks:
            inp = np.concatenate((context, b), axis=1)
            _, state = session.run(None, {"input": inp, "state": state, "sr": sr})
            context = inp[:, -SILERO_CONTEXT:]

    rows = [
        ("ours, as specified: log-mel 40 + 2x128 LSTM + head + softmax", spec, len(chunks)),
        ("ours + decoder: DigitRecognizer.push (what listen runs)", ours, len(chunks)),
        ("ours, generic: AudioFeatures + Stream.push(f, softmax=True)", generic, len(chunks)),
        ("ours, generic: AudioFeatures + torch.softmax(Stream.push(f))", generic_torch,
         len(chunks)),
        ("  of which front end: AudioFeatures.push", front_end, len(chunks)),
        (f"  of which model: Stream ({rec._stream.engine} engine) + readout", model_only,
         len(chunks)),
        (f"ours, the shipped digit model (8 kHz, {shipped_name})", ours_shipped, len(chunks8)),
        (f"silero-vad ONNX ({onnx_path.name}, 512-sample chunks)", silero, len(blocks)),
    ]
    print(f"signal {audio_s:g} s at {SR} Hz; ours in {CHUNK}-sample (20 ms) chunks, "
          f"silero in {SILERO_CHUNK}-sample (32 ms) chunks; 1 thread; median of "
          f"{args.repeats} interleaved repeats (process CPU time)")  # fmt: skip
    covered = {fn: audio_s if fn is not silero else len(blocks) * SILERO_CHUNK / SR
               for _, fn, _ in rows}
    rtf = _interleaved_rtf([fn for _, fn, _ in rows], covered, args.repeats)
    for name, fn, n in rows:
        sec = statistics.median(rtf[fn]) * covered[fn]
        print(f"{name:68s} {sec / n * 1e6:8.1f} us/chunk   RTF {statistics.median(rtf[fn]):.5f}")
    ratio = {fn: statistics.median(a / b for a, b in zip(rtf[fn], rtf[silero], strict=True))
             for fn in (spec, ours, generic, generic_torch)}
    print(f"ratio to silero (RTF, median of the per-repeat ratios): as specified "
          f"{ratio[spec]:.2f}   + decoder {ratio[ours]:.2f}   generic {ratio[generic]:.2f} "
          f"(with torch.softmax: {ratio[generic_torch]:.2f})")


def _interleaved_rtf(fns: list, covered: dict, repeats: int) -> dict:
    """Real-time factors of every function, one run of each per repeat, in turn: a
    phase of the shared machine slows all of a repeat's runs alike, so the ratios of one
    repeat hold even where the absolute times drift."""
    for fn in fns:
        fn()  # warm up (allocations, FFT plans, ONNX graph)
    out = {fn: [] for fn in fns}
    for _ in range(repeats):
        for fn in fns:
            start = time.process_time()
            fn()
            out[fn].append((time.process_time() - start) / covered[fn])
    return out


if __name__ == "__main__":
    main()
