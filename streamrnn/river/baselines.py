"""The simple forecasters a model is combined with, and the combination a forecaster holds.

:class:`LastValue` (tomorrow = today), :class:`SeasonalLastValue` (the value one season
ago), :func:`make_snarimax` (river's SNARIMAX, set up to stay stable) and
:class:`CompiledSNARIMAX` (the same model's numbers, to the bit, in one compiled call per
``learn_one`` and per ``forecast``: ~1.6 µs against river's ~24 µs) follow river's
``Forecaster`` protocol. :class:`Combination` holds them beside a model's forecasts and an
:class:`~streamrnn.river.experts.ExpertMix` over all of them:
:class:`~streamrnn.river.RNNForecaster` is built on it.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
from river.time_series.base import Forecaster

from .._validate import check_bool, check_positive_int
from ._snarimax import CompiledSNARIMAX
from .experts import ExpertMix

__all__ = ["Combination", "CompiledSNARIMAX", "LastValue", "SeasonalLastValue",
           "make_snarimax"]


def make_snarimax():
    """SNARIMAX(3, 1, 3) learned online by river, set up to stay stable.

    A standard scaler and a linear regression by SGD (lr 1e-3, gradient clipped to 1):
    river's documented AirlinePassengers setting (p = q = 12, SGD 0.01, intercept_lr 0.3)
    diverges on WaterFlow and ETTh1 (MAE above 1e10); this one is stable, and was the best
    of a small grid (p in 1, 3, 12, 24; q in 0, 3; seasonal or not) on both series.

    Examples
    --------
    >>> model = make_snarimax()
    >>> for y in [10.0, 11.0, 12.0, 13.0, 14.0, 15.0]:
    ...     model.learn_one(y)
    >>> len(model.forecast(3))
    3
    """
    from river import linear_model, optim, preprocessing, time_series

    reg = linear_model.LinearRegression(optimizer=optim.SGD(1e-3), intercept_lr=1e-3,
                                        clip_gradient=1.0)
    return time_series.SNARIMAX(p=3, d=1, q=3, regressor=preprocessing.StandardScaler() | reg)


class LastValue(Forecaster):
    """The naive forecast: every future value equals the last one seen (0 before any).

    Examples
    --------
    >>> model = LastValue()
    >>> model.learn_one(3.0)
    >>> model.forecast(2)
    [3.0, 3.0]
    """

    def __init__(self) -> None:
        self.last = 0.0

    def learn_one(self, y, x=None) -> None:
        self.last = float(y)

    def forecast(self, horizon, xs=None) -> list:
        return [self.last] * horizon

    def forecast_into(self, out: np.ndarray) -> None:
        """``forecast(len(out))`` written into ``out``."""
        out.fill(self.last)


class SeasonalLastValue(Forecaster):
    """The seasonal naive forecast: ``y[t + h]`` is the value one season before it.

    Before a whole season has been seen it forecasts the last value.

    Parameters
    ----------
    season : int
        Steps in a season (e.g. 12 for monthly values, 24 for hourly ones).

    Examples
    --------
    >>> model = SeasonalLastValue(season=3)
    >>> for y in [1.0, 2.0, 3.0, 4.0]:
    ...     model.learn_one(y)
    >>> model.forecast(4)
    [2.0, 3.0, 4.0, 2.0]
    """

    def __init__(self, season: int = 12) -> None:
        self.season = check_positive_int("season", season)
        self._recent: deque = deque(maxlen=self.season)

    def learn_one(self, y, x=None) -> None:
        self._recent.append(float(y))

    def forecast(self, horizon, xs=None) -> list:
        r = self._recent
        if not r:
            return [0.0] * horizon
        if len(r) < self.season:
            return [r[-1]] * horizon
        return [r[h % self.season] for h in range(horizon)]


class Combination:
    """A model's forecasts combined online with the last value, a seasonal last value and
    SNARIMAX, by an :class:`~streamrnn.river.experts.ExpertMix` per horizon.

    The owner calls :meth:`learn_one` with each new value *before* its model learns it,
    and :meth:`forecast` with its model's forecasts. Weights learn only from forecasts
    whose targets have arrived: a forecast made after ``n`` values, for the ``h``-th value
    after them, is scored when value ``n + h`` is learned. Forecasts kept for scoring are
    those of the last :meth:`forecast` call since the last value; when there was none,
    :meth:`learn_one` first makes them from the model as it was (``model_forecast``),
    for the horizons asked so far (at least ``horizon``).

    ``table`` holds the forecasts last combined, one row per name in ``names``.

    Parameters
    ----------
    season : int or None
        Steps in a season: adds the seasonal last value; ``None``: not used.
    snarimax : bool
        Add SNARIMAX(3, 1, 3): :func:`make_snarimax`'s numbers, run by
        :class:`CompiledSNARIMAX`.
    horizon : int
        Horizons whose weights learn even when nobody asks for forecasts.
    method, loss : str
        The :class:`~streamrnn.river.experts.ExpertMix`'s.

    Examples
    --------
    The "model" below always forecasts 0, while the series climbs; the combination
    learns to follow the last value:

    >>> combo = Combination(snarimax=False)
    >>> for t in range(30):
    ...     combo.learn_one(float(t), lambda h: [0.0] * h)
    >>> combo.names, [round(v, 3) for v in combo.forecast([0.0, 0.0])]
    (('model', 'last'), [29.0, 29.0])
    """

    def __init__(self, *, season: int | None = None, snarimax: bool = True, horizon: int = 3,
                 method: str = "normalhedge", loss: str = "gradient") -> None:
        self.season = check_positive_int("season", season, none_ok=True)
        self.snarimax = check_bool("snarimax", snarimax)
        self.horizon = check_positive_int("horizon", horizon)
        self.experts: dict = {"last": LastValue()}
        if self.season is not None and self.season > 1:
            self.experts["seasonal"] = SeasonalLastValue(self.season)
        if self.snarimax:
            self.experts["snarimax"] = CompiledSNARIMAX()
        self.names = ("model", *self.experts)
        self.mix = ExpertMix(self.names, method=method, loss=loss)
        self._n = 0  # values learned
        self._kept = -1  # the number of values when forecasts were last kept
        self._buffer: np.ndarray | None = None  # (K, horizon), reused while horizon holds
        self._writers: list = []  # per expert: its row, its forecast_into, itself
        self._table: np.ndarray | None = None  # the buffer last combined

    @property
    def table(self) -> np.ndarray | None:
        """A copy of the forecasts last combined, ``(K, horizon)`` (``None`` before)."""
        return None if self._table is None else self._table.copy()

    def forecast(self, model_forecasts) -> list:
        """The combined forecasts of the next values (the model's first); kept to score.

        An expert with ``forecast_into(out)`` (the built-in ones) writes its forecasts
        into the table; any other is asked for ``forecast(horizon)``. An expert that
        fails with an arithmetic or value error sits this forecast out (NaN).
        """
        horizon = len(model_forecasts)
        if horizon > self.horizon:
            self.horizon = horizon
        if self._n == 0:
            return [float(v) for v in model_forecasts]
        table = self._buffer
        if table is None or table.shape[1] != horizon:
            table = self._buffer = np.empty((len(self.names), horizon))
            # per expert: its row of the table, its forecast_into (None: forecast)
            self._writers = [(i, getattr(model, "forecast_into", None), model)
                             for i, model in enumerate(self.experts.values(), 1)]
        table[0] = model_forecasts
        for i, into, model in self._writers:
            row = table[i]
            try:
                if into is not None:
                    into(row)
                else:
                    row[:] = [float(v) for v in model.forecast(horizon)]
            except (ArithmeticError, ValueError):  # e.g. a forecast of the wrong length
                row[:] = math.nan
        self._table = table
        self._kept = self._n
        return self.mix.predict(self._n - 1, table).tolist()

    def learn_one(self, y: float, model_forecast) -> None:
        """Value ``y`` arrived: score the forecasts of it, then the baselines learn it.

        ``model_forecast(h)`` gives the owner's model's next ``h`` forecasts as it is now
        (before learning ``y``); it is called only if no forecast was kept since the last
        value. A non-finite ``y`` scores nothing (counted by the mix as a skipped target)
        and the baselines do not learn it; the step still counts.
        """
        if self._n and self._kept != self._n:
            try:
                own = model_forecast(self.horizon)
            except ValueError:  # the model diverged: it sits these forecasts out
                own = [math.nan] * self.horizon
            self.forecast(own)
        self.mix.update(self._n, y)
        self._n += 1
        if math.isfinite(y):
            for model in self.experts.values():
                model.learn_one(y)
