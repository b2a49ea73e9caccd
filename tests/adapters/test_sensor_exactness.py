"""Exactness of the sensor adapter against direct offline computations.

Resampling (hold / linear) vs ``np.searchsorted`` / ``np.interp`` over each channel's
observations; mask and age vs their definitions; Welford and EMA normalisation vs the
closed-form (weighted) mean and variance of the observations up to each row; calendar
phases vs known dates; gap skipping vs a count by hand.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
import torch

from streamrnn.adapters.sensor import SensorAdapter

CHANNELS = ["a", "b", "c"]


def _stream(seed: int, n: int = 200):
    """Sorted irregular timestamps; each record reports a random non-empty subset."""
    rng = np.random.default_rng(seed)
    times = 10.0 + np.cumsum(rng.exponential(0.7, n))
    records, obs = [], {c: ([], []) for c in CHANNELS}
    for t in times:
        chosen = [c for c in CHANNELS if rng.random() < 0.6] or [CHANNELS[0]]
        values = {c: float(rng.normal(5.0, 3.0)) for c in chosen}
        records.append((float(t), values))
        for c, v in values.items():
            obs[c][0].append(float(t))
            obs[c][1].append(v)
    return records, {c: (np.array(ts), np.array(vs)) for c, (ts, vs) in obs.items()}


def _offline(records, period):
    start = records[0][0]
    k0, k1 = math.ceil(start / period), math.floor(records[-1][0] / period)
    return np.arange(k0, k1 + 1) * period, start


def _adapter_rows(records, chunk=17, **config):
    ad = SensorAdapter(CHANNELS, dtype=torch.float64, max_gap=math.inf, **config)
    parts, times = [], []
    for i in range(0, len(records), chunk):
        parts.append(ad.push(records[i : i + chunk]))
        times.append(ad.last_times)
    parts.append(ad.flush())
    times.append(ad.last_times)
    return torch.cat(parts).numpy(), torch.cat(times).numpy(), ad


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("period", [0.25, 1.0])
@pytest.mark.parametrize("method", ["hold", "linear"])
def test_resampled_values_mask_and_age_match_offline(seed, period, method):
    records, obs = _stream(seed)
    rows, times, _ = _adapter_rows(records, period=period, method=method, normalize=False)
    grid, start = _offline(records, period)
    np.testing.assert_array_equal(times, grid)
    size = len(CHANNELS)
    for j, c in enumerate(CHANNELS):
        ts, vs = obs[c]
        last = np.searchsorted(ts, grid, side="right") - 1  # last observation <= row
        if method == "hold":
            expected = np.where(last >= 0, vs[np.maximum(last, 0)], 0.0)
        else:
            expected = np.nan_to_num(np.interp(grid, ts, vs, left=np.nan), nan=0.0)
        np.testing.assert_allclose(rows[:, j], expected, rtol=0, atol=1e-12)
        since = np.where(last >= 0, ts[np.maximum(last, 0)], start)
        age = (grid - since) / period
        np.testing.assert_allclose(rows[:, 2 * size + j], age, rtol=0, atol=1e-12)
        fresh = (last >= 0) & (grid - since < period)
        np.testing.assert_array_equal(rows[:, size + j], fresh.astype(float))


@pytest.mark.parametrize("ema", [None, 0.2])
def test_normalisation_matches_closed_form_statistics(ema):
    records, obs = _stream(3, n=120)
    period = 0.5
    raw, _, _ = _adapter_rows(records, period=period, normalize=False)
    normed, times, ad = _adapter_rows(records, period=period, ema=ema, eps=1e-8)
    for j, c in enumerate(CHANNELS):
        ts, vs = obs[c]
        for r, g in enumerate(times):
            x = vs[ts <= g]
            if x.size == 0:
                assert normed[r, j] == 0.0
                continue
            if ema is None:
                weights = np.full(x.size, 1.0 / x.size)
            else:  # EW weights: (1-a)^(n-1) for the first, a (1-a)^(n-i) for the rest
                weights = ema * (1.0 - ema) ** np.arange(x.size - 1, -1, -1.0)
                weights[0] = (1.0 - ema) ** (x.size - 1)
            mean = np.sum(weights * x)
            var = np.sum(weights * (x - mean) ** 2)
            expected = (raw[r, j] - mean) / math.sqrt(var + 1e-8)
            assert normed[r, j] == pytest.approx(expected, abs=1e-8)
        x = vs
        if ema is None:
            assert ad.mean[j].item() == pytest.approx(x.mean(), abs=1e-12)
            assert ad.std[j].item() == pytest.approx(x.std(), abs=1e-12)


def test_calendar_phases_on_known_dates():
    monday_6am = dt.datetime(2024, 1, 1, 6, tzinfo=dt.timezone.utc)  # a Monday
    ad = SensorAdapter(["x"], 3600.0, calendar=True, normalize=False, dtype=torch.float64)
    assert ad.feature_names[-4:] == ["hour_sin", "hour_cos", "dow_sin", "dow_cos"]
    thursday_6pm = monday_6am + dt.timedelta(days=3, hours=12)
    cal = torch.cat([ad.push([(monday_6am, {"x": 1.0}), (thursday_6pm, {})]), ad.flush()])
    cal = cal[:, -4:]
    assert cal.shape == (3 * 24 + 13, 4)
    first, last = cal[0].tolist(), cal[-1].tolist()
    assert first == pytest.approx(
        [1.0, 0.0, math.sin(2 * math.pi * 0.25 / 7), math.cos(2 * math.pi * 0.25 / 7)], abs=1e-12
    )
    # Thursday 18:00 is 3.75 days into the week.
    assert last == pytest.approx(
        [-1.0, 0.0, math.sin(2 * math.pi * 3.75 / 7), math.cos(2 * math.pi * 3.75 / 7)], abs=1e-12
    )
    local = SensorAdapter(["x"], 3600.0, calendar=True, utc_offset=-6 * 3600.0)
    local.push([(monday_6am, {"x": 1.0})])
    assert local.flush()[0, -4:-2].tolist() == pytest.approx([0.0, 1.0], abs=1e-12)


def test_timestamp_forms_agree():
    stamp = dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.timezone.utc)
    forms = [
        stamp.timestamp(),
        stamp,
        stamp.replace(tzinfo=None),
        "2024-05-06T07:08:09Z",
        "2024-05-06T09:08:09+02:00",
        np.datetime64("2024-05-06T07:08:09"),
        str(stamp.timestamp()),
    ]
    for form in forms:
        ad = SensorAdapter(["x"], 1.0, normalize=False)
        ad.push([(form, {"x": 2.0})])
        ad.flush()
        assert ad.last_times.tolist() == [stamp.timestamp()], form


def test_a_gap_longer_than_max_gap_emits_a_bounded_number_of_rows():
    ad = SensorAdapter(["x"], 1.0, max_gap=10.0, normalize=False, dtype=torch.float64)
    days = 3 * 86400.0
    rows = ad.push([(0.0, {"x": 1.0}), (1.0, {"x": 2.0}), (days, {"x": 3.0})])
    assert ad.last_times.tolist() == [float(k) for k in range(12)]  # up to 1 + max_gap
    assert rows[-1, 0].item() == 2.0 and rows[-1, 2].item() == 10.0  # held, age 10
    tail = ad.flush()  # the record after the gap is placed: rows 12 .. days - 1 skipped
    assert ad.counts["gaps"] == 1 and ad.counts["skipped_rows"] == days - 12
    assert ad.last_times.tolist() == [days] and tail[0].tolist() == [3.0, 1.0, 0.0]


def test_heartbeats_keep_rows_flowing_through_a_silence():
    ad = SensorAdapter(["x"], 1.0, max_gap=5.0, normalize=False, dtype=torch.float64)
    beats = [(float(t), {}) for t in range(2, 40, 3)]
    ad.push([(0.0, {"x": 1.0}), *beats, (40.0, {"x": 2.0})])
    ad.flush()
    assert ad.counts["gaps"] == 0 and ad.counts["rows"] == 41


def test_linear_holds_across_a_gap_wider_than_interp_limit():
    ad = SensorAdapter(
        ["x", "y"],
        1.0,
        method="linear",
        interp_limit=3.0,
        normalize=False,
        mask_features=False,
        age_features=False,
        dtype=torch.float64,
    )
    rows = [ad.push([(0.0, {"x": 0.0, "y": 0.0}), (2.0, {"x": 2.0})])]
    # y has no next observation yet; rows wait until 3 s past y's last one have gone by.
    rows.append(ad.push([(2.5, {"x": 2.5}), (3.5, {"x": 3.5})]))
    assert ad.last_times.tolist() == [0.0, 1.0, 2.0]  # row 3.0 waits for x's next value
    rows.append(ad.push([(4.0, {"y": 8.0})]))
    rows.append(ad.flush())
    out = torch.cat(rows)
    assert out[:, 1].tolist() == [0.0, 0.0, 0.0, 0.0, 8.0]  # 0 -> 8 spans 4 s > 3 s: held
    assert out[:, 0].tolist() == [0.0, 1.0, 2.0, 3.0, 3.5]
