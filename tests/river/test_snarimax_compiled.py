"""CompiledSNARIMAX against river's SNARIMAX (make_snarimax's model and its kin).

Both learn the same series (noise, random walks, seasonal waves, constant runs, at levels
and scales from 1e-6 to 1e6; co2; AirlinePassengers; values so large that the sums
overflow) and forecast at random points: every forecast, and after every value the whole
state (lags, errors, scaler counts, means and variances, weights, intercept), must be
river's to the bit (NaN where river's is NaN). Bad settings and non-finite values are
refused with messages that name them, and a refused value changes nothing.
"""

from __future__ import annotations

import ast
import doctest
import math

import numpy as np
import pytest
import statsmodels.api as sm
from hypothesis import given, settings
from hypothesis import strategies as st
from river import datasets, linear_model, optim, preprocessing, time_series

from streamrnn.river._snarimax import CompiledSNARIMAX, _parts
from streamrnn.river.baselines import make_snarimax

KINDS = ("noise", "walk", "seasonal", "runs")
LEVELS = (0.0, 1.0, -50.0, 1e3, 1e6)
SCALES = (1e-6, 1e-2, 1.0, 1e2, 1e5)


def _river(p=3, d=1, q=3, lr=1e-3, intercept_lr=1e-3, clip=1.0):
    reg = linear_model.LinearRegression(optimizer=optim.SGD(lr), intercept_lr=intercept_lr,
                                        clip_gradient=clip)
    return time_series.SNARIMAX(p=p, d=d, q=q, regressor=preprocessing.StandardScaler() | reg)


def _same(a, b) -> bool:
    return np.array_equal(np.asarray(a, dtype=float), np.asarray(b, dtype=float),
                          equal_nan=True)


def _assert_same_state(fast: CompiledSNARIMAX, ref) -> None:
    hist, lags, errs, n, mean, var, _, w, misc, _, _ = _parts(fast.state, fast.p, fast.d,
                                                              fast.q)
    assert _same(hist[:int(misc[0])], list(ref.y_hist))
    assert _same(lags[:int(misc[1])], list(ref.y_diff))
    assert _same(errs[:int(misc[2])], list(ref.errors))
    scaler, reg = ref.regressor["StandardScaler"], ref.regressor["LinearRegression"]
    names = [f"y-{k + 1}" for k in range(fast.p)] + [f"e-{k + 1}" for k in range(fast.q)]
    seen = [name for name in names if name in reg.weights]
    assert set(seen) == set(reg.weights) == set(fast.weights)
    at = [names.index(name) for name in seen]
    assert _same(n[at], [scaler.counts[name] for name in seen])
    assert _same(mean[at], [scaler.means[name] for name in seen])
    assert _same(var[at], [scaler.vars[name] for name in seen])
    assert _same(w[at], [reg.weights[name] for name in seen])
    assert _same(fast.intercept, reg.intercept)


def _series(rng: np.random.Generator, kind: str, n: int, level: float, scale: float) -> list:
    if kind == "noise":
        v = rng.normal(size=n)
    elif kind == "walk":
        v = rng.normal(size=n).cumsum()
    elif kind == "seasonal":
        t, period = np.arange(n), int(rng.integers(2, 25))
        v = np.sin(2 * np.pi * t / period) + 0.1 * rng.normal(size=n)
    else:  # runs of equal values: variances of 0, ties
        v = np.repeat(rng.integers(-2, 3, size=n), rng.integers(1, 6, size=n))[:n]
    return [float(level + scale * x) for x in v]


def _run_both(fast, ref, ys, rng) -> None:
    """Forecasts at random points, the state after every value."""
    for y in ys:
        for _ in range(int(rng.integers(0, 3))):
            horizon = int(rng.integers(1, 7))
            assert _same(fast.forecast(horizon), ref.forecast(horizon))
        fast.learn_one(y)
        ref.learn_one(y)
        _assert_same_state(fast, ref)
    assert _same(fast.forecast(6), ref.forecast(6))


# -- the same numbers as river ---------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), kind=st.sampled_from(KINDS), n=st.integers(0, 200),
       level=st.sampled_from(LEVELS), scale=st.sampled_from(SCALES))
def test_make_snarimax_numbers_to_the_bit(seed, kind, n, level, scale):
    rng = np.random.default_rng(seed)
    _run_both(CompiledSNARIMAX(), make_snarimax(), _series(rng, kind, n, level, scale), rng)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), kind=st.sampled_from(KINDS), n=st.integers(0, 120),
       level=st.sampled_from(LEVELS), scale=st.sampled_from(SCALES), p=st.integers(0, 4),
       d=st.integers(0, 3), q=st.integers(0, 4), lr=st.sampled_from((1e-4, 1e-2, 0.3)),
       intercept_lr=st.sampled_from((0.0, 1e-3, 0.3)), clip=st.sampled_from((1e-3, 1.0, 1e12)))
