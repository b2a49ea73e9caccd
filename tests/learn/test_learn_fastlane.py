"""The one-step fast lane is the general path, bit for bit.

One step of one stream (``push(x (F,))``, the river and sensor case) takes the lane of
``streamrnn.learn._lane``; every other push takes the general path. Each test runs the
same calls on two learners, one with the lane and one with ``stepper.fast = False``, and
compares everything bitwise: predictions, ``learn`` answers, weights, optimizer state,
counts, and every per-stream buffer. Random call sequences mix one-step pushes (the
lane) with chunks, two-stream ``push_many``, late targets, horizon targets and resets.
"""

from __future__ import annotations

import pytest
import torch
from _twins import assert_same, assert_same_outputs, count_calls, twins
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamrnn.cells import GRU, LSTM, RNN
from streamrnn.heads import Readout, RecurrentModel
from streamrnn.learn import OnlineLearner
from streamrnn.shapes import Seq2Seq

F64 = torch.float64


def values_model(cell=LSTM, out=1):
    return RecurrentModel(cell(3, 6, seed=0, dtype=F64), Readout(6, out, seed=1, dtype=F64))


def path_model():
    return Seq2Seq(GRU(3, 6, seed=0, dtype=F64), GRU(1, 6, seed=1, dtype=F64),
                   Readout(6, 1, seed=2, dtype=F64), horizon=3)


def token_model():
    return RecurrentModel(LSTM(4, 6, seed=0), Readout(6, 5, seed=1), num_tokens=5, seed=2)


# name -> (learner factory, horizon mode, token inputs)
CONFIGS = {
    "late_targets_lstm": (lambda: OnlineLearner(values_model(), k1=3, k2=7, lr=1e-2),
                          False, False),
    "fused_k1_eq_k2_gru": (lambda: OnlineLearner(values_model(GRU), k1=4, lr=1e-2,
                                                 optimizer=torch.optim.SGD), False, False),
    "horizon_river": (lambda: OnlineLearner(values_model(), k1=4, k2=16, lr=1e-2, horizon=1,
                                            horizon_column=0), True, False),
    "horizon_columns_dropped": (lambda: OnlineLearner(values_model(GRU, out=2), k1=3, k2=4,
                                                      horizon=2, horizon_column=[2, 0]),
                                True, False),
    "horizon_path": (lambda: OnlineLearner(path_model(), k1=2, k2=5, horizon=3,
                                           horizon_column=1, horizon_path=True), True, False),
    "horizon_tokens": (lambda: OnlineLearner(token_model(), k1=3, k2=6, lr=1e-2, horizon=1),
                       True, True),
}


def series(tokens: bool, seed: int, steps: int = 200):
    gen = torch.Generator().manual_seed(seed)
    if tokens:
        return torch.randint(0, 5, (steps,), generator=gen), None
    x = torch.randn(steps, 3, generator=gen, dtype=F64)
    return x, torch.tanh(x[:, :1] + x[:, 1:2])


def play(learner, schedule, data, horizon: bool) -> list:
    """Run ``schedule``: ``(op, size, flag)`` with op a key ("a", "b"), "ab" (push_many of
    both), "learn" (a late target of stream a, ``size`` steps back) or "reset" (stream b).
    Returns every prediction and ``learn`` answer."""
    pos, out = {"a": 0, "b": 0}, []

    def take(key, size, with_targets):
        x, y = data[key]
        lo = pos[key]
        pos[key] = lo + size
        return x[lo:lo + size], y[lo:lo + size] if with_targets and not horizon else None

    for op, size, flag in schedule:
        if op in ("a", "b"):
            x, y = take(op, size, flag)
            if size == 1 and flag and op == "b":  # one step given as (F,) / one id
                out.append(learner.step(x[0], None if y is None else y[0], key=op))
            else:
                out.append(learner.push(x, y, key=op))
        elif op == "ab":
            (xa, ya), (xb, yb) = take("a", size, flag), take("b", size, flag)
            out.append(learner.push_many(["a", "b"], torch.stack([xa, xb]),
                                         None if ya is None else torch.stack([ya, yb])))
        elif op == "learn" and not horizon and "a" in learner:
            t = learner.steps_seen(key="a") - 1 - size
            if t >= 0:
                out.append(learner.learn(t, data["a"][1][t], key="a"))
        elif op == "reset" and "b" in learner:
            learner.reset("b")
    learner.flush()
    return out


