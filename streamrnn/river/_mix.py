"""The compiled kernels of :class:`~streamrnn.river.experts.ExpertMix` (private).

``predict``, ``update`` and ``weights`` end with the same two arguments, the mix's state
in two flat buffers (``floats`` float64, ``ints`` int64, laid out by :func:`layout`, read
as named views by :func:`parts`): each array argument of a compiled call costs ~70 ns of
dispatch, and the state is 16 arrays and three flags (16 arrays one by one: 1.31 us a
call here; two buffers and three ints: 0.24).

One call per :meth:`~streamrnn.river.experts.ExpertMix.predict` and one per
:meth:`~streamrnn.river.experts.ExpertMix.update`, whatever the number of horizons: the
weights, losses and regrets of every horizon, and the forecasts kept to be scored, live
in the two buffers.

- Horizons have dense indices (row ``i`` of ``rounds``, ``total``, ``delta``,
  ``regret``, ``scale``, ``u`` and of the cached weights ``wc`` / ``wvalid``).
- The forecasts kept for target step ``t`` sit in ring slot ``t & mask``: ``present[s, i]``
  says whether horizon ``i`` has one, ``npend[s]`` how many; ``pcols[s, i]`` holds the K
  forecasts, ``pissued[s, i]`` the combined one. The owner keeps every pending target
  within ``mask + 1`` consecutive steps.

The arithmetic is that of the plain-Python reference (``tests/_mix_reference.py``),
operation for operation and in the same order, with no fused multiply-adds, so results
are the same to the bit (tested). Without numba the same functions run as Python.
"""

from __future__ import annotations

import math

from .._numba import lock_cache

try:
    from numba import njit
except ImportError:  # numba is a dependency; without it this runs as plain Python

    def njit(*args, **kwargs):
        return lambda f: f

__all__ = ["COUNTS", "HEADER", "PARTS", "layout", "parts", "predict", "update", "weights"]

#: ``ints[:HEADER]``: ring mask, AdaHedge (1) or NormalHedge (0), gradient losses (1) or
#: absolute ones (0), K experts, R horizon rows, S ring slots.
HEADER = 6
#: What :func:`parts` returns, in order (the first three are ints, the rest views).
PARTS = ("mask", "adahedge", "gradient", "prior", "rounds", "total", "delta", "regret", "scale",
         "u", "wc", "wvalid", "present", "npend", "pcols", "pissued", "counts", "losses")

#: The counters, in the order of the ``counts`` array.
COUNTS = ("scored", "skipped_targets", "nonfinite_forecasts", "unscored")
SCORED, SKIPPED, NONFINITE, UNSCORED = range(4)

_inner = njit(nogil=True, error_model="numpy")  # compiled into the entry points below
_entry = njit(cache=True, nogil=True, error_model="numpy")  # cached on disk, locked


def layout(k: int, rows: int, slots: int) -> tuple[int, int]:
    """Sizes of ``floats`` and ``ints`` for K experts, R horizon rows and S ring slots."""
    return (2 * k + rows * (3 * k + 3) + slots * rows * (k + 1),
            HEADER + 2 * rows + slots * (rows + 1) + len(COUNTS))


@_entry
def parts(floats, ints):
    """The named parts of the state (:data:`PARTS`), views of the two buffers.

    Per horizon row ``i``: ``rounds`` scored, ``total[i]`` (K) cumulative losses and
    ``delta`` cumulative mixability gap (AdaHedge), ``regret[i]`` (K) regrets on scaled
    losses, ``scale`` the largest loss range seen and ``u`` 1 / c of the last round
    (NormalHedge), the weights ``wc[i]`` (K) while ``wvalid``; per ring slot ``s``:
    ``present[s, i]``, ``npend[s]``, ``pcols[s, i]`` (K) and ``pissued[s, i]`` (see the
    module docstring); the counters (:data:`COUNTS`); ``losses``, K values of scratch.
    """
    k, r, n = ints[3], ints[4], ints[5]
    a = 0
    prior = floats[a : a + k]
    a += k
    total = floats[a : a + r * k].reshape((r, k))
    a += r * k
    delta = floats[a : a + r]
    a += r
    regret = floats[a : a + r * k].reshape((r, k))
    a += r * k
    scale = floats[a : a + r]
    a += r
    u = floats[a : a + r]
    a += r
    wc = floats[a : a + r * k].reshape((r, k))
    a += r * k
    pcols = floats[a : a + n * r * k].reshape((n, r, k))
    a += n * r * k
    pissued = floats[a : a + n * r].reshape((n, r))
    a += n * r
    losses = floats[a : a + k]
    b = HEADER
    rounds = ints[b : b + r]
    b += r
    wvalid = ints[b : b + r]
    b += r
    present = ints[b : b + n * r].reshape((n, r))
    b += n * r
    npend = ints[b : b + n]
    b += n
    counts = ints[b : b + 4]
    return (ints[0], ints[1] != 0, ints[2] != 0, prior, rounds, total, delta, regret, scale, u,
            wc, wvalid, present, npend, pcols, pissued, counts, losses)