def test_other_orders_and_rates_give_rivers_numbers(seed, kind, n, level, scale, p, d, q, lr,
                                                    intercept_lr, clip):
    rng = np.random.default_rng(seed)
    setting = dict(p=p, d=d, q=q, lr=lr, intercept_lr=intercept_lr, clip=clip)
    _run_both(CompiledSNARIMAX(**setting), _river(**setting),
              _series(rng, kind, n, level, scale), rng)


@pytest.mark.parametrize("d", [0, 1, 2])
def test_co2_weekly_whole_series(d):
    co2 = sm.datasets.co2.load_pandas().data["co2"].dropna().to_numpy().tolist()
    fast, ref = CompiledSNARIMAX(d=d), _river(d=d)
    for y in co2:
        fast.learn_one(y)
        ref.learn_one(y)
        assert fast.forecast(3) == ref.forecast(3)
    _assert_same_state(fast, ref)
    assert len(co2) == 2225 and all(math.isfinite(v) for v in fast.forecast(3))


@pytest.mark.parametrize("setting", [{}, dict(p=12, q=12, lr=0.01, intercept_lr=0.3)])
def test_airline_passengers_whole_series(setting):
    ys = [float(y) for _, y in datasets.AirlinePassengers()]
    fast, ref = CompiledSNARIMAX(**setting), _river(**setting)
    for y in ys:
        fast.learn_one(y)
        ref.learn_one(y)
        assert fast.forecast(12) == ref.forecast(12)
        _assert_same_state(fast, ref)


def test_the_docstring_shows_rivers_numbers():
    examples = doctest.DocTestParser().get_examples(CompiledSNARIMAX.__doc__)
    loop = next(e for e in examples if e.source.startswith("for y in "))
    ref = make_snarimax()
    for y in ast.literal_eval(loop.source[len("for y in "):loop.source.index(":")]):
        ref.learn_one(y)
    reg = ref.regressor["LinearRegression"]
    shown = [ast.literal_eval(e.want) for e in examples if e.want]
    assert shown == [[round(v, 6) for v in ref.forecast(3)],
                     (round(reg.intercept, 6), round(reg.weights["y-1"], 6))]


# -- overflow: river's non-finite numbers, no exception ---------------------------------


@pytest.mark.parametrize("top", [1e150, 1e200, 1e307])
def test_values_so_large_that_sums_overflow_give_rivers_nan(top):
    rng = np.random.default_rng(3)
    ys = [float(top * rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1.0)) for _ in range(60)]
    fast, ref = CompiledSNARIMAX(), make_snarimax()
    _run_both(fast, ref, ys, rng)
    if top > 1e160:  # squared deviations overflow: the variances, then everything, NaN
        assert all(math.isnan(v) for v in fast.forecast(3))


# -- refusals ------------------------------------------------------------------------


@pytest.mark.parametrize("name, value", [
    ("p", -1), ("p", 1.5), ("d", True), ("d", -2), ("q", "3"), ("lr", 0.0), ("lr", math.nan),
    ("intercept_lr", -1e-3), ("intercept_lr", math.inf), ("clip", 0), ("clip", math.inf)])
def test_bad_settings_are_refused_by_name(name, value):
    with pytest.raises(ValueError, match=rf"^{name} must "):
        CompiledSNARIMAX(**{name: value})


def test_non_finite_or_non_numeric_y_is_refused_and_changes_nothing():
    rng = np.random.default_rng(0)
    ys = _series(rng, "walk", 40, 10.0, 1.0)
    fast, ref = CompiledSNARIMAX(), make_snarimax()
    for i, y in enumerate(ys):
        if i % 7 == 3:
            for bad in (math.nan, math.inf, -math.inf, np.float64("nan"), "1.0", None):
                before = fast.state.copy()
                with pytest.raises(ValueError, match="^y must "):
                    fast.learn_one(bad)
                assert _same(fast.state, before)
        fast.learn_one(np.float64(y) if i % 2 else int(y) if y.is_integer() else y)
        ref.learn_one(y)
        _assert_same_state(fast, ref)


def test_exogenous_features_and_bad_horizons_are_refused_by_name():
    model = CompiledSNARIMAX()
    model.learn_one(1.0, {})
    model.learn_one(2.0, None)
    assert model.forecast(2, [{}, {}]) == model.forecast(2)
    with pytest.raises(ValueError, match="^x must "):
        model.learn_one(3.0, {"t": 1.0})
    for horizon in (0, -1, 2.0, True, "3"):
        with pytest.raises(ValueError, match="^horizon must "):
            model.forecast(horizon)
    for xs in ([{}], [{}, {"t": 1.0}]):
        with pytest.raises(ValueError, match="^xs must "):
            model.forecast(2, xs)
    assert model.forecast(np.int64(2)) == model.forecast(2)
