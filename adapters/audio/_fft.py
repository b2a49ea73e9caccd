"""A compiled (numba) real FFT for the front end's fused small-push kernel (private).

``torch.fft.rfft`` on one or two 400-sample frames is ~6 us, nearly all of it dispatch;
the arithmetic is well under 1 us. This module computes the same transform in a
compiled loop that the fused kernel of :mod:`._audio_fused` calls directly:

- a complex FFT of size ``n = n_fft / 2`` by the iterative Stockham (self-sorting,
  decimation in frequency) algorithm with radix-4, 2, 3 and 5 butterflies and
  twiddles precomputed in float64 (:func:`fft_plan`); a size with another prime factor
  has no plan (``None``) and the caller keeps its ``torch.fft.rfft`` path;
- the real FFT of ``n_fft`` samples from it: the even and odd samples are the real and
  imaginary parts of ``z``, and ``X[k] = E[k] + W^k O[k]`` with
  ``E[k] = (Z[k] + conj(Z[n - k])) / 2``, ``O[k] = -i (Z[k] - conj(Z[n - k])) / 2``,
  ``W = exp(-2 pi i / n_fft)``.

Everything runs in float64, real and imaginary parts in separate arrays, with unsigned
indices (numba's wrap-around of negative indices otherwise costs more than the
arithmetic and keeps LLVM from vectorising the butterflies); the result is at least as
accurate as the float32 FFT of torch it replaces (tested against ``numpy.fft``). Several
frames are transformed in one pass, interleaved sample by sample (see :func:`cfft`).
"""

from __future__ import annotations

import numpy as np

from ._fastmel import _jit

__all__ = [
    "FFT_RADICES", "cfft", "fft_factors", "fft_of", "fft_plan", "rfft_power", "rfft_power_of",
]  # fmt: skip

#: Butterflies the compiled FFT has; a size whose factors are not all among them has no plan.
FFT_RADICES = (5, 3, 4, 2)


