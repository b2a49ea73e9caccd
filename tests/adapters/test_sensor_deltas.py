"""TimeDeltas (adapters/sensor/deltas.py): irregular samples -> rows with Δt, no grid.

- chunk invariance: any grouping of the same samples (duplicates and out-of-order ones
  across chunk boundaries included) gives the rows and counts of one push, bit for bit,
  and a state_dict / load_state_dict in between changes nothing;
- the rows equal an independent plain loop of the rules;
- bad input raises before anything changes;
- end to end: TimeDeltas -> Stream(DecayGRU) in any chunking equals one offline pass.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import streamrnn
from streamrnn.adapters.sensor.deltas import TimeDeltas

FAST = settings(max_examples=40, deadline=None)


def samples(seed: int, n: int):
    """Irregular timestamps with repeats and some going back in time; 2 values each."""
    rng = np.random.default_rng(seed)
    t = np.cumsum(rng.choice([0.0, 0.02, 0.02, 0.04, 0.3, 5.0], size=n))
    back = rng.random(n) < 0.1
    t[back] -= rng.choice([0.02, 0.5], size=int(back.sum()))
    return t + 1000.0, rng.normal(size=(n, 2))


def plain_loop(t, v, unit, first, max_delta):
    rows, last, counts = [], None, {"duplicate": 0, "out_of_order": 0, "gaps": 0}
    for ti, vi in zip(t, v, strict=True):
        if last is not None and ti == last:
            counts["duplicate"] += 1
            continue
        if last is not None and ti < last:
            counts["out_of_order"] += 1
            continue
        dt = first if last is None else (ti - last) / unit
        if max_delta is not None and dt > max_delta:
            dt, counts["gaps"] = max_delta, counts["gaps"] + 1
        rows.append([*vi, dt])
        last = ti
    return np.array(rows).reshape(-1, v.shape[1] + 1), counts


@FAST
@given(seed=st.integers(0, 2**16), cuts=st.lists(st.integers(0, 60), max_size=8).map(sorted),
       save_at=st.integers(0, 9), cap=st.sampled_from([None, 20.0]))
def test_any_grouping_gives_the_rows_of_one_push(seed, cuts, save_at, cap):
    t, v = samples(seed, 60)
    whole = TimeDeltas(2, unit=0.02, first=1.0, max_delta=cap, dtype=torch.float64)
    want = whole.push(t, v)
    td = TimeDeltas(2, unit=0.02, first=1.0, max_delta=cap, dtype=torch.float64)
    bounds, parts = [0, *cuts, 60], []
    for i, (a, b) in enumerate(zip(bounds, bounds[1:], strict=False)):
        if i == save_at:  # checkpoint as JSON, resume in a new object
            state = json.loads(json.dumps(td.state_dict()))
            td = TimeDeltas(2, unit=0.02, first=1.0, max_delta=cap, dtype=torch.float64)
            td.load_state_dict(state)
        parts.append(td.push(t[a:b], v[a:b]))
    assert torch.equal(torch.cat(parts), want)
    assert td.counts == whole.counts
    rows, counts = plain_loop(t, v, 0.02, 1.0, cap)
    np.testing.assert_array_equal(want.numpy(), rows)
    assert {k: whole.counts[k] for k in counts} == counts
    assert whole.counts["rows"] == len(rows) and whole.counts["samples"] == 60


def test_bad_input_raises_before_anything_changes():
    td = TimeDeltas(2, unit=0.5)
    td.push([1.0, 2.0], [[0.0, 0.0], [1.0, 1.0]])
    before = (td.state_dict(), td.last_time)
    with pytest.raises(ValueError, match=r"times must be finite, got inf in row 1"):
        td.push([3.0, float("inf")], [[0.0, 0.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match=r"values must have shape \(T, F\) = \(1, 2\), got "
                                         r"\(1, 3\)"):
        td.push([3.0], [[0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match=r"times must have shape \(T,\)"):
        td.push([[3.0]], [[0.0, 0.0]])
    assert (td.state_dict(), td.last_time) == before
    for kwargs, match in [({"features": 0}, "features must be a positive int, got 0"),
                          ({"unit": 0.0}, "unit must be a finite number > 0, got 0.0"),
                          ({"first": -1.0}, "first must be a finite number >= 0"),
                          ({"max_delta": float("nan")}, "max_delta must be a finite number"),
                          ({"dtype": torch.int64}, "dtype must be a floating")]:
        with pytest.raises(ValueError, match=match):
            TimeDeltas(**{"features": 2, **kwargs})
    with pytest.raises(ValueError, match="state must come from TimeDeltas.state_dict"):
        td.load_state_dict({"last_time": "x", "counts": {}})


@FAST
@given(seed=st.integers(0, 999), cuts=st.lists(st.integers(0, 50), max_size=6).map(sorted))
def test_deltas_into_a_decaygru_stream_are_chunk_invariant(seed, cuts):
    t, v = samples(seed, 50)
    cell = streamrnn.DecayGRU(3, 6, num_layers=2, seed=seed, dtype=torch.float64)
    td, stream = TimeDeltas(2, unit=0.02, dtype=torch.float64), streamrnn.Stream(cell)
    bounds = [0, *cuts, 50]
    got = torch.cat([stream.push(td.push(t[a:b], v[a:b]))
                     for a, b in zip(bounds, bounds[1:], strict=False)])
    rows = TimeDeltas(2, unit=0.02, dtype=torch.float64).push(t, v)
    with torch.no_grad():
        want, _ = cell(rows[None])
    torch.testing.assert_close(got, want[0], rtol=0, atol=1e-10)
