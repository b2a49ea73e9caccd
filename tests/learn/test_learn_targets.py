"""Targets that arrive late, from the inputs (horizon), masked, or for many streams."""

from __future__ import annotations

import pytest
import torch
from _data import approval
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamrnn.cells import GRU, LSTM
from streamrnn.heads import Readout, RecurrentModel
from streamrnn.learn import OnlineLearner


def model(features=7, out=1, dtype=torch.float64, hidden=8):
    return RecurrentModel(GRU(features, hidden, seed=0, dtype=dtype),
                          Readout(hidden, out, seed=1, dtype=dtype))


def weights(learner):
    return [p.detach().clone() for p in learner.model.parameters()]


# -- late targets ------------------------------------------------------------------------
def test_late_target_accepted_inside_the_next_window_dropped_and_counted_outside():
    learner = OnlineLearner(model(), k1=4, k2=4, optimizer=torch.optim.SGD, lr=0.1)
    learner.push(approval(8)[:8])  # the update at 8 is due: its window is steps 4..7
    assert not learner.learn(3, [1.0])
    assert learner.learn(4, [1.0]) and learner.learn(7, [0.5])
    assert not learner.learn(7, [0.0])
    assert learner.counts["late_dropped"] == 1
    assert learner.counts["duplicate_dropped"] == 1
    with pytest.raises(ValueError, match=r"step_index must be .* 0 <= step_index < 8, got 8"):
        learner.learn(8, [1.0])
    with pytest.raises(ValueError, match="key 'nope' is not a live stream"):
        learner.learn(0, [1.0], key="nope")
    learner.flush()
    assert learner.counts["updates"] == 1 and learner.counts["learned"] == 2


def test_a_target_arriving_after_its_window_moved_on_is_dropped():
    learner = OnlineLearner(model(), k1=4, k2=6)
    learner.push(approval(12)[:9])  # next update at 12: window steps 6..11
    assert [learner.learn(t, [0.0]) for t in (5, 6, 8)] == [False, True, True]
    assert learner.counts["late_dropped"] == 1


@pytest.mark.parametrize("k2,dropped", [(4, 18), (6, 0)])
def test_horizon_drops_and_counts_targets_that_miss_their_window(k2, dropped):
    """Horizon 2, k1 = 4: the targets of the last 2 steps of a window arrive after its
    update; with k2 = k1 they are dropped (2 per window), with k2 >= k1 + 2 none is."""
    learner = OnlineLearner(model(), k1=4, k2=k2, horizon=2, horizon_column=6)
    learner.push(approval(40))
    assert learner.counts["late_dropped"] == dropped
    learner.flush()
    assert learner.counts["learned"] == 38 - dropped


def test_horizon_mode_equals_the_same_targets_given_late_with_learn():
    series = approval(60)
    a = OnlineLearner(model(), k1=4, k2=9, horizon=3, horizon_column=[6], lr=1e-2)
    b = OnlineLearner(model(), k1=4, k2=9, lr=1e-2)
    pa, pb = [], []
    for t in range(60):
        pa.append(a.step(series[t]))
        pb.append(b.step(series[t]))
        if t >= 3:
            assert b.learn(t - 3, series[t, 6:])
    a.flush()
    b.flush()
    assert torch.equal(torch.stack(pa), torch.stack(pb))
    assert all(torch.equal(x, y) for x, y in zip(weights(a), weights(b), strict=True))
    assert a.counts == b.counts


# -- chunk invariance of learning ------------------------------------------------------------
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, 9), min_size=1, max_size=30))
def test_learning_is_chunk_invariant(sizes):
    """Updates happen at window ends whatever the chunking, so predictions and weights
    equal those of one push (float64, to rounding)."""
    series = approval(64)
    whole = OnlineLearner(model(), k1=3, k2=7, horizon=1, horizon_column=6, lr=1e-2)
    want = whole.push(series)
    whole.flush()
    parts = OnlineLearner(model(), k1=3, k2=7, horizon=1, horizon_column=6, lr=1e-2)
    got, pos = [], 0
    for size in [*sizes, 64]:
        got.append(parts.push(series[pos:pos + size]))
        pos = min(64, pos + size)
    parts.flush()
    torch.testing.assert_close(torch.cat(got), want, rtol=0, atol=1e-10)
    for x, y in zip(weights(parts), weights(whole), strict=True):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-10)
    assert parts.counts == whole.counts


