"""Bad input to the sensor adapter: a clear error or a counted rule, never a poisoned state.

Covers configuration, malformed records and timestamps, NaN / inf / missing /
non-numeric values under each ``nan_policy``, late / reordered / duplicate records,
undeclared, late-starting and vanishing channels, and checkpoints that do not fit.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from streamrnn.adapters.sensor import SensorAdapter


def _adapter(**config):
    base = {"normalize": False, "dtype": torch.float64}
    return SensorAdapter(["x", "y"], 1.0, **{**base, **config})


# -- configuration -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"channels": []}, "channels must name at least one"),
        ({"channels": ["x", "x"]}, r"channels must be unique, got \['x'\]"),
        ({"channels": ["x", 3]}, "channels must be non-empty strings, got 3"),
        ({"channels": "xy"}, "channels must be a list"),
        ({"period": 0.0}, "period must be a finite number > 0.0, got 0.0"),
        ({"period": math.nan}, "period must be a finite number > 0.0, got nan"),
        ({"period": "1"}, "period must be a finite number > 0.0, got '1'"),
        ({"method": "cubic"}, "method must be one of 'hold' | 'linear', got 'cubic'"),
        ({"nan_policy": "ignore"}, "nan_policy must be one of"),
        ({"lateness": -1.0}, "lateness must be a finite number >= 0.0, got -1.0"),
        ({"max_gap": 0.0}, "max_gap must be a number > 0.0, got 0.0"),
        ({"interp_limit": -2.0}, "interp_limit must be a number > 0.0, got -2.0"),
        ({"ema": 0.0}, "ema must be a finite number > 0.0, got 0.0"),
        ({"ema": 1.5}, r"ema must be in \(0, 1\], got 1.5"),
        ({"eps": 0.0}, "eps must be a finite number > 0.0, got 0.0"),
        ({"normalize": 1}, "normalize must be a bool, got 1"),
        ({"calendar": "yes"}, "calendar must be a bool"),
        ({"dtype": torch.int64}, "dtype must be a floating torch.dtype"),
    ],
)
def test_bad_configuration_names_parameter_rule_and_value(kwargs, match):
    args = {"channels": ["x"], "period": 1.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        SensorAdapter(args.pop("channels"), args.pop("period"), **args)


# -- malformed records ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("records", "match"),
    [
        ({"t": 1.0}, "records must be an iterable of"),
        ("0,1", "records must be an iterable of"),
        (42, "records must be an iterable of"),
        ([(1.0, {"x": 1.0}, "extra")], r"records\[0\] must be a \(timestamp"),
        ([5.0], r"records\[0\] must be a \(timestamp"),
        ([(3.0, [1.0])], r"records\[0\] values must be a mapping"),
        ([(0.0, {}), ("yesterday", {"x": 1.0})], r"records\[1\] timestamp must be float .* ISO"),
        ([(math.nan, {"x": 1.0})], r"records\[0\] timestamp must be finite"),
        ([(True, {"x": 1.0})], r"records\[0\] timestamp must be float seconds"),
        ([(object(), {"x": 1.0})], r"records\[0\] timestamp must be float seconds"),
    ],
)
def test_malformed_records_raise_before_anything_changes(records, match):
    ad = _adapter()
    ad.push([(0.0, {"x": 1.0}), (0.5, {"y": 2.0})])
    before = json.dumps(ad.state_dict())
    with pytest.raises(ValueError, match=match):
        ad.push(records)
    assert json.dumps(ad.state_dict()) == before


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, None, "abc", [1.0]])
def test_nan_policy_raise_names_channel_and_time_and_applies_nothing(bad):
    ad = _adapter(nan_policy="raise")
    before = json.dumps(ad.state_dict())
    with pytest.raises(ValueError, match=r"nan_policy='raise': records\[1\] \(t=2.0\) channel 'y'"):
        ad.push([(1.0, {"x": 1.0}), (2.0, {"x": 2.0, "y": bad})])
    assert json.dumps(ad.state_dict()) == before


def test_nan_policy_mask_drops_bad_values_and_counts_them():
    ad = _adapter(nan_policy="mask")
    records = [
        (0.0, {"x": 1.0, "y": 5.0}),
        (1.0, {"x": math.nan, "y": None}),
        (2.0, {"x": "oops", "y": math.inf}),
        (3.0, {"x": "4.5"}),
    ]
    out = torch.cat([ad.push(records), ad.flush()])
    # columns: x, y, x:mask, y:mask, x:age, y:age
    assert out[:, 0].tolist() == [1.0, 1.0, 1.0, 4.5]  # held through the bad values
    assert out[:, 2].tolist() == [1.0, 0.0, 0.0, 1.0]
    assert out[:, 4].tolist() == [0.0, 1.0, 2.0, 0.0]
    assert ad.counts["non_finite"] == 2 and ad.counts["missing"] == 1
    assert ad.counts["invalid"] == 1 and ad.counts["held"] == 0


def test_nan_policy_hold_repeats_the_last_good_value_as_an_observation():
    ad = SensorAdapter(["x"], 1.0, nan_policy="hold", dtype=torch.float64)
    ad.push(
        [
            (0.0, {"x": math.nan}),
            (1.0, {"x": 2.0}),
            (2.0, {"x": 4.0}),
            (3.0, {"x": math.nan}),
            (4.0, {"x": None}),
        ]
    )
    out = ad.flush()
    # t=0 has no good value yet: dropped. t=3, 4 repeat 4.0 with mask 1, age 0.
    assert ad.last_times.tolist() == [4.0]
    assert ad.counts["held"] == 2 and ad.counts["non_finite"] == 2
    assert out[0, 1:].tolist() == [1.0, 0.0]
    assert ad.mean.item() == 3.0  # repairs do not enter the statistics


def test_outputs_stay_finite_whatever_the_values():
    ad = SensorAdapter(["x", "y"], 0.5, method="linear", nan_policy="hold")
    records = [
        (t * 0.3, {"x": v, "y": -v})
        for t, v in enumerate([1e300, -1e300, math.nan, 0.0, math.inf, 1e-300, 5.0])
    ]
    out = torch.cat([ad.push(records), ad.flush()])
    assert out.shape[0] > 0 and torch.isfinite(out).all()


# -- order, duplicates, channels -----------------------------------------------------
def test_late_records_are_dropped_and_reordered_ones_placed():
    shuffled = [
        (0.0, {"x": 0.0}),
        (2.0, {"x": 2.0}),
        (1.0, {"x": 1.0}),
        (3.0, {"x": 3.0}),
        (0.5, {"x": 9.0}),
        (4.0, {"x": 4.0}),
    ]
    ad = _adapter(lateness=1.5)
    out = torch.cat([ad.push(shuffled), ad.flush()])
    assert ad.counts["reordered"] == 1 and ad.counts["late"] == 1  # 1.0 placed; 0.5 too old
    ordered = _adapter(lateness=1.5)
    ref = torch.cat([ordered.push(sorted(shuffled[:4] + shuffled[5:])), ordered.flush()])
    assert torch.equal(out, ref)
    strict = _adapter()
    strict.push(shuffled)
    assert strict.counts["late"] == 2 and strict.counts["reordered"] == 0


def test_timestamps_going_backwards_after_flush_are_late():
    ad = _adapter()
    ad.push([(0.0, {"x": 1.0}), (2.0, {"x": 2.0})])
    ad.flush()
    assert ad.push([(2.0, {"y": 1.0}), (1.0, {"x": 5.0})]).shape == (0, 6)
    assert ad.counts["late"] == 2


def test_duplicate_timestamps_first_value_wins_other_channels_merge():
    ad = _adapter()
    ad.push([(0.0, {"x": 1.0}), (0.0, {"x": 7.0, "y": 2.0}), (0.0, {"y": 8.0})])
    out = ad.flush()
    assert out[0, :4].tolist() == [1.0, 2.0, 1.0, 1.0]
    assert ad.counts["duplicate"] == 2 and ad.counts["records"] == 3


def test_unknown_channels_are_counted_and_ignored():
    ad = _adapter()
    ad.push([(0.0, {"x": 1.0, "z": 3.0, 7: 1.0})])
    assert ad.flush().shape == (1, 6) and ad.counts["unknown_channel"] == 2


def test_a_channel_that_starts_late_or_vanishes_shows_in_mask_and_age():
    ad = _adapter()
    records = [(float(t), {"x": float(t)}) for t in range(6)]
    records[3] = (3.0, {"x": 3.0, "y": 30.0})  # y reports once, then vanishes
    out = torch.cat([ad.push(records), ad.flush()])
    assert out[:, 1].tolist() == [0.0, 0.0, 0.0, 30.0, 30.0, 30.0]
    assert out[:, 3].tolist() == [0.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    assert out[:, 5].tolist() == [0.0, 1.0, 2.0, 0.0, 1.0, 2.0]  # from stream start, then


# -- checkpoints -----------------------------------------------------------------------
def test_a_checkpoint_from_another_configuration_is_refused():
    ad = _adapter(lateness=2.0)
    ad.push([(0.0, {"x": 1.0})])
    state = ad.state_dict()
    with pytest.raises(ValueError, match=r"lateness=2.0 \(adapter has 0.0\)"):
        _adapter().load_state_dict(state)
    with pytest.raises(ValueError, match="channels="):
        SensorAdapter(["x"], 1.0, normalize=False).load_state_dict(state)
    with pytest.raises(ValueError, match="state must be a SensorAdapter state_dict"):
        _adapter().load_state_dict({"format": "something else"})
    with pytest.raises(ValueError, match="state version must be 1, got 99"):
        _adapter().load_state_dict({**state, "version": 99})


def test_reset_forgets_everything():
    ad = _adapter()
    ad.push([(0.0, {"x": 1.0}), (5.0, {"x": 2.0})])
    ad.reset()
    assert all(v == 0 for v in ad.counts.values())
    assert ad.push([(1.0, {"x": 1.0})]).shape == (0, 6)
    assert ad.flush().shape == (1, 6)
