"""Properties of the learner's contract (:mod:`streamrnn.learn`) that surviving mutants of
``_windows``, ``_update`` and ``_core`` showed untested (docs/mutation.md).

Each test compares against an independent reference (the canonical detach-every-k loop,
the same run with an equivalent loss or key order, or counts that follow from the
contract), not against values the learner printed.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from streamrnn.cells import GRU
from streamrnn.heads import Readout, RecurrentModel
from streamrnn.learn import OnlineLearner


def model(features=2, hidden=6, out=1, dtype=torch.float64) -> RecurrentModel:
    return RecurrentModel(GRU(features, hidden, seed=0, dtype=dtype),
                          Readout(hidden, out, seed=1, dtype=dtype))


def series(streams: int, steps: int, features=2, dtype=torch.float64) -> torch.Tensor:
    """A smooth (streams, steps, features) input, each stream of its own phase."""
    t = torch.arange(steps, dtype=dtype)[None, :, None] / 3
    phase = torch.arange(streams, dtype=dtype)[:, None, None] * 0.7
    freq = 1 + torch.arange(features, dtype=dtype)[None, None, :] / 2
    return torch.sin(freq * t + phase)


def weights(learner: OnlineLearner) -> list[torch.Tensor]:
    return [p.detach().clone() for p in learner.model.parameters()]


def canonical(net, x, y, k, clip, lr):
    """The classic detach-every-k loop (word_language_model, batch first) with plain SGD:
    repackage hidden, zero_grad, forward, MSE loss, backward, clip_grad_norm_, step."""
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    hidden, outs = net.initial_state(x.shape[0]), []
    for i in range(0, x.shape[1], k):
        hidden = hidden.detach()
        net.zero_grad()
        out, hidden = net(x[:, i:i + k], hidden)
        loss = nn.functional.mse_loss(out, y[:, i:i + k])
        loss.backward()
        if clip is not None:
            nn.utils.clip_grad_norm_(net.parameters(), clip)
        opt.step()
        outs.append(out.detach())
    return torch.cat(outs, 1)


# -- _update: the loss ------------------------------------------------------------------
@pytest.mark.parametrize("k1,k2", [(3, 5), (4, 4)], ids=["general_path", "window_lane"])
@pytest.mark.parametrize("per_term", [
    (nn.MSELoss(reduction="none"), nn.MSELoss()),
    (lambda p, t: (p - t).pow(2).sum(-1), lambda p, t: (p - t).pow(2).sum(-1).mean()),
], ids=["reduction_none", "one_value_per_term"])
def test_a_loss_with_one_value_per_term_is_averaged(k1, k2, per_term):
    """The contract: a loss that returns one value per term is averaged. The same run
    with the loss averaged by hand gives the same predictions and weights."""
    none, mean = per_term
    x = series(2, 24)
    y = x[:, :, :1].roll(-1, 1)
    runs = []
    for loss in (none, mean):
        learner = OnlineLearner(model(), loss=loss, k1=k1, k2=k2, lr=0.05,
                                optimizer=torch.optim.SGD)
        pred = learner.push_many(["a", "b"], x, y)
        learner.flush()
        runs.append((pred, weights(learner), dict(learner.counts), learner.last_loss))
    (pa, wa, ca, la), (pb, wb, cb, lb) = runs
    assert ca == cb and ca["updates"] == 24 // k1
    torch.testing.assert_close(pa, pb, rtol=0, atol=1e-12)
    for a, b in zip(wa, wb, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    assert la == pytest.approx(lb, rel=1e-12)


def test_a_loss_that_returns_no_tensor_is_refused_naming_its_type():
    learner = OnlineLearner(model(), loss=lambda p, t: 0.5, k1=2)
    with pytest.raises(ValueError, match="float"):
        learner.push(series(1, 2)[0], torch.zeros(2, 1, dtype=torch.float64))


@pytest.mark.parametrize("how", ["nan_loss", "nan_gradient"])
def test_every_skipped_update_is_counted(how):
    """Each update with a non-finite loss or gradient norm is skipped and counted once:
    three due windows, three skips, no update."""
    if how == "nan_loss":
        def loss(p, t):
            return (p - t).pow(2).mean() * float("nan")
    else:  # a finite loss (0) whose gradient is 0 * inf
        def loss(p, t):
            return (p - t).pow(2).mean() * 0 + torch.sqrt((p - p.detach()).pow(2)).sum() * 0

    learner = OnlineLearner(model(), loss=loss, k1=4, k2=6, lr=0.1)
    before = weights(learner)
    x = series(1, 12)[0]
    learner.push(x, x[:, :1])
    learner.flush()
    assert learner.counts["skipped_nonfinite"] == 3
    assert learner.counts["updates"] == 0
    assert all(torch.equal(a, b) for a, b in zip(before, weights(learner), strict=True))


# -- _update: clipping ------------------------------------------------------------------
class Tagged(nn.Parameter):
    """A Parameter subclass (as parametrization or quantization libraries make)."""


@pytest.mark.parametrize("tagged", [False, True], ids=["plain", "parameter_subclass"])
def test_k1_equals_k2_with_clipping_is_the_canonical_loop(tagged):
    """k1 == k2 with a clip that bites is the canonical loop with clip_grad_norm_, for
    plain parameters and for a model holding a Parameter subclass."""
    net = model()
    if tagged:
        net.head.linear.weight = Tagged(net.head.linear.weight.detach().clone())
    ref = copy.deepcopy(net)
    x = series(3, 20)
    y = 3 * x[:, :, :1].roll(-1, 1)
    want = canonical(ref, x, y, k=4, clip=0.01, lr=0.3)
    learner = OnlineLearner(net, k1=4, clip=0.01, lr=0.3, optimizer=torch.optim.SGD)
    got = learner.push_many(["a", "b", "c"], x, y)
    learner.flush()
    assert learner.counts["updates"] == 5
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    for a, b in zip(learner.model.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_a_clip_beyond_the_float32_range_clips_nothing():
    """No float32 gradient norm exceeds 1e39: the run equals the run without a clip."""
    x = series(2, 16, dtype=torch.float32)
    y = x[:, :, :1].roll(-1, 1)
    runs = []
    for clip in (1e39, None):
        learner = OnlineLearner(model(dtype=torch.float32), k1=4, k2=6, clip=clip, lr=0.1,
                                optimizer=torch.optim.SGD)
        pred = learner.push_many(["a", "b"], x, y)
        learner.flush()
        runs.append((pred, weights(learner), learner.counts["updates"]))
    (pa, wa, na), (pb, wb, nb) = runs
    assert na == nb == 4
    assert torch.equal(pa, pb)
    assert all(torch.equal(a, b) for a, b in zip(wa, wb, strict=True))


# -- _core: counters of dropped targets -------------------------------------------------
def test_every_late_and_every_duplicate_target_is_counted():
    """k1 = k2 = 4 after 8 steps without targets: the next update (at 8) learns steps
    4..7, so targets of steps 0..3 are late; a second target of a step is a duplicate."""
    learner = OnlineLearner(model(), k1=4, k2=4, lr=0.1)
    learner.push(series(1, 8)[0])
    assert [learner.learn(t, [0.0]) for t in (0, 1, 3)] == [False] * 3
    assert [learner.learn(5, [0.0]) for _ in range(3)] == [True, False, False]
    assert learner.learn(6, [0.0])
    assert learner.counts["late_dropped"] == 3
    assert learner.counts["duplicate_dropped"] == 2
    learner.flush()
    assert learner.counts["learned"] == 2


# -- _core: key order --------------------------------------------------------------------
def test_a_masked_push_in_any_key_order_is_the_push_in_slot_order():
    """Keys out of slot order with a mask: row i (input, target and mask) stays with
    keys[i], so predictions, weights and counts equal the push in slot order."""
    keys = ["a", "b", "c"]
    x = series(3, 9)
    y = x[:, :, :1].roll(-2, 1)
    mask = torch.tensor([[True, False, False] * 3, [False, True, True] * 3,
                         [False, False, True] * 3])
    perm = [2, 0, 1]
    runs = []
    for order in ([0, 1, 2], perm):
        learner = OnlineLearner(model(), k1=3, k2=5, lr=0.1, optimizer=torch.optim.SGD)
        learner.push_many(keys, x[:, :1], y[:, :1], mask=mask[:, :1])  # slots a, b, c
        pred = learner.push_many([keys[i] for i in order], x[order, 1:], y[order, 1:],
                                 mask=mask[order, 1:])
        learner.flush()
        back = torch.empty(3, dtype=torch.long)
        back[torch.tensor(order)] = torch.arange(3)
        runs.append((pred[back], weights(learner), dict(learner.counts)))
    (pa, wa, ca), (pb, wb, cb) = runs
    assert ca == cb and ca["learned"] == int(mask.sum())
    assert torch.equal(pa, pb)
    for a, b in zip(wa, wb, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-14)


@pytest.mark.parametrize("lane", [True, False], ids=["window_lane", "general_path"])
def test_many_streams_out_of_order_give_terms_in_slot_order(lane):
    """20 streams (more than a handful) pushed in a shuffled key order: the loss sees its
    terms step-major, within a step by stream in slot order (slot = order of first push),
    and every stream gets its own prediction."""
    seen = []

    def loss(pred, target):
        seen.append(target[:, 0].tolist())
        return (pred - target).pow(2).mean()

    n, k = 20, 3
    keys = [f"s{i}" for i in range(n)]
    learner = OnlineLearner(model(), loss=loss, k1=k, lr=0.01)
    learner.stepper.fast = lane
    x = series(n, 2 * k)
    tg = 100.0 * torch.arange(n, dtype=torch.float64)[:, None, None] + torch.arange(
        2 * k, dtype=torch.float64)[None, :, None]  # stream s, step t: 100 s + t
    learner.push_many(keys, x[:, :k], tg[:, :k])  # slots in key order
    learner.flush()
    # the least slot first, then the others shuffled: not increasing
    order = [0, *torch.randperm(n - 1, generator=torch.Generator().manual_seed(3)).add(1)
             .tolist()]
    alone = copy.deepcopy(learner)
    pred = learner.push_many([keys[i] for i in order], x[order, k:], tg[order, k:])
    learner.flush()
    want = [[100.0 * s + t for t in range(k) for s in range(n)],
            [100.0 * s + t for t in range(k, 2 * k) for s in range(n)]]
    assert seen == want
    # each stream's prediction is its own: the same as pushing it in slot order
    ref = alone.push_many(keys, x[:, k:], tg[:, k:])
    back = torch.empty(n, dtype=torch.long)
    back[torch.tensor(order)] = torch.arange(n)
    assert torch.equal(pred[back], ref)


# -- _windows: the ring of entering states ----------------------------------------------
@pytest.mark.parametrize("k1,k2", [(1, 1), (2, 5), (3, 7), (4, 4), (4, 12)])
def test_the_ring_holds_k2_over_k1_plus_one_entering_states(k1, k2):
    """The contract: the entering states are kept in a ring of k2 // k1 + 1 states per
    stream (every state part), as a checkpoint shows."""
    learner = OnlineLearner(model(), k1=k1, k2=k2)
    learner.push_many(["a", "b"], series(2, 2 * k2 + 1))
    tensors = learner.state_dict()["tensors"]
    ring = [v for name, v in tensors.items() if name.startswith("streams.enter.")]
    assert ring and all(v.shape[0] == k2 // k1 + 1 for v in ring)


# -- _core: the update's groups ------------------------------------------------------------
def test_windows_of_different_widths_come_widest_first_and_each_group_is_learned():
    """k1 = 2, k2 = 6: stream a is 4 steps ahead of b, so at their common window end a's
    window is 6 steps wide and b's 2. The loss sees a's group first (widest first), and
    a group with no pending target does not keep the next one from being learned."""
    seen = []

    def loss(pred, target):
        seen.append(target[:, 0].tolist())
        return (pred - target).pow(2).mean()

    for with_a in (True, False):
        seen.clear()
        learner = OnlineLearner(model(), loss=loss, k1=2, k2=6, lr=0.01)
        x = series(2, 6)
        tg = torch.arange(6, dtype=torch.float64)[None, :, None] + torch.tensor(
            [[[10.0]], [[20.0]]])  # stream a: 10 + t, b: 20 + t
        learner.push(x[0, :4], tg[0, :4] if with_a else None, key="a")
        learner.flush()
        learner.push_many(["a", "b"], torch.stack([x[0, 4:], x[1, :2]]),
                          torch.stack([tg[0, 4:], tg[1, :2]]),
                          mask=None if with_a else torch.tensor([[False, False],
                                                                 [True, True]]))
        learner.flush()
        if with_a:
            assert seen[-1] == [14.0, 15.0, 20.0, 21.0]  # a (width 6), then b (width 2)
            assert learner.counts["learned"] == 8  # 2 + 2 of a alone, then 2 + 2
        else:
            assert seen == [[20.0, 21.0]]  # a's group has no target; b's is still learned
            assert learner.counts["learned"] == 2


def test_an_evicted_stream_leaves_the_others_update_as_if_it_had_never_been_pushed():
    """k1 == k2: a whole window of a and b (masked, so learned lazily), then a new key
    evicts a (the least recent) before the update runs: b's update equals that of a
    learner that only ever had b (a's pending targets are lost)."""
    k = 4
    x = series(2, k)
    y = x[:, :, :1].roll(-1, 1)
    runs = []
    for keys in (["a", "b"], ["b"]):
        learner = OnlineLearner(model(), k1=k, lr=0.5, optimizer=torch.optim.SGD,
                                max_streams=2)
        rows = slice(2 - len(keys), 2)
        given = torch.ones(len(keys), k, dtype=torch.bool)
        learner.push_many(keys, x[rows], y[rows], mask=given)
        learner.push(x[0, 0], key="c")  # a (the first key: least recent) is evicted
        learner.flush()
        runs.append((weights(learner), learner.counts["learned"]))
    (wa, na), (wb, nb) = runs
    assert na == nb == k
    for a, b in zip(wa, wb, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


# -- _core: resets and empty pushes -------------------------------------------------------
def test_every_nonfinite_reset_is_counted():
    """A stream whose state overflows is reset and counted, each time it happens."""
    from streamrnn.cells import RNN
    net = RecurrentModel(RNN(2, 4, nonlinearity="relu", seed=0), Readout(4, 1, seed=1))
    with torch.no_grad():
        net.cell.rnn.weight_hh_l0.fill_(1e20)
        net.cell.rnn.bias_ih_l0.fill_(1.0)
    learner = OnlineLearner(net, k1=4)
    for i in range(3):
        learner.push(torch.ones(3, 2), key="bad")
        assert learner.last_reset == ["bad"]
        assert learner.counts["nonfinite_resets"] == i + 1


def test_an_empty_push_of_token_ids_gives_predictions_of_the_models_dtype():
    """Zero steps of a token model: an empty prediction of the dtype and shape a
    non-empty push gives (ids are int64, predictions are not)."""
    net = RecurrentModel(GRU(4, 5, seed=0), Readout(5, 7, seed=1), num_tokens=7, seed=2)
    learner = OnlineLearner(net, k1=3)
    full = learner.push_many(["a", "b"], torch.tensor([[1, 2], [3, 4]]))
    empty = learner.push_many(["a", "b"], torch.zeros(2, 0, dtype=torch.long))
    assert empty.dtype == full.dtype and empty.shape == (2, 0, *full.shape[2:])


# -- _window: the classic loop's repeated pushes ------------------------------------------
def test_repeated_window_pushes_of_some_streams_leave_the_others_targets_alone():
    """k1 == k2 = 3: streams a, b, c; b holds a pending target mid-window while a and c
    are pushed whole windows with all their targets, again and again (the classic loop's
    repeated pushes). Every target given is learned once: b's too."""
    k = 3
    learner = OnlineLearner(model(), k1=k, lr=0.01)
    x = series(3, 4 * k)
    y = x[:, :, :1]
    learner.push_many(["a", "b", "c"], x[:, :k], y[:, :k])
    learner.push(x[1, k:k + 1], y[1, k:k + 1], key="b")  # b: step 3 of its window 3..5
    for i in range(1, 4):
        learner.push_many(["a", "c"], x[[0, 2], i * k:(i + 1) * k],
                          y[[0, 2], i * k:(i + 1) * k])
    learner.push(x[1, k + 1:2 * k], y[1, k + 1:2 * k], key="b")
    learner.flush()
    assert learner.counts["learned"] == 3 * k + 3 * 2 * k + k


def test_a_fresh_learner_has_reset_no_stream_and_a_bf16_model_learns_with_a_clip():
    # last_reset is a list before any push (documented: the keys the last push reset);
    # a bf16 model's clip runs on its own dtype (docs/mutation.md: _core 8, _update 6-7)
    assert OnlineLearner(model(), k1=2).last_reset == []
    net = model(dtype=torch.bfloat16)
    learner = OnlineLearner(net, k1=2, clip=0.5, lr=0.1)
    before = [w.clone() for w in weights(learner)]
    learner.push_many(["a", "b"], series(2, 4, dtype=torch.bfloat16),
                      torch.ones(2, 4, 1, dtype=torch.bfloat16))
    assert learner.counts["updates"] == 2 and learner.last_reset == []
    assert any(not torch.equal(a, b) for a, b in zip(before, weights(learner), strict=True))
