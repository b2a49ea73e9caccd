"""Prediction with expert advice, online and per horizon: combine forecasters by their errors.

:class:`ExpertMix` weighs K forecasters ("experts": a recurrent model, the last value, a
seasonal last value, SNARIMAX, ...) and issues the weighted mean of their forecasts. A
forecast made at step ``t`` for step ``t + h`` is scored only when ``y[t + h]`` arrives
(:meth:`ExpertMix.update`), and only then moves the weights of horizon ``h``; the weights
used at ``t`` therefore depend on nothing that had not arrived by ``t``. Each horizon has
its own weights (the best forecaster one step ahead is often not the best ten steps
ahead).

Method
------
"adahedge" (the default): exponentially weighted average forecaster (Hedge;
Cesa-Bianchi & Lugosi 2006, "Prediction, Learning, and Games", sections 2.1-2.2) with
AdaHedge's learning rate (de Rooij, van Erven, Grunwald & Koolen 2014, "Follow the Leader
If You Can, Hedge If You Must", JMLR 15): ``eta = ln K / Delta``, where ``Delta`` is the
running sum of the mixability gaps. It needs no bound on the losses and no horizon: its
weights are invariant under rescaling and translation of the losses, so MAE losses are
used in the series' own units, unscaled. Its worst-case regret to the best expert after T
scored forecasts is of the order ``S sqrt(T ln K)`` (their Theorem 8), ``S`` being the
largest range of the K losses of one round, observed, not assumed; that is the order of
Hedge tuned with S and T known in advance (Cesa-Bianchi & Lugosi, Theorem 2.2:
``S sqrt(T ln K / 2)`` for losses in ``[0, S]``).

"normalhedge": NormalHedge (Chaudhuri, Freund & Hsu 2009, "A parameter-free hedging
algorithm", NIPS): weights ``w_k ~ ([R_k]+ / c) exp([R_k]+^2 / 2c)`` of the positive
regrets, ``c`` solving ``mean_k exp([R_k]+^2 / 2c) = e``. Its bound,
``O(sqrt(T ln(1/epsilon)) + ln^2 K)`` regret to the top epsilon-quantile of experts,
assumes losses in ``[0, 1]``: each round's losses are shifted by their minimum and divided
by the largest range seen so far, this round's included (online: no future value is
used; regrets are differences, so the shift changes nothing, and the bound holds for the
losses so scaled).

Losses
------
"absolute": expert ``k`` loses ``|f_k - y|``; the bound is to the best single expert,
and since ``|sum_k w_k f_k - y| <= sum_k w_k |f_k - y|`` the combined forecast's MAE is
at most the weighted experts' MAE. "gradient": the linearised loss
``sign(p - y) * f_k`` of the issued forecast ``p`` (Cesa-Bianchi & Lugosi, section 2.5),
whose regret bound holds against every fixed convex combination of the experts, not just
the best one (the loss range is then the spread of the K forecasts).

Choices made, on the development series only
--------------------------------------------
(AirlinePassengers, TrumpApproval, co2, WaterFlow; never on the held-out series of
``benchmarks/bench_forecast.py``.) :class:`~streamrnn.river.RNNForecaster` combines
with NormalHedge on linearised losses (the best mean ratio to the best simple forecaster
over those series, and the only setting better than the network alone on co2), the
``forecast`` command with NormalHedge on absolute losses (the only setting that kept the
demo's MAE at 2.823). Both have uniform priors; a prior favouring the last value changed
little. A seasonal last value with rare, huge errors (WaterFlow's daily one, 6 h ahead)
made the command's MAE 3.46 instead of 2.82: the regret bounds scale with the loss range,
so it is added only on request.

Bad values
----------
A non-finite target (NaN, inf), or one whose losses overflow, is skipped and counted
(``counts["skipped_targets"]``); the weights stay finite and sum to one. An expert whose
forecast is not finite sits that forecast out (the others' weights are renormalised) and
is charged the round's largest loss when it is scored (``counts["nonfinite_forecasts"]``).
"""

from __future__ import annotations

import math
import operator

import numpy as np

from .._validate import check_choice, check_int

__all__ = ["ExpertMix"]

METHODS = ("adahedge", "normalhedge")
LOSSES = ("absolute", "gradient")


