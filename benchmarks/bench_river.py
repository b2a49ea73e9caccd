"""streamrnn's RNNForecaster next to river's forecasters and deep-river, side by side.

Every model is scored by river's own forecasting evaluation (``evaluate.evaluate``:
learn one value, then forecast the next ``horizon`` values) on three real series that
ship inside wheels: river's AirlinePassengers (144 monthly) and TrumpApproval (1,001
daily, with 6 pollster columns as exogenous features), and statsmodels' weekly Mauna
Loa co2 (2,284 weeks; the 59 missing weeks are dropped). MAE at horizons +1 and +3,
and samples per second (values learned per second of the whole evaluation), 1 thread.

deep-river pins torch < 2.6 and river < 0.26, so it runs in its own virtual
environment, never in the project's (``--deep-river-python``; make one with
``python3 -m venv /opt/deepriver-venv && /opt/deepriver-venv/bin/pip install
deep-river==0.3.4 pytest``). Its LSTMForecaster uses its benchmark's settings
(window 12, hidden 16).

streamrnn's RNNForecaster runs on its default engine (``engine="auto"``: the compiled
numba kernels), combined online with the last value and SNARIMAX(3, 1, 3) (its default,
``combine=True``); the row "network alone" is ``combine=False``; ``--torch-engine``
adds a row for the same model on torch's OnlineLearner (the same MAE, 30-40x slower).
The numba kernels are compiled (or loaded from the on-disk cache) on first use, in an
untimed warm-up evaluation of every model on the first 40 values of each series (deep-river
has no kernels to build); the rates are medians over the repeats. The repeats are the outer
loop (all of ours, then deep-river's process), and the printed ratio is the median of
the per-repeat ratios. Each rate is timed over at least ``MIN_TIME`` (0.5 s): a series
is evaluated again with a fresh model until then (AirlinePassengers, 144 values, takes
~10 ms for ours), on both sides.

Run::

    python benchmarks/bench_river.py [--deep-river-python /opt/deepriver-venv/bin/python]
        [--repeats 3] [--torch-engine]
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from river import datasets, linear_model, metrics, optim, preprocessing, time_series
from river import evaluate as river_evaluate
from river.time_series.base import Forecaster

from streamrnn.river import RNNForecaster

HORIZON = 3
MIN_TIME = 0.5  # seconds timed per model, series and repeat (see score)


class LastValue(Forecaster):
    """The naive forecast: every future value equals the last one seen."""

    def __init__(self) -> None:
        self.last = 0.0

    def learn_one(self, y, x=None):
        self.last = y

    def forecast(self, horizon, xs=None):
        return [self.last] * horizon


def load_series() -> dict:
    """name -> (list of (x, y), seasonal period)."""
    import statsmodels.api as sm

    co2 = sm.datasets.co2.load_pandas().data["co2"].dropna()

    def numeric(dataset):  # every model gets the same numeric exogenous features
        return [({k: v for k, v in x.items() if isinstance(v, int | float)}, y)
                for x, y in dataset]

    return {
        "AirlinePassengers": (numeric(datasets.AirlinePassengers()), 12),
        "TrumpApproval": (numeric(datasets.TrumpApproval()), 7),
        "co2 (weekly)": ([({}, float(v)) for v in co2.to_numpy()], 52),
    }


def snarimax(m: int, first: float):
    # river's documented AirlinePassengers configuration, with the series' own period.
    return time_series.SNARIMAX(
        p=12, d=1, q=12, m=m, sd=1,
        regressor=preprocessing.StandardScaler() | linear_model.LinearRegression(
            intercept_init=first, optimizer=optim.SGD(0.01), intercept_lr=0.3
        ),
    )


class WarmHoltWinters(time_series.HoltWinters):
    """river's HoltWinters, forecasting the last value until it has initialised.

    HoltWinters cannot forecast before it has seen a full season; river's evaluation
    asks from step ``horizon`` on.
    """

    def learn_one(self, y, x=None):
        self._last = y
        super().learn_one(y, x)

    def forecast(self, horizon, xs=None):
        if not self.level:
            return [getattr(self, "_last", 0.0)] * horizon
        return super().forecast(horizon, xs)


def holt_winters(m: int):
    return WarmHoltWinters(alpha=0.3, beta=0.1, gamma=0.6, seasonality=m)


def score(make, data, min_time: float = 0.0) -> tuple[list[float], float]:
    """MAE at each horizon step (of the first evaluation) and samples per second under
    river's evaluation, a fresh ``make()`` evaluated again until ``min_time`` seconds
    were timed (the short series take ~10 ms: one evaluation is too short to time)."""
    maes, n, seconds = None, 0, 0.0
    while maes is None or seconds < min_time:
        model = make()
        t0 = time.perf_counter()
        result = river_evaluate.evaluate(data, model, metrics.MAE(), horizon=HORIZON)
        seconds += time.perf_counter() - t0
        n += len(data)
        if maes is None:
            maes = [m.get() for m in result.metrics]
    return maes, n / seconds


_DEEP_RIVER_SCRIPT = r"""
import json, sys, time, torch
torch.set_num_threads(1)
from river import metrics, time_series
from deep_river.forecasting import LSTMForecaster
series = json.load(sys.stdin)
out = {}
for name, rows in series.items():
    data = [(x, y) for x, y in rows]
    mae, n, seconds = None, 0, 0.0
    while mae is None or seconds < MIN_TIME:  # as score() in bench_river.py
        model = LSTMForecaster(window_size=12, hidden_size=16, seed=42)
        t0 = time.perf_counter()
        result = time_series.evaluate(data, model, metrics.MAE(), horizon=HORIZON)
        seconds += time.perf_counter() - t0
        n += len(data)
        if mae is None:
            mae = [m.get() for m in result.metrics]
    out[name] = {"mae": mae, "rate": n / seconds}
