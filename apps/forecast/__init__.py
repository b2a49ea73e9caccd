"""Online forecasting of a sensor series: predict, then learn, while the data streams.

A CSV column (or any series of timestamped records) is forecast ``H`` grid steps ahead at
every step by a stateful LSTM that learns online with TBPTT while it forecasts, next to
two baselines scored on exactly the same steps: the naive last value and river's
SNARIMAX. The command line is ``streamrnn forecast FILE.csv --target COL --horizon H``;
``streamrnn demo`` runs it on river's bundled WaterFlow series (nothing is downloaded).

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
Scoring
    MAE in the target's units over the forecasts whose target time was observed (and lies
    in ``[score_from, score_until)`` if given). The naive forecast of ``y[t + H]`` is
    ``y[t]``; SNARIMAX learns ``y[t]`` (held values in gaps) and forecasts ``H`` ahead.
    All three are scored on the same forecasts.

Examples
--------
>>> import os, tempfile
>>> from streamrnn.apps.forecast import demo_main, demo_path, forecast_csv
>>> result = forecast_csv(demo_path(), target="Water flow [l/s]", horizon=3,
...                       time_column="Time", max_records=300)
>>> sorted(result.summary())
['mae', 'naive_mae', 'plot', 'rows', 'snarimax_mae']
>>> result.rows, int(result.scored.sum()), result.counts["records"]
(301, 297, 300)
>>> round(result.naive_mae, 4)  # y[t] as the forecast of y[t + 3], on the same 297 steps
3.7321

The commands (``streamrnn forecast``, ``streamrnn demo``) add the CSV, the plot and a
summary (a table, or one JSON line):

>>> out = tempfile.mkdtemp()
>>> demo_main(["--rows", "200", "--json", "--no-progress", "--out", out])  # doctest: +ELLIPSIS
{"rows": 200, "mae": ..., "naive_mae": ..., "snarimax_mae": ..., "plot": ".../waterflow-h6.png"}
0
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
from ._run import forecast_csv, parse_duration

__all__ = [
    "ForecastBank",
    "ForecastResult",
    "OnlineForecaster",
    "demo_main",
    "demo_path",
    "forecast_csv",
    "forecast_main",
    "make_snarimax",
    "parse_duration",
    "register_demo",
    "register_forecast",
]