OPS = st.tuples(st.sampled_from(["a", "a", "b", "b", "ab", "learn", "reset"]),
                st.sampled_from([0, 1, 1, 1, 1, 2, 3, 5]), st.booleans())


@pytest.mark.parametrize("config", list(CONFIGS))
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedule=st.lists(OPS, min_size=1, max_size=30))
def test_random_call_sequences_leave_everything_bitwise_equal(config, schedule):
    make, horizon, tokens = CONFIGS[config]
    data = {"a": series(tokens, 0), "b": series(tokens, 1)}
    fast, slow = twins(make)
    assert_same_outputs(play(fast, schedule, data, horizon), play(slow, schedule, data, horizon))
    assert_same(fast, slow)


@pytest.mark.parametrize("config", list(CONFIGS))
def test_one_step_at_a_time_equals_the_general_path_and_a_single_push(config):
    """300 one-step pushes: bitwise the general path's; to rounding (float64) one push of
    all 300 steps (chunk invariance), with exactly the same counts."""
    make, horizon, tokens = CONFIGS[config]
    x, y = series(tokens, 2, steps=300)
    y = None if horizon else y
    fast, slow = twins(make)
    calls = count_calls(fast.stepper, "advance")
    got = [fast.step(x[t], None if y is None else y[t]) for t in range(300)]
    want = [slow.step(x[t], None if y is None else y[t]) for t in range(300)]
    fast.flush()
    slow.flush()
    assert calls["advance"] == 0  # the lane was taken
    assert_same_outputs(got, want)
    assert_same(fast, slow)
    assert fast.counts["updates"] > 0

    whole = make()
    pred = whole.push(x, y)
    whole.flush()
    assert whole.counts == fast.counts
    if not tokens:
        torch.testing.assert_close(torch.stack(got), pred, rtol=0, atol=1e-10)
        for p, q in zip(whole.model.parameters(), fast.model.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-10)


def test_a_checkpoint_taken_in_the_lane_resumes_bitwise_on_either_path():
    make, horizon, _ = CONFIGS["late_targets_lstm"]
    x, y = series(False, 3)
    a = make()
    for t in range(22):
        a.step(x[t])
        if t >= 2:
            a.learn(t - 2, y[t - 2])
    fast, slow = twins(make)
    fast.load_state_dict(a.state_dict())
    slow.load_state_dict(a.state_dict())
    assert_same(fast, slow)
    for learner in (a, fast, slow):
        for t in range(22, 40):
            learner.step(x[t], y[t])
        learner.flush()
    assert_same(fast, slow)
    assert_same(a, fast)


def test_a_state_that_overflows_in_the_lane_is_reset_as_on_the_general_path():
    def make():
        net = RecurrentModel(RNN(2, 8, nonlinearity="relu", seed=0), Readout(8, 1, seed=1))
        with torch.no_grad():
            net.cell.rnn.weight_hh_l0.fill_(1e20)
            net.cell.rnn.bias_ih_l0.fill_(1.0)
        return OnlineLearner(net, k1=4)

    fast, slow = twins(make)
    for learner in (fast, slow):
        for _ in range(6):
            learner.step(torch.zeros(2), key="ok")
            learner.step(torch.ones(2), key="bad")
    assert fast.counts["nonfinite_resets"] >= 1 and fast.last_reset == ["bad"]
    assert_same(fast, slow)


def test_eviction_and_drop_in_the_lane_match_the_general_path():
    x, y = series(False, 4)

    def make():
        return OnlineLearner(values_model(), k1=3, k2=7, lr=1e-2, max_streams=2)

    def run(learner):
        for t in range(30):
            learner.step(x[t], y[t], key=("s", t % 3))
            if t == 20:
                learner.drop(("s", t % 3))
        learner.flush()

    fast, slow = twins(make)
    run(fast)
    run(slow)
    assert fast.counts["evicted"] > 0 and fast.counts["lost_pending"] > 0
    assert_same(fast, slow)
