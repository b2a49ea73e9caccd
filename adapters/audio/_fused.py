"""The front end's fused small-push kernel: one compiled call per live push (private).

A live push (10-20 ms, one or two frames) was a handful of calls around
``torch.fft.rfft``, whose dispatch alone (~6 us) was most of the cost. Here the whole
push is one ``numba`` call, :func:`push_frames`:

1. check every sample (finite, ``|x| <= MAX_ABS_SAMPLE``) and that the buffer has room,
   before anything is written: on failure it returns ``None`` and the caller takes its
   general path (which raises, zeroes by policy, or batches a large push);
2. append the samples to the framing buffer (shared with
   :class:`~._audio_frames.FrameStream`, whose ``fill`` lives in ``ints[FILL]``);
3. for every completed frame: window it, real FFT (:mod:`._audio_fft`), power, the mel
   product over each filter's nonzero bins, ``log(mel + log_offset)`` and, for MFCC,
   torchaudio's DCT matrix (float64 throughout, but the log: float32, as in torch);
4. shift the unused samples to the start of the buffer.

The constants and scratch space are packed into three arrays (:class:`FusedPlan`) so
that the call passes five arguments: each array argument costs ~40 ns of dispatch.
A 20 ms push at 16 kHz (2 frames of 400 samples, 40 mels) is ~4 us in the kernel, ~5 us
through ``AudioFeatures.push``. Features agree with the batched torchaudio path to float32
rounding (the FFT here is float64: closer to exact than torch's float32 one).
"""

from __future__ import annotations

import numpy as np

from ._convert import MAX_ABS_SAMPLE
from ._fastmel import _jit
from ._fft import cfft, fft_plan, rfft_power

__all__ = ["FFT_DIGEST", "FILL", "TOTAL", "FusedPlan", "push_frames"]

# numba's on-disk cache keys each function to the timestamp of its own file: it does not
# see edits of _audio_fft.py, whose functions push_frames calls, and would keep running
# the old FFT. This digest of that file (tests/adapters/test_audio_fused.py checks it)
# makes every edit there an edit here too, which drops this file's cached kernel.
FFT_DIGEST = "5574508512eeefbe"

# Layout of the int64 array ``ints``: scalars, then the stage radices, then per mel
# filter its first bin, end bin and offset into the weights.
# FILL: samples in the buffer; TOTAL: samples pushed since the stream's start.
FILL, TOTAL, WIN, HOP, CAP, N_FFT, N_MELS, N_OUT, MFCC, N_STAGES = range(10)
# Offsets into the float64 array ``real``, which starts with MAX_ABS_SAMPLE: window, mel
# weights, DCT (n_mels, n_out) or nothing, scratch (power, mel, the log offset, FFT work).
OFF_WINDOW, OFF_WEIGHTS, OFF_DCT, OFF_SCRATCH = range(10, 14)
# Offsets into the complex128 array ``cplx``: stage twiddles, real-FFT twiddles.
OFF_TW, OFF_RTW = range(14, 16)
_HEADER = 16


