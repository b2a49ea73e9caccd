"""Benchmark: exported graphs in onnxruntime vs our engines and silero-vad (not a test).

One process, one thread everywhere (torch, BLAS, onnxruntime intra- and inter-op),
medians of repeats of the process CPU time (``time.process_time``).

Each group's rows are timed in interleaved rounds. Rows:

- **one step of a 2 x 128 LSTM + readout** (40 features in, 11 out, batch 1, state
  carried): the exported graph by a raw ``InferenceSession.run`` (float and int8), the
  same file behind ``Stream`` (:class:`~streamrnn.export.OnnxModel`), ``Stream`` on the
  model (the compiled engine), and eager torch (``model(x, state)`` under
  ``inference_mode``);
- **a bank of 100 streams, one step each**: ``StreamBank`` on the exported file (one
  session, one batched call) and on the model (torch's batched kernels at that size);
- **silero-vad's ONNX** (from the silero-vad wheel, as ``bench_audio_e2e.py`` gets it)
  per 512-sample chunk with 64 samples of context, as its ``OnnxWrapper`` runs it;
- **real-time factors** of the exported recogniser (PCM -> posteriors, the shipped model,
  8 kHz, 20 ms chunks, raw session, float and int8; and float in 30 ms chunks (the
  longest multiple of the 10 ms hop not longer than silero's 32 ms) and 40 ms chunks, nearer
  silero's 32 ms), of :class:`OnnxDigitRecognizer`
  (the same plus endpointer and decoder), of ``DigitRecognizer.push`` (Python, what
  ``streamrnn listen`` runs) and of silero-vad (16 kHz, 32 ms chunks); the target is our
  ORT cost per second of audio <= silero-vad's.

``--accuracy`` adds the FSDD clip accuracy of the shipped recogniser (Python), its float
export and its int8 export on /work/shared/data/fsdd (all 2,500 clips by default; a clip
is correct when the first digit emitted is the spoken one, as in
``examples/train_digits.py``), and the files' sizes. The shipped model was trained on
all five speakers, so this measures the change int8 makes, not held-out accuracy.

Run from the repository root::

    python benchmarks/bench_export.py [--repeats 7] [--seconds 30] [--accuracy [--clips N]]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch
from threadpoolctl import threadpool_limits

import streamrnn
from streamrnn.apps.speech import DigitRecognizer, OnnxDigitRecognizer, export_onnx
from streamrnn.apps.speech._export import initial_feeds
from streamrnn.export import OnnxModel, read_metadata, to_onnx

sys.path.insert(0, str(Path(__file__).parent))
from bench_audio_e2e import _signal, silero_onnx  # noqa: E402

FSDD = Path(__file__).resolve().parents[2] / "shared" / "data" / "fsdd"  # beside the checkout


def _medians(fns: list, repeats: int) -> list[float]:
    """Median process CPU time of each of ``fns``, timed in interleaved rounds (a load
    that comes and goes on a shared machine falls on all of them alike)."""
    for fn in fns:
        fn()  # warm up
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, times, strict=True):
            start = time.process_time()
            fn()
            out.append(time.process_time() - start)
    return [statistics.median(t) for t in times]


def _session(path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def step_rows(folder: str, repeats: int, steps: int = 2000) -> list[tuple[str, float]]:
    model = streamrnn.RecurrentModel(streamrnn.LSTM(40, 128, 2, seed=0),
                                     streamrnn.Readout(128, 11, seed=1)).eval()
    f32, i8 = os.path.join(folder, "lstm.onnx"), os.path.join(folder, "lstm8.onnx")
    to_onnx(model, f32)
    to_onnx(model, i8, quantize="int8")
    xs = np.random.default_rng(0).standard_normal((steps, 1, 1, 40)).astype(np.float32)

    def raw(path):
        session = _session(path)

        def run():
            h = c = np.zeros((2, 1, 128), np.float32)
            for x in xs:
                _, h, c = session.run(None, {"x": x, "state_h": h, "state_c": c})
        return run

    onnx_stream = streamrnn.Stream(OnnxModel(f32))
    compiled = streamrnn.Stream(model)
    xt = torch.from_numpy(xs[:, 0, 0])

    def stream(s):
        def run():
            s.reset()
            for x in xt:
                s.push(x)
        return run

    def eager():
        state = model.initial_state(1)
        with torch.inference_mode():
            for x in xt:
                _, state = model(x.view(1, 1, 40), state)

    bank_onnx = streamrnn.StreamBank(OnnxModel(f32))
    bank_torch = streamrnn.StreamBank(model)
    keys = [f"s{i}" for i in range(100)]
    batch = torch.from_numpy(np.random.default_rng(1).standard_normal((100, 1, 40))
                             .astype(np.float32))

    def bank(b):
        def run():
            for _ in range(steps // 20):
                b.push_many(keys, batch)
        return run

    rows = [("ORT raw session, float32", raw(f32), steps),
            ("ORT raw session, int8", raw(i8), steps),
            ("Stream(OnnxModel) (ORT behind Stream)", stream(onnx_stream), steps),
            ("Stream(model) (ENGINE engine)", stream(compiled), steps),
            ("eager torch model(x, state)", eager, steps),
            ("StreamBank(OnnxModel): 100 streams, one step (per call)", bank(bank_onnx),
             steps // 20),
            ("StreamBank(model): 100 streams, one step (per call)", bank(bank_torch),
             steps // 20)]
    secs = _medians([fn for _, fn, _ in rows], repeats)
    return [(name.replace("ENGINE", compiled.engine), sec / n * 1e6)
            for (name, _, n), sec in zip(rows, secs, strict=True)]


def rtf_rows(folder: str, repeats: int, seconds: float) -> list[tuple[str, float]]:
    rec = DigitRecognizer.load()
    f32, i8 = os.path.join(folder, "digits.onnx"), os.path.join(folder, "digits8.onnx")
    export_onnx(rec, f32)
    export_onnx(rec, i8, quantize="int8")
    x16 = _signal(seconds)
    import soxr

    x8 = soxr.resample(x16, 16000, 8000).astype(np.float32)
    chunks = [x8[None, i:i + 160] for i in range(0, len(x8) - 159, 160)]
    chunks30 = [x8[None, i:i + 240] for i in range(0, len(x8) - 239, 240)]
    chunks40 = [x8[None, i:i + 320] for i in range(0, len(x8) - 319, 320)]

    def raw(path, pieces=chunks):
        session, meta = _session(path), read_metadata(path)
        names = [o.name for o in session.get_outputs()]

        def run():
            state = initial_feeds(meta, 1)
            for c in pieces:
                out = dict(zip(names, session.run(None, {"pcm": c, **state}), strict=True))
                state = {k: out[f"new_{k}"] for k in state}
        return run

    twin = OnnxDigitRecognizer(f32)

    def onnx_decoder():
        twin.reset()
        for c in chunks:
            twin.push(c[0])

    def python():
        rec.reset()
        for c in chunks:
            rec.push(c[0])

    session = _session(silero_onnx(None))
    blocks = [x16[None, i:i + 512] for i in range(0, len(x16) - 511, 512)]
    sr = np.array(16000, np.int64)

    def silero():
        state = np.zeros((2, 1, 128), np.float32)
        context = np.zeros((1, 64), np.float32)
        for b in blocks:
            inp = np.concatenate((context, b), axis=1)
            _, state = session.run(None, {"input": inp, "state": state, "sr": sr})
            context = inp[:, -64:]

    audio8 = len(chunks) * 160 / 8000
    rows = [("exported recogniser, ORT raw, float32 (PCM -> posteriors)", raw(f32), audio8,
             len(chunks)),
            ("exported recogniser, ORT raw, int8", raw(i8), audio8, len(chunks)),
            ("exported recogniser, ORT raw, float32, 30 ms chunks", raw(f32, chunks30),
             len(chunks30) * 240 / 8000, len(chunks30)),
            ("exported recogniser, ORT raw, float32, 40 ms chunks", raw(f32, chunks40),
             len(chunks40) * 320 / 8000, len(chunks40)),
            ("OnnxDigitRecognizer (ORT + endpointer + decoder)", onnx_decoder, audio8,
             len(chunks)),
            ("DigitRecognizer.push (Python: compiled engines + decoder)", python, audio8,
             len(chunks)),
            ("silero-vad ONNX (512-sample chunks, 16 kHz)", silero, len(blocks) * 512 / 16000,
             len(blocks))]
    secs = _medians([fn for _, fn, _, _ in rows], repeats)
    return [(name, sec / audio, sec / n * 1e6)
            for (name, _, audio, n), sec in zip(rows, secs, strict=True)]


def accuracy(folder: str, clips: int | None) -> None:
    rec = DigitRecognizer.load()
    f32, i8 = os.path.join(folder, "digits.onnx"), os.path.join(folder, "digits8.onnx")
    export_onnx(rec, f32)
    export_onnx(rec, i8, quantize="int8")
    files = sorted(FSDD.glob("*.wav"))
    if not files:
        raise SystemExit(f"no FSDD clips under {FSDD}")
    if clips:
        files = files[:: max(1, len(files) // clips)][:clips]
    audio = [(int(p.name.split("_")[0]), soundfile.read(p, dtype="float32")[0]) for p in files]
    print(f"\nFSDD clip accuracy, {len(audio)} clips (first digit emitted == spoken), "
          f"20 ms chunks")
    for name, runner, path in [("DigitRecognizer (Python, torch/compiled)", rec, None),
                               ("exported, float32 (OnnxDigitRecognizer)",
                                OnnxDigitRecognizer(f32), f32),
                               ("exported, int8 (OnnxDigitRecognizer)",
                                OnnxDigitRecognizer(i8), i8)]:
        correct = 0
        start = time.process_time()
        for digit, pcm in audio:
            runner.reset()
            found = []
            for i in range(0, len(pcm), 160):
                found += runner.push(pcm[i:i + 160])
            found += runner.flush()
            correct += bool(found) and found[0].digit == digit
        size = "" if path is None else f"   file {os.path.getsize(path) / 1024:.0f} KiB"
        print(f"{name:48s} {100 * correct / len(audio):6.2f} %  ({correct}/{len(audio)})"
              f"   {time.process_time() - start:6.1f} s CPU{size}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seconds", type=float, default=30.0, help="audio for the RTF rows")
    parser.add_argument("--accuracy", action="store_true", help="FSDD clip accuracy rows")
    parser.add_argument("--clips", type=int, default=None, help="an evenly spread subset")
    args = parser.parse_args()
    torch.set_num_threads(1)
    threadpool_limits(1)
    with tempfile.TemporaryDirectory() as folder:
        print(f"1 thread everywhere; medians of {args.repeats} (process CPU time)\n")
        print("one step, batch 1, 2 x 128 LSTM + readout (40 -> 11):")
        for name, us in step_rows(folder, args.repeats):
            print(f"  {name:58s} {us:8.1f} us")
        print(f"\nreal-time factor (CPU seconds per second of audio), {args.seconds:g} s:")
        rows = rtf_rows(folder, args.repeats, args.seconds)
        silero = rows[-1][1]
        for name, rtf, us in rows:
            print(f"  {name:58s} RTF {rtf:.5f}   {rtf / silero:5.2f} x silero-vad"
                  f"   ({us:.1f} us/chunk)")
        if args.accuracy:
            accuracy(folder, args.clips)


if __name__ == "__main__":
    main()
