"""Compiled (numba) steps of the front end's small-push path (private).

A live push computes one or two frames, and each numpy call around the FFT costs more
than its arithmetic (the mel product of two frames through BLAS is ~3.5 us). Here the
steps before and after ``torch.fft.rfft`` are one compiled call each:

- :func:`window_into`: frames ``k * hop .. k * hop + win`` of the sample buffer times
  the window, into the FFT's input rows;
- :func:`log_mel_into`: ``log(sum_k |X_k|^2 fb[k, m] + offset)``, the mel product over
  only the bins where the filter ``m`` is nonzero (torchaudio's triangular filters cover
  a few bins each: ~400 products a frame instead of ~16000), in float32 as the batched
  path's ``addmm`` does, so the two paths differ by the rounding of the sum's order.

Without numba the numpy path of :mod:`._audio_frames` runs instead.
"""

from __future__ import annotations

import numpy as np

try:
    from numba import njit
except ImportError:  # numba is a core dependency; without it the numpy path runs
    njit = None

__all__ = ["HAVE_NUMBA", "SparseMel", "window_into"]

HAVE_NUMBA = njit is not None


def _jit(fn):
    if njit is None:
        return fn
    return njit(cache=True, error_model="numpy", fastmath={"contract"})(fn)


@_jit
def window_into(buf, window, hop, t, out):
    # out[k, :win] = buf[k * hop : k * hop + win] * window for k < t
    win = window.shape[0]
    for k in range(t):
        row = out[k]
        start = k * hop
        for j in range(win):
            row[j] = buf[start + j] * window[j]  # float32 * float64 window: exact


@_jit
def _log_mel_into(spec, lo, hi, start, weights, offset, out):
    # spec (t, 2 * n_bins): re, im interleaved; out (t, n_mels)
    n_bins = spec.shape[1] // 2
    power = np.empty(n_bins, dtype=np.float32)
    for k in range(spec.shape[0]):
        row = spec[k]
        for b in range(n_bins):
            re, im = row[2 * b], row[2 * b + 1]
            power[b] = re * re + im * im
        dst = out[k]
        for m in range(lo.shape[0]):
            acc = np.float32(0.0)
            w0 = start[m] - lo[m]
            for b in range(lo[m], hi[m]):
                acc += power[b] * weights[w0 + b]
            dst[m] = np.log(acc + offset)


class SparseMel:
    """The nonzero band of each mel filter, and ``log(power @ fb + offset)`` over it.

    Shape
    -----
    spectra ``(T, 2 * n_bins)`` float32 (re, im interleaved) -> ``(T, n_mels)`` float32.
    """

    def __init__(self, fb: np.ndarray, offset: float) -> None:
        fb = np.asarray(fb, dtype=np.float32)  # (n_bins, n_mels)
        n_mels = fb.shape[1]
        lo = np.zeros(n_mels, dtype=np.int64)
        hi = np.zeros(n_mels, dtype=np.int64)
        start = np.zeros(n_mels, dtype=np.int64)
        parts, pos = [], 0
        for m in range(n_mels):
            nz = np.flatnonzero(fb[:, m])
            if len(nz):
                lo[m], hi[m] = nz[0], nz[-1] + 1
            start[m] = pos
            parts.append(fb[lo[m] : hi[m], m])
            pos += hi[m] - lo[m]
        self.lo, self.hi, self.start = lo, hi, start
        self.weights = np.ascontiguousarray(np.concatenate(parts), dtype=np.float32)
        self.offset = np.float32(offset)
        self.n_mels = n_mels

    def __call__(self, spec: np.ndarray) -> np.ndarray:
        out = np.empty((spec.shape[0], self.n_mels), dtype=np.float32)
        _log_mel_into(spec, self.lo, self.hi, self.start, self.weights, self.offset, out)
        return out
