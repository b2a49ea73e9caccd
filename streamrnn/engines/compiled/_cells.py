"""The compiled forms of the built-in cells: the pointwise part of one step (private).

A step of a classic cell is ``gi = W_ih x + b_ih``, ``gh = W_hh h + b_hh`` (the drivers
compute both, see :mod:`._infer`) and then a pointwise function of ``gi``, ``gh`` and
the entering state. These functions are that pointwise part, forward and backward,
with torch's equations and gate order (LSTM ``i f g o``; GRU ``r z n`` with
``n = tanh(gi_n + r * gh_n)``; RNN ``tanh`` or ``relu``), in float32 or float64:

``step(gi, gh, s, out, act, bits)``
    ``s`` ``(P, H)`` the entering state parts (``h`` first), ``out`` ``(P, H)`` the
    leaving ones; ``act`` ``(A * H,)`` receives what the backward pass needs (LSTM:
    ``i f g o tanh(c')``; GRU: ``r z n gh_n``; RNN: ``h'``); ``gi``, ``gh`` and ``bits``
    (integer, ``G * H``) are scratch.
``backward(act, s, out, ds, dgi, dgh)``
    ``ds`` ``(P, H)``: the gradients of the leaving parts in, of the entering parts out
    (but for the ``W_hh^T dgh`` term of ``h``, which the caller adds); ``dgi``, ``dgh``
    ``(G * H,)``: the gradients of ``gi`` and ``gh``.

``sigmoid(a) = 1 / (2 + expm1(-a))`` and ``tanh(a) = e / (e + 2)`` with ``e = expm1(2a)``
(:func:`._math.expm1_into`), so every loop vectorises.
"""

from __future__ import annotations

from ._jit import helper, typed
from ._math import expm1_into

__all__ = [
    "gru_backward", "gru_step", "lstm_backward", "lstm_step", "relu_backward", "relu_step",
    "tanh_backward", "tanh_step",
]  # fmt: skip


@helper
def lstm_step(gi, gh, s, out, act, bits):
    hid = s.shape[1]
    one, two = typed(gi, 1.0), typed(gi, 2.0)
    for j in range(4 * hid):
        gi[j] = -(gi[j] + gh[j])
    pre_g = gi[2 * hid : 3 * hid]
    for u in range(hid):
        pre_g[u] = -two * pre_g[u]
    expm1_into(gi, act, 4 * hid, bits)
    a0, a1, a2 = act[:hid], act[hid : 2 * hid], act[2 * hid : 3 * hid]
    a3, a4 = act[3 * hid : 4 * hid], act[4 * hid : 5 * hid]
    c, c_out, h_out = s[1], out[1], out[0]
    two_c = gh[:hid]
    for u in range(hid):
        i = one / (two + a0[u])
        f = one / (two + a1[u])
        g = a2[u] / (a2[u] + two)
        cn = f * c[u] + i * g
        a0[u], a1[u], a2[u] = i, f, g
        a3[u] = one / (two + a3[u])
        c_out[u] = cn
        two_c[u] = two * cn
    expm1_into(two_c, a4, hid, bits)
    for u in range(hid):
        tc = a4[u] / (a4[u] + two)
        a4[u] = tc
        h_out[u] = a3[u] * tc


@helper
def lstm_backward(act, s, out, ds, dgi, dgh):
    hid = s.shape[1]
    one = typed(act, 1.0)
    a0, a1, a2 = act[:hid], act[hid : 2 * hid], act[2 * hid : 3 * hid]
    a3, a4 = act[3 * hid : 4 * hid], act[4 * hid : 5 * hid]
    d0, d1, d2, d3 = dgi[:hid], dgi[hid : 2 * hid], dgi[2 * hid : 3 * hid], dgi[3 * hid :]
    dh, dc, c_prev = ds[0], ds[1], s[1]
    for u in range(hid):
        i, f, g, o, tc = a0[u], a1[u], a2[u], a3[u], a4[u]
        dcu = dc[u] + dh[u] * o * (one - tc * tc)
        d0[u] = dcu * g * i * (one - i)
        d1[u] = dcu * c_prev[u] * f * (one - f)
        d2[u] = dcu * i * (one - g * g)
        d3[u] = dh[u] * tc * o * (one - o)
        dc[u] = dcu * f
        dh[u] = 0.0
    dgh[:] = dgi