def fft_factors(n: int) -> list[int] | None:
    """Radices whose product is ``n``, or ``None`` if there are none.

    5s, 3s, then a 2 if the power of two is odd, then 4s: the last stage (whose twiddles
    are all 1, and which skips them) is a 4 or a 2 whenever ``n`` is even.

    Examples
    --------
    >>> fft_factors(200), fft_factors(256), fft_factors(15), fft_factors(7)
    ([5, 5, 2, 4], [4, 4, 4, 4], [5, 3], None)
    """
    if n < 1:
        return None
    factors = []
    for p in (5, 3):
        while n % p == 0:
            factors.append(p)
            n //= p
    twos = 0
    while n % 2 == 0:
        twos += 1
        n //= 2
    factors += [2] * (twos % 2) + [4] * (twos // 2)
    return factors if n == 1 else None


def fft_plan(n_fft: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Radices, stage twiddles and real-FFT twiddles of an ``n_fft``-point real FFT.

    ``None`` if ``n_fft`` is odd or ``n_fft / 2`` has a prime factor other than 2, 3, 5.

    Shape
    -----
    -> ``(stages,)`` int64, ``(sum_s m_s (p_s - 1),)`` complex128 (stage ``s`` of length
    ``n_s = p_s m_s``: ``exp(-2 pi i j k / n_s)`` at ``[j * (p_s - 1) + k - 1]``) and
    ``(n_fft / 2 + 1,)`` complex128 (``exp(-2 pi i k / n_fft)``).
    """
    if n_fft < 2 or n_fft % 2:
        return None
    n = n_fft // 2
    factors = fft_factors(n)
    if factors is None:
        return None
    parts, length = [np.zeros(0, dtype=np.complex128)], n
    for p in factors:
        m = length // p
        jk = np.arange(m)[:, None] * np.arange(1, p)[None, :]  # (m, p - 1)
        parts.append(np.exp(-2j * np.pi * jk / length).ravel())
        length = m
    rtw = np.exp(-2j * np.pi * np.arange(n + 1) / n_fft)
    return np.array(factors, dtype=np.int64), np.concatenate(parts), rtw


@_jit
def cfft(ar, ai, br, bi, factors, tw, batch):
    # The complex FFTs of `batch` interleaved signals, real and imaginary parts in separate
    # arrays: ar[i * batch + r] is sample i of signal r; br, bi are scratch of the same
    # size. Returns whichever pair holds the spectra (interleaved the same way). Starting
    # the Stockham stride at `batch` instead of 1 transforms the whole batch in one pass.
    # Every index is unsigned: numba then skips its negative-index wrap-around, which
    # otherwise costs more than the arithmetic and keeps LLVM from vectorising the loops.
    one = np.uint64(1)
    s = np.uint64(batch)
    n = np.uint64(ar.shape[0]) // s
    pos = np.uint64(0)
    sr, si, dr, di = ar, ai, br, bi
    c3, s3 = -0.5, np.sqrt(3.0) / 2.0
    c51, c52 = np.cos(2.0 * np.pi / 5.0), np.cos(4.0 * np.pi / 5.0)
    s51, s52 = np.sin(2.0 * np.pi / 5.0), np.sin(4.0 * np.pi / 5.0)
    for f in range(factors.shape[0]):
        p = np.uint64(factors[f])
        m = n // p
        sm = s * m  # input x_r of a butterfly is r * sm after its first
        for j in range(m):
            i0, o, w = s * j, s * p * j, pos + (p - one) * j
            o1 = o + s
            o2 = o1 + s
            if p == 2:
                w1 = tw[w]
                for q in range(s):
                    x0r, x0i = sr[i0 + q], si[i0 + q]
                    x1r, x1i = sr[i0 + sm + q], si[i0 + sm + q]
                    dr[o + q], di[o + q] = x0r + x1r, x0i + x1i
                    _store(dr, di, o1 + q, x0r - x1r, x0i - x1i, w1)
            elif p == 4:
                w1, w2, w3 = tw[w], tw[w + one], tw[w + one + one]
                o3 = o2 + s
                for q in range(s):
                    k = i0 + q
                    x0r, x0i = sr[k], si[k]
                    k += sm
                    x1r, x1i = sr[k], si[k]
                    k += sm
                    x2r, x2i = sr[k], si[k]
                    k += sm
                    x3r, x3i = sr[k], si[k]
                    t0r, t0i, t1r, t1i = x0r + x2r, x0i + x2i, x0r - x2r, x0i - x2i
                    t2r, t2i = x1r + x3r, x1i + x3i
                    t3r, t3i = x1i - x3i, x3r - x1r  # -i (x1 - x3)
                    dr[o + q], di[o + q] = t0r + t2r, t0i + t2i
                    _store(dr, di, o1 + q, t1r + t3r, t1i + t3i, w1)
                    _store(dr, di, o2 + q, t0r - t2r, t0i - t2i, w2)
                    _store(dr, di, o3 + q, t1r - t3r, t1i - t3i, w3)
            elif p == 3:
                w1, w2 = tw[w], tw[w + one]
                for q in range(s):
                    k = i0 + q
                    x0r, x0i = sr[k], si[k]
                    k += sm
                    x1r, x1i = sr[k], si[k]
                    k += sm
                    x2r, x2i = sr[k], si[k]
                    t1r, t1i = x1r + x2r, x1i + x2i
                    t2r, t2i = x0r + c3 * t1r, x0i + c3 * t1i
                    t3r, t3i = s3 * (x1i - x2i), s3 * (x2r - x1r)  # -i s3 (x1 - x2)
                    dr[o + q], di[o + q] = x0r + t1r, x0i + t1i
                    _store(dr, di, o1 + q, t2r + t3r, t2i + t3i, w1)
                    _store(dr, di, o2 + q, t2r - t3r, t2i - t3i, w2)
            else:  # p == 5
                w1, w2, w3, w4 = tw[w], tw[w + one], tw[w + one + one], tw[w + one + one + one]
                o3 = o2 + s
                o4 = o3 + s
                for q in range(s):
                    k = i0 + q
                    x0r, x0i = sr[k], si[k]
                    k += sm
                    x1r, x1i = sr[k], si[k]
                    k += sm
                    x2r, x2i = sr[k], si[k]
                    k += sm
                    x3r, x3i = sr[k], si[k]
                    k += sm
                    x4r, x4i = sr[k], si[k]
                    b1r, b1i, b2r, b2i = x1r + x4r, x1i + x4i, x2r + x3r, x2i + x3i
                    d1r, d1i, d2r, d2i = x1r - x4r, x1i - x4i, x2r - x3r, x2i - x3i
                    r1r, r1i = x0r + c51 * b1r + c52 * b2r, x0i + c51 * b1i + c52 * b2i
                    r2r, r2i = x0r + c52 * b1r + c51 * b2r, x0i + c52 * b1i + c51 * b2i
                    e1r, e1i = s51 * d1i + s52 * d2i, -(s51 * d1r + s52 * d2r)  # -i e1
                    e2r, e2i = s52 * d1i - s51 * d2i, s51 * d2r - s52 * d1r  # -i e2
                    dr[o + q], di[o + q] = x0r + b1r + b2r, x0i + b1i + b2i
                    _store(dr, di, o1 + q, r1r + e1r, r1i + e1i, w1)
                    _store(dr, di, o2 + q, r2r + e2r, r2i + e2i, w2)
                    _store(dr, di, o3 + q, r2r - e2r, r2i - e2i, w3)
                    _store(dr, di, o4 + q, r1r - e1r, r1i - e1i, w4)
        pos += m * (p - one)
        n = m
        s *= p
        sr, si, dr, di = dr, di, sr, si
    return sr, si


@_jit
def _store(dr, di, k, xr, xi, w):
    # dr[k] + i di[k] = (xr + i xi) * w
    dr[k] = xr * w.real - xi * w.imag
    di[k] = xr * w.imag + xi * w.real


@_jit
def rfft_power(zr, zi, rtw, batch, r, power):
    # power[k] = |X[k]|^2, k = 0 .. n, of the real FFT whose even / odd samples are the real /
    # imaginary parts of signal r of a batch whose FFTs are z (n * batch,), interleaved as
    # cfft leaves them. With E = (Z[k] + conj Z[n-k]) / 2, D = (Z[k] - conj Z[n-k]) / 2 and
    # P = W^k D: X[k] = E - i P, X[n-k] = conj(E) - i conj(P).
    b, rr = np.uint64(batch), np.uint64(r)  # unsigned indices: see cfft
    n = np.uint64(zr.shape[0]) // b
    r0, i0 = zr[rr], zi[rr]
    power[0] = (r0 + i0) * (r0 + i0)
    power[n] = (r0 - i0) * (r0 - i0)
    for k in range(np.uint64(1), n // np.uint64(2) + np.uint64(1)):
        k1, k2 = k * b + rr, (n - k) * b + rr
        er, ei = 0.5 * (zr[k1] + zr[k2]), 0.5 * (zi[k1] - zi[k2])
        dr, di = 0.5 * (zr[k1] - zr[k2]), 0.5 * (zi[k1] + zi[k2])
        w = rtw[k]
        pr = w.real * dr - w.imag * di
        pi = w.real * di + w.imag * dr
        power[n - k] = (er - pi) * (er - pi) + (ei + pr) * (ei + pr)
        power[k] = (er + pi) * (er + pi) + (ei - pr) * (ei - pr)  # k = n / 2: this one


@_jit
def rfft_power_of(x, factors, tw, rtw, out):
    # out (n_fft // 2 + 1,) float64 <- |rfft(x)|^2 of x (n_fft,): the kernel's steps, for tests.
    n = x.shape[0] // 2
    zr, zi = cfft(x[0::2].copy(), x[1::2].copy(), np.empty(n), np.empty(n), factors, tw, 1)
    rfft_power(zr, zi, rtw, 1, 0, out)


@_jit
def fft_of(x, factors, tw):
    # the complex FFT of x (n,) complex128, as a new array: for tests.
    n = x.shape[0]
    zr, zi = cfft(x.real.copy(), x.imag.copy(), np.empty(n), np.empty(n), factors, tw, 1)
    return zr + 1j * zi
