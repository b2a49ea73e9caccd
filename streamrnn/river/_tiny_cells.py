"""The cell arithmetic of the tiny engine (private): forward and backward of one step.

torch's LSTM / GRU / tanh-RNN equations and gate order (LSTM ``i f g o``, GRU ``r z n``
with ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``), one stream, float64, as
``numba.njit`` loops over small arrays; and the layout of the arrays the kernels of
:mod:`streamrnn.river._tiny_kernels` share (see there).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = [
    "COUNTERS", "F_BETA1", "F_BETA2", "F_CLIP", "F_EPS", "F_LAST_LOSS", "F_LR", "I_ADAM_STEP",
    "I_COUNT", "I_DUE", "I_DUP", "I_HCOL", "I_HID", "I_HORIZON", "I_K1", "I_K2", "I_KIND",
    "I_LATE", "I_LEARNED", "I_LOSS", "I_LOST", "I_NIN", "I_NLIVE", "I_NOUT", "I_RESETS",
    "I_RING", "I_SKIPPED", "I_STEPS", "I_TSTAT", "I_UPDATES", "KINDS", "LEARNED", "NONE",
    "PENDING", "add_matvec_t", "backward_cell", "cell", "expm1_into", "new_ints", "readout",
    "refresh_transposed", "views",
]

# ints layout
(I_KIND, I_NIN, I_HID, I_NOUT, I_K1, I_K2, I_HORIZON, I_HCOL, I_LOSS, I_RING, I_COUNT,
 I_DUE, I_ADAM_STEP, I_STEPS, I_UPDATES, I_LEARNED, I_LATE, I_DUP, I_SKIPPED, I_RESETS,
 I_LOST, I_NLIVE, I_TSTAT) = range(23)
COUNTERS = {"steps": I_STEPS, "updates": I_UPDATES, "learned": I_LEARNED,
            "late_dropped": I_LATE, "duplicate_dropped": I_DUP,
            "skipped_nonfinite": I_SKIPPED, "nonfinite_resets": I_RESETS,
            "lost_pending": I_LOST}
F_LR, F_CLIP, F_BETA1, F_BETA2, F_EPS, F_LAST_LOSS = range(6)
KINDS = {"lstm": 0, "gru": 1, "rnn": 2}
NONE, PENDING, LEARNED = 0, 1, 2  # as in streamrnn.learn._store


def new_ints(kind: int, n_in: int, hidden: int, n_out: int, k1: int, k2: int,
             horizon: int, hcol: int, loss: int) -> np.ndarray:
    """The ``ints`` array of a fresh learner (``horizon`` -1: none; ``loss`` 0 MSE, 1 CE)."""
    ints = np.zeros(I_TSTAT + k2, dtype=np.int64)
    ints[:I_COUNT] = (kind, n_in, hidden, n_out, k1, k2, horizon, hcol, loss, k2 // k1 + 1)
    ints[I_NLIVE] = n_in  # new_ints' caller lowers it once the transposes are made
    return ints


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def views(ints, theta):
    # weight_ih^T (I, G*H), weight_hh^T (H, G*H), biases, readout, then (tail) weight_hh.
    kind, n_in, hid, n_out = ints[I_KIND], ints[I_NIN], ints[I_HID], ints[I_NOUT]
    gh = (4 if kind == 0 else 3 if kind == 1 else 1) * hid
    a = gh * n_in
    b = a + gh * hid
    c = b + 2 * gh
    p = c + n_out * hid + n_out
    wih_t = theta[:a].reshape((n_in, gh))
    whh_t = theta[a:b].reshape((hid, gh))
    bih, bhh = theta[b:b + gh], theta[b + gh:c]
    wo = theta[c:c + n_out * hid].reshape((n_out, hid))
    bo = theta[c + n_out * hid:p]
    whh = theta[p:p + gh * hid].reshape((gh, hid))
    return wih_t, whh_t, bih, bhh, wo, bo, whh, p


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def refresh_transposed(ints, theta):
    """Copy ``weight_hh`` (kept transposed) into its row-major slot at the tail."""
    _, whh_t, _, _, _, _, whh, _ = views(ints, theta)
    whh[:, :] = whh_t.T


# expm1 without a library call, so the loops over gates vectorize: x = k ln2 + r with
# |r| <= ln2 / 2 (Cody-Waite), e^r - 1 by its Taylor series to r^13 (error < 1e-17
# relative), then 2^k (k in the exponent bits) * (1 + q) - 1. Within an ulp or two of
# math.expm1 (tests/test_river_engine.py). Arguments are clamped to [-708, 708] (so
# +-inf give ~1e307 and -1, and the sigmoid and tanh built on it saturate as torch's
# do); NaN stays NaN.
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_C = (1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0,
      1.0 / 362880.0, 1.0 / 40320.0, 1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0,
      1.0 / 6.0, 0.5)


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def expm1_into(x, out, n, bits):
    # out[j] = expm1(x[j]) for j < n (bits: int64 scratch of n or more).
    for j in range(n):
        v = x[j]
        v = min(max(v, -708.0), 708.0)
        kf = np.floor(v * _LOG2E + 0.5)
        r = (v - kf * _LN2_HI) - kf * _LN2_LO
        p = _C[0]
        p = p * r + _C[1]
        p = p * r + _C[2]
        p = p * r + _C[3]
        p = p * r + _C[4]
        p = p * r + _C[5]
        p = p * r + _C[6]
        p = p * r + _C[7]
        p = p * r + _C[8]
        p = p * r + _C[9]
        p = p * r + _C[10]
        p = p * r + _C[11]
        out[j] = r + r * r * p
        bits[j] = (np.int64(kf) + 1023) << 52
    scale = bits.view(np.float64)
    for j in range(n):
        sc = scale[j]
        e = sc * out[j] + (sc - 1.0)
        out[j] = e if x[j] == x[j] else x[j]


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def add_matvec_t(wt, v, out):
    """``out += wt.T @ v``, four rows of ``wt`` per pass over ``out`` (contiguous)."""
    n, m = v.shape[0], out.shape[0]
    k = 0
    while k + 4 <= n:
        r0, r1, r2, r3 = wt[k], wt[k + 1], wt[k + 2], wt[k + 3]
        v0, v1, v2, v3 = v[k], v[k + 1], v[k + 2], v[k + 3]
        for j in range(m):
            out[j] += (r0[j] * v0 + r1[j] * v1) + (r2[j] * v2 + r3[j] * v3)
        k += 4
    while k < n:
        r0, v0 = wt[k], v[k]
        for j in range(m):
            out[j] += r0[j] * v0
        k += 1


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def cell(kind, wih_t, whh_t, bih, bhh, x, h, c, gi, gh, act, h_out, c_out, bits):
    # One step: gi = W_ih x + b_ih, gh = W_hh h + b_hh, then the cell's gates.
    # act keeps what the backward pass needs (lstm: i f g o tanh(c'); gru: r z n gh_n;
    # rnn: h'); sigmoid(a) = 1 / (2 + expm1(-a)), tanh(a) = e / (e + 2), e = expm1(2a).
    # Gates are taken as slices so that every loop counts from 0 and vectorizes; gi, gh
    # (G*H), act (5H) and bits (int64, G*H) are scratch.
    n_gh = gi.shape[0]
    hid = h.shape[0]
    for j in range(n_gh):
        gi[j] = bih[j]
        gh[j] = bhh[j]
    for k in range(x.shape[0]):
        xk = x[k]
        if xk != 0.0:
            row = wih_t[k]
            for j in range(n_gh):
                gi[j] += row[j] * xk
    add_matvec_t(whh_t, h, gh)
    a0, a1, a2, a3, a4 = (act[:hid], act[hid:2 * hid], act[2 * hid:3 * hid],
                          act[3 * hid:4 * hid], act[4 * hid:])
    if kind == 0:
        for j in range(n_gh):
            gi[j] = -(gi[j] + gh[j])
        pre_g = gi[2 * hid:3 * hid]
        for u in range(hid):
            pre_g[u] = -2.0 * pre_g[u]
        expm1_into(gi, act, n_gh, bits)
        two_c = gh[:hid]
        for u in range(hid):
            i = 1.0 / (2.0 + a0[u])
            f = 1.0 / (2.0 + a1[u])
            g = a2[u] / (a2[u] + 2.0)
            cn = f * c[u] + i * g
            a0[u], a1[u], a2[u] = i, f, g
            a3[u] = 1.0 / (2.0 + a3[u])
            c_out[u] = cn
            two_c[u] = 2.0 * cn
        expm1_into(two_c, a4, hid, bits)
        for u in range(hid):
            tc = a4[u] / (a4[u] + 2.0)
            a4[u] = tc
            h_out[u] = a3[u] * tc
    elif kind == 1:
        for j in range(2 * hid):
            gi[j] = -(gi[j] + gh[j])
        expm1_into(gi, act, 2 * hid, bits)
        gi_n, gh_n, pre_n = gi[2 * hid:], gh[2 * hid:], gh[:hid]
        for u in range(hid):
            r = 1.0 / (2.0 + a0[u])
            a0[u] = r
            a1[u] = 1.0 / (2.0 + a1[u])
            a3[u] = gh_n[u]
            pre_n[u] = 2.0 * (gi_n[u] + r * gh_n[u])
        expm1_into(pre_n, a2, hid, bits)
        for u in range(hid):
            n = a2[u] / (a2[u] + 2.0)
            a2[u] = n
            z = a1[u]
            h_out[u] = (1.0 - z) * n + z * h[u]
            c_out[u] = 0.0
    else:
        for u in range(hid):
            gi[u] = 2.0 * (gi[u] + gh[u])
        expm1_into(gi, a0, hid, bits)
        for u in range(hid):
            hn = a0[u] / (a0[u] + 2.0)
            a0[u] = hn
            h_out[u] = hn
            c_out[u] = 0.0


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def readout(wo, bo, h, y):
    for o in range(y.shape[0]):
        acc = bo[o]
        for u in range(h.shape[0]):
            acc += wo[o, u] * h[u]
        y[o] = acc


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def backward_cell(kind, hid, act, c_prev, c_new, h_prev, dh, dc, dgi, dgh):
    # Gate gradients of one step from dh (and dc); dh / dc become those of the state
    # entering the step, except the W_hh^T term the caller adds.
    a0, a1, a2, a3, a4 = (act[:hid], act[hid:2 * hid], act[2 * hid:3 * hid],
                          act[3 * hid:4 * hid], act[4 * hid:])
    d0, d1, d2 = dgi[:hid], dgi[hid:2 * hid], dgi[2 * hid:3 * hid]
    if kind == 0:
        d3 = dgi[3 * hid:]
        for u in range(hid):
            i, f, g, o, tc = a0[u], a1[u], a2[u], a3[u], a4[u]
            dcu = dc[u] + dh[u] * o * (1.0 - tc * tc)
            d0[u] = dcu * g * i * (1.0 - i)
            d1[u] = dcu * c_prev[u] * f * (1.0 - f)
            d2[u] = dcu * i * (1.0 - g * g)
            d3[u] = dh[u] * tc * o * (1.0 - o)
            dc[u] = dcu * f
            dh[u] = 0.0
        dgh[:] = dgi
    elif kind == 1:
        e0, e1, e2 = dgh[:hid], dgh[hid:2 * hid], dgh[2 * hid:]
        for u in range(hid):
            r, z, n, ghn = a0[u], a1[u], a2[u], a3[u]
            dan = dh[u] * (1.0 - z) * (1.0 - n * n)
            dar = dan * ghn * r * (1.0 - r)
            daz = dh[u] * (h_prev[u] - n) * z * (1.0 - z)
            d0[u], d1[u], d2[u] = dar, daz, dan
            e0[u], e1[u], e2[u] = dar, daz, dan * r
            dh[u] = dh[u] * z
    else:
        for u in range(hid):
            d0[u] = dh[u] * (1.0 - a0[u] * a0[u])
            dh[u] = 0.0
        dgh[:] = dgi
