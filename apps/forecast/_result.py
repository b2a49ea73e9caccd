"""ForecastResult and the SNARIMAX baseline of :func:`forecast_csv` (private).

Public through :mod:`streamrnn.apps.forecast`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

from streamrnn.river.baselines import make_snarimax as _make_snarimax

from ._output import write_csv, write_plot

__all__ = ["ForecastResult", "make_snarimax"]


def make_snarimax():
    """The SNARIMAX baseline: ARIMA(3, 1, 3) learned online by river.

    :func:`streamrnn.river.baselines.make_snarimax` (a standard scaler and a linear
    regression by SGD, lr 1e-3, gradient clipped to 1: river's documented
    AirlinePassengers setting diverges on WaterFlow and ETTh1).

    Examples
    --------
    >>> model = make_snarimax()
    >>> for y in [10.0, 11.0, 12.0, 13.0, 14.0, 15.0]:
    ...     model.learn_one(y)
    >>> len(model.forecast(3))
    3
    """
    return _make_snarimax()


@dataclass
class ForecastResult:
    """What :func:`forecast_csv` did: every forecast made, and how it scored.

    Arrays have one entry per forecast (one per grid row): ``times`` is the time the
    forecast is *for* (the row's time + ``horizon * period``, epoch seconds), ``actual``
    the target's value then (NaN if it was not observed, was skipped, or lies past the
    data), and the forecasts of it made ``horizon`` rows earlier: ``forecast`` (the
    command's: the online combination, or the network alone without it), ``rnn`` (the
    network alone), ``naive`` (the last value), ``seasonal`` (the value ``season`` rows
    before the target, the last value until there is one; NaN without a season) and
    ``snarimax``. ``weights`` are the combination's weights for the horizon at the end.
    ``scored`` marks the forecasts every MAE is computed on (the same for all).

    Threads
    -------
    Not changed after it is built: safe to read from several threads at once.

    Examples
    --------
    >>> import os, tempfile
    >>> from streamrnn.apps.forecast import forecast_csv
    >>> path = os.path.join(tempfile.mkdtemp(), "t.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("t,y\\n" + "".join(f"{60 * i},{i % 4}\\n" for i in range(30)))
    >>> result = forecast_csv(path, target="y", horizon=2, snarimax=False)
    >>> result.rows, int(result.scored.sum()), result.period
    (30, 28, 60.0)
    >>> result.summary()["snarimax_mae"] is None, result.naive_mae, result.season
    (True, 2.0, None)
    >>> result.to_csv(path + ".out.csv"); result.to_png(path + ".png")
    >>> open(path + ".out.csv").readline().strip()
    'time,actual,forecast,naive,snarimax,rnn,seasonal'
    """

    path: str
    target: str
    inputs: list
    horizon: int
    period: float
    rows: int
    times: np.ndarray
    actual: np.ndarray
    forecast: np.ndarray
    naive: np.ndarray
    snarimax: np.ndarray
    scored: np.ndarray
    seconds: float
    counts: dict = field(default_factory=dict)
    rnn: np.ndarray | None = None
    seasonal: np.ndarray | None = None
    season: int | None = None
    weights: dict = field(default_factory=dict)
    csv: str | None = None
    plot: str | None = None

    def _mae(self, values: np.ndarray) -> float | None:
        if not self.scored.any():
            return None
        mae = float(np.abs(values[self.scored] - self.actual[self.scored]).mean())
        return mae if math.isfinite(mae) else None  # overflowed: JSON has no inf

    @property
    def mae(self) -> float | None:
        """MAE of the model's forecasts on the scored steps (target units)."""
        return self._mae(self.forecast)

    @property
    def rnn_mae(self) -> float | None:
        """MAE of the network alone, on the same steps."""
        return None if self.rnn is None else self._mae(self.rnn)

    @property
    def seasonal_mae(self) -> float | None:
        """MAE of the seasonal last value, on the same steps (None without a season)."""
        if self.seasonal is None or self.season is None:
            return None
        return self._mae(self.seasonal)

    @property
    def naive_mae(self) -> float | None:
        """MAE of the last value ``y[t]`` as the forecast, on the same steps."""
        return self._mae(self.naive)

    @property
    def snarimax_mae(self) -> float | None:
        """MAE of river's SNARIMAX, on the same steps (None if it was not run)."""
        return None if np.isnan(self.snarimax).all() else self._mae(self.snarimax)

    def summary(self) -> dict:
        """The JSON line: ``rows``, ``mae`` (the command's forecast), ``naive_mae``,
        ``snarimax_mae``, ``rnn_mae`` (the network alone), ``seasonal_mae``, ``season``,
        ``weights`` (the combination's, at the end) and ``plot``."""
        return {"rows": self.rows, "mae": self.mae, "naive_mae": self.naive_mae,
                "snarimax_mae": self.snarimax_mae, "rnn_mae": self.rnn_mae,
                "seasonal_mae": self.seasonal_mae, "season": self.season,
                "weights": self.weights, "plot": self.plot}

    def to_csv(self, path) -> None:
        """Write the forecasts: ``time, actual, forecast, naive, snarimax, rnn, seasonal``
        (sets ``csv``).

        ``time`` is the time forecast for (ISO-8601 UTC), ``actual`` is empty where it was
        not observed; floats are written exactly. The file is replaced atomically.
        """
        self.csv = os.fspath(path)
        write_csv(self, self.csv)

    def to_png(self, path, title: str | None = None) -> None:
        """Plot actual vs forecast and the rolling MAE of each forecaster (sets ``plot``)."""
        self.plot = os.fspath(path)
        write_plot(self, self.plot, title=title)
