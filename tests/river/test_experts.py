"""ExpertMix: no look-ahead, per-horizon alignment, finite weights under bad values, regret.

The look-ahead tests feed a series whose values after a cut are poisoned (replaced by
huge, NaN or random numbers) and check that every weight and every combined forecast
made up to the cut is bitwise the same as with the true values: the weights used at
``t`` depend on nothing that arrived after ``t``. The alignment test checks that a
forecast for ``t + h`` moves horizon ``h``'s weights when ``y[t + h]`` arrives and not
before.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamrnn.river import RNNForecaster
from streamrnn.river.baselines import Combination
from streamrnn.river.experts import ExpertMix

METHODS = [("adahedge", "absolute"), ("adahedge", "gradient"), ("normalhedge", "absolute"),
           ("normalhedge", "gradient")]


def _experts(y: np.ndarray, horizons: int, seed: int) -> np.ndarray:
    """Three forecasters of y: (T, K=3, H); row t forecasts y[t + 1 .. t + H] from y[<= t]."""
    rng = np.random.default_rng(seed)
    t = len(y)
    out = np.empty((t, 3, horizons))
    for i in range(t):
        out[i, 0] = y[i]  # last value
        out[i, 1] = y[max(i - 1, 0)] + rng.normal(0, 1, horizons)  # a noisy one
        out[i, 2] = y[: i + 1].mean()  # the running mean
    return out


def _run(mix: ExpertMix, y: np.ndarray, f: np.ndarray, stop: int):
    """Predict at each origin t <= stop, then y[t + 1] arrives; the combined forecasts and
    every horizon's weights as they were at each origin."""
    combined, weights = [], []
    for t in range(stop + 1):
        weights.append([mix.weights(h).copy() for h in range(1, f.shape[2] + 1)])
        combined.append(mix.predict(t, f[t]))
        mix.update(t + 1, float(y[t + 1]))
    return combined, weights


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), cut=st.integers(3, 60), horizons=st.integers(1, 4),
       poison=st.sampled_from(["nan", "inf", "huge", "noise"]), which=st.integers(0, 3))
def test_forecasts_and_weights_up_to_t_never_depend_on_values_after_t(seed, cut, horizons,
                                                                      poison, which):
    method, loss = METHODS[which]
    rng = np.random.default_rng(seed)
    y = np.cumsum(rng.normal(0, 1, 80)) + 10
    bad = y.copy()
    tail = bad[cut + 1 :]
    tail[:] = {"nan": math.nan, "inf": math.inf, "huge": 1e300}.get(poison, 0.0) \
        if poison != "noise" else rng.normal(0, 100, tail.shape)
    f = _experts(y, horizons, seed)
    f_bad = f.copy()
    f_bad[cut + 1 :] = rng.normal(0, 1e6, f_bad[cut + 1 :].shape)  # forecasts made later
    a, wa = _run(ExpertMix(["last", "noisy", "mean"], method=method, loss=loss), y, f, 78)
    b, wb = _run(ExpertMix(["last", "noisy", "mean"], method=method, loss=loss), bad, f_bad,
                 78)
    for t in range(cut + 1):  # made at t <= cut: y[t + 1] (the first poisoned) not yet seen
        assert np.array_equal(a[t], b[t])
        for h in range(horizons):
            assert np.array_equal(wa[t][h], wb[t][h])
    assert any(not np.array_equal(a[t], b[t]) for t in range(cut + 1, 79))


def test_a_forecast_for_t_plus_h_moves_horizon_h_only_when_y_t_plus_h_arrives():
    mix = ExpertMix(["a", "b"])
    start = [mix.weights(h) for h in (1, 2, 3)]
    mix.predict(0, [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])  # made at 0 for steps 1, 2, 3
    for step in (1, 2, 3):
        mix.update(step, 1.0)  # a is right, b is wrong
        for h in (1, 2, 3):
            moved = not np.array_equal(mix.weights(h), start[h - 1])
            assert moved == (h <= step), (step, h)
    assert mix.counts["scored"] == 3


def test_each_horizon_learns_its_own_best_expert():
    # a is right one step ahead, b two steps ahead
    mix = ExpertMix(["a", "b"], method="adahedge")
    y = np.sin(np.arange(300) / 3.0)
    for t in range(297):
        mix.predict(t, [[y[t + 1], y[t + 1] + 1], [y[t + 2] + 1, y[t + 2]]])
        mix.update(t + 1, y[t + 1])
    assert mix.weights(1)[0] > 0.99 and mix.weights(2)[1] > 0.99


def test_a_forecast_cannot_be_made_after_its_future_was_seen():
    mix = ExpertMix(["a", "b"])
    mix.update(5, 1.0)
    with pytest.raises(ValueError, match="origin must be >= the last step updated"):
        mix.predict(4, [[1.0], [2.0]])
    with pytest.raises(ValueError, match="step must increase"):
        mix.update(5, 1.0)