print(json.dumps(out))
""".replace("HORIZON", str(HORIZON)).replace("MIN_TIME", repr(MIN_TIME))


def run_deep_river(python: str, series: dict) -> dict:
    payload = {name: rows for name, (rows, _) in series.items()}
    proc = subprocess.run(
        [python, "-c", _DEEP_RIVER_SCRIPT], input=json.dumps(payload),
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"deep-river run failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deep-river-python", default="/opt/deepriver-venv/bin/python")
    parser.add_argument("--repeats", type=int, default=3, help="repeats for the rates")
    parser.add_argument("--torch-engine", action="store_true",
                        help="also run RNNForecaster(engine='torch')")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    series = load_series()
    models = {
        "streamrnn RNNForecaster": lambda m, first: RNNForecaster(seed=0),
        "streamrnn RNNForecaster, network alone": (
            lambda m, first: RNNForecaster(seed=0, combine=False)),
        "river SNARIMAX": snarimax,
        "river HoltWinters": lambda m, first: holt_winters(m),
        "last value": lambda m, first: LastValue(),
    }
    if args.torch_engine:
        models["streamrnn RNNForecaster, torch engine"] = (
            lambda m, first: RNNForecaster(seed=0, engine="torch"))
    # Repeats outermost: each repeat runs every model of ours, then deep-river once (its
    # own process), and the ratio is taken within the repeat; the figure is the median of
    # the per-repeat ratios, so that a slow phase of a shared machine hits both sides.
    deep = Path(args.deep_river_python).exists()
    if not deep:
        print(f"(deep-river skipped: {args.deep_river_python} not found)", file=sys.stderr)
    table: dict = {}  # (series, model) -> (MAEs of the first run, rates of every repeat)
    ratios: dict = {name: [] for name in series}
    for data, m in series.values():  # untimed: loads (or compiles) the numba kernels
        for make in models.values():
            score(functools.partial(make, m, data[0][1]), data[:40])
    for _ in range(args.repeats):
        for name, (data, m) in series.items():
            for label, make in models.items():
                maes, rate = score(functools.partial(make, m, data[0][1]), data, MIN_TIME)
                table.setdefault((name, label), (maes, []))[1].append(rate)
        if deep:
            for name, r in run_deep_river(args.deep_river_python, series).items():
                key = (name, "deep-river LSTMForecaster")
                table.setdefault(key, (r["mae"], []))[1].append(r["rate"])
                ours = table[(name, "streamrnn RNNForecaster")][1][-1]
                ratios[name].append(ours / r["rate"])

    print(f"| series | model | MAE +1 | MAE +{HORIZON} | samples/s |")
    print("|---|---|---:|---:|---:|")
    for (name, label), (maes, rates) in table.items():
        rate = statistics.median(rates)
        rate_s = f"{rate:,.0f}" if rate and math.isfinite(rate) else "-"
        print(f"| {name} | {label} | {maes[0]:.2f} | {maes[-1]:.2f} | {rate_s} |")
    for name, rs in ratios.items():
        if rs:
            print(f"{name}: streamrnn samples/s / deep-river = {statistics.median(rs):.1f}x "
                  f"(median of {len(rs)} per-repeat ratios, "
                  f"{', '.join(f'{r:.1f}' for r in rs)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
