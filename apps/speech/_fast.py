"""A compiled (numba) float32 inference kernel for one live stream of an LSTM + readout (private).

Why: the numpy kernel (:mod:`._speech_kernel`) makes ~10 numpy calls per layer step, and
at batch 1 their dispatch is the cost (~46 us for a 20 ms push of 2 frames through
2 x 128 LSTM + readout). Here a whole push (T frames, L layers, the readout) is one call
into machine code whose loops vectorize:

- matrix-vector products are written as sums of weight *rows* scaled by one input value
  (``gates += W^T[k] * h[k]``, four rows per pass), so the inner loop runs over the 4H
  contiguous gate values; the input projection of a layer is done for all T steps of the
  push in one pass over its weights;
- ``sigmoid(a) = 1 / (2 + expm1(-a))`` and ``tanh(a) = e / (e + 2)`` with
  ``e = expm1(2 a)``, from a float32 ``expm1`` written out (Cody-Waite range reduction,
  then the Taylor polynomial to ``r**9`` on ``|r| <= ln2 / 2``: within 1 float32 ulp of
  the true value, tested to 2), so the gate loops hold no library call and vectorize too
  (scalar ``tanh`` / ``exp`` calls made a previous numba attempt slower than numpy).

Measured (1 thread, AVX-512 machine, 2 x 128 LSTM, input 40): ~21-26 us per 2-frame push
(numpy kernel ~46 us). That is close to the cost of reading the weights: a push streams
1.36 MB of them through L2 (W_hh of each layer per frame, W_ih once per push), at
~60-90 GB/s; a single 256 KB product runs at ~3.3 us (BLAS sgemv: 4.4-5.6 us).

It computes torch's ``nn.LSTM`` equations (gate order i f g o) and ``nn.Linear`` in
float32, so outputs match torch to float32 rounding (parity-tested, 1e-5). Gate inputs of
any size saturate as torch's do (+-inf included); NaN propagates. numba compiles the
kernel at first use (~8 s) and caches it on disk (``cache=True``); everything it calls is
in this file, so numba's per-file cache never runs a stale helper.
"""

from __future__ import annotations

import numpy as np
import torch

from ._kernel import lstm_parts

try:
    from numba import njit
except ImportError:  # numba is a core dependency; without it the numpy kernel runs
    njit = None

__all__ = ["HAVE_NUMBA", "FastLSTMKernel", "expm1_f32"]

HAVE_NUMBA = njit is not None
_F32_DTYPE = np.dtype(np.float32)

_F = np.float32
# float32 constants (a Python float would turn the arithmetic into float64)
_LOG2E = _F(1.4426950408889634)
_LN2_HI = _F(0.693145751953125)  # 0x3f317200: k * _LN2_HI is exact for |k| < 2**15
_LN2_LO = _F(1.4286068203094172e-06)  # ln 2 - _LN2_HI
_LO, _HI = _F(-88.0), _F(88.0)  # expm1(88) ~ 1.65e38 < float32 max; expm1(-88) = -1
_HALF, _ONE, _TWO, _ZERO = _F(0.5), _F(1.0), _F(2.0), _F(0.0)
_C8, _C7, _C6, _C5 = _F(1 / 362880), _F(1 / 40320), _F(1 / 5040), _F(1 / 720)
_C4, _C3, _C2 = _F(1 / 120), _F(1 / 24), _F(1 / 6)
_BIAS, _SHIFT = np.int32(127), np.int32(23)
_MIN_K = _F(-126.0)  # 2**-126: the least normal float32 (expm1 is then -1 anyway)


def _jit(fn):
    if njit is None:
        return fn
    return njit(cache=True, error_model="numpy", fastmath={"contract"})(fn)


