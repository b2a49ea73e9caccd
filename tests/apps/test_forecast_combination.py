"""The forecast command's online combination: no look-ahead, finite weights, bookkeeping.

Poisoning every value after a cut (the target, or NaN / inf cells, which the adapter masks
and counts) leaves every combined forecast made up to the cut, and every expert's,
bitwise unchanged; the weights stay finite and sum to one; the combination scores exactly
the forecasts whose targets arrived.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamrnn.apps.forecast import forecast_csv


def _series(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 50 + 4 * np.sin(2 * np.pi * t / 8) + np.cumsum(rng.normal(0, 0.3, n))


def _write(path, values) -> None:
    with open(path, "w") as f:
        f.write("time,y\n")
        for i, y in enumerate(values):
            f.write(f"{1_600_000_000 + 3600 * i},{y}\n")


@pytest.mark.parametrize(("poison", "season"), [("noise", None), ("nan", 8), ("inf", None)])
def test_combined_forecasts_up_to_t_never_depend_on_values_after_t(tmp_path, poison, season):
    y = _series(160, 2)
    cut = 90
    rng = np.random.default_rng(7)
    bad = [repr(float(v)) for v in y]
    for i in range(cut + 1, len(y)):
        bad[i] = {"nan": "nan", "inf": "inf"}.get(poison, repr(float(rng.normal(0, 1e4))))
    _write(tmp_path / "a.csv", [repr(float(v)) for v in y])
    _write(tmp_path / "b.csv", bad)
    kw = {"target": "y", "horizon": 3, "k1": 2, "lr": 0.01, "season": season}
    a = forecast_csv(tmp_path / "a.csv", **kw)
    b = forecast_csv(tmp_path / "b.csv", **kw)
    made = slice(0, cut + 1)
    for name in ("forecast", "rnn", "naive", "snarimax", "seasonal"):
        assert np.array_equal(getattr(a, name)[made], getattr(b, name)[made],
                              equal_nan=True), name
    if poison == "noise":
        assert not np.array_equal(a.forecast[cut + 1 :], b.forecast[cut + 1 :])
    for result in (a, b):
        w = np.array(list(result.weights.values()))
        assert np.isfinite(w).all() and (w >= 0).all() and math.isclose(w.sum(), 1.0,
                                                                       abs_tol=1e-3)
    # every forecast whose target arrived was scored by the combination, nothing else
    assert a.counts["mix_scored"] == int(a.scored.sum())
    assert b.counts["mix_scored"] == int(b.scored.sum())
    if poison != "noise":
        assert b.counts["non_finite"] == len(y) - cut - 1  # masked and counted


def test_without_combination_the_forecast_is_the_network_alone(tmp_path):
    _write(tmp_path / "a.csv", [repr(float(v)) for v in _series(80, 3)])
    kw = {"target": "y", "horizon": 2, "k1": 2, "lr": 0.01}
    alone = forecast_csv(tmp_path / "a.csv", combine=False, **kw)
    mixed = forecast_csv(tmp_path / "a.csv", **kw)
    assert np.array_equal(alone.forecast, alone.rnn) and alone.weights == {}
    assert np.array_equal(alone.rnn, mixed.rnn)  # the network does not see the combination
    assert sorted(mixed.weights) == ["last", "rnn", "snarimax"]


def test_the_seasonal_last_value_is_the_value_one_season_before_the_target(tmp_path):
    y = _series(60, 4)
    _write(tmp_path / "a.csv", [repr(float(v)) for v in y])
    result = forecast_csv(tmp_path / "a.csv", target="y", horizon=3, season=8, snarimax=False)
    rows = np.arange(len(y))
    expected = np.where(rows + 3 - 8 >= 0, y[np.maximum(rows + 3 - 8, 0)], y)
    assert np.array_equal(result.seasonal, expected)
    assert sorted(result.weights) == ["last", "rnn", "seasonal"]