class ExpertMix:
    """Online weights over K forecasters, per horizon, learned as targets arrive.

    Parameters
    ----------
    names : sequence of str
        The experts, in the order of the rows of the forecasts passed in.
    method : {"adahedge", "normalhedge"}
        How losses become weights (see the module's docstring).
    loss : {"absolute", "gradient"}
        Absolute errors, or their linearisation at the issued forecast.
    prior : sequence of float or None
        Starting weights (non-negative, normalised here); ``None``: uniform. AdaHedge's
        bound to expert k then grows by ``ln(1 / (K prior_k))``.

    Attributes
    ----------
    counts : dict
        ``scored`` forecasts (one per horizon and target), ``skipped_targets`` (not
        finite), ``nonfinite_forecasts`` (an expert sat one out), ``unscored`` (their
        target never arrived: dropped when a later step was updated).

    Shape
    -----
    predict: forecasts ``(K, N)`` (row k: expert k's forecasts of steps
    ``origin + first .. origin + first + N - 1``) -> combined ``(N,)``.

    Threads
    -------
    Not safe under concurrent calls, and not locked (a lock per call would cost more
    than the call): use it from one thread at a time, or hold your own lock around each
    call.

    Examples
    --------
    Two experts forecast one step ahead; the second is always right:

    >>> mix = ExpertMix(["flat", "good"])
    >>> for t in range(20):
    ...     p = mix.predict(t, [[0.0], [float(t + 1)]])   # made at t, for t + 1
    ...     mix.update(t + 1, float(t + 1))                 # y[t + 1] arrives
    >>> mix.weights(1).round(3).tolist()
    [0.0, 1.0]
    >>> float(mix.predict(20, [[0.0], [21.0]])[0]), mix.counts["scored"]
    (21.0, 20)

    A horizon never scored keeps the prior; a NaN target is counted and skipped:

    >>> mix.weights(3).tolist()
    [0.5, 0.5]
    >>> mix.update(21, float("nan")); mix.counts["skipped_targets"]
    1
    """

    def __init__(self, names, *, method: str = "adahedge", loss: str = "absolute",
                 prior=None) -> None:
        names = tuple(names)
        if not names or not all(isinstance(n, str) for n in names) or len(set(names)) < len(
                names):
            raise ValueError(f"names must be distinct strings, at least one, got {names!r}")
        self.names = names
        self.method = check_choice("method", method, METHODS)
        self.loss = check_choice("loss", loss, LOSSES)
        k = len(names)
        if prior is None:
            pi = np.full(k, 1.0 / k)
        else:
            pi = np.asarray(prior, dtype=np.float64)
            if pi.shape != (k,) or not np.isfinite(pi).all() or (pi < 0).any() or pi.sum() <= 0:
                raise ValueError(f"prior must be {k} finite non-negative numbers, not all 0, "
                                 f"got {prior!r}")
            pi = pi / pi.sum()
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
        """The weights used now for ``horizon``-step forecasts (a copy; they sum to one).

        Shape
        -----
        ``(K,)``.
        """
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
            low = min(s.total)
            if s.delta <= 0.0:  # eta = infinity: follow the leader(s)
                w = [p if v <= low else 0.0 for p, v in zip(pri, s.total, strict=True)]
                if sum(w) <= 0:
                    w = [1.0 if v <= low else 0.0 for v in s.total]
            else:
                eta = math.log(self._k) / s.delta if self._k > 1 else 0.0
                w = [p * math.exp(-eta * (v - low)) for p, v in zip(pri, s.total, strict=True)]
        else:
            w, s.u = _normalhedge(s.regret, pri, s.u)
        total = sum(w)
        return [v / total for v in w]

    # -- forecasting and scoring -----------------------------------------------------
    def predict(self, origin: int, forecasts, first: int = 1) -> np.ndarray:
        """Combine the experts' forecasts made at step ``origin``, and keep them to score.

        Column ``j`` holds the forecasts of step ``origin + first + j`` (horizon
        ``first + j``); it is combined with that horizon's current weights and scored when
        :meth:`update` gives that step's value. Predicting again at the same origin
        replaces what was kept. ``origin`` may not precede the last step updated: a
        forecast cannot be made after its future was seen.

        Returns
        -------
        numpy.ndarray
            ``(N,)`` combined forecasts (NaN only where no expert's is finite).
        """
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
        """``y`` is the value of ``step``: score the forecasts of it, move their weights.

        Steps must increase. Forecasts kept for earlier steps that were never updated are
        dropped (counted as ``unscored``). A non-finite ``y`` scores nothing and is counted.
        """
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
    r = [v if v > 0.0 else 0.0 for v in regret]
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