@_jit
def _expm1_into(x, out, n, bits):
    # out[j] = expm1(x[j]) for j < n (float32; bits: int32 scratch of n or more).
    # x = k ln2 + r, |r| <= ln2 / 2; expm1(r) = r + r^2 p(r) (Taylor to r^9, error below
    # 2e-10 relative); expm1(x) = 2^k (1 + expm1(r)) - 1. Clamped to [-88, 88]; NaN stays.
    for j in range(n):
        v = min(max(x[j], _LO), _HI)
        kf = max(np.floor(v * _LOG2E + _HALF), _MIN_K)
        r = (v - kf * _LN2_HI) - kf * _LN2_LO
        p = _C8
        p = p * r + _C7
        p = p * r + _C6
        p = p * r + _C5
        p = p * r + _C4
        p = p * r + _C3
        p = p * r + _C2
        p = p * r + _HALF
        out[j] = r + r * r * p
        bits[j] = (np.int32(kf) + _BIAS) << _SHIFT
    scale = bits[:n].view(np.float32)
    for j in range(n):
        sc = scale[j]
        e = sc * out[j] + (sc - _ONE)
        out[j] = e if x[j] == x[j] else x[j]


@_jit
def _add_rows(w, v, out):
    # out += w.T @ v for w (K, M) row-major: four rows of w per pass over out.
    n, m = v.shape[0], out.shape[0]
    k = 0
    while k + 4 <= n:
        r0, r1, r2, r3 = w[k], w[k + 1], w[k + 2], w[k + 3]
        v0, v1, v2, v3 = v[k], v[k + 1], v[k + 2], v[k + 3]
        for j in range(m):
            out[j] += (r0[j] * v0 + r1[j] * v1) + (r2[j] * v2 + r3[j] * v3)
        k += 4
    while k < n:
        r0, v0 = w[k], v[k]
        for j in range(m):
            out[j] += r0[j] * v0
        k += 1


@_jit
def _project(w, b, inp, out):
    # out[t] = b + w.T @ inp[t] for every t, one pass over w (K, M): two steps at a time.
    t_len, n, m = inp.shape[0], inp.shape[1], w.shape[1]
    for t in range(t_len):
        out[t, :] = b
    t = 0
    while t + 2 <= t_len:
        o0, o1, x0, x1 = out[t], out[t + 1], inp[t], inp[t + 1]
        k = 0
        while k + 2 <= n:
            r0, r1 = w[k], w[k + 1]
            a0, a1, b0, b1 = x0[k], x0[k + 1], x1[k], x1[k + 1]
            for j in range(m):
                o0[j] += r0[j] * a0 + r1[j] * a1
                o1[j] += r0[j] * b0 + r1[j] * b1
            k += 2
        if k < n:
            r0, a0, b0 = w[k], x0[k], x1[k]
            for j in range(m):
                o0[j] += r0[j] * a0
                o1[j] += r0[j] * b0
        t += 2
    if t < t_len:
        _add_rows(w, inp[t], out[t])


@_jit
def _layer(w_ih, w_hh, b, inp, h, c, seq, proj, act, bits):
    # One LSTM layer over inp (T, In) from state h, c (H,), updated in place; seq (T, H)
    # receives h of every step. proj (T, 4H), act (4H), bits (4H) are scratch.
    hid = h.shape[0]
    g4 = 4 * hid
    _project(w_ih, b, inp, proj)
    for t in range(inp.shape[0]):
        gates = proj[t]
        _add_rows(w_hh, h, gates)
        # expm1 of -a for i, f, o (sigmoid) and of 2a for g (tanh), in one pass
        for j in range(2 * hid):
            gates[j] = -gates[j]
        for j in range(2 * hid, 3 * hid):
            gates[j] = _TWO * gates[j]
        for j in range(3 * hid, g4):
            gates[j] = -gates[j]
        _expm1_into(gates, act, g4, bits)
        ai, af, ag, ao = act[:hid], act[hid : 2 * hid], act[2 * hid : 3 * hid], act[3 * hid :]
        two_c = gates[:hid]  # free now: holds 2 c' for tanh(c')
        for u in range(hid):
            i = _ONE / (_TWO + ai[u])
            f = _ONE / (_TWO + af[u])
            g = ag[u] / (ag[u] + _TWO)
            cn = f * c[u] + i * g
            c[u] = cn
            two_c[u] = _TWO * cn
        _expm1_into(two_c, ai, hid, bits)
        out = seq[t]
        for u in range(hid):
            o = _ONE / (_TWO + ao[u])
            e = ai[u]
            hn = o * (e / (e + _TWO))
            h[u] = hn
            out[u] = hn


