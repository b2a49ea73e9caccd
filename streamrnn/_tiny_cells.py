"""The cell arithmetic of the tiny engine (private): forward and backward of one step.

torch's LSTM / GRU / tanh-RNN equations and gate order (LSTM ``i f g o``, GRU ``r z n``
with ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``), one stream, float64, as
``numba.njit`` loops over small arrays; and the layout of the arrays the kernels of
:mod:`streamrnn._tiny_kernels` share (see there).
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = [
    "COUNTERS", "F_BETA1", "F_BETA2", "F_CLIP", "F_EPS", "F_LAST_LOSS", "F_LR", "I_ADAM_STEP",
    "I_COUNT", "I_DUE", "I_DUP", "I_HCOL", "I_HID", "I_HORIZON", "I_K1", "I_K2", "I_KIND",
    "I_LATE", "I_LEARNED", "I_LOSS", "I_LOST", "I_NIN", "I_NLIVE", "I_NOUT", "I_RESETS",
    "I_RING", "I_SKIPPED", "I_STEPS", "I_TSTAT", "I_UPDATES", "KINDS", "LEARNED", "NONE",
    "PENDING", "backward_cell", "cell", "expm1_into", "new_ints", "readout",
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
NONE, PENDING, LEARNED = 0, 1, 2  # as in streamrnn._learn_store


def new_ints(kind: int, n_in: int, hidden: int, n_out: int, k1: int, k2: int,
             horizon: int, hcol: int, loss: int) -> np.ndarray:
    """The ``ints`` array of a fresh learner (``horizon`` -1: none; ``loss`` 0 MSE, 1 CE)."""
    ints = np.zeros(I_TSTAT + k2, dtype=np.int64)
    ints[:I_COUNT] = (kind, n_in, hidden, n_out, k1, k2, horizon, hcol, loss, k2 // k1 + 1)
    ints[I_NLIVE] = n_in  # new_ints' caller lowers it once the transposes are made
    return ints


@njit(cache=True, error_model="numpy")
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


@njit(cache=True, error_model="numpy")
def refresh_transposed(ints, theta):
    """Copy ``weight_hh`` (kept transposed) into its row-major slot at the tail."""
    _, whh_t, _, _, _, _, whh, _ = views(ints, theta)
    whh[:, :] = whh_t.T


# expm1 without a library call, so the loops over gates vectorize: x = k ln2 + r with
# |r| <= ln2 / 2 (Cody-Waite), e^r - 1 by its Taylor series to r^13 (error < 1e-17
# relative), then 2^k (k in the exponent bits) * (1 + q) - 1. Within an ulp or two of
# math.expm1 (tests/test_river_engine.py); arguments are clamped to [-708, 708] and a
# NaN or infinite argument gives NaN.
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_C = (1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0,
      1.0 / 362880.0, 1.0 / 40320.0, 1.0 / 5040.0, 1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0,
      1.0 / 6.0, 0.5)


@njit(cache=True, error_model="numpy")
def expm1_into(x, out, n):
    # out[j] = expm1(x[j]) for j < n.
    bits = np.empty(n, dtype=np.int64)
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
        out[j] = sc * out[j] + (sc - 1.0) + (x[j] - x[j])


@njit(cache=True, error_model="numpy")
def cell(kind, wih_t, whh_t, bih, bhh, x, h, c, gi, gh, act, h_out, c_out):
    # One step: gi = W_ih x + b_ih, gh = W_hh h + b_hh, then the cell's gates.
    # act keeps what the backward pass needs (lstm: i f g o tanh(c'); gru: r z n gh_n;
    # rnn: h'); sigmoid(a) = 1 / (2 + expm1(-a)), tanh(a) = e / (e + 2), e = expm1(2a).
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
    for k in range(hid):
        hk = h[k]
        if hk != 0.0:
            row = whh_t[k]
            for j in range(n_gh):
                gh[j] += row[j] * hk
    if kind == 0:
        for j in range(n_gh):
            a = gi[j] + gh[j]
            gi[j] = -a
        for u in range(2 * hid, 3 * hid):
            gi[u] = -2.0 * gi[u]
        expm1_into(gi, act, n_gh)
        for u in range(hid):
            i = 1.0 / (2.0 + act[u])
            f = 1.0 / (2.0 + act[hid + u])
            e = act[2 * hid + u]
            g = e / (e + 2.0)
            o = 1.0 / (2.0 + act[3 * hid + u])
            cn = f * c[u] + i * g
            c_out[u] = cn
            act[u], act[hid + u], act[2 * hid + u], act[3 * hid + u] = i, f, g, o
            gh[u] = 2.0 * cn
        expm1_into(gh, gi, hid)
        for u in range(hid):
            e = gi[u]
            tc = e / (e + 2.0)
            act[4 * hid + u] = tc
            h_out[u] = act[3 * hid + u] * tc
    elif kind == 1:
        for u in range(2 * hid):
            gi[u] = -(gi[u] + gh[u])
        expm1_into(gi, act, 2 * hid)
        for u in range(hid):
            r = 1.0 / (2.0 + act[u])
            act[u] = r
            act[hid + u] = 1.0 / (2.0 + act[hid + u])
            act[3 * hid + u] = gh[2 * hid + u]
            gi[u] = 2.0 * (gi[2 * hid + u] + r * gh[2 * hid + u])
        expm1_into(gi, gh, hid)
        for u in range(hid):
            e = gh[u]
            n = e / (e + 2.0)
            z = act[hid + u]
            act[2 * hid + u] = n
            h_out[u] = (1.0 - z) * n + z * h[u]
            c_out[u] = 0.0
    else:
        for u in range(hid):
            gi[u] = 2.0 * (gi[u] + gh[u])
        expm1_into(gi, gh, hid)
        for u in range(hid):
            e = gh[u]
            hn = e / (e + 2.0)
            h_out[u] = hn
            c_out[u] = 0.0
            act[u] = hn


@njit(cache=True, error_model="numpy")
def readout(wo, bo, h, y):
    for o in range(y.shape[0]):
        acc = bo[o]
        for u in range(h.shape[0]):
            acc += wo[o, u] * h[u]
        y[o] = acc


@njit(cache=True, error_model="numpy")
def backward_cell(kind, hid, act, c_prev, c_new, h_prev, dh, dc, dgi, dgh):
    # Gate gradients of one step from dh (and dc); dh / dc become those of the state
    # entering the step, except the W_hh^T term the caller adds.
    if kind == 0:
        for u in range(hid):
            i, f, g, o = act[u], act[hid + u], act[2 * hid + u], act[3 * hid + u]
            tc = act[4 * hid + u]
            d_o = dh[u] * tc
            dcu = dc[u] + dh[u] * o * (1.0 - tc * tc)
            dgi[u] = dcu * g * i * (1.0 - i)
            dgi[hid + u] = dcu * c_prev[u] * f * (1.0 - f)
            dgi[2 * hid + u] = dcu * i * (1.0 - g * g)
            dgi[3 * hid + u] = d_o * o * (1.0 - o)
            dc[u] = dcu * f
            dh[u] = 0.0
        dgh[:] = dgi
    elif kind == 1:
        for u in range(hid):
            r, z, n, ghn = act[u], act[hid + u], act[2 * hid + u], act[3 * hid + u]
            dn = dh[u] * (1.0 - z)
            dz = dh[u] * (h_prev[u] - n)
            dan = dn * (1.0 - n * n)
            dar = dan * ghn * r * (1.0 - r)
            daz = dz * z * (1.0 - z)
            dgi[u], dgi[hid + u], dgi[2 * hid + u] = dar, daz, dan
            dgh[u], dgh[hid + u], dgh[2 * hid + u] = dar, daz, dan * r
            dh[u] = dh[u] * z
    else:
        for u in range(hid):
            hn = act[u]
            dgi[u] = dh[u] * (1.0 - hn * hn)
            dh[u] = 0.0
        dgh[:] = dgi
