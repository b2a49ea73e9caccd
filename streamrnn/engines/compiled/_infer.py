"""The inference kernels of the compiled engine, built per compiled form (private).

``run_values(weights, meta, x, parts, rows, y, bad, work, post)`` and
``run_tokens(weights, meta, embedding, ids, parts, rows, y, bad, work, post)`` step B
streams through a chunk of T steps: for each stream (``rows[b]``, its slot in the state
``parts``, a tuple of P arrays ``(L, S, H)``) and each layer, the inputs of all T steps
are projected in one pass over ``weight_ih^T`` (:func:`._math.project`), then each step
adds ``weight_hh^T h`` (:func:`._math.add_rows`) and calls the form's pointwise ``step``;
the top layer's ``h`` goes through the head (if any) into ``y`` ``(B, T, O)``, and with
``post`` true each output row through a softmax (:func:`._math.softmax_into`). The new
states are written in place. ``x`` may also be ``(T, F)`` or ``(F,)`` (one stream), ``y``
then ``(T, O)`` or ``(O,)``. ``run_one(weights, meta, address, steps, parts, y, work,
post)`` is ``run_values`` of one stream in slot 0, whose ``(steps, F)`` values are read at
a tensor's address (:func:`._jit.at_address`).

Returns -1, with nothing changed, when ``x`` holds a NaN or inf; else the number of
streams whose new state is not finite (flagged in ``bad``, their state written anyway:
the caller resets them). ``work`` is the caller's warm scratch of the weights' dtype
(:func:`work_size` values for chunks of T steps; a smaller one makes the kernel allocate
its own): a live chunk then allocates nothing.
"""

from __future__ import annotations

import numpy as np
from numba.extending import overload

from ._jit import OPTIONS, at_address, helper, kernel, stamp, typed
from ._math import add_rows, as_bits, assign, bits_for, nonfinite, project, softmax_into

__all__ = ["build", "work_size"]


@helper
def work_size(steps: int, hid: int, gates: int, acts: int, n_parts: int, n_out: int) -> int:
    """Scratch values one stream's chunk of ``steps`` steps needs (``layers`` carves them:
    projections, outputs, gates, activations, two states, the head's row, expm1's bits);
    from Python or compiled code."""
    g = gates * hid
    return steps * (g + hid) + 2 * g + acts * hid + 2 * n_parts * hid + (n_out + 7) // 8 * 8


def as3d(a):
    """``a`` as ``(B, T, F)``: a ``(T, F)`` chunk or ``(F,)`` step of one stream."""
    return a.reshape((1,) * (3 - a.ndim) + a.shape)


@overload(as3d, jit_options=OPTIONS)
def _as3d(a):
    if a.ndim == 1:
        return lambda a: a.reshape((1, 1, a.shape[0]))
    if a.ndim == 2:
        return lambda a: a.reshape((1, a.shape[0], a.shape[1]))
    return lambda a: a


def as2d(a):
    """``a`` as ``(B, T)``: the ids of one stream ``(T,)``."""
    return a.reshape((1,) * (2 - a.ndim) + a.shape)


@overload(as2d, jit_options=OPTIONS)
def _as2d(a):
    if a.ndim == 1:
        return lambda a: a.reshape((1, a.shape[0]))
    return lambda a: a