@_inner
def _normalhedge(i, prior, regret, u, out):
    # NormalHedge's weights of horizon i's regrets into out (not normalised); u[i] is the
    # last root 1 / c, Newton starts there (see ExpertMix's module docstring). An expert
    # of prior 0 keeps weight 0 and stays out of the equation of c.
    k = prior.shape[0]
    top = 0.0
    lead = 0
    for j in range(k):
        r = regret[i, j] if regret[i, j] > 0.0 and prior[j] > 0.0 else 0.0
        half = r * r / 2.0
        if j == 0 or half > top:
            top, lead = half, j
    if top <= 0.0:
        for j in range(k):
            out[j] = prior[j]
        u[i] = 0.0
        return
    right = (1.0 - math.log(max(prior[lead], 1e-300))) / top
    start = u[i]
    x = start if 0.0 < start < right else right
    for _ in range(200):
        total = 0.0
        moment = 0.0
        for j in range(k):
            r = regret[i, j] if regret[i, j] > 0.0 and prior[j] > 0.0 else 0.0
            half = r * r / 2.0
            term = prior[j] * math.exp((half - top) * x)
            total += term
            moment += term * half
        g = top * x + math.log(total) - 1.0
        slope = moment / total
        step = g / slope
        nxt = x - step
        x = right if right < nxt else nxt
        if abs(step) <= 1e-12 * x:
            break
    best = -math.inf
    for j in range(k):
        r = regret[i, j] if regret[i, j] > 0.0 and prior[j] > 0.0 else 0.0
        if r > 0:
            half = r * r / 2.0
            out[j] = math.log(max(prior[j], 1e-300)) + math.log(r * x) + half * x
        else:
            out[j] = -math.inf
        if j == 0 or out[j] > best:
            best = out[j]
    for j in range(k):
        out[j] = math.exp(out[j] - best)
    u[i] = x


@_inner
def _fill(i, adahedge, prior, rounds, total, delta, regret, u, wc, wvalid):
    # wc[i] = the weights of horizon i now (computed once per round).
    k = prior.shape[0]
    if rounds[i] == 0:
        for j in range(k):
            wc[i, j] = prior[j]
        return
    if wvalid[i]:
        return
    w = wc[i]
    if adahedge:
        low = math.inf  # the leader's loss, among the experts of prior > 0
        for j in range(k):
            if prior[j] > 0 and (low == math.inf or total[i, j] < low):
                low = total[i, j]
        if delta[i] <= 0.0:  # eta = infinity: follow the leader(s)
            s = 0.0
            for j in range(k):
                w[j] = prior[j] if total[i, j] <= low else 0.0
                s += w[j]
            if s <= 0:
                for j in range(k):
                    w[j] = 1.0 if total[i, j] <= low else 0.0
        else:
            eta = math.log(k) / delta[i] if k > 1 else 0.0
            for j in range(k):
                w[j] = prior[j] * math.exp(-eta * (total[i, j] - low)) if prior[j] > 0 else 0.0
    else:
        _normalhedge(i, prior, regret, u, w)
    s = 0.0
    for j in range(k):
        s += w[j]
    for j in range(k):
        w[j] = w[j] / s
    wvalid[i] = 1


@_entry
def weights(i, floats, ints):
    """Fill ``wc[i]`` with horizon ``i``'s weights now."""
    (_, adahedge, _, prior, rounds, total, delta, regret, _, u, wc, wvalid, _, _, _, _, _,
     _) = parts(floats, ints)
    _fill(i, adahedge, prior, rounds, total, delta, regret, u, wc, wvalid)


@_inner
def _mean_of_finite(w, prior, f, j):
    # The weighted mean of column j's finite forecasts (weights renormalised over them;
    # the prior's, or equal ones, if they all had weight 0); NaN if none is finite.
    k = prior.shape[0]
    for which in range(3):
        total = 0.0
        for e in range(k):
            if math.isfinite(f[e, j]):
                total += w[e] if which == 0 else (prior[e] if which == 1 else 1.0)
        if total > 0:
            acc = 0.0
            for e in range(k):
                if math.isfinite(f[e, j]):
                    a = w[e] if which == 0 else (prior[e] if which == 1 else 1.0)
                    acc += a * f[e, j]
            return acc / total
    return math.nan


