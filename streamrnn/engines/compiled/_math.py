"""The arithmetic the compiled kernels share: a vectorisable ``expm1`` and row-sum
matrix products (private).

- :func:`expm1_into`: ``expm1`` of an array without a library call per element, so the
  loops over gates vectorise: ``x = k ln2 + r`` with ``|r| <= ln2 / 2`` (Cody-Waite), then
  ``e^r - 1`` by its Taylor polynomial (to ``r**9`` in float32, within one float32 ulp;
  to ``r**13`` in float64, within two ulps: ``tests/engines/test_engine_math.py``), then
  ``2**k (1 + q) - 1`` with ``2**k`` written into the exponent bits. Arguments are clamped
  (+-88 in float32, +-708 in float64), so +-inf give a huge value and -1 and the sigmoid
  and tanh built on it saturate as torch's do; NaN stays NaN. The cells use
  ``sigmoid(a) = 1 / (2 + expm1(-a))`` and ``tanh(a) = e / (e + 2)``, ``e = expm1(2a)``.
- :func:`add_rows`: ``out += w.T @ v`` with ``w`` kept transposed, ``(K, M)`` row-major:
  sums of weight *rows* scaled by one value, eight rows per pass, so the inner loop runs
  over the M contiguous outputs (faster than dot products over ``(M, K)`` rows on this
  machine: ~1.6x for 512 x 128 in float32, which is why the engine packs a transposed
  copy of the weights).
- :func:`project`: ``out[t] = b + w.T @ x[t]`` for every step of a chunk, in one pass over
  ``w``.
"""

from __future__ import annotations

import numpy as np
from numba import types
from numba.extending import overload

from ._jit import OPTIONS, helper, kernel, typed

__all__ = [
    "add_rows", "add_rows_pair", "all_finite", "as_bits", "assign", "bits_for", "expm1",
    "expm1_into", "nonfinite", "project", "softmax_into",
]

_F = np.float32
_F32 = {
    "log2e": _F(1.4426950408889634), "ln2_hi": _F(0.693145751953125),
    "ln2_lo": _F(1.4286068203094172e-06), "lo": _F(-88.0), "hi": _F(88.0),
    "min_k": _F(-126.0), "half": _F(0.5), "one": _F(1.0),
}  # fmt: skip
_F32_LOG2E, _F32_LN2_HI, _F32_LN2_LO = _F32["log2e"], _F32["ln2_hi"], _F32["ln2_lo"]
_F32_LO, _F32_HI, _F32_MIN_K = _F32["lo"], _F32["hi"], _F32["min_k"]
_F32_HALF, _F32_ONE = _F32["half"], _F32["one"]
# 0x3f317200: k * ln2_hi is exact for |k| < 2**15; ln2_lo = ln 2 - ln2_hi
_C8, _C7, _C6, _C5 = _F(1 / 362880), _F(1 / 40320), _F(1 / 5040), _F(1 / 720)
_C4, _C3, _C2 = _F(1 / 120), _F(1 / 24), _F(1 / 6)
_BIAS32, _SHIFT32 = np.int32(127), np.int32(23)

_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_D = (1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0,
      1.0 / 362880.0, 1.0 / 40320.0, 1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0,
      1.0 / 6.0, 0.5)  # fmt: skip


def _expm1_f32(x, out, n, bits):
    for j in range(n):
        v = min(max(x[j], _F32_LO), _F32_HI)
        kf = max(np.floor(v * _F32_LOG2E + _F32_HALF), _F32_MIN_K)
        r = (v - kf * _F32_LN2_HI) - kf * _F32_LN2_LO
        p = _C8
        p = p * r + _C7
        p = p * r + _C6
        p = p * r + _C5
        p = p * r + _C4
        p = p * r + _C3
        p = p * r + _C2
        p = p * r + _F32_HALF
        out[j] = r + r * r * p
        bits[j] = (np.int32(kf) + _BIAS32) << _SHIFT32
    scale = bits[:n].view(np.float32)
    for j in range(n):
        sc = scale[j]
        e = sc * out[j] + (sc - _F32_ONE)
        out[j] = e if x[j] == x[j] else x[j]


