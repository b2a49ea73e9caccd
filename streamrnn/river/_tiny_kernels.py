"""Compiled kernels of the tiny engine: one small recurrent model, one stream, float64.

Torch spends 3-10 µs of dispatch on every op, so a hidden-32 model learning one sample
at a time costs ~1 ms per sample in torch whatever its size. These ``numba.njit``
kernels do the same arithmetic as :class:`~streamrnn.learn.OnlineLearner` with one
stream and one step per push (its fast lane), in loops over small arrays:

- the cell step (torch's LSTM / GRU / tanh-RNN equations and gate order) and the
  linear readout (in :mod:`streamrnn.river._tiny_cells`);
- TBPTT(k1, k2): every ``k1`` steps the window of the last ``k2`` steps is recomputed
  from its entering state with the current weights and the pending targets' loss
  (mean squared error, or softmax cross-entropy over the logits) is backpropagated
  through it;
- ``clip_grad_norm_`` (the norm of the per-parameter norms, coefficient
  ``clip / (norm + 1e-6)`` clamped at 1) and Adam (``torch.optim.Adam``'s update with
  its bias corrections, ``betas=(0.9, 0.999)``, ``eps=1e-8``).

Everything lives in plain numpy arrays (they pickle); the layout is:

``ints``  (int64) configuration, counters and the target-status ring (see ``I_*``);
``fl``    (float64) ``lr, clip, beta1, beta2, eps, last_loss``;
``theta`` (float64) the parameters in torch's order: ``weight_ih`` and ``weight_hh``
          transposed (``(I, G*H)``, ``(H, G*H)``: the step's matrix-vector products
          run over contiguous rows, and the input columns seen so far are a prefix),
          ``bias_ih``, ``bias_hh``, readout ``weight``, ``bias``; then a row-major copy
          of ``weight_hh`` for the backward pass (refreshed after every update);
``adam``  (2, P) first and second moments;
``states`` (R + 1, 2, H) the ring of entering states, then the live state (``h``, ``c``);
``xbuf``  (k2, I) and ``ybuf`` (k2, O) the input and target rings.

Products use fused multiply-adds and sums run in their own order, so results differ
from torch's by rounding only (~1e-15 per step). Where the two may part: an input that
is exactly 0 is skipped in the products (it adds ±0 to finite values, so the results
are those of the full product, unless a weight is infinite), and a fused product that
overflows (|w x| > 1e308) adds exactly, where torch's rounds to inf first; neither
happens to weights that learning produced from finite data. Likewise the weights of input columns
that have only ever been 0 get zero gradients and zero Adam moments, so their update is
exactly nothing and is skipped.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from ._tiny_cells import (
    F_BETA1,
    F_BETA2,
    F_CLIP,
    F_EPS,
    F_LAST_LOSS,
    F_LR,
    I_ADAM_STEP,
    I_COUNT,
    I_DUE,
    I_DUP,
    I_HCOL,
    I_HID,
    I_HORIZON,
    I_K1,
    I_K2,
    I_KIND,
    I_LATE,
    I_LEARNED,
    I_LOSS,
    I_LOST,
    I_NIN,
    I_NLIVE,
    I_NOUT,
    I_RESETS,
    I_RING,
    I_SKIPPED,
    I_STEPS,
    I_TSTAT,
    I_UPDATES,
    LEARNED,
    NONE,
    PENDING,
    add_matvec_t,
    backward_cell,
    cell,
    readout,
    refresh_transposed,
    views,
)

__all__ = ["CELLS_DIGEST", "forecast_roll", "peek", "push"]

# numba's on-disk cache keys each function to the timestamp of its own file: it does not
# see edits of _tiny_cells.py, whose functions these kernels call, and would keep running
# the old cell. This digest of that file (tests/test_river_engine.py checks it) makes
# every edit there an edit here too, which drops this file's cached kernels.
CELLS_DIGEST = "29642ab88384dde5"


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def peek(ints, theta, states, x, out):
    """The model's output for input ``x`` from the live state (nothing changes)."""
    wih_t, whh_t, bih, bhh, wo, bo, _, _ = views(ints, theta)
    live = states[ints[I_RING]]
    hid = ints[I_HID]
    n_gh = bih.shape[0]
    h, c = np.empty(hid), np.empty(hid)
    cell(ints[I_KIND], wih_t, whh_t, bih, bhh, x, live[0], live[1], np.empty(n_gh),
         np.empty(n_gh), np.empty(5 * hid), h, c, np.empty(n_gh, dtype=np.int64))
    readout(wo, bo, h, out)


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def forecast_roll(ints, theta, states, rows, pred, level, dy_mean, dy_std, y_mean, y_std,
                  scale, out):
    """The forecaster's rollout: ``out[i]`` is the level after ``i + 1`` predicted steps.

    Each predicted (scaled) difference is unscaled, added to the level, and fed back
    with the level as columns 0 and 1 of the next input (``rows[i]``, whose other
    columns hold the scaled features); the live state is copied, never written.
    """
    wih_t, whh_t, bih, bhh, wo, bo, _, _ = views(ints, theta)
    hid = ints[I_HID]
    n_gh = bih.shape[0]
    live = states[ints[I_RING]]
    h, c = live[0].copy(), live[1].copy()
    h2, c2 = np.empty(hid), np.empty(hid)
    gi, gh, act, y = np.empty(n_gh), np.empty(n_gh), np.empty(5 * hid), np.empty(wo.shape[0])
    bits = np.empty(n_gh, dtype=np.int64)
    horizon = out.shape[0]
    for i in range(horizon):
        dy = pred * dy_std + dy_mean if scale else pred
        level += dy
        out[i] = level
        if i + 1 == horizon:
            break
        x = rows[i]
        x[0] = (dy - dy_mean) / dy_std if scale else dy
        x[1] = (level - y_mean) / y_std if scale else level
        cell(ints[I_KIND], wih_t, whh_t, bih, bhh, x, h, c, gi, gh, act, h2, c2, bits)
        h, h2 = h2, h
        c, c2 = c2, c
        readout(wo, bo, h, y)
        pred = y[0]


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _update(ints, fl, theta, adam, states, xbuf, ybuf):
    # The due TBPTT update of the window ending at the current count.
    ints[I_DUE] = 0
    k1, k2, hid, n_out = ints[I_K1], ints[I_K2], ints[I_HID], ints[I_NOUT]
    kind, ring = ints[I_KIND], ints[I_RING]
    end = ints[I_COUNT]
    w = min(end, k2)
    start = end - w
    terms = 0
    for s in range(start, end):
        if ints[I_TSTAT + s % k2] == PENDING:
            terms += 1
    if terms == 0:
        return
    wih_t, whh_t, bih, bhh, wo, bo, whh, p = views(ints, theta)
    n_gh = bih.shape[0]
    hs = np.zeros((w + 1, hid))
    cs = np.zeros((w + 1, hid))
    if start > 0:
        enter = states[end // k1 % ring]
        hs[0], cs[0] = enter[0], enter[1]
    acts = np.empty((w, 5 * hid))
    ys = np.empty((w, n_out))
    gi, gh, bits = np.empty(n_gh), np.empty(n_gh), np.empty(n_gh, dtype=np.int64)
    for t in range(w):
        cell(kind, wih_t, whh_t, bih, bhh, xbuf[(start + t) % k2], hs[t], cs[t], gi, gh,
             acts[t], hs[t + 1], cs[t + 1], bits)
        readout(wo, bo, hs[t + 1], ys[t])
    # the loss of the pending terms, and its gradient with respect to the outputs
    dys = np.zeros((w, n_out))
    loss = 0.0
    ce = ints[I_LOSS] == 1
    for t in range(w):
        pos = (start + t) % k2
        if ints[I_TSTAT + pos] != PENDING:
            continue
        ints[I_TSTAT + pos] = LEARNED
        if ce:
            m = ys[t, 0]
            for o in range(n_out):
                m = max(m, ys[t, o])
            total = 0.0
            for o in range(n_out):
                total += math.exp(ys[t, o] - m)
            label = int(ybuf[pos, 0])
            loss += m + math.log(total) - ys[t, label]
            for o in range(n_out):
                dys[t, o] = math.exp(ys[t, o] - m) / total / terms
            dys[t, label] -= 1.0 / terms
        else:
            for o in range(n_out):
                d = ys[t, o] - ybuf[pos, o]
                loss += d * d
                dys[t, o] = 2.0 * d / (terms * n_out)
    loss = loss / terms if ce else loss / (terms * n_out)
    if not math.isfinite(loss):
        ints[I_SKIPPED] += 1
        return
    # backward through the window; the weight gradients are two products at the end
    # (rows of weight_ih^T from I_NLIVE on and the tail of grad are never read)
    live = ints[I_NLIVE]
    grad = np.empty(theta.shape[0])
    gwih_t, gwhh_t, gbih, gbhh, gwo, gbo, _, _ = views(ints, grad)
    gbih[:], gbhh[:], gwo[:, :], gbo[:] = 0.0, 0.0, 0.0, 0.0
    dh, dc = np.zeros(hid), np.zeros(hid)
    dgis, dghs = np.empty((w, n_gh)), np.empty((w, n_gh))
    xs = np.empty((w, live))
    for t in range(w - 1, -1, -1):
        for o in range(n_out):
            d = dys[t, o]
            if d != 0.0:
                gbo[o] += d
                for u in range(hid):
                    gwo[o, u] += d * hs[t + 1, u]
                    dh[u] += wo[o, u] * d
        dgi, dgh = dgis[t], dghs[t]
        backward_cell(kind, hid, acts[t], cs[t], cs[t + 1], hs[t], dh, dc, dgi, dgh)
        add_matvec_t(whh, dgh, dh)
        xs[t] = xbuf[(start + t) % k2, :live]
    if live:
        gwih_t[:live, :] = np.dot(xs.T, dgis)
    gwhh_t[:, :] = np.dot(hs[:w].T, dghs)
    for t in range(w):
        for j in range(n_gh):
            gbih[j] += dgis[t, j]
            gbhh[j] += dghs[t, j]
    _clip_and_step(ints, fl, theta, adam, grad, terms, loss)


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _sum_squares(a, lo, hi):
    # Four running sums, so the loop is not one chain of dependent adds.
    x = a[lo:hi]
    n = x.shape[0]
    s0 = s1 = s2 = s3 = 0.0
    for q in range(n // 4):
        s0 += x[4 * q] * x[4 * q]
        s1 += x[4 * q + 1] * x[4 * q + 1]
        s2 += x[4 * q + 2] * x[4 * q + 2]
        s3 += x[4 * q + 3] * x[4 * q + 3]
    for q in range(n - n % 4, n):
        s0 += x[q] * x[q]
    return (s0 + s1) + (s2 + s3)


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _adam_range(theta, m, v, g, coef, w1, beta2, w2, inv_bc2_sqrt, eps, step_size):
    # Clipping (g * coef) and Adam on one slice of the parameters. Each pass touches few
    # arrays and counts from 0 (no negative-index wraparound), so it vectorizes.
    for q in range(theta.shape[0]):
        gq = g[q] * coef
        m[q] += w1 * (gq - m[q])
        v[q] = beta2 * v[q] + w2 * gq * gq
    for q in range(theta.shape[0]):  # the denominator, into the gradient's slot
        g[q] = math.sqrt(v[q]) * inv_bc2_sqrt + eps
    for q in range(theta.shape[0]):
        theta[q] = theta[q] - step_size * m[q] / g[q]


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def _clip_and_step(ints, fl, theta, adam, grad, terms, loss):
    # clip_grad_norm_ (the norm of the per-parameter norms), then Adam. Input columns
    # from I_NLIVE on have only ever seen zero inputs: their gradients, moments and
    # updates are exactly 0, so they (rows of weight_ih^T) are skipped.
    kind, n_in, hid, n_out = ints[I_KIND], ints[I_NIN], ints[I_HID], ints[I_NOUT]
    live = ints[I_NLIVE]
    n_gh = (4 if kind == 0 else 3 if kind == 1 else 1) * hid
    a = n_gh * n_in
    norm = math.sqrt(_sum_squares(grad, 0, n_gh * live))
    total = norm * norm
    for size in (n_gh * hid, n_gh, n_gh, n_out * hid, n_out):
        norm = math.sqrt(_sum_squares(grad, a, a + size))
        total += norm * norm
        a += size
    total = math.sqrt(total)
    if not math.isfinite(total):
        ints[I_SKIPPED] += 1
        return
    coef = 1.0
    if fl[F_CLIP] > 0.0:
        coef = min(fl[F_CLIP] / (total + 1e-6), 1.0)
    lr, beta1, beta2, eps = fl[F_LR], fl[F_BETA1], fl[F_BETA2], fl[F_EPS]
    ints[I_ADAM_STEP] += 1
    step = ints[I_ADAM_STEP]
    inv_bc2_sqrt = 1.0 / math.sqrt(1.0 - beta2 ** step)
    step_size = lr / (1.0 - beta1 ** step)
    m, v = adam[0], adam[1]
    w1, w2 = 1.0 - beta1, 1.0 - beta2
    for lo, hi in ((0, n_gh * live), (n_gh * n_in, a)):
        _adam_range(theta[lo:hi], m[lo:hi], v[lo:hi], grad[lo:hi], coef, w1, beta2, w2,
                    inv_bc2_sqrt, eps, step_size)
    refresh_transposed(ints, theta)
    ints[I_UPDATES] += 1
    ints[I_LEARNED] += terms
    fl[F_LAST_LOSS] = loss


@njit(cache=True, error_model="numpy", fastmath={"contract"})
def push(ints, fl, theta, adam, states, xbuf, ybuf, x, target, has_target, out):
    """One step of the stream: the due update, then predict ``out`` from input ``x``.

    With ``k1 == k2 == 1`` and a target (no horizon), the step's update runs at the end
    of the push instead, as :class:`~streamrnn.learn.OnlineLearner` does.

    ``target`` (``(O,)`` values, or a class index in ``target[0]``) is this step's target
    when ``has_target``; in horizon mode ``x[hcol]`` is the target of step ``count - h``.
    Returns 0, or 1 when the new live state was not finite and the stream was reset to
    step 0; -1 (nothing changed) when ``x`` or ``target`` is not finite.
    """
    live = ints[I_NLIVE]
    for k in range(x.shape[0]):
        if not math.isfinite(x[k]):
            return -1
        if x[k] != 0.0 and k >= live:
            live = k + 1
    if has_target:
        for o in range(target.shape[0]):
            if not math.isfinite(target[o]):
                return -1
    if ints[I_DUE]:
        _update(ints, fl, theta, adam, states, xbuf, ybuf)
    ints[I_NLIVE] = live  # after the update: x is not in its window
    wih_t, whh_t, bih, bhh, wo, bo, _, _ = views(ints, theta)
    k1, k2, ring, hid = ints[I_K1], ints[I_K2], ints[I_RING], ints[I_HID]
    n_gh = bih.shape[0]
    live = states[ring]
    h, c = np.empty(hid), np.empty(hid)
    cell(ints[I_KIND], wih_t, whh_t, bih, bhh, x, live[0], live[1], np.empty(n_gh),
         np.empty(n_gh), np.empty(5 * hid), h, c, np.empty(n_gh, dtype=np.int64))
    readout(wo, bo, h, out)
    count = ints[I_COUNT]
    pos = count % k2
    xbuf[pos] = x
    if has_target:
        ybuf[pos] = target
        ints[I_TSTAT + pos] = PENDING
    else:
        ints[I_TSTAT + pos] = NONE
    live[0], live[1] = h, c
    now = count + 1
    ints[I_COUNT] = now
    horizon = ints[I_HORIZON]
    if horizon >= 0 and count - horizon >= 0:
        t = count - horizon
        end = now if now % k1 == 0 else (now // k1 + 1) * k1
        if t < end - k2:
            ints[I_LATE] += 1
        elif ints[I_TSTAT + t % k2] != NONE:
            ints[I_DUP] += 1
        else:
            ybuf[t % k2, 0] = x[ints[I_HCOL]]
            ints[I_TSTAT + t % k2] = PENDING
    if (now + k2) % k1 == 0:
        states[(now + k2) // k1 % ring] = live
    if now % k1 == 0:
        ints[I_DUE] = 1
    ints[I_STEPS] += 1
    for u in range(hid):
        if not (math.isfinite(h[u]) and math.isfinite(c[u])):
            for q in range(k2):
                if ints[I_TSTAT + q] == PENDING:
                    ints[I_LOST] += 1
                ints[I_TSTAT + q] = NONE
            live[:, :] = 0.0
            ints[I_COUNT] = 0
            ints[I_DUE] = 0
            ints[I_RESETS] += 1
            return 1
    if k2 == 1 and has_target and horizon < 0:
        # as OnlineLearner: a whole k1 == k2 window pushed with its targets is learned
        # at the end of the push (k2 == 1 is the only such window of one step)
        _update(ints, fl, theta, adam, states, xbuf, ybuf)
    return 0
