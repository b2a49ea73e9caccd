"""The front end's one compiled fast path: a live push in one numba call (private).

A live push (10-20 ms, one or two frames) through the reference
(:func:`.functional.log_mel`: torch calls) costs mostly dispatch. Here the whole push is
one ``numba`` call, :func:`push_frames`, computing the same steps:

1. check every sample (finite, ``|x| <= MAX_ABS_SAMPLE``) and that the buffer has room,
   before anything is written: on failure it returns ``None`` and the caller takes the
   general path (which raises, zeroes by policy, or runs the reference on a large push);
2. append the samples to the framing buffer (shared with
   :class:`~._frames.FrameStream`, whose ``fill`` lives in ``ints[FILL]``);
3. window the completed frames (float64), ``numpy.fft.rfft`` them (pocketfft, callable
   in numba through rocket-fft), power, the mel product over each filter's nonzero
   bins, ``log(mel + log_offset)`` (float32, as in torch) and, for MFCC, the DCT;
4. shift the unused samples to the start of the buffer.

The constants and the frames' scratch rows are packed into two arrays
(:class:`FusedPlan`): each array argument costs ~40 ns of dispatch. Features agree with
the reference to float32 rounding (the same float64 spectra; only the order of the mel
sum differs). A hand-written radix FFT used to stand here; measured side by side it was
1.0x (16 kHz, 400-point frames) to 1.1x (8 kHz, 200-point) as fast as rocket-fft's
pocketfft per push, far from the 2x end to end that would justify keeping it.
"""

from __future__ import annotations

import numpy as np

try:
    import rocket_fft  # noqa: F401  (makes numpy.fft callable inside numba kernels)
    from numba import njit
except ImportError:  # numba and rocket-fft are dependencies; without them: the reference
    njit = None

from ._convert import MAX_ABS_SAMPLE

__all__ = ["FILL", "HAVE_NUMBA", "TOTAL", "FusedPlan", "push_frames"]

HAVE_NUMBA = njit is not None

# Layout of the int64 array ``ints``: scalars, then per mel filter its first bin, end bin
# and offset into the weights. FILL: samples in the buffer; TOTAL: samples pushed since
# the stream's start.
FILL, TOTAL, WIN, HOP, CAP, N_FFT, N_MELS, N_OUT, MFCC = range(9)
# Offsets into the float64 array ``real``, which starts with MAX_ABS_SAMPLE: window, mel
# weights, DCT (n_mels, n_out) or nothing, the log offset, scratch for the frames.
OFF_WINDOW, OFF_WEIGHTS, OFF_DCT, OFF_OFFSET, OFF_SCRATCH = range(9, 14)
_HEADER = 14


def _push_frames(x, buf, ints, real):
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
    n_fft, n_mels = ints[N_FFT], ints[N_MELS]
    window = real[ints[OFF_WINDOW] : ints[OFF_WINDOW] + win]
    weights = real[ints[OFF_WEIGHTS] :]
    dct = real[ints[OFF_DCT] : ints[OFF_DCT] + n_mels * n_out]
    offset = real[ints[OFF_OFFSET]]
    mfcc = ints[MFCC] != 0

    # from here on every index is unsigned: numba then skips its negative-index wrap-around
    u = np.uint64
    scratch = ints[OFF_SCRATCH]  # the frames' float64 rows, preallocated (cap's frames)
    frames = real[scratch : scratch + t * n_fft].reshape((t, n_fft))
    for k in range(u(t)):
        b, row = k * u(hop), frames[k]
        for j in range(u(win)):
            row[j] = buf[b + j] * window[j]  # float32 sample * float64 window: exact
        for j in range(u(win), u(n_fft)):  # zero-padding on the right
            row[j] = 0.0
    spec = np.fft.rfft(frames)  # (t, n_fft // 2 + 1) complex128
    n_bins = spec.shape[1]
    power = np.empty(n_bins)
    mel = np.empty(n_mels)
    for k in range(u(t)):
        s = spec[k]
        for j in range(u(n_bins)):
            v = s[j]
            power[j] = v.real * v.real + v.imag * v.imag
        for m in range(u(n_mels)):
            e = u(_HEADER) + u(3) * m
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

    used = u(t) * u(hop)
    for i in range(u(end) - used):  # forward copy: the source lies ahead of the target
        buf[i] = buf[used + i]
    ints[FILL] = end - used
    return out


push_frames = (
    njit(cache=True, error_model="numpy", fastmath={"contract"})(_push_frames)
    if HAVE_NUMBA else None
)


class FusedPlan:
    """Packed constants of :func:`push_frames` for one front-end configuration.

    Shape
    -----
    ``ints`` int64, ``real`` float64; the window ``(win,)``, the mel filterbank
    ``(n_fft // 2 + 1, n_mels)``, the DCT ``(n_mels, n_mfcc)`` or ``None``.
    """

    def __init__(self, ints: np.ndarray, real: np.ndarray) -> None:
        self.ints, self.real = ints, real

    @classmethod
    def build(cls, win, hop, cap, n_fft, window, fb, dct, log_offset) -> FusedPlan:
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
        max_frames = (cap - win) // hop + 1
        parts = [np.array([MAX_ABS_SAMPLE]), window, *weights, dct_flat, np.array([log_offset]),
                 np.zeros(max_frames * n_fft)]
        sizes = np.cumsum([0] + [len(p) for p in parts])
        header = [0, 0, win, hop, cap, n_fft, n_mels, n_out, int(dct is not None),
                  sizes[1], sizes[2], sizes[-4], sizes[-3], sizes[-2]]
        if len(header) != _HEADER:  # the kernel reads a fixed-length header
            raise RuntimeError(f"header has {len(header)} fields, the kernel reads {_HEADER}")
        return cls(np.array(header + bands, dtype=np.int64), np.concatenate(parts))