@_entry
def predict(f, cols, t0, out, floats, ints):
    """Combine column j of ``f`` (K, N) with horizon ``cols[j]``'s weights into ``out[j]``
    and keep it to score at step ``t0 + j``."""
    (mask, adahedge, _, prior, rounds, total, delta, regret, _, u, wc, wvalid, present, npend,
     pcols, pissued, counts, _) = parts(floats, ints)
    k, n = f.shape
    for j in range(n):
        i = cols[j]
        _fill(i, adahedge, prior, rounds, total, delta, regret, u, wc, wvalid)
        bad = 0
        for e in range(k):
            if not math.isfinite(f[e, j]):
                bad += 1
        if bad == 0:
            value = 0.0
            for e in range(k):
                value += wc[i, e] * f[e, j]
        else:
            counts[NONFINITE] += bad
            value = _mean_of_finite(wc[i], prior, f, j)
        out[j] = value
        s = (t0 + j) & mask
        if not present[s, i]:
            present[s, i] = 1
            npend[s] += 1
        for e in range(k):
            pcols[s, i, e] = f[e, j]
        pissued[s, i] = value


@_inner
def _learn(i, losses, adahedge, prior, rounds, total, delta, regret, scale, u, wc, wvalid):
    # One round of horizon i with these losses.
    k = prior.shape[0]
    _fill(i, adahedge, prior, rounds, total, delta, regret, u, wc, wvalid)
    w = wc[i]
    rounds[i] += 1
    wvalid[i] = 0
    lo = losses[0]
    hi = losses[0]
    for j in range(1, k):
        if losses[j] < lo:
            lo = losses[j]
        if losses[j] > hi:
            hi = losses[j]
    if adahedge:
        mixed = 0.0
        for j in range(k):
            mixed += w[j] * losses[j]
        if delta[i] <= 0.0:
            mix_loss = lo  # eta = infinity: the mix loss is the smallest loss
        else:
            eta = math.log(k) / delta[i] if k > 1 else 0.0
            if eta > 0:  # lo - log(sum_k w_k exp(-eta (l_k - lo))) / eta, without underflow
                top = -math.inf
                first = True
                for j in range(k):
                    if w[j] > 0:
                        v = math.log(w[j]) + -eta * (losses[j] - lo)
                        if first or v > top:
                            top, first = v, False
                acc = 0.0
                for j in range(k):
                    if w[j] > 0:
                        acc += math.exp(math.log(w[j]) + -eta * (losses[j] - lo) - top)
                mix_loss = lo - (top + math.log(acc)) / eta
            else:
                mix_loss = mixed
        gap = mixed - mix_loss
        delta[i] += gap if not (0.0 > gap) else 0.0
        for j in range(k):
            total[i, j] = total[i, j] + losses[j]
        return
    spread = hi - lo
    if spread > scale[i]:
        scale[i] = spread
    if scale[i] > 0:
        mixed = 0.0
        for j in range(k):
            mixed += w[j] * ((losses[j] - lo) / scale[i])
        for j in range(k):
            regret[i, j] = regret[i, j] + mixed - (losses[j] - lo) / scale[i]


@_entry
def update(drop_from, drop_to, step, y, floats, ints):
    """Value ``y`` of ``step`` arrived: drop (count) what is kept for targets
    ``drop_from..drop_to``, then score what is kept for ``step`` and learn from it."""
    (mask, adahedge, gradient, prior, rounds, total, delta, regret, scale, u, wc, wvalid,
     present, npend, pcols, pissued, counts, losses) = parts(floats, ints)
    k = prior.shape[0]
    nh = present.shape[1]
    for t in range(drop_from, drop_to + 1):
        s = t & mask
        if npend[s]:
            counts[UNSCORED] += npend[s]
            npend[s] = 0
            for i in range(nh):
                present[s, i] = 0
    s = step & mask
    if npend[s] == 0:
        return
    npend[s] = 0
    if not math.isfinite(y):
        counts[SKIPPED] += 1
        for i in range(nh):
            present[s, i] = 0
        return
    for i in range(nh):
        if not present[s, i]:
            continue
        present[s, i] = 0
        issued = pissued[s, i]
        g = 0.0
        if gradient and math.isfinite(issued) and issued != y:
            g = 1.0 if issued - y > 0 else -1.0
        usable = 0
        ok = True
        worst = 0.0
        for e in range(k):
            v = pcols[s, i, e]
            losses[e] = g * (v - issued) if gradient else abs(v - y)
            if math.isfinite(v):
                if not math.isfinite(losses[e]):
                    ok = False
                elif usable == 0 or losses[e] > worst:
                    worst = losses[e]
                usable += 1
        if usable == 0 or not ok:  # nothing usable, or the losses overflow
            counts[SKIPPED] += 1
            continue
        for e in range(k):
            if not math.isfinite(pcols[s, i, e]):
                losses[e] = worst
        _learn(i, losses, adahedge, prior, rounds, total, delta, regret, scale, u, wc, wvalid)
        counts[SCORED] += 1


parts = lock_cache(parts)  # several processes may compile them at once
predict = lock_cache(predict)
update = lock_cache(update)
weights = lock_cache(weights)