# -- many streams ----------------------------------------------------------------------------
def test_streams_completing_a_window_together_share_one_optimizer_step():
    series = approval(40, dtype=torch.float32)
    learner = OnlineLearner(model(dtype=torch.float32), k1=5)
    x = torch.stack([series[:20], series[20:40]])
    learner.push_many(["s1", "s2"], x, x[:, :, 6:])
    learner.flush()
    assert learner.counts["updates"] == 4 and learner.counts["learned"] == 40
    learner.push(series[:3], key="s3")  # out of phase: its windows end elsewhere
    learner.push_many(["s1", "s2", "s3"], torch.stack([series[:2]] * 3))
    assert learner.counts["updates"] == 4  # no window ended with a target


def test_push_many_order_of_keys_does_not_matter():
    series = approval(30)
    x = torch.stack([series[:15], series[15:30]])
    a = OnlineLearner(model(), k1=5, lr=1e-2)
    b = OnlineLearner(model(), k1=5, lr=1e-2)
    a.push_many(["p", "q"], x[:, :1], x[:, :1, 6:])  # slots: p=0, q=1
    b.push_many(["p", "q"], x[:, :1], x[:, :1, 6:])
    ya = a.push_many(["p", "q"], x[:, 1:], x[:, 1:, 6:])
    yb = b.push_many(["q", "p"], x[[1, 0], 1:], x[[1, 0], 1:, 6:])
    assert torch.equal(ya, yb[[1, 0]])
    a.flush()
    b.flush()
    assert all(torch.equal(p, q) for p, q in zip(weights(a), weights(b), strict=True))


def test_masked_class_targets_learn_only_the_given_steps():
    torch.manual_seed(0)
    clf = RecurrentModel(LSTM(7, 8, seed=0), Readout(8, 3, seed=1))
    learner = OnlineLearner(clf, k1=6, target_kind="classes")
    series = approval(12, dtype=torch.float32)
    labels = (series[:, 6] > 0).long() + (series[:, 6] > 1).long()
    mask = torch.zeros(12, dtype=torch.bool)
    mask[[2, 5, 11]] = True
    logits = learner.push(series, labels, mask=mask)
    learner.flush()
    assert logits.shape == (12, 3)
    assert learner.counts["learned"] == 3 and learner.counts["updates"] == 2


@pytest.mark.parametrize("lane", [True, False], ids=["window_lane", "general_path"])
@pytest.mark.parametrize("mask", [False, True], ids=["all_targets", "masked"])
def test_the_loss_sees_its_terms_step_major_streams_in_slot_order(lane, mask):
    """Terms by step, and within a step by stream in slot order (word_language_model's
    time-first flatten), on the window lane and on the general path alike."""
    seen = []

    def loss(pred, target):
        seen.append(target[:, 0].tolist())
        return (pred - target).pow(2).mean()

    learner = OnlineLearner(model(features=2), loss=loss, k1=3)
    learner.stepper.fast = lane
    keys = ["s0", "s1", "s2"]
    x = torch.zeros(3, 3, 2, dtype=torch.float64)
    tg = 10.0 * torch.arange(3, dtype=torch.float64)[:, None, None] + torch.arange(
        3, dtype=torch.float64)[None, :, None]  # stream s, step t: 10 s + t
    given = torch.tensor([[True, False, True], [True, True, True], [False, True, True]])
    for _ in range(2):  # the second push of the same keys is the window lane's
        learner.push_many(keys, x, tg, mask=given if mask else None)
        learner.flush()
    want = [10.0 * s + t for t in range(3) for s in range(3) if not mask or given[s, t]]
    assert seen == [want, want]


