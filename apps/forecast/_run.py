"""forecast_csv: online forecasting of one CSV column with baselines (private).

Public through :mod:`streamrnn.apps.forecast`, whose docstring describes the protocol.
"""

from __future__ import annotations

import csv
import itertools
import math
import os
import re
import time

import numpy as np
import torch

from streamrnn.adapters.sensor import SensorAdapter, iter_csv, to_seconds
from streamrnn.utils import check_bool, check_positive_int

from ._model import OnlineForecaster
from ._result import ForecastResult, make_snarimax

__all__ = ["forecast_csv", "parse_duration"]

_UNITS = {"ms": 1e-3, "s": 1.0, "sec": 1.0, "min": 60.0, "m": 60.0, "h": 3600.0,
          "hour": 3600.0, "d": 86400.0, "day": 86400.0, "w": 604800.0, "week": 604800.0}
_BLOCK = 64  # records per adapter push (any size gives the same rows)


def parse_duration(value, name: str = "period") -> float:
    """Seconds of a duration: a positive number of seconds or e.g. ``"15min"``, ``"1h"``.

    Examples
    --------
    >>> parse_duration("1h"), parse_duration("15min"), parse_duration(2.5), parse_duration("90")
    (3600.0, 900.0, 2.5, 90.0)
    """
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a positive duration such as 3600, '1h' or '15min', "
                         f"got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-z]*)\s*",
                             value.lower())
        if match is None or match.group(2) not in ("", *_UNITS):
            raise ValueError(f"{name} must be a positive duration such as 3600, '1h' or "
                             f"'15min' (units {', '.join(_UNITS)}), got {value!r}")
        seconds = float(match.group(1)) * _UNITS.get(match.group(2), 1.0)
    else:
        raise ValueError(f"{name} must be a positive duration such as 3600, '1h' or '15min', "
                         f"got {value!r}")
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{name} must be a positive duration, got {value!r}")
    return seconds


def _header(path: str, delimiter: str) -> list:
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            first = f.readline()
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not a UTF-8 text file ({err.reason})") from None
    if not first.strip():
        raise ValueError(f"{path} is empty: expected a header row and data rows")
    return [c.strip() for c in next(csv.reader([first], delimiter=delimiter))]


def _check_columns(path, names, target, inputs, time_column) -> str:
    listed = ", ".join(repr(n) for n in names)
    time_column = names[0] if time_column is None else time_column
    for what, col in [("time_column", time_column), ("target", target)] + [
        ("inputs", c) for c in inputs
    ]:
        if not isinstance(col, str):
            raise ValueError(f"{what} must be a column name, got {col!r}")
        if col not in names:
            raise ValueError(f"{what} {col!r} is not a column of {path}; its columns are "
                             f"{listed}")
    if target == time_column or time_column in inputs:
        raise ValueError(f"time_column {time_column!r} cannot also be the target or an input")
    if target in inputs or len(set(inputs)) != len(inputs):
        raise ValueError(f"inputs must be distinct columns other than the target, got {inputs}")
    return time_column


def _infer_period(records: list, path: str) -> float:
    stamps = np.array([r[0] for r in records], dtype=np.float64)
    steps = np.diff(stamps)
    steps = steps[steps > 0]
    if not len(steps):
        raise ValueError(f"cannot infer the period of {path} from {len(records)} record(s) "
                         f"without increasing timestamps; pass period (e.g. '1h')")
    return float(np.median(steps))


def _time_bound(value, name: str) -> float | None:
    return None if value is None else to_seconds(value, name=name)