@_jit
def _softmax_into(y, post, bits):
    # post[t] = softmax(y[t]) (float32, max-shifted as numpy's; bits: int32 scratch)
    n_out = y.shape[1]
    for t in range(y.shape[0]):
        row, dst = y[t], post[t]
        top = row[0]
        for o in range(1, n_out):
            top = max(top, row[o])
        for o in range(n_out):
            dst[o] = row[o] - top
        _expm1_into(dst, dst, n_out, bits)
        total = _ZERO
        for o in range(n_out):
            dst[o] += _ONE
            total += dst[o]
        for o in range(n_out):
            dst[o] /= total


@_jit
def _run(x, w_ih0, w_ihs, w_hh, bias, h, c, w_out, b_out, y, post):
    # x (T, F) through L layers (state h, c (L, H), in place) and the readout into y (T, O);
    # w_out (H, P) / b_out (P,) are zero-padded to P >= O columns (P = 0: no readout);
    # post (T, O): the softmax of y, or (0, O) for none.
    t_len = x.shape[0]
    n_layers, hid = h.shape[0], h.shape[1]
    g4 = 4 * hid
    proj = np.empty((t_len, g4), dtype=np.float32)
    seq = np.empty((t_len, hid), dtype=np.float32)
    act = np.empty(g4, dtype=np.float32)
    bits = np.empty(g4, dtype=np.int32)
    _layer(w_ih0, w_hh[0], bias[0], x, h[0], c[0], seq, proj, act, bits)
    for k in range(1, n_layers):
        nxt = np.empty((t_len, hid), dtype=np.float32)
        _layer(w_ihs[k - 1], w_hh[k], bias[k], seq, h[k], c[k], nxt, proj, act, bits)
        seq = nxt
    n_pad, n_out = w_out.shape[1], y.shape[1]
    if n_pad == 0:
        y[:, :] = seq
        return
    acc = np.empty(n_pad, dtype=np.float32)
    for t in range(t_len):
        acc[:] = b_out
        _add_rows(w_out, seq[t], acc)
        y[t, :] = acc[:n_out]
    if post.shape[0]:
        _softmax_into(y, post, bits)


