"""ExpertMix's compiled kernels against the plain-Python reference (tests/_mix_reference.py).

Both run the same random calls (forecasts with NaN, inf and huge values, targets with
gaps, NaN and inf, weights read at random, bad calls); every combined forecast, every
weight and every count must be the same to the bit, and every call one refuses the other
must refuse with the same message.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _mix_reference import ReferenceMix
from hypothesis import given, settings
from hypothesis import strategies as st

from streamrnn.river.experts import MAX_SPAN, ExpertMix

SETTINGS = [("adahedge", "absolute"), ("adahedge", "gradient"), ("normalhedge", "absolute"),
            ("normalhedge", "gradient")]
SPECIAL = [math.nan, math.inf, -math.inf, 1e300, -1e300, 0.0]


def _value(rng: np.random.Generator, level: float) -> float:
    if rng.random() < 0.04:
        return SPECIAL[rng.integers(len(SPECIAL))]
    return float(level + rng.normal(0, 1 + abs(level) * 0.1))


def _same(a, b) -> bool:
    return np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True)


def _outcome(call):
    try:
        return ("ok", call())
    except ValueError as err:
        return ("error", str(err))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), which=st.integers(0, 3), k=st.integers(1, 5),
       steps=st.integers(1, 90), prior=st.booleans())
def test_the_kernels_give_the_references_numbers_to_the_bit(seed, which, k, steps, prior):
    method, loss = SETTINGS[which]
    rng = np.random.default_rng(seed)
    pri = (rng.random(k) * (rng.random(k) > 0.2)).tolist() if prior else None
    if pri is not None and sum(pri) <= 0:
        pri = None
    fast = ExpertMix([f"e{i}" for i in range(k)], method=method, loss=loss, prior=pri)
    ref = ReferenceMix([f"e{i}" for i in range(k)], method=method, loss=loss, prior=pri)
    level, step = 0.0, int(rng.integers(-5, 5))
    for _ in range(steps):
        level += float(rng.normal(0, 2))
        for _ in range(int(rng.integers(0, 3))):  # forecasts made at the current step
            first, n = int(rng.integers(1, 6)), int(rng.integers(0, 5))
            origin = step + int(rng.integers(-1, 2))  # now and then one already updated
            f = np.array([[_value(rng, level + (e - k / 2) * rng.random()) for _ in range(n)]
                          for e in range(k)]).reshape(k, n)
            a = _outcome(lambda f=f, o=origin, fi=first: fast.predict(o, f, fi))
            b = _outcome(lambda f=f, o=origin, fi=first: ref.predict(o, f, fi))
            assert a[0] == b[0] and (_same(a[1], b[1]) if a[0] == "ok" else a[1] == b[1])
        for h in rng.integers(1, 8, size=2):
            assert _same(fast.weights(int(h)), ref.weights(int(h)))
        step += int(rng.choice([1, 1, 1, 2, 5]))
        y = _value(rng, level)
        a = _outcome(lambda s=step, y=y: fast.update(s, y))
        b = _outcome(lambda s=step, y=y: ref.update(s, y))
        assert a == b
        assert fast.counts == ref.counts
    for h in range(1, 9):
        w = fast.weights(h)
        assert _same(w, ref.weights(h))
        assert np.isfinite(w).all() and math.isclose(w.sum(), 1.0, rel_tol=1e-12)


def test_waiting_targets_grow_the_ring_and_keep_what_waits():
    fast, ref = ExpertMix(["a", "b"]), ReferenceMix(["a", "b"])
    for mix in (fast, ref):  # far apart before any update; then scored in order
        mix.predict(0, [[1.0], [3.0]], first=1)
        mix.predict(0, [[1.0], [3.0]], first=300)
        mix.predict(5, [[2.0, 2.0], [0.0, 0.0]], first=40)
        for step in (1, 45, 300):
            mix.update(step, 3.0)
    assert fast.counts == ref.counts == {"scored": 3, "skipped_targets": 0,
                                         "nonfinite_forecasts": 0, "unscored": 1}
    for h in (1, 40, 41, 300):
        assert _same(fast.weights(h), ref.weights(h))


def test_a_forecast_too_far_ahead_is_refused_and_changes_nothing():
    mix = ExpertMix(["a", "b"])
    mix.predict(0, [[1.0], [2.0]])
    before = (mix.counts, mix.weights(1), len(mix._index))
    with pytest.raises(ValueError, match=r"more than 65536 consecutive steps \(first="):
        mix.predict(0, [[1.0], [2.0]], first=MAX_SPAN + 1)
    assert (mix.counts, len(mix._index)) == (before[0], before[2])
    mix.update(1, 2.0)
    assert mix.counts["scored"] == 1 and mix.weights(1)[1] > 0.5


@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
def test_a_copied_mix_goes_on_exactly_like_the_original(how):
    import copy
    import pickle

    rng = np.random.default_rng(3)
    mix = ExpertMix(["a", "b", "c"], method="normalhedge", loss="gradient")
    for t in range(30):
        mix.predict(t, rng.normal(size=(3, 3)))
        mix.update(t + 1, float(rng.normal()))
    twin = pickle.loads(pickle.dumps(mix)) if how == "pickle" else copy.deepcopy(mix)
    for t in range(30, 60):  # the waiting forecasts and every horizon's state came along
        f, y = rng.normal(size=(3, 3)), float(rng.normal())
        assert _same(mix.predict(t, f), twin.predict(t, f))
        mix.update(t + 1, y)
        twin.update(t + 1, y)
        assert mix.counts == twin.counts
    assert all(_same(mix.weights(h), twin.weights(h)) for h in (1, 2, 3))
    twin.update(61, 0.0)  # the copy's arrays are its own: the original does not move
    assert twin.counts["scored"] == mix.counts["scored"] + 2  # horizons 2 and 3 of 61


@pytest.mark.parametrize(("k", "rows", "slots"), [(1, 1, 1), (3, 2, 4), (4, 5, 8)])
def test_the_named_parts_tile_the_buffers_that_layout_sizes(k, rows, slots):
    # layout() sizes the two buffers by formula and parts() carves them in order: every
    # value belongs to exactly one part (no overlap, no gap, nothing past the end)
    from streamrnn.river import _mix

    n_floats, n_ints = _mix.layout(k, rows, slots)
    floats = np.zeros(n_floats)
    ints = np.zeros(n_ints, dtype=np.int64)
    ints[:_mix.HEADER] = [slots - 1, 0, 0, k, rows, slots]
    views = list(_mix.parts(floats, ints)[3:])
    for v in views:
        v += 1  # each view adds one to the values it covers
    assert np.array_equal(floats, np.ones(n_floats))
    assert np.array_equal(ints[_mix.HEADER:], np.ones(n_ints - _mix.HEADER, dtype=np.int64))