@settings(max_examples=30, deadline=None)
@given(
    steps=st.lists(st.tuples(
        st.sampled_from([0.0, 1.0, -3.0, 1e300, -1e300, math.nan, math.inf, -math.inf]),
        st.lists(st.sampled_from([0.0, 2.0, 1e300, math.nan, math.inf, -math.inf]),
                 min_size=3, max_size=3)), min_size=1, max_size=40),
    which=st.integers(0, 3),
)
def test_weights_stay_finite_and_sum_to_one_under_nan_and_inf(steps, which):
    method, loss = METHODS[which]
    mix = ExpertMix(["a", "b", "c"], method=method, loss=loss)
    skipped = 0
    for t, (y, forecasts) in enumerate(steps):
        out = mix.predict(t, np.array(forecasts).reshape(3, 1))
        if any(math.isfinite(v) for v in forecasts):
            assert math.isfinite(out[0]) or abs(out[0]) == math.inf  # a mean of finite ones
        before = mix.counts["skipped_targets"] + mix.counts["scored"]
        mix.update(t + 1, y)
        after = mix.counts["skipped_targets"] + mix.counts["scored"]
        assert after == before + 1  # every arrived target is scored or counted as skipped
        skipped += not math.isfinite(y)
        w = mix.weights(1)
        assert np.isfinite(w).all() and (w >= 0).all() and math.isclose(w.sum(), 1.0)
    assert mix.counts["skipped_targets"] >= skipped


@pytest.mark.parametrize("method", ["adahedge", "normalhedge"])
def test_regret_to_the_best_expert_stays_within_the_bound(method):
    # losses in [0, S]: the mix's absolute loss is at most the weighted losses, whose
    # regret is O(S sqrt(T ln K)); checked with a loose constant
    rng = np.random.default_rng(0)
    t, k, s = 2000, 4, 1.0
    y = rng.normal(0, 1, t)
    bias = np.array([0.1, 0.3, 0.5, 0.7])
    mix = ExpertMix([f"e{i}" for i in range(k)], method=method)
    total, experts = 0.0, np.zeros(k)
    for i in range(t):
        f = np.clip(y[i] + bias * rng.choice([-1, 1], k), y[i] - s, y[i] + s)
        p = mix.predict(i, f[:, None])[0]
        mix.update(i + 1, y[i])
        total += abs(p - y[i])
        experts += np.abs(f - y[i])
    assert total - experts.min() <= 2 * s * math.sqrt(t * math.log(k)) + 10 * s
    assert total <= experts.min() * 1.05


def test_bad_configuration_is_named():
    with pytest.raises(ValueError, match="names must be distinct"):
        ExpertMix(["a", "a"])
    with pytest.raises(ValueError, match="method must be one of"):
        ExpertMix(["a", "b"], method="hedge")
    with pytest.raises(ValueError, match="prior must be 2 finite non-negative"):
        ExpertMix(["a", "b"], prior=[1.0, -1.0])
    with pytest.raises(ValueError, match=r"forecasts must have shape \(2, N\)"):
        ExpertMix(["a", "b"]).predict(0, [1.0, 2.0])


def test_the_combined_forecast_is_a_convex_combination_of_the_experts():
    rng = np.random.default_rng(1)
    mix = ExpertMix(["a", "b", "c"], loss="gradient")
    for t in range(200):
        f = rng.normal(0, 1, (3, 2))
        out = mix.predict(t, f)
        assert (out >= f.min(0) - 1e-12).all() and (out <= f.max(0) + 1e-12).all()
        mix.update(t + 1, float(rng.normal()))


def test_river_forecaster_forecasts_up_to_t_ignore_values_after_t():
    rng = np.random.default_rng(3)
    y = 50 + np.cumsum(rng.normal(0, 1, 120))
    bad = y.copy()
    bad[70:] = rng.normal(0, 1e4, 50)

    def run(values):
        model, out = RNNForecaster(hidden_size=8, seed=0), []
        for v in values:
            model.learn_one(float(v))
            out.append(model.forecast(3))
        return out

    a, b = run(y), run(bad)
    assert a[:70] == b[:70]  # made after y[69], before y[70] (the first poisoned) arrived
    assert a[70:] != b[70:]


def test_river_forecaster_without_combination_is_the_network_alone():
    alone, mixed = RNNForecaster(hidden_size=8, seed=0, combine=False), RNNForecaster(
        hidden_size=8, seed=0)
    for v in np.sin(np.arange(150) / 4.0) * 10 + 20:
        alone.learn_one(float(v))
        mixed.learn_one(float(v))
    assert alone.forecast(3) == mixed._own_forecast(3)  # same network, same weights
    weights = mixed._combo.mix.weights(3)
    assert np.isfinite(weights).all() and np.isclose(weights.sum(), 1.0)
    assert set(mixed._combo.names) == {"model", "last", "snarimax"}


def test_combination_learns_horizons_nobody_asked_for():
    combo = Combination(snarimax=False, horizon=2)
    for t in range(50):
        combo.learn_one(float(t), lambda h: [0.0] * h)
    assert combo.mix.weights(2)[1] > 0.99  # the last value, learned without forecast calls


def test_normalhedge_weights_equal_a_brute_force_solution_of_its_equation():
    from streamrnn.river._mix import _normalhedge

    rng = np.random.default_rng(0)
    for _ in range(300):
        k = int(rng.integers(2, 6))
        regret = rng.normal(0, rng.choice([1e-3, 1.0, 100.0]), k)
        prior = rng.dirichlet(np.ones(k))
        r = np.maximum(regret, 0.0)
        w, u = np.empty(k), np.array([float(rng.choice([0.0, 1e-6, 1.0, 1e6]))])
        _normalhedge(0, prior, regret[None, :].copy(), u, w)
        w = w / w.sum()
        if not (r > 0).any():
            np.testing.assert_allclose(w, prior, rtol=1e-12)
            continue
        half = r**2 / 2
        lo, hi = half.max() / 1000, half.max() * 10  # bisection on c: mean = e
        for _ in range(200):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if np.log(np.dot(prior, np.exp(half / mid))) > 1 else (lo, mid)
        ref = prior * r / hi * np.exp(half / hi)
        np.testing.assert_allclose(w, ref / ref.sum(), atol=1e-6)
