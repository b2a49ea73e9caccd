"""The window lane (whole k1 == k2 windows with all targets) is the general path, bit for bit.

``push_many`` of the same key objects as the last push, every stream at the same window
start, whole windows with all their targets: that is the classic TBPTT loop, and it takes
``streamrnn.learn._window``. Random call sequences mix such pushes with everything that
must make the lane step aside (other keys, other orders, partial windows, missing
targets, one-step pushes, late targets, resets, drops, a checkpoint round trip) or read
the live state it holds back (``StreamRows.hold``), and
compare with a twin on the general path (``_fast_lane = False``): predictions, weights,
optimizer state, counts and every per-stream buffer, bitwise. The clipping the lane's
update uses is compared with ``nn.utils.clip_grad_norm_``, bitwise.
"""

from __future__ import annotations

import math

import pytest
import torch
from _twins import assert_same, assert_same_outputs, count_calls, twins
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from streamrnn.cells import GRU, LSTM, RNN
from streamrnn.heads import Readout, RecurrentModel
from streamrnn.learn import OnlineLearner

K = 3
KEYS = ["a", "b", "c"]
# How a push names its streams: the same list object, an equal list (the same key
# objects: the lane applies), another order, or a subset (slots 0 and 2).
KEY_LISTS = {"same": lambda: KEYS, "copy": lambda: list(KEYS),
             "order": lambda: ["b", "a", "c"], "subset": lambda: ["a", "c"]}


def token_learner(opt):
    model = RecurrentModel(LSTM(4, 6, num_layers=2, seed=0), Readout(6, 5, seed=1),
                           num_tokens=5, seed=2)
    return OnlineLearner(model, k1=K, clip=0.5, optimizer=opt)


def value_learner(opt):
    model = RecurrentModel(GRU(2, 5, seed=0, dtype=torch.float64),
                           Readout(5, 1, seed=1, dtype=torch.float64))
    return OnlineLearner(model, k1=K, clip=1.0, optimizer=opt)


OPTIMIZERS = {"sgd": lambda p: torch.optim.SGD(p, lr=0.3, momentum=0.5),
              "adam": lambda p: torch.optim.Adam(p, lr=1e-2)}


def data(tokens: bool, steps: int = 400):
    gen = torch.Generator().manual_seed(7)
    if tokens:
        x = torch.randint(0, 5, (len(KEYS), steps), generator=gen)
        return x, torch.roll(x, -1, 1)
    x = torch.randn(len(KEYS), steps, 2, generator=gen, dtype=torch.float64)
    return x, torch.tanh(x[..., :1] - x[..., 1:])


# Mostly the classic loop (the lane), with the events that make it step aside.
OPS = st.tuples(
    st.sampled_from(["many"] * 12 + ["one", "learn", "reset", "drop", "checkpoint", "flush",
                                     "state"]),
    st.sampled_from(["same"] * 3 + ["copy"] * 2 + ["order", "subset"]),
    st.sampled_from([K, K, K, 2 * K, 3 * K, 1, K + 1, 0]),
    st.sampled_from([True] * 5 + [False]),
)


def play(learner, schedule, x, y) -> list:
    pos = {key: 0 for key in KEYS}
    out = []
    for op, lists, steps, with_targets in schedule:
        if op == "many":
            keys = KEY_LISTS[lists]()
            rows = [KEYS.index(k) for k in keys]
            lo = [pos[k] for k in keys]
            xs = torch.stack([x[r, a:a + steps] for r, a in zip(rows, lo, strict=True)])
            ys = torch.stack([y[r, a:a + steps] for r, a in zip(rows, lo, strict=True)])
            out.append(learner.push_many(keys, xs, ys if with_targets else None))
            for k in keys:
                pos[k] += steps
        elif op == "one":
            a = pos["b"]
            out.append(learner.push(x[1, a:a + 1], y[1, a:a + 1] if with_targets else None,
                                    key="b"))
            pos["b"] += 1
        elif op == "learn" and "a" in learner and learner.steps_seen(key="a") > steps:
            t = learner.steps_seen(key="a") - 1 - steps
            out.append(learner.learn(t, y[0, pos["a"] - 1 - steps], key="a"))
        elif op == "reset" and "b" in learner:
            learner.reset("b")
            pos["b"] = 0
        elif op == "drop" and "c" in learner:
            learner.drop("c")
            pos["c"] = 0
        elif op == "checkpoint":
            learner.load_state_dict(learner.state_dict())
        elif op == "flush":
            learner.flush()
        elif op == "state" and "a" in learner:  # reads the live state the lane holds back
            out.extend(learner.state(key="a").values())
        out.append(dict(learner.counts))
    learner.flush()
    return out


