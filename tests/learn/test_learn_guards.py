"""Bad input gets a clear error and never a poisoned state; non-finite updates are skipped."""

from __future__ import annotations

import math

import pytest
import torch

from streamrnn.cells import GRU, LSTM, RNN
from streamrnn.heads import Readout, RecurrentModel
from streamrnn.learn import OnlineLearner
from streamrnn.lookahead import Bidirectional


def model(features=2, out=1, cell=GRU):
    return RecurrentModel(cell(features, 8, seed=0), Readout(8, out, seed=1))


def snapshot(learner):
    weights = [p.detach().clone() for p in learner.model.parameters()]
    opt = learner.optimizer.state_dict()
    state = {i: {k: (v.clone() if torch.is_tensor(v) else v) for k, v in s.items()}
             for i, s in opt["state"].items()}
    rows = learner.rows
    return weights, state, rows.live.h.clone(), rows.xbuf.clone(), rows.count.copy(), dict(
        learner.counts)


def same(a, b) -> bool:
    wa, sa, ha, xa, ca, na = a
    wb, sb, hb, xb, cb, nb = b
    return (all(torch.equal(x, y) for x, y in zip(wa, wb, strict=True))
            and sa.keys() == sb.keys()
            and all(torch.equal(sa[i][k], sb[i][k]) if torch.is_tensor(sa[i][k])
                    else sa[i][k] == sb[i][k] for i in sa for k in sa[i])
            and torch.equal(ha, hb) and torch.equal(xa, xb) and (ca == cb).all() and na == nb)


def wave(n, phase=0.0):
    t = torch.arange(n, dtype=torch.float32) / 4 + phase
    return torch.stack([torch.sin(t), torch.cos(t)], 1)


@pytest.mark.parametrize("how", ["overflowing_target", "nan_loss", "nan_gradient"])
def test_nonfinite_update_is_skipped_keeping_weights_and_optimizer_state(how):
    def loss(pred, target):
        if how == "nan_loss":
            return (pred - target).pow(2).mean() * (float("nan") if target.abs().max() > 50
                                                    else 1.0)
        if how == "nan_gradient" and target.abs().max() > 50:
            return torch.sqrt((pred - pred.detach()).pow(2).sum())  # 0, gradient NaN
        return (pred - target).pow(2).mean()

    learner = OnlineLearner(model(), loss=loss, k1=5)
    x = wave(30)
    learner.push(x[:10], x[:10, :1])
    learner.flush()
    assert learner.counts["updates"] == 2
    before = snapshot(learner)
    spike = torch.full((5, 1), 1e30 if how == "overflowing_target" else 100.0)
    learner.push(x[10:15], spike)
    learner.flush()
    after = snapshot(learner)
    assert learner.counts["skipped_nonfinite"] == 1 and learner.counts["updates"] == 2
    assert all(torch.equal(p, q) for p, q in zip(before[0], after[0], strict=True))
    assert same((*before[:2], *after[2:]), after)  # optimizer state bitwise too
    learner.push(x[15:30], x[15:30, :1])
    learner.flush()
    assert learner.counts["updates"] == 5 and math.isfinite(learner.last_loss)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nonfinite_input_or_target_is_rejected_before_any_state_changes(bad):
    learner = OnlineLearner(model(), k1=4, k2=6)
    x = wave(12)
    learner.push_many(["a", "b"], torch.stack([x[:8], x[4:]]), torch.stack([x[:8, :1]] * 2))
    before = snapshot(learner)  # an update is due for both streams
    poisoned = x[8:12].clone()
    poisoned[2, 1] = bad
    with pytest.raises(ValueError, match=r"chunk has a non-finite value .* at \(2, 1\)"):
        learner.push(poisoned, key="a")
    with pytest.raises(ValueError, match="x has a non-finite value"):
        learner.push_many(["a", "b"], torch.stack([poisoned, x[:4]]))
    with pytest.raises(ValueError, match="targets has a non-finite value"):
        learner.push(x[8:12], poisoned[:, 1:], key="a")
    with pytest.raises(ValueError, match="target has a non-finite value"):
        learner.learn(6, [bad], key="b")
    assert same(before, snapshot(learner))  # counts too: the due update did not run
    assert learner.rows.due.sum() == 2


