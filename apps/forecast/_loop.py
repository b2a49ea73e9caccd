"""Row-by-row bookkeeping of :func:`forecast_csv`: forecasts, baselines, combination (private)."""

from __future__ import annotations

import math

import numpy as np

from streamrnn.river.experts import ExpertMix

from ._result import ForecastResult

__all__ = ["Loop"]


class Loop:
    """Row-by-row bookkeeping: forecasts, baselines, their combination and the actuals."""

    def __init__(self, model, adapter, horizon, period, origin, lo, hi, snarimax, season,
                 combine) -> None:
        self.model, self.adapter, self.h = model, adapter, horizon
        self.period, self.origin, self.lo, self.hi = period, origin, lo, hi
        self.snarimax, self.season = snarimax, season
        names = ["rnn", "last"] + ["seasonal"] * bool(season) + ["snarimax"] * bool(snarimax)
        self.mix = ExpertMix(names, method="normalhedge", loss="absolute") if combine else None
        self.c = len(adapter.channels)
        self.fallback = self.unobserved = 0
        self.where: dict = {}  # grid index of a row -> position of the forecast it made
        self.values: dict = {}  # grid index -> the target's value (held in gaps)
        self.times, self.forecast, self.naive, self.snx, self.actual = [], [], [], [], []
        self.rnn, self.seasonal = [], []

    def _wanted(self, t: float) -> bool:
        return (self.lo is None or t >= self.lo) and (self.hi is None or t < self.hi)

    def rows(self, rows, times) -> None:
        if not len(rows):
            return
        x = rows.numpy()
        stamps = times.numpy()
        index = np.rint((stamps - self.origin) / self.period).astype(np.int64)
        c, h, m = self.c, self.h, self.season
        observed = x[:, c : 2 * c] > 0.5
        self.unobserved += int((~observed[:, 0]).sum())
        f = self.model.push(x[:, :c], observed, x[:, 2 * c :], index)
        for r in range(len(x)):
            y, k = float(x[r, 0]), int(index[r])
            if observed[r, 0]:
                if (pos := self.where.pop(k - h, None)) is not None:
                    self.actual[pos] = y
                if self.mix is not None:  # y[k] arrived: score the forecasts of it
                    self.mix.update(k, y)
            self.values[k] = y
            when = float(stamps[r]) + h * self.period
            s = math.nan
            if self.snarimax is not None:
                self.snarimax.learn_one(y)
                if self.mix is not None or self._wanted(when):
                    s = float(self.snarimax.forecast(h)[-1])
                    if not math.isfinite(s):
                        s, self.fallback = y, self.fallback + 1
            seasonal = math.nan
            if m:  # the value one season before the target (the last value before that)
                seasonal = self.values.get(k + h - m * (-(-h // m)), y)
            own = float(f[r])
            combined = own
            if self.mix is not None:
                column = [own, y] + [seasonal] * bool(m) + [s] * (self.snarimax is not None)
                combined = float(self.mix.predict(k, np.array(column)[:, None], first=h)[0])
            self.where[k] = len(self.times)
            self.times.append(when)
            self.forecast.append(combined)
            self.rnn.append(own)
            self.seasonal.append(seasonal)
            self.naive.append(y)
            self.snx.append(s)
            self.actual.append(math.nan)
        newest = int(index[-1])
        if len(self.where) > 4 * h + 64:
            for k in [k for k in self.where if k < newest - h]:
                del self.where[k]
        if len(self.values) > 2 * ((m or 0) + h) + 64:
            for k in [k for k in self.values if k < newest - (m or 0) - h]:
                del self.values[k]

    def result(self, path, target, inputs, seconds, counts) -> ForecastResult:
        times = np.array(self.times)
        actual = np.array(self.actual)
        scored = ~np.isnan(actual) & np.array([self._wanted(t) for t in self.times], bool)
        weights = {}
        if self.mix is not None:
            weights = dict(zip(self.mix.names, self.mix.weights(self.h).round(4).tolist(),
                               strict=True))
        return ForecastResult(
            path=path, target=target, inputs=inputs, horizon=self.h, period=self.period,
            rows=len(times), times=times, actual=actual, forecast=np.array(self.forecast),
            naive=np.array(self.naive), snarimax=np.array(self.snx), scored=scored,
            seconds=seconds, counts=counts, rnn=np.array(self.rnn),
            seasonal=np.array(self.seasonal), season=self.season, weights=weights,
        )