@pytest.mark.parametrize("tokens", [True, False], ids=["tokens", "values"])
@pytest.mark.parametrize("opt", list(OPTIMIZERS))
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedule=st.lists(OPS, min_size=1, max_size=25))
def test_random_call_sequences_leave_everything_bitwise_equal(tokens, opt, schedule):
    make = (token_learner if tokens else value_learner)
    x, y = data(tokens)
    fast, slow = twins(lambda: make(OPTIMIZERS[opt]))
    assert_same_outputs(play(fast, schedule, x, y), play(slow, schedule, x, y))
    assert_same(fast, slow)


def test_the_classic_loop_takes_the_lane_and_learns_each_window_in_its_push():
    x, y = data(True)
    fast, slow = twins(lambda: token_learner(OPTIMIZERS["adam"]))
    general = count_calls(fast, "_push")
    writes = count_calls(fast.rows, "write_held")
    for i in range(20):
        window = slice(i * K, (i + 1) * K)
        got = fast.push_many(KEYS, x[:, window], y[:, window])
        want = slow.push_many(KEYS, x[:, window], y[:, window])
        assert torch.equal(got, want)
        assert fast.counts["updates"] == slow.counts["updates"] == i + 1
        # From the second push on, each window's new state is held, read by the next.
        assert (fast.rows._held is not None) == (i > 0)
    assert general["_push"] == 1  # only the first push, which looks the keys up
    assert writes["write_held"] == 0
    assert_same(fast, slow)  # reading the buffers writes what was held
    assert writes["write_held"] == 1 and fast.rows._held is None


def test_a_stream_that_overflows_in_a_lane_window_is_reset_the_others_learn():
    def make():
        net = RecurrentModel(RNN(2, 8, nonlinearity="relu", seed=0), Readout(8, 1, seed=1))
        with torch.no_grad():  # zero inputs stay at 0; ones grow 1e4-fold a step
            net.cell.rnn.weight_ih_l0.fill_(1.0)
            net.cell.rnn.weight_hh_l0.fill_(1e4)
            net.cell.rnn.bias_ih_l0.zero_()
            net.cell.rnn.bias_hh_l0.zero_()
        return OnlineLearner(net, k1=K)

    keys = ["ok", "bad"]
    x = torch.stack([torch.zeros(4 * K, 2), torch.ones(4 * K, 2)])
    y = torch.zeros(2, 4 * K, 1)
    fast, slow = twins(make)
    for learner in (fast, slow):
        learner.push_many(keys, x[:, :K], y[:, :K])  # looks the keys up
        learner.push_many(keys, x[:, K:], y[:, K:])  # three windows: the lane's
    assert fast.counts["nonfinite_resets"] == 1 and fast.last_reset == ["bad"]
    assert fast.counts["updates"] == slow.counts["updates"] > 1
    assert bool(torch.isfinite(fast.state(key="bad").h).all())
    assert fast.last_reset == slow.last_reset
    assert_same(fast, slow)


def _grads(seed: int, scale: float, dtype=torch.float32):
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).to(dtype)
    gen = torch.Generator().manual_seed(seed)
    for p in net.parameters():
        p.grad = (torch.randn(p.shape, generator=gen, dtype=torch.float64) * scale).to(dtype)
    return net


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@settings(max_examples=300, deadline=None)
@given(seed=st.integers(0, 10_000), log_scale=st.floats(-20, 25),
       clip=st.floats(1e-30, 1e300) | st.sampled_from([1.0, 0.25, 3.4e38, 3.5e38]))
def test_lane_clipping_is_clip_grad_norm_bit_for_bit(dtype, seed, log_scale, clip):
    learner = value_learner(OPTIMIZERS["sgd"])
    got, want = _grads(seed, 10.0 ** log_scale, dtype), _grads(seed, 10.0 ** log_scale, dtype)
    learner._params, learner.clip, learner._plain = list(got.parameters()), clip, None
    norm = nn.utils.clip_grad_norm_(want.parameters(), clip)
    if not math.isfinite(float(norm)):  # overflowed: reported; the update is skipped
        assert not learner._clip_grads()
        return
    assert learner._clip_grads()
    for p, q in zip(got.parameters(), want.parameters(), strict=True):
        assert torch.equal(p.grad, q.grad)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_lane_clipping_reports_a_nonfinite_norm_and_leaves_the_gradients(bad):
    learner = value_learner(OPTIMIZERS["sgd"])
    net = _grads(0, 1.0)
    next(iter(net.parameters())).grad[0, 0] = bad
    before = [p.grad.clone() for p in net.parameters()]
    learner._params, learner._plain = list(net.parameters()), None
    assert not learner._clip_grads()
    for p, b in zip(net.parameters(), before, strict=True):
        torch.testing.assert_close(p.grad, b, rtol=0, atol=0, equal_nan=True)