def _expm1_f64(x, out, n, bits):
    for j in range(n):
        v = min(max(x[j], -708.0), 708.0)
        kf = np.floor(v * _LOG2E + 0.5)
        r = (v - kf * _LN2_HI) - kf * _LN2_LO
        p = _D[0]
        p = p * r + _D[1]
        p = p * r + _D[2]
        p = p * r + _D[3]
        p = p * r + _D[4]
        p = p * r + _D[5]
        p = p * r + _D[6]
        p = p * r + _D[7]
        p = p * r + _D[8]
        p = p * r + _D[9]
        p = p * r + _D[10]
        p = p * r + _D[11]
        out[j] = r + r * r * p
        bits[j] = (np.int64(kf) + 1023) << 52
    scale = bits[:n].view(np.float64)
    for j in range(n):
        sc = scale[j]
        e = sc * out[j] + (sc - 1.0)
        out[j] = e if x[j] == x[j] else x[j]


def expm1_into(x, out, n, bits):
    """``out[j] = expm1(x[j])`` for ``j < n`` (compiled code only; :func:`expm1` from
    Python); ``bits``: scratch from :func:`bits_for`. ``x`` and ``out`` may be the same
    array. float32 or float64."""
    raise TypeError("expm1_into is called from compiled code; use expm1 from Python")


@overload(expm1_into, jit_options=OPTIONS)
def _expm1_into(x, out, n, bits):
    return _expm1_f32 if x.dtype == types.float32 else _expm1_f64


def bits_for(like, n):
    """Integer scratch for :func:`expm1_into` on ``n`` values of ``like``'s dtype
    (compiled code only)."""
    raise TypeError("bits_for is called from compiled code")


@overload(bits_for, jit_options=OPTIONS)
def _bits_for(like, n):
    if like.dtype == types.float32:
        return lambda like, n: np.empty(n, dtype=np.int32)  # noqa: ARG005
    return lambda like, n: np.empty(n, dtype=np.int64)  # noqa: ARG005


def as_bits(a):
    """The float array ``a`` viewed as integers of its width: :func:`expm1_into`'s
    scratch carved from a float buffer (compiled code only)."""
    raise TypeError("as_bits is called from compiled code")


@overload(as_bits, jit_options=OPTIONS)
def _as_bits(a):
    if a.dtype == types.float32:
        return lambda a: a.view(np.int32)
    return lambda a: a.view(np.int64)


@helper
def assign(dst, src):
    """``dst[j] = src[j]`` for every ``j`` of the 1-D ``dst`` (``src`` at least as long).

    An explicit loop, which vectorises: numba's array-to-array slice assignment
    (``dst[:] = src``) takes its general broadcasting path, ~5x slower for 512 float32
    (150 vs 27 ns here), and the kernels copy rows of that size at every step."""
    for j in range(dst.shape[0]):
        dst[j] = src[j]


@helper
def nonfinite(a):
    """How many values of the 1-D array ``a`` are NaN or +-inf.

    ``a[j] - a[j]`` is 0 for a finite value and NaN otherwise (no fast-math flag lets the
    compiler fold it), and an integer count vectorises; a loop that stops at the first
    ``not isfinite`` does not (~6x slower for 256 float32: 105 vs 17 ns here)."""
    bad = 0
    for j in range(a.shape[0]):
        d = a[j] - a[j]
        bad += d != d
    return bad


@helper
def softmax_into(row):
    """``row = softmax(row)`` in place (1-D), as torch's CPU kernel computes it: the
    maximum, ``exp(v - max)``, their sum, then each times ``1 / sum``. A NaN anywhere
    makes the whole row NaN (as in torch)."""
    n = row.shape[0]
    top = row[0]
    for j in range(1, n):
        v = row[j]
        top = v if v > top or v != v else top
    total = typed(row, 0.0)
    for j in range(n):
        e = np.exp(row[j] - top)
        row[j] = e
        total += e
    scale = typed(row, 1.0) / total
    for j in range(n):
        row[j] *= scale


