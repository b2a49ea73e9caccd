"""Predict, then learn: a forecast for t + H never depends on anything after step t.

Changing future values (of the target or of an input) leaves every earlier forecast
bitwise unchanged, through the forecaster alone and through the whole CSV path (adapter,
model, naive and SNARIMAX). The untrained forecaster is exactly the naive one, and the
learner learns every target it is handed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamrnn.apps.forecast import OnlineForecaster, forecast_csv


def _series(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    y = 50 + 4 * np.sin(2 * np.pi * t / 12) + np.cumsum(rng.normal(0, 0.3, n))
    load = np.cos(2 * np.pi * t / 12) + rng.normal(0, 0.1, n)
    return np.stack([y, load], 1)


@settings(max_examples=8, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    horizon=st.integers(1, 4),
    cut=st.integers(5, 70),
    chunks=st.lists(st.integers(1, 9), min_size=1, max_size=12),
)
def test_future_values_never_change_earlier_forecasts(seed, horizon, cut, chunks):
    x = _series(80, seed)
    future = x.copy()
    rng = np.random.default_rng(seed + 1)
    future[cut + 1 :] += rng.normal(0, 5, future[cut + 1 :].shape)

    def run(values):
        fc = OnlineForecaster(horizon, num_inputs=1, k1=2, lr=0.01, seed=seed % 7)
        out, pos, i = [], 0, 0
        while pos < len(values):  # the same arbitrary chunking in both runs
            size = chunks[i % len(chunks)]
            out.append(fc.push(values[pos : pos + size]))
            pos, i = pos + size, i + 1
        return np.concatenate(out), fc

    a, fa = run(x)
    b, _ = run(future)
    assert np.array_equal(a[: cut + 1], b[: cut + 1])  # bitwise: made before the change
    assert not np.array_equal(a[cut + 1 :], b[cut + 1 :])
    assert fa.counts["targets"] == 80 - horizon  # every target was handed to the learner
    assert fa.learner.counts["late_dropped"] == 0


def test_untrained_forecaster_is_the_naive_forecast():
    x = _series(30, 0)
    fc = OnlineForecaster(5, num_inputs=1, k1=4)
    f = fc.push(x[:5])  # no target has arrived yet: nothing learned
    assert np.array_equal(f, x[:5, 0])
    assert fc.learner.counts["updates"] == 0


def test_chunking_changes_forecasts_only_by_rounding():
    x = _series(120, 3)
    whole = OnlineForecaster(3, num_inputs=1, k1=2, lr=0.01).push(x)
    fc = OnlineForecaster(3, num_inputs=1, k1=2, lr=0.01)
    steps = np.concatenate([fc.push(x[i : i + 1]) for i in range(len(x))])
    np.testing.assert_allclose(steps, whole, rtol=0, atol=1e-3)


def test_grid_index_aligns_targets_across_skipped_rows():
    x = _series(60, 1)
    index = np.concatenate([np.arange(30), np.arange(130, 160)])  # 100 rows skipped
    fc = OnlineForecaster(2, num_inputs=1)
    fc.push(x, index=index)
    # targets of rows 28, 29 (indices 30, 31 are skipped) and the last two: never given
    assert fc.counts["targets"] == 60 - 4
    assert fc.counts["unmatched"] == 2  # rows 130, 131 have no row two indices before


def _write(path, values: np.ndarray) -> None:
    with open(path, "w") as f:
        f.write("time,y,load\n")
        for i, (y, load) in enumerate(values):
            f.write(f"{1_600_000_000 + 900 * i},{float(y)!r},{float(load)!r}\n")


@pytest.mark.parametrize("column", [0, 1])
def test_csv_path_future_values_never_change_earlier_forecasts(tmp_path, column):
    """Through iter_csv, the adapter, the model, the naive forecast and SNARIMAX."""
    x = _series(150, 5)
    cut = 97
    future = x.copy()
    future[cut + 1, column] += 25.0  # one value right after step `cut`
    _write(tmp_path / "a.csv", x)
    _write(tmp_path / "b.csv", future)
    kw = {"target": "y", "horizon": 4, "inputs": ["load"], "k1": 2, "lr": 0.01}
    a = forecast_csv(tmp_path / "a.csv", **kw)
    b = forecast_csv(tmp_path / "b.csv", **kw)
    made = slice(0, cut + 1)  # forecasts made at rows 0 .. cut
    for name in ("forecast", "naive", "snarimax"):
        assert np.array_equal(getattr(a, name)[made], getattr(b, name)[made]), name
    assert a.forecast[cut + 1] != b.forecast[cut + 1]
    assert math.isclose(a.period, 900.0)
