"""Chunk invariance of the sensor adapter: any grouping of records, any resume point.

Property: pushing a record sequence in any grouping (including empty and one-record
pushes), optionally checkpointing through JSON in between, gives the same rows, grid
times and counts as one push of the whole sequence, bit for bit.
"""

from __future__ import annotations

import json
import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from streamrnn.adapters.sensor import SensorAdapter

CHANNELS = ["a", "b", "c"]
SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def record_streams(draw):
    """Irregular records with reordering, duplicates, NaN / None / junk and long gaps."""
    n = draw(st.integers(0, 40))
    t, records = 100.0, []
    for _ in range(n):
        kind = draw(st.sampled_from(["step"] * 6 + ["back", "same", "gap"]))
        if kind == "step":
            t += draw(st.floats(0.01, 3.0))
        elif kind == "gap":
            t += draw(st.floats(20.0, 500.0))
        stamp = t - draw(st.floats(0.0, 4.0)) if kind == "back" else t
        # Mostly one or two channels per record, so channels interleave; sometimes
        # an undeclared one, none at all (a heartbeat), or a bad value.
        names = draw(st.lists(st.sampled_from(CHANNELS), min_size=1, max_size=2, unique=True))
        if draw(st.integers(0, 9)) == 0:
            names = draw(st.sampled_from([[], [*names, "zz"]]))
        values = {}
        for name in names:
            bad = draw(st.integers(0, 7)) == 0
            values[name] = draw(
                st.sampled_from([math.nan, math.inf, None, "junk", "7.5"])
                if bad
                else st.floats(-50, 50)
            )
        records.append((stamp, values))
    return records


def _splits(draw_cuts, n):
    cuts = sorted(set(draw_cuts))
    return [c for c in cuts if 0 <= c <= n]


def _run(config, records, cuts, resume_at=None):
    ad = SensorAdapter(CHANNELS, **config)
    rows, times = [], []
    bounds = [0, *cuts, len(records)]
    for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        if resume_at is not None and i == resume_at:
            state = json.loads(json.dumps(ad.state_dict()))
            ad = SensorAdapter(CHANNELS, **config)
            ad.load_state_dict(state)
        rows.append(ad.push(records[lo:hi]))
        times.append(ad.last_times)
    rows.append(ad.flush())
    times.append(ad.last_times)
    return torch.cat(rows), torch.cat(times), ad.counts


CONFIGS = st.fixed_dictionaries(
    {
        "period": st.sampled_from([0.5, 1.0, 0.3]),
        "method": st.sampled_from(["hold", "linear"]),
        "nan_policy": st.sampled_from(["mask", "hold"]),
        "lateness": st.sampled_from([0.0, 1.5, 5.0]),
        "max_gap": st.sampled_from([None, 30.0, math.inf]),
        "interp_limit": st.sampled_from([None, 2.0]),
        "ema": st.sampled_from([None, 0.3]),
        "calendar": st.booleans(),
        "dtype": st.just(torch.float64),
    }
)


@SETTINGS
@given(records=record_streams(), config=CONFIGS, cuts=st.lists(st.integers(0, 40), max_size=8))
def test_any_grouping_gives_the_same_rows(records, config, cuts):
    whole = _run(config, records, [])
    parts = _run(config, records, _splits(cuts, len(records)))
    assert torch.equal(whole[0], parts[0])
    assert torch.equal(whole[1], parts[1])
    assert whole[2] == parts[2]
    assert whole[0].shape[1] == SensorAdapter(CHANNELS, **config).num_features
    assert torch.isfinite(whole[0]).all()


@SETTINGS
@given(
    records=record_streams(),
    config=CONFIGS,
    cuts=st.lists(st.integers(0, 40), min_size=1, max_size=5),
    data=st.data(),
)
def test_resuming_from_a_json_checkpoint_changes_nothing(records, config, cuts, data):
    cuts = _splits(cuts, len(records))
    resume_at = data.draw(st.integers(0, len(cuts)))
    whole = _run(config, records, [])
    resumed = _run(config, records, cuts, resume_at=resume_at)
    assert torch.equal(whole[0], resumed[0])
    assert torch.equal(whole[1], resumed[1])
    assert whole[2] == resumed[2]


@SETTINGS
@given(
    records=record_streams(),
    cuts=st.lists(st.integers(0, 40), max_size=8),
    ema=st.sampled_from([None, 0.1]),
)
def test_normalisation_statistics_are_chunk_invariant(records, cuts, ema):
    def stats(cut_list):
        ad = SensorAdapter(CHANNELS, 1.0, ema=ema, lateness=2.0)
        bounds = [0, *cut_list, len(records)]
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            ad.push(records[lo:hi])
        ad.flush()
        return ad.mean, ad.std

    mean_a, std_a = stats([])
    mean_b, std_b = stats(_splits(cuts, len(records)))
    assert torch.equal(mean_a, mean_b) and torch.equal(std_a, std_b)


def test_frozen_statistics_stay_put_and_still_apply():
    ad = SensorAdapter(["x"], 1.0, mask_features=False, age_features=False)
    ad.push([(0.0, {"x": 1.0}), (1.0, {"x": 3.0}), (2.0, {"x": 5.0})])
    ad.freeze()
    mean, std = ad.mean.clone(), ad.std.clone()
    rows = ad.push([(3.0, {"x": 100.0}), (4.0, {"x": 7.0})])
    assert ad.frozen and torch.equal(ad.mean, mean) and torch.equal(ad.std, std)
    # Rows 0 and 1 were out when frozen, so the statistics hold x = 1, 3 (mean 2, var 1);
    # row 2.0 holds 5, row 3.0 holds 100, both standardised with those.
    scale = math.sqrt(1.0 + 1e-8)
    expected = torch.tensor([[(5.0 - 2.0) / scale], [(100.0 - 2.0) / scale]])
    torch.testing.assert_close(rows, expected)
    ad.unfreeze()
    ad.push([(5.0, {"x": 1.0})])
    assert not torch.equal(ad.mean, mean)