def expm1_f32(x: np.ndarray) -> np.ndarray:
    """The kernel's float32 ``expm1`` (for tests).

    Shape
    -----
    ``(n,)`` float32 -> ``(n,)`` float32.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.empty_like(x)
    _expm1_into(x, out, len(x), np.empty(len(x), dtype=np.int32))
    return out


class FastLSTMKernel:
    """Frozen float32 copy of an LSTM (+ linear readout) stepping one stream, compiled.

    The same interface as :class:`~._speech_kernel.LSTMKernel` (``h``, ``c``, ``reset``,
    calling it on frames), the same results to float32 rounding.

    Shape
    -----
    ``(T, F)`` float32 -> ``(T, O)`` float32 (``O = H`` without a readout); state
    ``(L, H)`` for ``h`` and ``c``.
    """

    @staticmethod
    def supports(model) -> bool:
        """Whether numba is installed and ``model`` is a float32 LSTM (+ linear head)."""
        return HAVE_NUMBA and lstm_parts(model) is not None

    def __init__(self, model) -> None:
        parts = lstm_parts(model)
        if parts is None or not HAVE_NUMBA:
            raise ValueError(
                f"model must be a float32 streamrnn LSTM or RecurrentModel(LSTM, Readout) "
                f"and numba installed, got {type(model).__name__}"
            )
        cell, head = parts
        hid, n_layers = cell.hidden_size, cell.num_layers
        rnn = cell.rnn

        def param(name):
            return getattr(rnn, name).detach().numpy().astype(np.float32)

        with torch.no_grad():
            w_ih = [np.ascontiguousarray(param(f"weight_ih_l{k}").T) for k in range(n_layers)]
            w_hh = np.stack([param(f"weight_hh_l{k}").T for k in range(n_layers)])
            bias = np.zeros((n_layers, 4 * hid), dtype=np.float32)
            if cell.bias:
                for k in range(n_layers):
                    bias[k] = param(f"bias_ih_l{k}") + param(f"bias_hh_l{k}")
            if head is None:
                w_out = np.zeros((hid, 0), dtype=np.float32)
                b_out = np.zeros(0, dtype=np.float32)
                n_out = hid
            else:
                n_out = head.out_features
                n_pad = -(-n_out // 8) * 8  # whole 8-float vectors in the readout loop
                w_out = np.zeros((hid, n_pad), dtype=np.float32)
                w_out[:, :n_out] = head.weight.detach().numpy().T
                b_out = np.zeros(n_pad, dtype=np.float32)
                if head.bias is not None:
                    b_out[:n_out] = head.bias.detach().numpy()
        self.w_ih0 = w_ih[0]
        rest = w_ih[1:] or [np.zeros((hid, 4 * hid), dtype=np.float32)]
        self.w_ihs = np.ascontiguousarray(np.stack(rest))
        self.w_hh = np.ascontiguousarray(w_hh)
        self.bias, self.w_out, self.b_out = bias, w_out, b_out
        self.hidden_size, self.num_layers = hid, n_layers
        self.input_size, self.output_size = cell.input_size, n_out
        self.h = np.zeros((n_layers, hid), dtype=np.float32)
        self.c = np.zeros((n_layers, hid), dtype=np.float32)
        self._no_post = np.empty((0, n_out), dtype=np.float32)  # never written
        self._args = (self.w_ih0, self.w_ihs, self.w_hh, self.bias, self.h, self.c,
                      self.w_out, self.b_out)  # fmt: skip

    def reset(self) -> None:
        """Zero state (in place)."""
        self.h[:] = 0.0
        self.c[:] = 0.0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Run T steps (``x`` ``(T, F)``) from the carried state; keep the new state."""
        x = self._checked(x)
        y = np.empty((x.shape[0], self.output_size), dtype=np.float32)
        if x.shape[0]:
            _run(x, *self._args, y, self._no_post)
        return y

    def run(self, x: np.ndarray, softmax: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Outputs of T steps and, if ``softmax``, their row-wise softmax (else ``(0, O)``).

        Shape
        -----
        ``(T, F)`` -> ``(T, O)`` and ``(T, O)`` (or ``(0, O)``), float32.
        """
        x = self._checked(x)
        t_len = x.shape[0]
        y = np.empty((t_len, self.output_size), dtype=np.float32)
        post = np.empty((t_len, self.output_size), dtype=np.float32) if softmax else None
        if t_len:
            _run(x, *self._args, y, self._no_post if post is None else post)
        return y, self._no_post if post is None else post

    def _checked(self, x) -> np.ndarray:
        """``x`` as a C-contiguous float32 ``(T, F)`` array (the kernel reads it unchecked)."""
        if (
            type(x) is not np.ndarray
            or x.dtype is not _F32_DTYPE
            or not x.flags.c_contiguous
            or x.ndim != 2
            or x.shape[1] != self.input_size
        ):
            x = np.ascontiguousarray(x, dtype=np.float32)
            if x.ndim != 2 or x.shape[1] != self.input_size:
                raise ValueError(
                    f"x must have shape (T, {self.input_size}) (frames, features), got {x.shape}"
                )
        return x
