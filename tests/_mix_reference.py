"""The plain-Python ExpertMix: the reference its compiled kernels are tested against.

This was ``streamrnn.river.experts.ExpertMix`` before its arithmetic moved into
``streamrnn/river/_mix.py``: plain floats, a dict of waiting forecasts per target step,
one ``_Horizon`` per horizon. Its settings are checked by the mix's own
``checked_config``. One fix since: an expert of prior 0 now stays out of the
leader's loss in AdaHedge and out of the equation of ``c`` in NormalHedge (both divided
by zero when such an expert led). ``tests/river/test_mix_kernels.py`` runs both on the same
calls and asks for the same combined forecasts, weights and counts, to the bit.
"""

from __future__ import annotations

import math
import operator

import numpy as np

from streamrnn._validate import check_int
from streamrnn.river.experts import checked_config


class ReferenceMix:
    """The plain-Python ExpertMix (the reference; see the module docstring)."""

    def __init__(self, names, *, method: str = "adahedge", loss: str = "absolute",
                 prior=None) -> None:
        self.names, self.method, self.loss, pi = checked_config(names, method, loss, prior)
        k = len(self.names)
        self.prior = pi
        self._prior_list = pi.tolist()
        self._k = k
        self._horizons: dict = {}  # h -> _Horizon
        self._pending: dict = {}  # target step -> {h: (forecasts (K,), issued forecast)}
        self._last_update: int | None = None
        self.counts = {"scored": 0, "skipped_targets": 0, "nonfinite_forecasts": 0,
                       "unscored": 0}

    # -- weights -------------------------------------------------------------------
    def _horizon(self, h: int) -> _Horizon:
        state = self._horizons.get(h)
        if state is None:
            state = self._horizons[h] = _Horizon(self._k)
        return state

    def weights(self, horizon: int) -> np.ndarray:
        """As :meth:`ExpertMix.weights` (a copy of the weights of ``horizon``)."""
        check_int("horizon", horizon, minimum=1)
        state = self._horizons.get(horizon)
        return self.prior.copy() if state is None else np.array(self._weights(state))

    def _weights(self, s: _Horizon) -> list:
        # The weights as a list of floats (K is small: plain floats beat tiny arrays).
        if s.rounds == 0:
            return self._prior_list
        if s.cached is None:
            s.cached = self._compute(s)
        return s.cached

    def _compute(self, s: _Horizon) -> list:
        pri = self._prior_list
        if self.method == "adahedge":
            low = min(v for p, v in zip(pri, s.total, strict=True) if p > 0)
            if s.delta <= 0.0:  # eta = infinity: follow the leader(s)
                w = [p if v <= low else 0.0 for p, v in zip(pri, s.total, strict=True)]
                if sum(w) <= 0:
                    w = [1.0 if v <= low else 0.0 for v in s.total]
            else:
                eta = math.log(self._k) / s.delta if self._k > 1 else 0.0
                w = [p * math.exp(-eta * (v - low)) if p > 0 else 0.0
                     for p, v in zip(pri, s.total, strict=True)]
        else:
            w, s.u = _normalhedge(s.regret, pri, s.u)
        total = sum(w)
        return [v / total for v in w]

    # -- forecasting and scoring -----------------------------------------------------
    def predict(self, origin: int, forecasts, first: int = 1) -> np.ndarray:
        """As :meth:`ExpertMix.predict`."""
        check_int("origin", origin)
        check_int("first", first, minimum=1)
        if self._last_update is not None and origin < self._last_update:
            raise ValueError(f"origin must be >= the last step updated ({self._last_update}),"
                             f" got {origin}: a forecast is made before its target arrives")
        f = np.asarray(forecasts, dtype=np.float64)
        if f.ndim != 2 or f.shape[0] != self._k:
            raise ValueError(f"forecasts must have shape ({self._k}, N) (one row per expert: "
                             f"{', '.join(self.names)}), got {f.shape}")
        columns = f.T.tolist()
        out = []
        for j, col in enumerate(columns):
            h = first + j
            w = self._weights(self._horizon(h))
            ok = list(map(math.isfinite, col))
            if all(ok):
                value = sum(map(operator.mul, w, col))
            else:
                self.counts["nonfinite_forecasts"] += ok.count(False)
                value = _mean_of_finite(w, self._prior_list, col, ok)
            out.append(value)
            self._pending.setdefault(origin + h, {})[h] = (col, value)
        return np.array(out)

    def update(self, step: int, y: float) -> None:
        """As :meth:`ExpertMix.update`."""
        check_int("step", step)
        if self._last_update is not None and step <= self._last_update:
            raise ValueError(f"step must increase: got {step} after {self._last_update}")
        y = float(y)
        self._last_update = step
        if len(self._pending) > 1 or (self._pending and step not in self._pending):
            for key in [key for key in self._pending if key < step]:
                self.counts["unscored"] += len(self._pending.pop(key))
        made = self._pending.pop(step, None)
        if not made:
            return
        if not math.isfinite(y):
            self.counts["skipped_targets"] += 1
            return
        for h, (col, issued) in made.items():
            losses = self._losses(col, issued, y)
            if losses is None:
                self.counts["skipped_targets"] += 1
                continue
            self._learn(self._horizon(h), losses)
            self.counts["scored"] += 1

    def _losses(self, col: list, issued: float, y: float) -> list | None:
        if self.loss == "absolute":
            raw = [abs(v - y) for v in col]
        else:
            g = 0.0 if not math.isfinite(issued) or issued == y else math.copysign(1.0,
                                                                                  issued - y)
            raw = [g * (v - issued) for v in col]
        usable = [b for a, b in zip(col, raw, strict=True) if math.isfinite(a)]
        if not usable:
            return None
        if not all(math.isfinite(v) for v in usable):
            return None  # the losses overflow: no usable information in this round
        worst = max(usable)
        return [b if math.isfinite(a) else worst for a, b in zip(col, raw, strict=True)]

    def _learn(self, s: _Horizon, losses: list) -> None:
        w = self._weights(s)
        s.rounds += 1
        s.cached = None
        lo = min(losses)
        if self.method == "adahedge":
            mixed = sum(a * b for a, b in zip(w, losses, strict=True))
            if s.delta <= 0.0:
                mix_loss = lo  # eta = infinity: the mix loss is the smallest loss
            else:
                eta = math.log(self._k) / s.delta if self._k > 1 else 0.0
                mix_loss = lo - _log_mean_exp(w, [-eta * (b - lo) for b in losses]) / eta \
                    if eta > 0 else mixed
            s.delta += max(mixed - mix_loss, 0.0)
            s.total = [a + b for a, b in zip(s.total, losses, strict=True)]
            return
        s.scale = max(s.scale, max(losses) - lo)
        if s.scale > 0:
            scaled = [(v - lo) / s.scale for v in losses]
            mixed = sum(map(operator.mul, w, scaled))
            s.regret = [r + mixed - v for r, v in zip(s.regret, scaled, strict=True)]