@helper
def add_rows(w, v, out):
    """``out += w.T @ v`` for ``w`` ``(K, M)`` row-major: eight rows of ``w`` per pass,
    each added by one chain of fused multiply-adds (measured ~17% faster in float32 than
    four rows summed in pairs)."""
    n, m = v.shape[0], out.shape[0]
    k = 0
    while k + 8 <= n:
        r0, r1, r2, r3 = w[k], w[k + 1], w[k + 2], w[k + 3]
        r4, r5, r6, r7 = w[k + 4], w[k + 5], w[k + 6], w[k + 7]
        v0, v1, v2, v3 = v[k], v[k + 1], v[k + 2], v[k + 3]
        v4, v5, v6, v7 = v[k + 4], v[k + 5], v[k + 6], v[k + 7]
        for j in range(m):
            out[j] = (out[j] + r0[j] * v0 + r1[j] * v1 + r2[j] * v2 + r3[j] * v3
                      + r4[j] * v4 + r5[j] * v5 + r6[j] * v6 + r7[j] * v7)
        k += 8
    while k < n:
        r0, v0 = w[k], v[k]
        for j in range(m):
            out[j] += r0[j] * v0
        k += 1


@helper
def add_rows_pair(w, v0, v1, out0, out1):
    """``out0 += w.T @ v0`` and ``out1 += w.T @ v1`` in one pass over ``w`` ``(K, M)``:
    four rows per pass, each row read once for both (eight rows spill registers: measured
    slower)."""
    n, m = v0.shape[0], out0.shape[0]
    k = 0
    while k + 4 <= n:
        r0, r1, r2, r3 = w[k], w[k + 1], w[k + 2], w[k + 3]
        a0, a1, a2, a3 = v0[k], v0[k + 1], v0[k + 2], v0[k + 3]
        b0, b1, b2, b3 = v1[k], v1[k + 1], v1[k + 2], v1[k + 3]
        for j in range(m):
            x0, x1, x2, x3 = r0[j], r1[j], r2[j], r3[j]
            out0[j] = out0[j] + x0 * a0 + x1 * a1 + x2 * a2 + x3 * a3
            out1[j] = out1[j] + x0 * b0 + x1 * b1 + x2 * b2 + x3 * b3
        k += 4
    while k < n:
        r0, a0, b0 = w[k], v0[k], v1[k]
        for j in range(m):
            out0[j] += r0[j] * a0
            out1[j] += r0[j] * b0
        k += 1


@helper
def project(w, b, x, out):
    """``out[t] = b + w.T @ x[t]`` for every t, in one pass over ``w`` ``(K, M)``.

    One step is :func:`add_rows`, two :func:`add_rows_pair` (the 20 ms chunk of a 10 ms
    hop: 128 x 512 float32, 3.1-3.4 us against BLAS's 3.7-3.8 here), more one BLAS
    matrix product (``np.dot``), whose register blocking reads ``w`` once for all the
    steps.

    Shape
    -----
    w ``(K, M)``, b ``(M,)``, x ``(T, K)`` -> out ``(T, M)``.
    """
    t_len, m = x.shape[0], w.shape[1]
    if t_len <= 2:
        for t in range(t_len):
            assign(out[t], b)
        if t_len == 1:
            add_rows(w, x[0], out[0])
        elif t_len == 2:
            add_rows_pair(w, x[0], x[1], out[0], out[1])
        return
    np.dot(x, w, out)
    for t in range(t_len):
        row = out[t]
        for j in range(m):
            row[j] += b[j]


@kernel
def _expm1(x, out):
    expm1_into(x, out, x.shape[0], bits_for(x, x.shape[0]))


def expm1(x: np.ndarray) -> np.ndarray:
    """The kernels' ``expm1`` of a float32 or float64 array, from Python (for tests).

    Shape
    -----
    ``(n,)`` -> ``(n,)``, same dtype.
    """
    x = np.ascontiguousarray(x)
    out = np.empty_like(x)
    _expm1(x, out)
    return out


@kernel
def all_finite(x):
    """Whether every value of the float array ``x`` is finite (no NaN, no inf)."""
    return nonfinite(x.ravel()) == 0
