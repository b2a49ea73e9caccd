"""The one running mean / variance (streamrnn.utils.RunningMoments): exact against numpy in
any chunking, and the compiled copy of the river feature scaler equals it bit for bit."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamrnn.river._scale import ColumnScaler, RunningScaler
from streamrnn.utils import RunningMoments


def _data(seed: int, rows: int, cols: int, offset: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return offset + rng.standard_normal((rows, cols)) * rng.uniform(0.1, 10, cols)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), rows=st.integers(1, 60),
       cuts=st.lists(st.integers(0, 60), max_size=6),
       offset=st.sampled_from([0.0, 1e3, -1e6]))
def test_every_path_equals_numpy_in_any_chunking(seed, rows, cuts, offset):
    x = _data(seed, rows, 3, offset)
    bounds = sorted({0, rows, *[c for c in cuts if c < rows]})
    block, step, one = RunningMoments(3), RunningMoments(3), RunningMoments(3)
    means, variances = [], []
    for a, b in zip(bounds, bounds[1:], strict=False):
        m, v = block.extend(x[a:b])
        means.append(m)
        variances.append(v)
    for row in x:
        step.update(row)
        for i in range(3):
            one.add(i, float(row[i]))
    want_mean = np.cumsum(x, 0) / np.arange(1, rows + 1)[:, None]
    want_var = np.array([x[: t + 1].var(0) for t in range(rows)])
    scale = np.abs(x).max() ** 2
    np.testing.assert_allclose(np.concatenate(means), want_mean, rtol=1e-12, atol=1e-12 * scale)
    np.testing.assert_allclose(np.concatenate(variances), want_var, rtol=1e-9,
                               atol=1e-12 * scale)
    assert step.n == one.n == block.n == [float(rows)] * 3
    assert step.mean == one.mean  # the same Welford steps
    np.testing.assert_allclose(block.mean, one.mean, rtol=1e-12, atol=1e-12 * np.sqrt(scale))
    np.testing.assert_allclose(block.var(), one.var(), rtol=1e-9, atol=1e-12 * scale)
    np.testing.assert_allclose(one.var(ddof=1), x.var(0, ddof=1) if rows > 1 else 0.0,
                               rtol=1e-9, atol=1e-12 * scale)


def test_observed_mask_skips_channels_and_frozen_skips_all():
    m = RunningMoments(2)
    m.update([1.0, 5.0], observed=[True, False])
    m.update([3.0, 7.0], observed=[True, True])
    assert m.n == [2.0, 1.0] and m.mean == [2.0, 7.0]
    m.frozen = True
    m.update([100.0, 100.0])
    m.add(0, 100.0)
    assert m.n == [2.0, 1.0]


def test_ema_is_the_weighted_mean_and_variance():
    x, a = _data(3, 50, 1, 2.0)[:, 0], 0.2
    m = RunningMoments(1, ema=a)
    for v in x:
        m.add(0, float(v))
    w = np.array([(1 - a) ** (len(x) - 1)] + [a * (1 - a) ** (len(x) - 1 - i)
                                              for i in range(1, len(x))])
    mean = (w * x).sum()
    assert m.mean[0] == pytest.approx(mean, rel=1e-12)
    assert m.var()[0] == pytest.approx((w * (x - mean) ** 2).sum(), rel=1e-9)
    with pytest.raises(ValueError, match="extend needs ema=None"):
        m.extend(x[:, None])


def test_state_round_trips_through_json_exactly():
    m = RunningMoments(2)
    for row in _data(1, 9, 2, 7.0):
        m.update(row)
    twin = RunningMoments(2)
    twin.load(json.loads(json.dumps(m.state())))
    assert twin.state() == m.state()
    with pytest.raises(ValueError, match="must have 2 entries, got 3"):
        twin.load({"n": [1, 2, 3], "mean": [0, 0], "m2": [0, 0], "frozen": False})
    with pytest.raises(ValueError, match="size must be a positive int"):
        RunningMoments(0)


def test_the_compiled_column_scaler_is_the_same_statistics_bit_for_bit():
    rng = np.random.default_rng(0)
    scaler, ref, row = ColumnScaler(4), RunningMoments(4), np.zeros(4)
    for _ in range(300):
        cols = np.flatnonzero(rng.random(4) < 0.7)
        vals = rng.standard_normal(len(cols)) * 3 + 10
        assert scaler.gather_scale(cols, vals, learn=True, scale=True, out=row) == -1
        for c, v in zip(cols, vals, strict=True):
            ref.add(int(c), float(v))
            std = ref.std(int(c), ddof=1)
            assert row[c] == (v - ref.mean[c]) / (std if std > 0 else 1.0)
    assert scaler.n.tolist() == ref.n and scaler.mean.tolist() == ref.mean
    assert scaler.m2.tolist() == ref.m2


def test_the_target_scaler_is_built_on_it():
    s, ref = RunningScaler(), RunningMoments(1)
    for v in (4.0, 4.0, 1.0, 9.5):
        got = s.update_scale(v)
        ref.add(0, v)
        std = ref.std(0, ddof=1) or 1.0
        assert got == (v - ref.mean[0]) / std and s.unscale(got) == pytest.approx(v)