def test_bad_shapes_dtypes_and_ids_name_parameter_rule_and_value():
    learner = OnlineLearner(model(), k1=3)
    with pytest.raises(ValueError, match=r"chunk must have 2 features per step, got 3"):
        learner.push(torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"dtype torch.float32 \(the model's\), got torch.float64"):
        learner.push(torch.zeros(4, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"targets must have shape \(4, 1\), got \(4, 2\)"):
        learner.push(torch.zeros(4, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"x must have shape \(N, T, F\) with N = 2, F = 2"):
        learner.push_many(["a", "b"], torch.zeros(3, 4, 2))
    with pytest.raises(ValueError, match="keys must be distinct"):
        learner.push_many(["a", "a"], torch.zeros(2, 4, 2))
    with pytest.raises(ValueError, match=r"mask must be a bool tensor of shape \(4,\)"):
        learner.push(torch.zeros(4, 2), torch.zeros(4, 1), mask=torch.ones(4))
    lm = RecurrentModel(LSTM(4, 8, seed=0), Readout(8, 5, seed=1), num_tokens=5, seed=2)
    tokens = OnlineLearner(lm, k1=3)
    with pytest.raises(ValueError, match=r"chunk must hold ids in \[0, 5\), got 7"):
        tokens.push(torch.tensor([1, 7]))
    with pytest.raises(ValueError, match=r"targets must hold ids in \[0, 5\), got -1"):
        tokens.push(torch.tensor([1, 2]), torch.tensor([0, -1]))
    with pytest.raises(ValueError, match="chunk must hold integer ids, got dtype torch.float32"):
        tokens.push(torch.tensor([1.0, 2.0]))


@pytest.mark.parametrize("kwargs,message", [
    ({"k1": 0}, "k1 must be a positive int, got 0"),
    ({"k1": 5, "k2": 3}, "k2 must be >= k1 = 5, got 3"),
    ({"clip": -1.0}, "clip must be a positive finite number or None, got -1.0"),
    ({"lr": float("nan")}, "lr must be a positive finite number or None, got nan"),
    ({"horizon": 2, "horizon_column": 5}, r"horizon_column must be an int or a list of ints"),
    ({"horizon": 2}, r"horizon targets have shape \(2,\) per step but the model's output"),
    ({"horizon_column": 0}, "horizon_column and horizon_path need horizon"),
    ({"target_kind": "labels"}, "target_kind must be None or one of"),
    ({"optimizer": "adam"}, "optimizer must be None, an Optimizer class or instance"),
    ({"optimizer": lambda p: torch.optim.SGD(p, lr=0.1), "lr": 0.1}, "lr applies only when"),
    ({"loss": 3}, "loss must be callable"),
])
def test_bad_configuration_is_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        OnlineLearner(model(), **kwargs)


def test_optimizer_must_hold_the_models_parameters():
    other = torch.optim.SGD(model().parameters(), lr=0.1)
    with pytest.raises(ValueError, match="optimizer must hold every trainable parameter"):
        OnlineLearner(model(), optimizer=other)


def test_a_stream_whose_state_overflows_is_reset_and_reported():
    net = model(cell=lambda f, h, seed: RNN(f, h, nonlinearity="relu", seed=seed))
    with torch.no_grad():
        net.cell.rnn.weight_hh_l0.fill_(1e20)
        net.cell.rnn.bias_ih_l0.fill_(1.0)
    learner = OnlineLearner(net, k1=4)
    learner.push_many(["ok", "bad"], torch.stack([torch.zeros(3, 2), torch.ones(3, 2)]))
    assert learner.counts["nonfinite_resets"] >= 1 and "bad" in learner.last_reset
    assert bool(torch.isfinite(learner.state(key="bad").h).all())
    assert learner.steps_seen(key="bad") == 0


def test_a_bidirectional_model_is_refused_with_a_pointer_to_lookahead():
    bi = Bidirectional(GRU(2, 4, seed=0), GRU(2, 4, seed=1))
    with pytest.raises(ValueError, match=r"offline .*Lookahead\(model, lookahead=L\)"):
        OnlineLearner(bi)


def test_memory_is_bounded_least_recently_used_stream_evicted_and_counted():
    learner = OnlineLearner(model(), k1=4, max_streams=2)
    x = wave(3)
    learner.push(x, x[:, :1], key="a")  # 3 pending targets
    learner.push(x, key="b")
    learner.push(x, key="c")  # evicts "a", the least recently used
    assert set(learner.keys()) == {"b", "c"}
    assert "a" not in learner and len(learner) == 2
    assert learner.counts["evicted"] == 1 and learner.counts["lost_pending"] == 3
    with pytest.raises(ValueError, match="a push may hold at most max_streams = 2"):
        learner.push_many(["d", "e", "f"], torch.zeros(3, 1, 2))


POISONED = {  # one call that hands the learner a tensor requiring grad
    "push chunk": lambda lrn, x, y, leaf: lrn.push(leaf(x[:5]), y[:5], key="a"),
    "push targets": lambda lrn, x, y, leaf: lrn.push(x[:5], leaf(y[:5]), key="a"),
    "push_many x": lambda lrn, x, y, leaf: lrn.push_many(
        ["a", "b"], leaf(torch.stack([x[:5], -x[:5]])), torch.stack([y[:5]] * 2)),
    "push_many targets": lambda lrn, x, y, leaf: lrn.push_many(
        ["a", "b"], torch.stack([x[:5], -x[:5]]), leaf(torch.stack([y[:5]] * 2))),
    "one step": lambda lrn, x, y, leaf: [lrn.step(leaf(x[t]), leaf(y[t]), key="a")
                                         for t in range(5)],
    "late target": lambda lrn, x, y, leaf: (lrn.push(x[:5], key="a"),
                                            lrn.learn(3, leaf(y[3]), key="a")),
}


@pytest.mark.parametrize("case", list(POISONED))
def test_inputs_and_targets_that_require_grad_are_detached_and_learning_goes_on(case):
    """A chunk or target with requires_grad=True is data like any other: it is detached,
    no graph reaches the learner's buffers, and every later push predicts and learns
    exactly as in a learner that was given the same values without grad."""
    x, y = wave(70), wave(70, 1.0)[:, :1]
    grad, plain = (OnlineLearner(model(), k1=4, k2=6, lr=1e-2) for _ in range(2))
    POISONED[case](grad, x, y, lambda t: t.clone().requires_grad_(True))
    POISONED[case](plain, x, y, lambda t: t)
    for lo in range(5, 65, 3):  # valid pushes across window ends
        got = grad.push(x[lo:lo + 3], y[lo:lo + 3], key="a")
        assert torch.equal(got, plain.push(x[lo:lo + 3], y[lo:lo + 3], key="a"))
        assert not got.requires_grad
    for lrn in (grad, plain):
        lrn.flush()
    assert grad.counts == plain.counts and grad.counts["updates"] >= 15
    assert all(torch.equal(p, q) for p, q in zip(grad.model.parameters(),
                                                 plain.model.parameters(), strict=True))
    assert not grad.rows.xbuf.requires_grad and not grad.rows.ybuf.requires_grad


def test_horizon_inputs_that_require_grad_are_detached():
    def make():
        return OnlineLearner(model(), k1=4, k2=6, lr=1e-2, horizon=1, horizon_column=0)

    x = wave(40)
    grad, plain = make(), make()
    grad.push(x[:6].clone().requires_grad_(True))
    plain.push(x[:6])
    for lo in range(6, 40, 5):
        assert torch.equal(grad.push(x[lo:lo + 5]), plain.push(x[lo:lo + 5]))
    assert grad.counts == plain.counts and grad.counts["updates"] >= 8
    assert all(torch.equal(p, q) for p, q in zip(grad.model.parameters(),
                                                 plain.model.parameters(), strict=True))