def _count_lines(path: str) -> int:
    with open(path, "rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


def forecast_csv(
    path,
    *,
    target: str,
    horizon: int,
    time_column: str | None = None,
    inputs=(),
    period=None,
    delimiter: str = ",",
    on_error: str = "raise",
    lateness: float = 0.0,
    max_gap=None,
    calendar: bool = True,
    score_from=None,
    score_until=None,
    stop_at=None,
    max_records: int | None = None,
    snarimax: bool = True,
    hidden_size: int = 32,
    k1: int = 2,
    k2: int | None = None,
    lr: float = 1e-3,
    seed: int = 0,
    progress: bool = False,
) -> ForecastResult:
    """Forecast one column of a CSV ``horizon`` grid steps ahead, online, with baselines.

    The records go through :func:`~streamrnn.adapters.sensor.iter_csv` and a
    :class:`~streamrnn.adapters.sensor.SensorAdapter` (its grid, gap, order and NaN rules
    apply), then through an :class:`~streamrnn.apps.forecast.OnlineForecaster`, the
    naive last value and river's SNARIMAX (:func:`make_snarimax`), row by row,
    predict-then-learn; the protocol is described in :mod:`streamrnn.apps.forecast`.

    Parameters
    ----------
    path : str or os.PathLike
        The CSV file, with a header row.
    target : str
        Column to forecast.
    horizon : int
        Forecast this many grid periods ahead.
    time_column : str or None
        Timestamp column (ISO-8601 or epoch seconds); ``None``: the first column.
    inputs : list of str
        Other columns the model reads (the baselines read the target only).
    period : float, str or None
        Grid period (seconds or e.g. ``"1h"``); ``None``: the median step of the first
        records.
    delimiter : str
        Field separator.
    on_error : {"raise", "skip"}
        A malformed line or non-numeric field: ``ValueError`` naming the line, or skip it
        and count it (a non-numeric field is masked, counted as ``invalid``: the sensor
        adapter's ``invalid_policy``). Empty cells and NaN / inf are always masked and
        counted.
    lateness : float
        Seconds a record may arrive out of order and still be placed; older ones are
        dropped and counted (``late``).
    max_gap : float, str or None
        A silence longer than this emits held rows up to it, then skips to the next
        record (``gaps``, ``skipped_rows``); ``None``: 48 periods.
    calendar : bool
        Give the model hour-of-day and day-of-week phases (UTC).
    score_from, score_until : time or None
        Score only forecasts for times in ``[score_from, score_until)`` (everything is
        still learned from); SNARIMAX forecasts only for those.
    stop_at : time or None
        Stop reading at the first record at or after this time.
    max_records : int or None
        Read at most this many records.
    snarimax : bool
        Run the SNARIMAX baseline.
    hidden_size, k1, k2, lr, seed
        The :class:`OnlineForecaster`'s.
    progress : bool
        Show a tqdm progress bar on stderr.

    Returns
    -------
    ForecastResult

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "room.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("time,temp,heating\\n")
    ...     for i in range(48):
    ...         _ = f.write(f"2024-01-01T00:00:00Z,{20 + i % 6},{i % 2}\\n".replace(
    ...             "01T00", f"{1 + i // 24:02d}T{i % 24:02d}"))
    >>> result = forecast_csv(path, target="temp", horizon=3, inputs=["heating"])
    >>> result.period, result.rows, int(result.scored.sum())
    (3600.0, 48, 45)
    >>> sorted(k for k, v in result.counts.items() if v and not k.startswith(("source", "model")))
    ['records', 'rows']
    """
    for name, flag in (("calendar", calendar), ("snarimax", snarimax), ("progress", progress)):
        check_bool(name, flag)
    check_positive_int("max_records", max_records, none_ok=True)
    inputs = [inputs] if isinstance(inputs, str) else list(inputs)
    model = OnlineForecaster(horizon, num_inputs=len(inputs), num_extra=4 * calendar,
                             hidden_size=hidden_size, k1=k1, k2=k2, lr=lr, seed=seed)
    lo, hi = _time_bound(score_from, "score_from"), _time_bound(score_until, "score_until")
    stop = _time_bound(stop_at, "stop_at")
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"{path} is not a file")
    time_column = _check_columns(path, _header(path, delimiter), target, inputs, time_column)
    channels = [target, *inputs]
    source = iter_csv(path, time_column=time_column, columns=channels, delimiter=delimiter,
                      on_error=on_error)
    if stop is not None or max_records is not None:
        source = _Until(source, stop, max_records)
    head = list(itertools.islice(source, 256))
    if not head:
        skipped = source.counts["malformed"]
        raise ValueError(f"{path} has a header but no data rows"
                         + (f" ({skipped} malformed lines skipped)" if skipped else ""))
    period = _infer_period(head, path) if period is None else parse_duration(period)
    gap = 48 * period if max_gap is None else parse_duration(max_gap, "max_gap")
    adapter = SensorAdapter(channels, period, origin=head[0][0], lateness=lateness,
                            max_gap=gap, calendar=calendar, normalize=False,
                            age_features=False, dtype=torch.float64,
                            invalid_policy="raise" if on_error == "raise" else "mask")
    loop = _Loop(model, adapter, horizon, period, head[0][0], lo, hi,
                 make_snarimax() if snarimax else None)
    bar = None
    if progress:
        from tqdm import tqdm

        total = max(_count_lines(path) - 1, 0)
        bar = tqdm(total=total if max_records is None else min(total, max_records), unit="rec",
                   desc=os.path.basename(path), leave=False, dynamic_ncols=True)
    t0 = time.perf_counter()
    try:
        records = itertools.chain(head, source)
        while block := list(itertools.islice(records, _BLOCK)):
            loop.rows(adapter.push(block), adapter.last_times)
            if bar is not None:
                bar.update(len(block))
        loop.rows(adapter.flush(), adapter.last_times)
    finally:
        source.close()
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0
    counts = {**{f"source_{k}": v for k, v in source.counts.items()}, **adapter.counts,
              **{f"model_{k}": v for k, v in model.counts.items()},
              "snarimax_fallback": loop.fallback, "unobserved_rows": loop.unobserved}
    return loop.result(path, target, inputs, seconds, counts)


