"""Benchmark: streaming audio front end vs offline torchaudio on the whole signal (not a test).

Per-hop cost of :class:`streamrnn.adapters.audio.AudioFeatures` fed 20 ms chunks of a
16 kHz signal (25 ms window, 10 ms hop, 40 log-mel bands) against
``torchaudio.transforms.MelSpectrogram`` (same framing, ``center=False``) plus the log,
run once over the whole signal. One process, one torch thread, medians of repeats of the
process CPU time (``time.process_time``: with one thread it is the work done, and unlike
wall time it does not count waiting for a core on a shared machine).

Run from the repository root::

    python benchmarks/bench_audio.py [--seconds 30] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torchaudio
from threadpoolctl import threadpool_limits

from streamrnn.adapters.audio import AudioFeatures

SR, WIN, HOP, N_MELS = 16000, 400, 160, 40


def _signal(seconds: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * SR)) / SR
    x = 0.3 * np.sin(2 * np.pi * (200 + 100 * np.sin(2 * np.pi * 2 * t)) * t)
    return (x + 0.05 * rng.standard_normal(len(t))).astype(np.float32)


def _median_seconds(fn, repeats: int) -> float:
    fn()  # warm up (allocations, FFT plans)
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="signal length")
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats (median)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    threadpool_limits(1)  # numpy's BLAS too (the front end's mel product, the kernel)

    x = _signal(args.seconds)
    n_frames = (len(x) - WIN) // HOP + 1
    melspec = torchaudio.transforms.MelSpectrogram(
        SR, n_fft=WIN, win_length=WIN, hop_length=HOP, n_mels=N_MELS, center=False
    )
    wave = torch.from_numpy(x)

    def offline_torchaudio():
        with torch.no_grad():
            return torch.log(melspec(wave) + 1e-6)

    fe = AudioFeatures(SR, n_mels=N_MELS, win_length=WIN, hop_length=HOP)
    ours, ref = fe.offline(x), offline_torchaudio().T
    if not torch.allclose(ours, ref, atol=1e-4):  # else the timings compare different work
        gap = (ours - ref).abs().max().item()
        raise SystemExit(f"AudioFeatures.offline differs from torchaudio's log-mel by {gap:.3g}")

    def streaming(chunk: int):
        def run():
            for i in range(0, len(x), chunk):
                fe.push(x[i : i + chunk])
            fe.flush()

        return run

    base = _median_seconds(offline_torchaudio, args.repeats) / n_frames
    ours_offline = _median_seconds(lambda: fe.offline(x), args.repeats) / n_frames
    print(f"signal {args.seconds:g} s at {SR} Hz: {n_frames} frames of {WIN} samples, hop {HOP}")
    print(f"offline torchaudio MelSpectrogram + log   {base * 1e6:8.2f} us/hop")
    print(f"AudioFeatures.offline (whole signal)       {ours_offline * 1e6:8.2f} us/hop")
    ratios = {}
    for ms in (20, 100, 1000):
        per_hop = _median_seconds(streaming(SR * ms // 1000), args.repeats) / n_frames
        ratios[ms] = per_hop / base
        label = f"AudioFeatures.push, {ms} ms chunks"
        print(
            f"{label:<42} {per_hop * 1e6:8.2f} us/hop  ratio {ratios[ms]:6.2f}x  "
            f"real-time factor {per_hop / (HOP / SR):.4f}"
        )
    verdict = "met" if ratios[20] <= 2.0 else "NOT met"
    print(
        f"ratio streaming (20 ms chunks) / offline torchaudio: {ratios[20]:.2f}x "
        f"(target <= 2x: {verdict})"
    )


if __name__ == "__main__":
    main()
