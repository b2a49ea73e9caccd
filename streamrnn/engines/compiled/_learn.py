"""The learning kernels of the compiled engine: one small model, one stream, float64
(private), built per compiled form.

The same arithmetic as :class:`~streamrnn.learn.OnlineLearner` with one stream and one
step per push, in loops over small arrays:

- the step: ``gi = b_ih + W_ih x``, ``gh = b_hh + W_hh h``, then the form's pointwise
  ``step``, and the linear readout;
- TBPTT(k1, k2): every ``k1`` steps the window of the last ``k2`` steps is recomputed
  from its entering state with the current weights, and the pending targets' loss (mean
  squared error, or softmax cross-entropy over the logits) is backpropagated through it
  (the form's ``backward``);
- ``clip_grad_norm_`` (the norm of the per-parameter norms, coefficient
  ``clip / (norm + 1e-6)`` clamped at 1) and Adam (``torch.optim.Adam``'s update with
  its bias corrections).

Everything lives in plain numpy arrays (they pickle); the layout:

``ints``   (int64) configuration, counters and the target-status ring (``I_*``);
``fl``     (float64) ``lr, clip, beta1, beta2, eps, last_loss``;
``theta``  (float64) the parameters in torch's order: ``weight_ih`` and ``weight_hh``
           transposed (``(I, G*H)``, ``(H, G*H)``: the products run over contiguous
           rows, and the input columns seen so far are a prefix), ``bias_ih``,
           ``bias_hh``, readout ``weight``, ``bias``; then a row-major copy of
           ``weight_hh`` for the backward pass (refreshed after every update);
``adam``   (2, N) first and second moments;
``states`` (R + 1, P, H) the ring of entering states, then the live state's parts;
``xbuf``   (k2, I) and ``ybuf`` (k2, O) the input and target rings.

Products use fused multiply-adds and sums run in their own order, so results differ
from torch's by rounding only (~1e-15 per step). Where the two may part: trailing input
columns that are exactly 0 are skipped in the products (they add +-0 to finite values,
so the results are those of the full product, unless a weight is infinite), and a fused
product that overflows (``|w x| > 1e308``) adds exactly where torch's rounds to inf
first; neither happens to weights that learning produced from finite data. Likewise the weights of
input columns that have only ever been 0 get zero gradients and zero Adam moments, so
their update is exactly nothing and is skipped.
"""

from __future__ import annotations

import math

import numpy as np

from ._jit import helper, kernel, reduction, stamp
from ._math import add_rows, assign, nonfinite

__all__ = ["COUNTERS", "F_LAST_LOSS", "I_HORIZON", "I_LOSS", "I_NLIVE", "I_RING", "build",
           "new_ints"]

(I_NIN, I_HID, I_NOUT, I_K1, I_K2, I_HORIZON, I_HCOL, I_LOSS, I_RING, I_COUNT, I_DUE,
 I_ADAM_STEP, I_STEPS, I_UPDATES, I_LEARNED, I_LATE, I_DUP, I_SKIPPED, I_RESETS, I_LOST,
 I_NLIVE, I_TSTAT) = range(22)
COUNTERS = {"steps": I_STEPS, "updates": I_UPDATES, "learned": I_LEARNED,
            "late_dropped": I_LATE, "duplicate_dropped": I_DUP,
            "skipped_nonfinite": I_SKIPPED, "nonfinite_resets": I_RESETS,
            "lost_pending": I_LOST}
F_LR, F_CLIP, F_BETA1, F_BETA2, F_EPS, F_LAST_LOSS = range(6)
NONE, PENDING, LEARNED = 0, 1, 2  # as in streamrnn.learn._store