# -- late targets of many streams in one call ----------------------------------------------
def _state(learner) -> tuple:
    """Everything learning reads and writes: weights, counts, each stream's state."""
    return (weights(learner), dict(learner.counts),
            {k: learner.state(key=k).h.clone() for k in learner.keys()})


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), k=st.sampled_from([(2, 2), (2, 5), (3, 7), (4, 4)]))
def test_learn_many_equals_learn_called_key_by_key(data, k):
    """Streams out of phase (different step counts), late, duplicate and fresh targets:
    one learn_many call takes what learn calls key by key take, and the updates that
    follow are bitwise the same."""
    series = approval(60)[:, :3]
    keys = ["a", "b", "c", "d"]
    one, many = (OnlineLearner(model(3), k1=k[0], k2=k[1], optimizer=torch.optim.SGD,
                               lr=0.05) for _ in range(2))
    pos = dict.fromkeys(keys, 0)
    for _ in range(data.draw(st.integers(3, 8), label="rounds")):
        push = data.draw(st.lists(st.sampled_from(keys), min_size=1, max_size=4,
                                  unique=True), label="pushed")
        size = data.draw(st.integers(0, 4), label="size")
        x = torch.stack([series[pos[key]:pos[key] + size] for key in push])
        for learner in (one, many):
            learner.push_many(push, x)
        for key in push:
            pos[key] += size
        live = [key for key in keys if pos[key] > 0]
        if not live:
            continue
        chosen = data.draw(st.lists(st.sampled_from(live), max_size=len(live), unique=True),
                           label="learned")
        steps = [data.draw(st.integers(max(0, pos[key] - 8), pos[key] - 1), label="step")
                 for key in chosen]
        targets = torch.tensor([[0.1 * i - 0.3] for i in range(len(chosen))],
                               dtype=torch.float64)
        want = [one.learn(s, t, key=key) for key, s, t in zip(chosen, steps, targets,
                                                              strict=True)]
        got = many.learn_many(chosen, steps, targets)
        assert got.dtype == bool and got.tolist() == want
        assert one.counts == many.counts
    for learner in (one, many):
        learner.flush()
    (w1, c1, s1), (w2, c2, s2) = _state(one), _state(many)
    assert c1 == c2 and s1.keys() == s2.keys()
    assert all(torch.equal(a, b) for a, b in zip(w1, w2, strict=True))
    assert all(torch.equal(s1[key], s2[key]) for key in s1)


def test_learn_many_refuses_bad_calls_and_takes_nothing():
    learner = OnlineLearner(model(3), k1=4, k2=8)
    learner.push_many(["a", "b"], approval(10)[None, :6, :3].expand(2, 6, 3).contiguous())
    before = _state(learner)
    bad = [
        ((["a", "a"], [1, 2], [[0.0], [0.0]]), "keys must be distinct"),
        ((["a", "zz"], [1, 2], [[0.0], [0.0]]), "key 'zz' is not a live stream"),
        ((["a", "b"], [1, 6], [[0.0], [0.0]]), "stream 'b' has no such step"),
        ((["a", "b"], [1, -1], [[0.0], [0.0]]), "stream 'b' has no such step"),
        ((["a", "b"], [1.0, 2.0], [[0.0], [0.0]]), "step_index must be 2 ints"),
        ((["a", "b"], [1], [[0.0], [0.0]]), "step_index must be 2 ints"),
        ((["a", "b"], [1, 2], [[0.0], [float("nan")]]), "targets"),
        ((["a", "b"], [1, 2], [[0.0, 1.0], [0.0, 1.0]]), r"targets must have shape \(2, 1\)"),
        (("a", [1], [[0.0]]), "keys must be a list"),
    ]
    for args, message in bad:
        with pytest.raises(ValueError, match=message):
            learner.learn_many(*args)
        assert learner.counts == before[1]
    assert learner.learn_many([], [], []).tolist() == []
    learner.flush()
    assert learner.counts["updates"] == 0 and learner.counts["learned"] == 0
    with pytest.raises(ValueError, match="horizon mode"):
        OnlineLearner(model(3), k1=4, horizon=1, horizon_column=0).learn_many(["a"], [0], [[0.0]])
