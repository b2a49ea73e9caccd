"""Online forecasting of a sensor series: predict, then learn, while the data streams.

A CSV column (or any series of timestamped records) is forecast ``H`` grid steps ahead at
every step by a stateful LSTM that learns online with TBPTT while it forecasts, combined
online with the simple forecasters (the naive last value, river's SNARIMAX and,
optionally, the seasonal last value), all scored on exactly the same steps. The command
line is ``streamrnn forecast FILE.csv --target COL --horizon H``; ``streamrnn demo``
runs it on river's bundled WaterFlow series (nothing is downloaded).

Protocol
--------
Records
    :func:`~streamrnn.adapters.sensor.iter_csv` reads the file; a
    :class:`~streamrnn.adapters.sensor.SensorAdapter` puts them on a grid of ``period``
    seconds anchored at the first record, with its rules: values held between readings,
    a mask of which channels were observed in the last period, records going back in time
    dropped and counted (``late``), duplicates counted, NaN / inf values masked and
    counted (empty cells masked), a silence longer than ``max_gap`` (48 periods by
    default) skipped after ``max_gap`` of held rows. A malformed line or non-numeric
    value stops with an error naming the line (``on_error="raise"``) or is skipped and
    counted (``"skip"``).
Predict, then learn
    At grid row ``t`` the model forecasts ``y[t + H]`` from rows ``<= t`` only. When row
    ``t + H`` arrives with an observed target, the forecast is scored and its target is
    handed to the learner, which learns it at its next window end (TBPTT(k1, k2), Adam,
    gradient clipped). The forecast of ``y[t + H]`` is therefore made before anything
    after ``t`` was seen, with weights that learned only from values seen by then.
Model
    :class:`OnlineForecaster`: an LSTM (32 units) plus a linear map of the same
    features, predicting the scaled change ``y[t + H] - y[t]``, so an untrained model is
    exactly the naive forecast. Features are scaled online (running mean / std; changes
    by running mean absolute changes) and include the last changes, distances to moving
    averages, observed flags, the input columns and hour-of-day / day-of-week phases.
Combination
    Prediction with expert advice (:class:`streamrnn.river.experts.ExpertMix`): the
    forecast is the weighted mean of the LSTM's, the last value's and SNARIMAX's (and,
    given a ``season``, the seasonal last value's: the value one season of grid steps
    before the target, see :func:`natural_season`), with NormalHedge weights on absolute
    errors. The forecast
    of ``y[t + H]`` is scored, and moves the weights, only when ``y[t + H]`` arrives, so
    the weights used at ``t`` depend on nothing after ``t``.
Scoring
    MAE in the target's units over the forecasts whose target time was observed (and lies
    in ``[score_from, score_until)`` if given). The naive forecast of ``y[t + H]`` is
    ``y[t]``; SNARIMAX learns ``y[t]`` (held values in gaps) and forecasts ``H`` ahead.
    The seasonal last value of ``y[t + H]`` is ``y[t + H - m]`` (``m`` the season, whole
    seasons back when ``H > m``; the last value where that row does not exist). All are
    scored on the same forecasts.

Examples
--------
>>> import os, tempfile
>>> from streamrnn.apps.forecast import demo_main, demo_path, forecast_csv
>>> result = forecast_csv(demo_path(), target="Water flow [l/s]", horizon=3,
...                       time_column="Time", max_records=300)
>>> sorted(result.summary())  # doctest: +NORMALIZE_WHITESPACE
['mae', 'naive_mae', 'plot', 'rnn_mae', 'rows', 'season', 'seasonal_mae', 'snarimax_mae',
 'weights']
>>> result.rows, int(result.scored.sum()), result.counts["records"]
(301, 297, 300)
>>> round(result.naive_mae, 4)  # y[t] as the forecast of y[t + 3], on the same 297 steps
3.7321

The commands (``streamrnn forecast``, ``streamrnn demo``) add the CSV, the plot and a
summary (a table, or one JSON line):

>>> import contextlib, io, json
>>> out = tempfile.mkdtemp()
>>> with contextlib.redirect_stdout(io.StringIO()) as printed:
...     code = demo_main(["--rows", "200", "--json", "--no-progress", "--out", out])
>>> summary = json.loads(printed.getvalue())
>>> code, summary["rows"], {k: round(summary[k], 3) for k in ("mae", "naive_mae", "snarimax_mae")}
(0, 200, {'mae': 5.627, 'naive_mae': 5.615, 'snarimax_mae': 5.641})
>>> summary["weights"], os.path.basename(summary["plot"])
({'rnn': 1.0, 'last': 0.0, 'snarimax': 0.0}, 'waterflow-h6.png')
>>> sorted(os.listdir(out))
['waterflow-h6.csv', 'waterflow-h6.png']
"""

from __future__ import annotations

from ._bank import ForecastBank
from ._cli import (
    demo_main,
    demo_path,
    forecast_main,
    register_demo,
    register_forecast,
)
from ._model import OnlineForecaster
from ._result import ForecastResult, make_snarimax
from ._run import forecast_csv, natural_season, parse_duration

__all__ = [
    "ForecastBank",
    "ForecastResult",
    "OnlineForecaster",
    "demo_main",
    "demo_path",
    "forecast_csv",
    "forecast_main",
    "make_snarimax",
    "natural_season",
    "parse_duration",
    "register_demo",
    "register_forecast",
]