class _Until:
    """Records of ``source`` before time ``stop``, at most ``limit`` of them."""

    def __init__(self, source, stop: float | None, limit: int | None) -> None:
        self.source, self.stop, self.left, self.counts = source, stop, limit, source.counts

    def __iter__(self):
        return self

    def __next__(self):
        if self.left is not None:
            if self.left <= 0:
                raise StopIteration
            self.left -= 1
        record = next(self.source)
        if self.stop is not None and record[0] >= self.stop:
            raise StopIteration
        return record

    def close(self) -> None:
        self.source.close()


class _Loop:
    """Row-by-row bookkeeping: forecasts, baselines and the actuals they are scored on."""

    def __init__(self, model, adapter, horizon, period, origin, lo, hi, snarimax) -> None:
        self.model, self.adapter, self.h = model, adapter, horizon
        self.period, self.origin, self.lo, self.hi = period, origin, lo, hi
        self.snarimax = snarimax
        self.c = len(adapter.channels)
        self.fallback = self.unobserved = 0
        self.where: dict = {}  # grid index of a row -> position of the forecast it made
        self.times, self.forecast, self.naive, self.snx, self.actual = [], [], [], [], []

    def _wanted(self, t: float) -> bool:
        return (self.lo is None or t >= self.lo) and (self.hi is None or t < self.hi)

    def rows(self, rows, times) -> None:
        if not len(rows):
            return
        x = rows.numpy()
        stamps = times.numpy()
        index = np.rint((stamps - self.origin) / self.period).astype(np.int64)
        c, h = self.c, self.h
        observed = x[:, c : 2 * c] > 0.5
        self.unobserved += int((~observed[:, 0]).sum())
        f = self.model.push(x[:, :c], observed, x[:, 2 * c :], index)
        for r in range(len(x)):
            y, k = float(x[r, 0]), int(index[r])
            if observed[r, 0] and (pos := self.where.pop(k - h, None)) is not None:
                self.actual[pos] = y
            when = float(stamps[r]) + h * self.period
            s = math.nan
            if self.snarimax is not None:
                self.snarimax.learn_one(y)
                if self._wanted(when):
                    s = float(self.snarimax.forecast(h)[-1])
                    if not math.isfinite(s):
                        s, self.fallback = y, self.fallback + 1
            self.where[k] = len(self.times)
            self.times.append(when)
            self.forecast.append(float(f[r]))
            self.naive.append(y)
            self.snx.append(s)
            self.actual.append(math.nan)
        if len(self.where) > 4 * h + 64:
            for k in [k for k in self.where if k < int(index[-1]) - h]:
                del self.where[k]

    def result(self, path, target, inputs, seconds, counts) -> ForecastResult:
        times = np.array(self.times)
        actual = np.array(self.actual)
        scored = ~np.isnan(actual) & np.array([self._wanted(t) for t in self.times], bool)
        return ForecastResult(
            path=path, target=target, inputs=inputs, horizon=self.h, period=self.period,
            rows=len(times), times=times, actual=actual, forecast=np.array(self.forecast),
            naive=np.array(self.naive), snarimax=np.array(self.snx), scored=scored,
            seconds=seconds, counts=counts,
        )

