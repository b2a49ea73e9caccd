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

Speed
-----
Each :meth:`ExpertMix.predict` and :meth:`ExpertMix.update` is one compiled call over
every horizon (:mod:`streamrnn.river._mix`), a few microseconds; its arithmetic is that of
the plain-Python reference in ``tests/_mix_reference.py``, to the bit (tested).
"""

from __future__ import annotations

import numpy as np

from .._validate import check_choice, check_int
from . import _mix

__all__ = ["ExpertMix"]

METHODS = ("adahedge", "normalhedge")
LOSSES = ("absolute", "gradient")

#: The most consecutive target steps that may have forecasts waiting to be scored.
MAX_SPAN = 1 << 16


def checked_config(names, method, loss, prior) -> tuple:
    """``(names, method, loss, prior)`` of an :class:`ExpertMix`, checked: the names as a
    tuple, the prior as normalised float64 weights (uniform for ``None``)."""
    names = tuple(names)
    if not names or not all(isinstance(n, str) for n in names) or len(set(names)) < len(names):
        raise ValueError(f"names must be distinct strings, at least one, got {names!r}")
    method = check_choice("method", method, METHODS)
    loss = check_choice("loss", loss, LOSSES)
    k = len(names)
    if prior is None:
        return names, method, loss, np.full(k, 1.0 / k)
    pi = np.asarray(prior, dtype=np.float64)
    if pi.shape != (k,) or not np.isfinite(pi).all() or (pi < 0).any() or pi.sum() <= 0:
        raise ValueError(f"prior must be {k} finite non-negative numbers, not all 0, "
                         f"got {prior!r}")
    return names, method, loss, pi / pi.sum()


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
        target never arrived: dropped when a later step was updated). A fresh dict on
        each read.

    Shape
    -----
    predict: forecasts ``(K, N)`` (row k: expert k's forecasts of steps
    ``origin + first .. origin + first + N - 1``) -> combined ``(N,)``.

    Limits
    ------
    The targets with forecasts waiting to be scored (those after the last step updated)
    must lie within :data:`MAX_SPAN` (65,536) consecutive steps; a forecast further
    ahead than that is refused, changing nothing.

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
        self.names, self.method, self.loss, pi = checked_config(names, method, loss, prior)
        k = len(self.names)
        self.prior = pi
        self._k = k
        self._adahedge = self.method == "adahedge"
        self._gradient = self.loss == "gradient"
        self._index: dict = {}  # horizon -> its row in the state's per-horizon parts
        self._columns: dict = {}  # (first, N) -> the rows of horizons first .. first + N - 1
        self._floats = self._ints = None
        self._resize(4, 8)
        self._lo, self._hi = 0, -1  # every waiting target is in lo..hi (none: lo > hi)
        self._last_update: int | None = None

    # -- storage ---------------------------------------------------------------------
    def _resize(self, rows: int, size: int, lo: int = 0, hi: int = -1) -> None:
        # New state buffers for ``rows`` horizons and a ring of ``size`` slots (a power of
        # two); the used horizons' state, the counters and the forecasts waiting for
        # targets lo..hi (the ring's size changed) or all slots (it did not) are kept.
        k = self._k
        n_floats, n_ints = _mix.layout(k, rows, size)
        floats, ints = np.zeros(n_floats), np.zeros(n_ints, dtype=np.int64)
        ints[: _mix.HEADER] = (size - 1, self._adahedge, self._gradient, k, rows, size)
        new = dict(zip(_mix.PARTS, _mix.parts(floats, ints), strict=True))
        new["prior"][:] = self.prior
        if self._floats is not None:
            old = dict(zip(_mix.PARTS, _mix.parts(self._floats, self._ints), strict=True))
            used = len(self._index)
            for name in ("rounds", "total", "delta", "regret", "scale", "u", "wc", "wvalid"):
                new[name][:used] = old[name][:used]
            new["counts"][:] = old["counts"]
            if len(old["npend"]) == size:
                olds = news = np.arange(size)
            else:
                t = np.arange(lo, hi + 1)
                olds, news = t & (len(old["npend"]) - 1), t & (size - 1)
            new["npend"][news] = old["npend"][olds]
            for name in ("present", "pcols", "pissued"):
                new[name][news, :used] = old[name][olds, :used]
        self._floats, self._ints = floats, ints
        self._carve()

    def _carve(self) -> None:
        # The named views of the state buffers, for the Python side (_mix.PARTS).
        for name, value in zip(_mix.PARTS[3:], _mix.parts(self._floats, self._ints)[3:],
                               strict=True):
            setattr(self, "_" + name, value)

    def __getstate__(self) -> dict:  # the views are remade from the buffers they share
        state = self.__dict__.copy()
        for name in _mix.PARTS[3:]:
            state.pop("_" + name)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._carve()

    def _rows(self, first: int, n: int) -> np.ndarray:
        rows = self._columns.get((first, n))
        if rows is None:
            for h in range(first, first + n):
                if h not in self._index:
                    if len(self._index) == len(self._rounds):
                        self._resize(2 * len(self._rounds), len(self._npend))
                    self._index[h] = len(self._index)
            rows = np.array([self._index[h] for h in range(first, first + n)], np.int64)
            if len(self._columns) < 1024:
                self._columns[(first, n)] = rows
        return rows

    @property
    def counts(self) -> dict:
        return dict(zip(_mix.COUNTS, self._counts.tolist(), strict=True))

    # -- weights -------------------------------------------------------------------
    def weights(self, horizon: int) -> np.ndarray:
        """The weights used now for ``horizon``-step forecasts (a copy; they sum to one).

        Shape
        -----
        ``(K,)``.
        """
        check_int("horizon", horizon, minimum=1)
        i = self._index.get(horizon)
        if i is None:
            return self.prior.copy()
        _mix.weights(i, self._floats, self._ints)
        return self._wc[i].copy()

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
        if type(origin) is not int:  # the common case skips the checks' call
            origin = check_int("origin", origin)
        if type(first) is not int or first < 1:
            first = check_int("first", first, minimum=1)
        if self._last_update is not None and origin < self._last_update:
            raise ValueError(f"origin must be >= the last step updated ({self._last_update}),"
                             f" got {origin}: a forecast is made before its target arrives")
        f = np.ascontiguousarray(forecasts, dtype=np.float64)
        if f.ndim != 2 or f.shape[0] != self._k:
            raise ValueError(f"forecasts must have shape ({self._k}, N) (one row per expert: "
                             f"{', '.join(self.names)}), got {f.shape}")
        n = f.shape[1]
        out = np.empty(n)
        if n == 0:
            return out
        t0 = origin + first
        lo, hi = (min(self._lo, t0), max(self._hi, t0 + n - 1)) if self._hi >= self._lo \
            else (t0, t0 + n - 1)
        if hi - lo >= len(self._npend):
            if hi - lo >= MAX_SPAN:
                raise ValueError(f"forecasts would wait for targets {lo}..{hi}, more than "
                                 f"{MAX_SPAN} consecutive steps (first={first}, N={n}, "
                                 f"origin={origin})")
            self._resize(len(self._rounds), 1 << (hi - lo).bit_length(), self._lo, self._hi)
        rows = self._rows(first, n)
        self._lo, self._hi = lo, hi
        _mix.predict(f, rows, t0, out, self._floats, self._ints)
        return out

    def update(self, step: int, y: float) -> None:
        """``y`` is the value of ``step``: score the forecasts of it, move their weights.

        Steps must increase. Forecasts kept for earlier steps that were never updated are
        dropped (counted as ``unscored``). A non-finite ``y`` scores nothing and is counted.
        """
        if type(step) is not int:
            step = check_int("step", step)
        if self._last_update is not None and step <= self._last_update:
            raise ValueError(f"step must increase: got {step} after {self._last_update}")
        y = float(y)
        self._last_update = step
        lo, hi = self._lo, self._hi
        if hi < lo or step < lo:  # nothing waits for a step up to this one
            return
        # drop what waits for lo .. step - 1; score what waits for step (if step > hi,
        # nothing does: slot hi + 1 is empty, or is lo's, emptied first)
        _mix.update(lo, min(step - 1, hi), step if step <= hi else hi + 1, y, self._floats,
                    self._ints)
        self._lo = step + 1