@helper
def gru_step(gi, gh, s, out, act, bits):
    hid = s.shape[1]
    one, two = typed(gi, 1.0), typed(gi, 2.0)
    for j in range(2 * hid):
        gi[j] = -(gi[j] + gh[j])
    expm1_into(gi, act, 2 * hid, bits)
    a0, a1, a2, a3 = act[:hid], act[hid : 2 * hid], act[2 * hid : 3 * hid], act[3 * hid :]
    gi_n, gh_n, pre_n = gi[2 * hid :], gh[2 * hid :], gh[:hid]
    for u in range(hid):
        r = one / (two + a0[u])
        a0[u] = r
        a1[u] = one / (two + a1[u])
        a3[u] = gh_n[u]
        pre_n[u] = two * (gi_n[u] + r * gh_n[u])
    expm1_into(pre_n, a2, hid, bits)
    h, h_out = s[0], out[0]
    for u in range(hid):
        n = a2[u] / (a2[u] + two)
        a2[u] = n
        z = a1[u]
        h_out[u] = (one - z) * n + z * h[u]


@helper
def gru_backward(act, s, out, ds, dgi, dgh):
    hid = s.shape[1]
    one = typed(act, 1.0)
    a0, a1, a2, a3 = act[:hid], act[hid : 2 * hid], act[2 * hid : 3 * hid], act[3 * hid :]
    d0, d1, d2 = dgi[:hid], dgi[hid : 2 * hid], dgi[2 * hid :]
    e0, e1, e2 = dgh[:hid], dgh[hid : 2 * hid], dgh[2 * hid :]
    dh, h_prev = ds[0], s[0]
    for u in range(hid):
        r, z, n, ghn = a0[u], a1[u], a2[u], a3[u]
        dan = dh[u] * (one - z) * (one - n * n)
        dar = dan * ghn * r * (one - r)
        daz = dh[u] * (h_prev[u] - n) * z * (one - z)
        d0[u], d1[u], d2[u] = dar, daz, dan
        e0[u], e1[u], e2[u] = dar, daz, dan * r
        dh[u] = dh[u] * z


@helper
def tanh_step(gi, gh, s, out, act, bits):
    hid = s.shape[1]
    two = typed(gi, 2.0)
    for u in range(hid):
        gi[u] = two * (gi[u] + gh[u])
    expm1_into(gi, act, hid, bits)
    h_out = out[0]
    for u in range(hid):
        hn = act[u] / (act[u] + two)
        act[u] = hn
        h_out[u] = hn


@helper
def tanh_backward(act, s, out, ds, dgi, dgh):
    hid = s.shape[1]
    one = typed(act, 1.0)
    dh = ds[0]
    for u in range(hid):
        dgi[u] = dh[u] * (one - act[u] * act[u])
        dh[u] = 0.0
    dgh[:] = dgi


@helper
def relu_step(gi, gh, s, out, act, bits):
    hid = s.shape[1]
    zero = typed(gi, 0.0)
    h_out = out[0]
    for u in range(hid):
        a = gi[u] + gh[u]
        hn = a if a > zero else zero
        hn = hn if a == a else a  # NaN stays NaN, as torch's relu
        act[u] = hn
        h_out[u] = hn


@helper
def relu_backward(act, s, out, ds, dgi, dgh):
    hid = s.shape[1]
    zero = typed(act, 0.0)
    dh = ds[0]
    for u in range(hid):
        dgi[u] = dh[u] if act[u] > zero else zero
        dh[u] = 0.0
    dgh[:] = dgi