@_jit
def push_frames(x, buf, ints, real, cplx):
    # x (n,) float32; buf (cap,) float32 -> (t, n_out) float32 features, or None (no change)
    n = x.shape[0]
    fill = ints[FILL]
    end = fill + n
    if end > ints[CAP]:
        return None
    bad = 0
    limit = real[0]  # MAX_ABS_SAMPLE
    for i in range(np.uint64(n)):  # a count, not an early exit: it vectorises
        bad += not abs(x[i]) <= limit  # NaN is bad too
    if bad:
        return None
    for i in range(np.uint64(n)):
        buf[np.uint64(fill) + i] = x[i]
    ints[TOTAL] += n
    win, hop, n_out = ints[WIN], ints[HOP], ints[N_OUT]
    if end < win:
        ints[FILL] = end
        return np.empty((0, n_out), dtype=np.float32)
    t = (end - win) // hop + 1
    out = np.empty((t, n_out), dtype=np.float32)

    half = ints[N_FFT] // 2
    n_mels, n_stages = ints[N_MELS], ints[N_STAGES]
    factors = ints[_HEADER : _HEADER + n_stages]
    band = _HEADER + n_stages  # lo[m], hi[m], start[m] at band + 3 m
    window = real[ints[OFF_WINDOW] : ints[OFF_WINDOW] + win]
    weights = real[ints[OFF_WEIGHTS] :]
    dct = real[ints[OFF_DCT] : ints[OFF_DCT] + n_mels * n_out]
    tw = cplx[ints[OFF_TW] : ints[OFF_RTW]]
    rtw = cplx[ints[OFF_RTW] : ints[OFF_RTW] + half + 1]
    scratch = ints[OFF_SCRATCH]
    power = real[scratch : scratch + half + 1]
    mel = real[scratch + half + 1 : scratch + half + 1 + n_mels]
    offset = real[scratch + half + 1 + n_mels]
    work = scratch + half + 2 + n_mels  # the t frames' samples, interleaved (see cfft)
    ar, ai = real[work : work + half * t], real[work + half * t : work + 2 * half * t]
    work += 2 * half * t
    br, bi = real[work : work + half * t], real[work + half * t : work + 2 * half * t]
    mfcc = ints[MFCC] != 0

    # from here on every index is unsigned: numba then skips its negative-index wrap-around
    u = np.uint64
    uw, uh, ut, n_even = u(win), u(hop), u(t), u(win // 2)
    for k in range(ut):  # even / odd samples as real / imaginary parts
        b = k * uh
        for i in range(n_even):
            ar[i * ut + k] = buf[b + i + i] * window[i + i]
            ai[i * ut + k] = buf[b + i + i + u(1)] * window[i + i + u(1)]
    for i in range(n_even * ut, u(half) * ut):  # zero-padding on the right
        ar[i] = 0.0
        ai[i] = 0.0
    if win % 2:  # an odd last sample
        for k in range(ut):
            ar[n_even * ut + k] = buf[k * uh + uw - u(1)] * window[uw - u(1)]
    zr, zi = cfft(ar, ai, br, bi, factors, tw, t)  # all t frames in one pass
    for k in range(ut):
        rfft_power(zr, zi, rtw, t, k, power)
        for m in range(u(n_mels)):
            e = u(band) + u(3) * m
            lo, start, size = u(ints[e]), u(ints[e + u(2)]), u(ints[e + u(1)] - ints[e])
            acc0 = acc1 = 0.0  # two chains: the sum is bound by the latency of its adds
            for g in range(u(0), size - size % u(2), u(2)):
                acc0 += power[lo + g] * weights[start + g]
                acc1 += power[lo + g + u(1)] * weights[start + g + u(1)]
            if size % u(2):
                acc0 += power[lo + size - u(1)] * weights[start + size - u(1)]
            mel[m] = np.log(np.float32(acc0 + acc1 + offset))  # float32 log: ~2x faster
        row = out[k]
        if mfcc:
            for c in range(u(n_out)):
                row[c] = 0.0
            for m in range(u(n_mels)):
                v, d = mel[m], m * u(n_out)
                for c in range(u(n_out)):
                    row[c] += v * dct[d + c]
        else:
            for m in range(u(n_mels)):
                row[m] = mel[m]

    used = ut * uh
    for i in range(u(end) - used):  # forward copy: the source lies ahead of the target
        buf[i] = buf[used + i]
    ints[FILL] = end - used
    return out


class FusedPlan:
    """Packed constants and scratch of :func:`push_frames` for one front-end configuration.

    ``None`` from :meth:`build` when ``n_fft`` has no compiled FFT plan (odd, or
    ``n_fft / 2`` with a prime factor other than 2, 3, 5).

    Shape
    -----
    ``ints`` int64, ``real`` float64, ``cplx`` complex128; the window ``(win,)``, the
    mel filterbank ``(n_fft // 2 + 1, n_mels)``, the DCT ``(n_mels, n_mfcc)`` or ``None``.
    """

    def __init__(self, ints: np.ndarray, real: np.ndarray, cplx: np.ndarray) -> None:
        self.ints, self.real, self.cplx = ints, real, cplx

    @classmethod
    def build(cls, win, hop, cap, n_fft, window, fb, dct, log_offset) -> FusedPlan | None:
        plan = fft_plan(n_fft)
        if plan is None:
            return None
        factors, tw, rtw = plan
        fb = np.asarray(fb, dtype=np.float64)  # (n_bins, n_mels)
        n_mels = fb.shape[1]
        bands, weights, pos = [], [], 0
        for m in range(n_mels):
            nz = np.flatnonzero(fb[:, m])
            lo, hi = (int(nz[0]), int(nz[-1]) + 1) if len(nz) else (0, 0)
            bands += [lo, hi, pos]
            weights.append(fb[lo:hi, m])
            pos += hi - lo
        n_out = n_mels if dct is None else dct.shape[1]
        dct_flat = np.zeros(0) if dct is None else np.asarray(dct, dtype=np.float64).ravel()
        window = np.asarray(window, dtype=np.float64)[:win]
        real_parts = [np.array([MAX_ABS_SAMPLE]), window, *weights, dct_flat]
        sizes = np.cumsum([0] + [len(p) for p in real_parts])
        off_window, off_weights, off_dct, off_scratch = sizes[1], sizes[2], sizes[-2], sizes[-1]
        half = n_fft // 2
        max_frames = (cap - win) // hop + 1
        # power, mel, the log offset, then the FFT's work arrays for up to max_frames frames
        scratch = np.zeros(half + 1 + n_mels + 1 + 4 * half * max_frames)
        scratch[half + 1 + n_mels] = log_offset
        real = np.concatenate([*real_parts, scratch])
        cplx = np.concatenate([tw, rtw])
        header = [0, 0, win, hop, cap, n_fft, n_mels, n_out, int(dct is not None), len(factors)]
        header += [off_window, off_weights, off_dct, off_scratch, 0, len(tw)]
        ints = np.array(header + list(factors) + bands, dtype=np.int64)
        if len(header) != _HEADER:  # the kernels read a fixed-length header
            raise RuntimeError(f"header has {len(header)} fields, the kernels read {_HEADER}")
        return cls(ints, real, np.ascontiguousarray(cplx))