def build(form):
    """The inference kernels of ``form`` (compiled at first call, cached on disk)."""
    step, gates, acts, n_parts = form.step, form.gates, form.acts, len(form.parts)
    key = stamp(step)

    @helper
    def layers(w, meta, xin, parts, row, y, kept, post):
        # One stream (slot ``row``) through every layer and the head (and the softmax, if
        # ``post``); state in place.
        n_layers, hid, in0, n_out = meta[0], meta[1], meta[2], meta[3]
        g = gates * hid
        t_len = xin.shape[0]
        pad = (n_out + 7) // 8 * 8
        # every scratch array is a view of one buffer: the caller's, if large enough
        size = work_size(t_len, hid, gates, acts, n_parts, n_out)
        work = kept if kept.shape[0] >= size else np.empty(size, w.dtype)
        proj = work[: t_len * g].reshape((t_len, g))
        at = t_len * g
        seq = work[at : at + t_len * hid].reshape((t_len, hid))
        at += t_len * hid
        gh = work[at : at + g]
        act = work[at + g : at + g + acts * hid]
        at += g + acts * hid
        s_in = work[at : at + n_parts * hid].reshape((n_parts, hid))
        s_out = work[at + n_parts * hid : at + 2 * n_parts * hid].reshape((n_parts, hid))
        acc = work[at + 2 * n_parts * hid : at + 2 * n_parts * hid + pad]
        at += 2 * n_parts * hid + pad
        bits = as_bits(work[at : at + g])
        inp = xin
        for layer in range(n_layers):
            at = meta[4 + layer]
            n_in = in0 if layer == 0 else hid
            w_ih = w[at : at + n_in * g].reshape((n_in, g))
            at += n_in * g
            w_hh = w[at : at + hid * g].reshape((hid, g))
            at += hid * g
            b_ih, b_hh = w[at : at + g], w[at + g : at + 2 * g]
            project(w_ih, b_ih, inp, proj)
            for p in range(n_parts):
                assign(s_in[p], parts[p][layer, row])
            for t in range(t_len):
                assign(gh, b_hh)
                add_rows(w_hh, s_in[0], gh)
                step(proj[t], gh, s_in, s_out, act, bits)
                assign(seq[t], s_out[0])
                s_in, s_out = s_out, s_in
            for p in range(n_parts):
                assign(parts[p][layer, row], s_in[p])
            inp = seq
        if n_out == 0:
            for t in range(t_len):
                assign(y[t], seq[t])
        else:
            at = meta[4 + n_layers]
            w_o = w[at : at + hid * pad].reshape((hid, pad))
            b_o = w[at + hid * pad : at + hid * pad + pad]
            for t in range(t_len):
                assign(acc, b_o)
                add_rows(w_o, seq[t], acc)
                assign(y[t], acc)
        if post:
            for t in range(t_len):
                softmax_into(y[t])

    @helper
    def row_bad(parts, row):
        # whether any state part of slot ``row`` holds a NaN or an infinity
        for p in range(n_parts):
            block = parts[p]
            for layer in range(block.shape[0]):
                if nonfinite(block[layer, row]):
                    return True
        return False

    @helper
    def finite_rows(parts, rows, bad):
        n_bad = 0
        for b in range(rows.shape[0]):
            is_bad = row_bad(parts, rows[b])
            bad[b] = is_bad
            n_bad += is_bad
        return n_bad

    @kernel
    def run_values(w, meta, x, parts, rows, y, bad, work, post):
        key  # noqa: B018 - the sources' digest: part of the cache key
        x3, y3 = as3d(x), as3d(y)
        if nonfinite(x3.ravel()):
            return -1
        for b in range(x3.shape[0]):
            layers(w, meta, x3[b], parts, rows[b], y3[b], work, post)
        return finite_rows(parts, rows, bad)

    @kernel
    def run_one(w, meta, address, steps, parts, y, work, post):
        # run_values of one stream, slot 0, its values read at ``address``: two array
        # arguments fewer to unbox (a stream's live call)
        key  # noqa: B018
        x = at_address(address, steps, meta[2], w)
        if nonfinite(x.ravel()):
            return -1
        layers(w, meta, x, parts, 0, as3d(y)[0], work, post)
        return 1 if row_bad(parts, 0) else 0

    @kernel
    def run_tokens(w, meta, emb, ids, parts, rows, y, bad, work, post):
        key  # noqa: B018
        i2, y3 = as2d(ids), as3d(y)
        xin = np.empty((i2.shape[1], emb.shape[1]), w.dtype)
        for b in range(i2.shape[0]):
            for t in range(i2.shape[1]):
                assign(xin[t], emb[i2[b, t]])
            layers(w, meta, xin, parts, rows[b], y3[b], work, post)
        return finite_rows(parts, rows, bad)

    @helper
    def batch_layers(w, meta, xin, parts, rows, y):
        # B streams at once: each layer's products as matrix products (BLAS), the
        # pointwise step row by row. xin (B, T, In0), y (B, T, O).
        n_layers, hid, in0, n_out = meta[0], meta[1], meta[2], meta[3]
        g = gates * hid
        batch, t_len = xin.shape[0], xin.shape[1]
        proj = np.empty((batch * t_len, g), w.dtype)
        seq = np.empty((batch, t_len, hid), w.dtype)
        gh = np.empty((batch, g), w.dtype)
        hb = np.empty((batch, hid), w.dtype)
        act = np.empty(acts * hid, w.dtype)
        bits = bits_for(w, g)
        s_in = np.empty((batch, n_parts, hid), w.dtype)
        s_out = np.empty((batch, n_parts, hid), w.dtype)
        inp = xin.reshape((batch * t_len, in0))
        for layer in range(n_layers):
            at = meta[4 + layer]
            n_in = in0 if layer == 0 else hid
            w_ih = w[at : at + n_in * g].reshape((n_in, g))
            at += n_in * g
            w_hh = w[at : at + hid * g].reshape((hid, g))
            at += hid * g
            b_ih, b_hh = w[at : at + g], w[at + g : at + 2 * g]
            np.dot(inp, w_ih, proj)
            for b in range(batch):
                for p in range(n_parts):
                    assign(s_in[b, p], parts[p][layer, rows[b]])
            for t in range(t_len):
                for b in range(batch):
                    assign(hb[b], s_in[b, 0])
                np.dot(hb, w_hh, gh)
                for b in range(batch):
                    gi = proj[b * t_len + t]
                    gi += b_ih
                    ghb = gh[b]
                    ghb += b_hh
                    step(gi, ghb, s_in[b], s_out[b], act, bits)
                    assign(seq[b, t], s_out[b, 0])
                s_in, s_out = s_out, s_in
            for b in range(batch):
                for p in range(n_parts):
                    assign(parts[p][layer, rows[b]], s_in[b, p])
            inp = seq.reshape((batch * t_len, hid))
        y2 = y.reshape((batch * t_len, y.shape[2]))
        if n_out == 0:
            for r in range(y2.shape[0]):
                assign(y2[r], inp[r])
            return
        at = meta[4 + n_layers]
        pad = (n_out + 7) // 8 * 8
        w_o = w[at : at + hid * pad].reshape((hid, pad))
        b_o = w[at + hid * pad : at + hid * pad + pad]
        out = np.empty((y2.shape[0], pad), w.dtype)
        np.dot(inp, w_o, out)
        for r in range(y2.shape[0]):
            row, got = y2[r], out[r]
            for j in range(n_out):
                row[j] = got[j] + b_o[j]

    @kernel
    def run_batch(w, meta, emb, x, ids, parts, rows, y, bad):
        key  # noqa: B018
        if emb.shape[0]:
            xin = np.empty((ids.shape[0], ids.shape[1], emb.shape[1]), w.dtype)
            for b in range(ids.shape[0]):
                for t in range(ids.shape[1]):
                    assign(xin[b, t], emb[ids[b, t]])
            batch_layers(w, meta, xin, parts, rows, y)
        else:
            if nonfinite(x.ravel()):
                return -1
            batch_layers(w, meta, x, parts, rows, y)
        return finite_rows(parts, rows, bad)

    @kernel
    def run_step(w, meta, emb, x, ids, parts, rows, y, bad, xh_ws, proj_ws):
        # One step of B streams for a form whose step reads gi and gh only as gi + gh:
        # per layer ONE matrix product of the rows [x, h, 1] with the stacked
        # [W_ih^T; W_hh^T; b_ih] (the packed layout already holds them in that order),
        # gh = b_hh. The streams go in blocks of as many rows as proj_ws holds, each
        # through every layer and the head, so that a block's gates are still in cache
        # when its pointwise step reads them. The state is read and written in place; the
        # layer below has already written its new h, which is this layer's input.
        # xh_ws, proj_ws: warm scratch from the caller, R * (max(In0, H) + H + 1) and
        # R * G*H values for blocks of R rows.
        key  # noqa: B018
        n_layers, hid, in0, n_out = meta[0], meta[1], meta[2], meta[3]
        g = gates * hid
        batch = rows.shape[0]
        block = proj_ws.shape[0] // g
        if not emb.shape[0]:
            if nonfinite(x.ravel()):
                return -1
        gh = np.empty(g, w.dtype)
        act = np.empty(acts * hid, w.dtype)
        bits = bits_for(w, g)
        s_in = np.empty((n_parts, hid), w.dtype)
        s_out = np.empty((n_parts, hid), w.dtype)
        one = typed(w, 1.0)
        pad = (n_out + 7) // 8 * 8
        out_ws = np.empty(block * pad, w.dtype)
        for lo in range(0, batch, block):
            m = min(block, batch - lo)
            proj = proj_ws[: m * g].reshape((m, g))
            for layer in range(n_layers):
                at = meta[4 + layer]
                n_in = in0 if layer == 0 else hid
                k = n_in + hid + 1
                xh = xh_ws[: m * k].reshape((m, k))
                for i in range(m):
                    b = lo + i
                    row = xh[i]
                    if layer > 0:
                        assign(row[:n_in], parts[0][layer - 1, rows[b]])
                    elif emb.shape[0]:
                        assign(row[:n_in], emb[ids[b, 0]])
                    else:
                        assign(row[:n_in], x[b, 0])
                    assign(row[n_in : n_in + hid], parts[0][layer, rows[b]])
                    row[k - 1] = one
                np.dot(xh, w[at : at + k * g].reshape((k, g)), proj)
                b_hh = w[at + k * g : at + (k + 1) * g]
                for i in range(m):
                    b = lo + i
                    for p in range(n_parts):
                        assign(s_in[p], parts[p][layer, rows[b]])
                    assign(gh, b_hh)
                    step(proj[i], gh, s_in, s_out, act, bits)
                    for p in range(n_parts):
                        assign(parts[p][layer, rows[b]], s_out[p])
            top = parts[0][n_layers - 1]
            if n_out == 0:
                for i in range(m):
                    assign(y[lo + i, 0], top[rows[lo + i]])
            else:
                at = meta[4 + n_layers]
                w_o = w[at : at + hid * pad].reshape((hid, pad))
                b_o = w[at + hid * pad : at + hid * pad + pad]
                hb = xh_ws[: m * hid].reshape((m, hid))
                for i in range(m):
                    assign(hb[i], top[rows[lo + i]])
                out = out_ws[: m * pad].reshape((m, pad))
                np.dot(hb, w_o, out)
                for i in range(m):
                    row, got = y[lo + i, 0], out[i]
                    for j in range(n_out):
                        row[j] = got[j] + b_o[j]
        return finite_rows(parts, rows, bad)

    return run_values, run_one, run_tokens, run_batch, run_step