def _log_mean_exp(w: list, x: list) -> float:
    """``log(sum_k w_k exp(x_k))`` without underflow (terms with ``w_k = 0`` dropped)."""
    logs = [math.log(a) + b for a, b in zip(w, x, strict=True) if a > 0]
    top = max(logs)
    return top + math.log(sum(math.exp(v - top) for v in logs))


def _mean_of_finite(w: list, prior: list, col: list, ok: list) -> float:
    """The weighted mean of the finite forecasts (weights renormalised over them; the
    prior's, or equal ones, if they all had weight 0); NaN if none is finite."""
    for weights in (w, prior, [1.0] * len(w)):
        total = sum(a for a, good in zip(weights, ok, strict=True) if good)
        if total > 0:
            return sum(a * v for a, v, good in zip(weights, col, ok, strict=True)
                       if good) / total
    return math.nan


class _Horizon:
    """The learning state of one horizon (lists of K floats)."""

    __slots__ = ("cached", "delta", "regret", "rounds", "scale", "total", "u")

    def __init__(self, k: int) -> None:
        self.cached: list | None = None  # the weights, until the next round
        self.rounds = 0
        self.total = [0.0] * k  # cumulative losses (AdaHedge)
        self.delta = 0.0  # cumulative mixability gap (AdaHedge)
        self.regret = [0.0] * k  # cumulative regrets on scaled losses (NormalHedge)
        self.scale = 0.0  # largest loss range seen (NormalHedge)
        self.u = 0.0  # 1 / c of the last round (NormalHedge; Newton starts there)


def _normalhedge(regret: list, prior: list, start: float = 0.0) -> tuple:
    """NormalHedge's weights of the regrets (the prior while none is > 0; a list, not
    normalised), and ``1 / c``.

    The scale ``c`` solves ``sum_k prior_k exp([R_k]+^2 / 2c) = e``: in ``u = 1 / c`` the
    log of the sum is convex and increasing, so Newton's method converges monotonically
    once right of the root (one step from anywhere left of it gets there). It starts from
    ``start`` (the last round's root: regrets move little per round) when that is
    positive, else right of the root, where the largest term alone reaches ``e``.
    Plain floats throughout: K is a handful, and this runs once per horizon and round.
    """
    r = [v if v > 0.0 and p > 0.0 else 0.0 for v, p in zip(regret, prior, strict=True)]
    half = [v * v / 2.0 for v in r]
    top = max(half)
    if top <= 0.0:
        return list(prior), 0.0
    exp, log = math.exp, math.log
    lead = half.index(top)
    right = (1.0 - log(max(prior[lead], 1e-300))) / top  # g(right) >= 0
    u = start if 0.0 < start < right else right
    below = [q - top for q in half]  # <= 0: the terms cannot overflow
    for _ in range(200):
        terms = [p * exp(d * u) for p, d in zip(prior, below, strict=True)]
        total = sum(terms)
        g = top * u + log(total) - 1.0
        slope = sum(map(operator.mul, terms, half)) / total
        step = g / slope
        u = min(u - step, right)
        if abs(step) <= 1e-12 * u:
            break
    logw = [log(max(p, 1e-300)) + log(v * u) + q * u if v > 0 else -math.inf
            for p, v, q in zip(prior, r, half, strict=True)]
    best = max(logw)
    return [exp(v - best) for v in logw], u