def new_ints(n_in: int, hidden: int, n_out: int, k1: int, k2: int, horizon: int, hcol: int,
             loss: int) -> np.ndarray:
    """The ``ints`` of a fresh learner (``horizon`` -1: none; ``loss`` 0 MSE, 1 CE)."""
    ints = np.zeros(I_TSTAT + k2, dtype=np.int64)
    ints[:I_COUNT] = (n_in, hidden, n_out, k1, k2, horizon, hcol, loss, k2 // k1 + 1)
    return ints


@reduction
def _sum_squares(a, lo, hi):
    # In the vectoriser's order (a clipping norm): ~3.5x faster than four running sums
    # for the ~5,400 parameters of LSTM 32 (0.40 vs 1.48 us here).
    x = a[lo:hi]
    s = 0.0
    for q in range(x.shape[0]):
        s += x[q] * x[q]
    return s


@helper
def transpose_into(src, dst):
    """``dst = src.T`` (``src`` ``(R, C)``, ``dst`` ``(C, R)``), a row of ``dst`` at a time:
    ~1.5x faster than numba's ``dst[:, :] = src.T`` for 32 x 128 float64."""
    for j in range(dst.shape[0]):
        row = dst[j]
        for i in range(dst.shape[1]):
            row[i] = src[i, j]


@helper
def _adam_range(theta, m, v, g, coef, w1, beta2, w2, inv_bc2_sqrt, eps, step_size):
    # Clipping (g * coef) and Adam on one slice of the parameters, in one pass that
    # vectorises (6,689 float64: 5.8 us here, against 7.4 for the same arithmetic in
    # three passes).
    for q in range(theta.shape[0]):
        gq = g[q] * coef
        mq = m[q] + w1 * (gq - m[q])
        vq = beta2 * v[q] + w2 * gq * gq
        m[q], v[q] = mq, vq
        theta[q] = theta[q] - step_size * mq / (math.sqrt(vq) * inv_bc2_sqrt + eps)


@helper
def _readout(wo, bo, h, y):
    for o in range(y.shape[0]):
        acc = bo[o]
        for u in range(h.shape[0]):
            acc += wo[o, u] * h[u]
        y[o] = acc


def build(form):
    """The learning kernels of ``form``: ``push``, ``peek``, ``forecast_roll`` and
    ``refresh_transposed`` (compiled at first call, cached on disk)."""
    step, backward = form.step, form.backward
    gates, acts, n_parts = form.gates, form.acts, len(form.parts)
    key = stamp(step, backward)

    @helper
    def views(ints, theta):
        # weight_ih^T (I, G*H), weight_hh^T (H, G*H), biases, readout, then weight_hh.
        n_in, hid, n_out = ints[I_NIN], ints[I_HID], ints[I_NOUT]
        gh = gates * hid
        a = gh * n_in
        b = a + gh * hid
        c = b + 2 * gh
        p = c + n_out * hid + n_out
        wih_t = theta[:a].reshape((n_in, gh))
        whh_t = theta[a:b].reshape((hid, gh))
        bih, bhh = theta[b : b + gh], theta[b + gh : c]
        wo = theta[c : c + n_out * hid].reshape((n_out, hid))
        bo = theta[c + n_out * hid : p]
        whh = theta[p : p + gh * hid].reshape((gh, hid))
        return wih_t, whh_t, bih, bhh, wo, bo, whh, p

    @kernel
    def refresh_transposed(ints, theta):
        key  # noqa: B018 - the sources' digest: part of the cache key
        _, whh_t, _, _, _, _, whh, _ = views(ints, theta)
        transpose_into(whh_t, whh)

    @helper
    def cell(wih_t, whh_t, bih, bhh, x, s, gi, gh, act, out, bits):
        # One step from state s (P, H) into out (P, H); act keeps what backward needs.
        assign(gi, bih)
        assign(gh, bhh)
        n = x.shape[0]
        while n > 0 and x[n - 1] == 0.0:  # trailing zero inputs: nothing to add
            n -= 1
        add_rows(wih_t, x[:n], gi)
        add_rows(whh_t, s[0], gh)
        step(gi, gh, s, out, act, bits)

    @kernel
    def peek(ints, theta, states, x, out):
        key  # noqa: B018
        wih_t, whh_t, bih, bhh, wo, bo, _, _ = views(ints, theta)
        hid = ints[I_HID]
        g = bih.shape[0]
        nxt = np.empty((n_parts, hid))
        cell(wih_t, whh_t, bih, bhh, x, states[ints[I_RING]], np.empty(g), np.empty(g),
             np.empty(acts * hid), nxt, np.empty(g, dtype=np.int64))
        _readout(wo, bo, nxt[0], out)

    @kernel
    def forecast_roll(ints, theta, states, rows, pred, level, dy_mean, dy_std, y_mean,
                      y_std, scale, out):
        key  # noqa: B018
        wih_t, whh_t, bih, bhh, wo, bo, _, _ = views(ints, theta)
        hid = ints[I_HID]
        g = bih.shape[0]
        s = states[ints[I_RING]].copy()
        s2 = np.empty((n_parts, hid))
        gi, gh, act, y = np.empty(g), np.empty(g), np.empty(acts * hid), np.empty(wo.shape[0])
        bits = np.empty(g, dtype=np.int64)
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
            cell(wih_t, whh_t, bih, bhh, x, s, gi, gh, act, s2, bits)
            s, s2 = s2, s
            _readout(wo, bo, s[0], y)
            pred = y[0]

    @helper
    def clip_and_step(ints, fl, theta, adam, grad, terms, loss):
        # clip_grad_norm_ (the norm of the per-parameter norms), then Adam. Input columns
        # from I_NLIVE on have only ever seen zero inputs: their gradients, moments and
        # updates are exactly 0, so they (rows of weight_ih^T) are skipped.
        n_in, hid, n_out = ints[I_NIN], ints[I_HID], ints[I_NOUT]
        live = ints[I_NLIVE]
        g = gates * hid
        a = g * n_in
        norm = math.sqrt(_sum_squares(grad, 0, g * live))
        total = norm * norm
        for size in (g * hid, g, g, n_out * hid, n_out):
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
        n_step = ints[I_ADAM_STEP]
        inv_bc2_sqrt = 1.0 / math.sqrt(1.0 - beta2**n_step)
        step_size = lr / (1.0 - beta1**n_step)
        m, v = adam[0], adam[1]
        w1, w2 = 1.0 - beta1, 1.0 - beta2
        for lo, hi in ((0, g * live), (g * n_in, a)):
            _adam_range(theta[lo:hi], m[lo:hi], v[lo:hi], grad[lo:hi], coef, w1, beta2, w2,
                        inv_bc2_sqrt, eps, step_size)
        _, whh_t, _, _, _, _, whh, _ = views(ints, theta)
        transpose_into(whh_t, whh)
        ints[I_UPDATES] += 1
        ints[I_LEARNED] += terms
        fl[F_LAST_LOSS] = loss

    @helper
    def update(ints, fl, theta, adam, states, xbuf, ybuf):
        # The due TBPTT update of the window ending at the current count.
        ints[I_DUE] = 0
        k1, k2, hid, n_out = ints[I_K1], ints[I_K2], ints[I_HID], ints[I_NOUT]
        ring = ints[I_RING]
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
        g = bih.shape[0]
        ss = np.zeros((w + 1, n_parts, hid))
        if start > 0:
            assign(ss[0].ravel(), states[end // k1 % ring].ravel())
        acts_t = np.empty((w, acts * hid))
        ys = np.empty((w, n_out))
        gi, gh, bits = np.empty(g), np.empty(g), np.empty(g, dtype=np.int64)
        for t in range(w):
            cell(wih_t, whh_t, bih, bhh, xbuf[(start + t) % k2], ss[t], gi, gh, acts_t[t],
                 ss[t + 1], bits)
            _readout(wo, bo, ss[t + 1, 0], ys[t])
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
        ds = np.zeros((n_parts, hid))
        dgis, dghs = np.empty((w, g)), np.empty((w, g))
        xs = np.empty((w, live))
        hs = np.empty((w, hid))
        for t in range(w - 1, -1, -1):
            dh = ds[0]
            for o in range(n_out):
                d = dys[t, o]
                if d != 0.0:
                    gbo[o] += d
                    for u in range(hid):
                        gwo[o, u] += d * ss[t + 1, 0, u]
                        dh[u] += wo[o, u] * d
            backward(acts_t[t], ss[t], ss[t + 1], ds, dgis[t], dghs[t])
            add_rows(whh, dghs[t], ds[0])
            assign(xs[t], xbuf[(start + t) % k2])
            assign(hs[t], ss[t, 0])
        if live:  # the products straight into grad (its first rows: contiguous)
            np.dot(xs.T, dgis, grad[: live * g].reshape((live, g)))
        np.dot(hs.T, dghs, gwhh_t)
        for t in range(w):
            for j in range(g):
                gbih[j] += dgis[t, j]
                gbhh[j] += dghs[t, j]
        clip_and_step(ints, fl, theta, adam, grad, terms, loss)

    @kernel
    def push(ints, fl, theta, adam, states, xbuf, ybuf, x, target, has_target, out):
        """One step: the due update, then predict ``out`` from input ``x``. Returns 0, 1
        when the new state was not finite and the stream was reset to step 0, -1 (nothing
        changed) when ``x`` or ``target`` is not finite."""
        key  # noqa: B018
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
            update(ints, fl, theta, adam, states, xbuf, ybuf)
        ints[I_NLIVE] = live  # after the update: x is not in its window
        wih_t, whh_t, bih, bhh, wo, bo, _, _ = views(ints, theta)
        k1, k2, ring, hid = ints[I_K1], ints[I_K2], ints[I_RING], ints[I_HID]
        g = bih.shape[0]
        s = states[ring]
        nxt = np.empty((n_parts, hid))
        cell(wih_t, whh_t, bih, bhh, x, s, np.empty(g), np.empty(g), np.empty(acts * hid),
             nxt, np.empty(g, dtype=np.int64))
        _readout(wo, bo, nxt[0], out)
        count = ints[I_COUNT]
        pos = count % k2
        assign(xbuf[pos], x)
        if has_target:
            assign(ybuf[pos], target)
            ints[I_TSTAT + pos] = PENDING
        else:
            ints[I_TSTAT + pos] = NONE
        assign(s.ravel(), nxt.ravel())
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
            assign(states[(now + k2) // k1 % ring].ravel(), s.ravel())
        if now % k1 == 0:
            ints[I_DUE] = 1
        ints[I_STEPS] += 1
        if nonfinite(nxt.ravel()):
            for q in range(k2):
                if ints[I_TSTAT + q] == PENDING:
                    ints[I_LOST] += 1
                ints[I_TSTAT + q] = NONE
            s[:, :] = 0.0
            ints[I_COUNT] = 0
            ints[I_DUE] = 0
            ints[I_RESETS] += 1
            return 1
        if k2 == 1 and has_target and horizon < 0:
            # as OnlineLearner: a whole k1 == k2 window pushed with its targets is learned
            # at the end of the push (k2 == 1 is the only such window of one step)
            update(ints, fl, theta, adam, states, xbuf, ybuf)
        return 0

    return push, peek, forecast_roll, refresh_transposed
