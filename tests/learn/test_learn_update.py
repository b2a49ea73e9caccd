"""The learner's optimizer step is ``optimizer.step()``, bit for bit.

Plain SGD on the CPU runs as one ``_foreach_add_`` (``streamrnn.learn._update``); every
other optimizer, setting or hook goes through ``optimizer.step()`` itself. The classic
loop's equality (``test_learn.py``) covers it inside a learner; here the step alone is
compared over random gradients, groups and learning rates, and each way out of the fast
path is checked to take ``optimizer.step()`` (its hooks run, a scheduler sees it).
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.optim.optimizer import register_optimizer_step_post_hook

from streamrnn.cells import GRU
from streamrnn.heads import Readout, RecurrentModel
from streamrnn.learn import OnlineLearner


def learner(dtype=torch.float32, **sgd) -> OnlineLearner:
    model = RecurrentModel(GRU(3, 5, num_layers=2, seed=0, dtype=dtype),
                           Readout(5, 2, seed=1, dtype=dtype))
    return OnlineLearner(model, k1=4, optimizer=torch.optim.SGD, **{"lr": 0.1, **sgd})


def give_grads(lrn: OnlineLearner, seed: int, scale: float, none: list[bool]) -> None:
    gen = torch.Generator().manual_seed(seed)
    for p, skip in zip(lrn.updater.params, none, strict=False):
        p.grad = None if skip else scale * torch.randn(p.shape, generator=gen, dtype=p.dtype)


def same_params(a: OnlineLearner, b: OnlineLearner) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a.updater.params, b.updater.params, strict=True))


@settings(max_examples=40, deadline=None)
@given(dtype=st.sampled_from([torch.float32, torch.float64]),
       lr=st.one_of(st.floats(1e-8, 1e3), st.integers(1, 5)),
       scale=st.floats(1e-30, 1e30), split=st.booleans(),
       none=st.lists(st.booleans(), min_size=8, max_size=8), seed=st.integers(0, 2**16))
def test_plain_sgd_step_is_optimizer_step_bit_for_bit(dtype, lr, scale, split, none, seed):
    fast, ref = learner(dtype, lr=lr), learner(dtype, lr=lr)
    if split:  # two parameter groups, the second with its own learning rate
        for lrn in (fast, ref):
            params = lrn.updater.params
            lrn.updater.optimizer = torch.optim.SGD([{"params": params[:3]},
                                             {"params": params[3:], "lr": lr / 3}], lr=lr)
    for lrn in (fast, ref):
        give_grads(lrn, seed, scale, none)
    assert fast.updater._sgd_groups(fast.updater.optimizer) is not None  # the fast path applies
    fast.updater.step()
    ref.updater.optimizer.step()
    assert same_params(fast, ref)


class MySGD(torch.optim.SGD):
    pass


WAYS_OUT = {
    "momentum": lambda lrn: lrn.updater.optimizer.param_groups[0].update(momentum=0.9),
    "weight decay": lambda lrn: lrn.updater.optimizer.param_groups[0].update(weight_decay=0.01),
    "maximize": lambda lrn: lrn.updater.optimizer.param_groups[0].update(maximize=True),
    "tensor lr": lambda lrn: lrn.updater.optimizer.param_groups[0].update(lr=torch.tensor(0.1)),
    "subclass": lambda lrn: setattr(lrn.updater, "optimizer", MySGD(lrn.updater.params, lr=0.1)),
    "adam": lambda lrn: setattr(lrn.updater, "optimizer",
                                torch.optim.Adam(lrn.updater.params, lr=0.1)),
}


@pytest.mark.parametrize("way", list(WAYS_OUT))
def test_other_optimizers_and_settings_take_optimizer_step(way):
    fast, ref = learner(), learner()
    for lrn in (fast, ref):
        WAYS_OUT[way](lrn)
        give_grads(lrn, 0, 1.0, [False] * 8)
    assert fast.updater._sgd_groups(fast.updater.optimizer) is None
    for _ in range(2):
        fast.updater.step()
        ref.updater.optimizer.step()
    assert same_params(fast, ref)


def test_hooks_and_schedulers_see_every_step():
    lrn = learner()
    give_grads(lrn, 0, 1.0, [False] * 8)
    seen = []
    handle = lrn.optimizer.register_step_pre_hook(lambda *a: seen.append("instance"))
    lrn.updater.step()
    handle.remove()
    handle = register_optimizer_step_post_hook(lambda *a: seen.append("global"))
    try:
        lrn.updater.step()
    finally:
        handle.remove()
    assert seen == ["instance", "global"]
    assert lrn.updater._sgd_groups(lrn.optimizer) is not None  # hooks gone: the fast path again
    sched = torch.optim.lr_scheduler.StepLR(lrn.optimizer, step_size=1, gamma=0.5)
    assert lrn.updater._sgd_groups(lrn.optimizer) is None  # the scheduler wraps step
    lrn.updater.step()
    assert lrn.optimizer._opt_called
    sched.step()
    assert lrn.optimizer.param_groups[0]["lr"] == 0.05


def test_sparse_gradients_take_optimizer_step():
    model = RecurrentModel(GRU(4, 5, seed=0), Readout(5, 3, seed=1), num_tokens=7, seed=2)
    model.embedding.sparse = True
    lrn = OnlineLearner(model, k1=3, optimizer=torch.optim.SGD, lr=0.1)
    # One whole window with its targets: learned in the push, the embedding's gradient
    # sparse.
    lrn.push_many(["a"], torch.tensor([[1, 2, 6]]), torch.tensor([[2, 0, 1]]))
    assert model.embedding.weight.grad.is_sparse
    assert lrn.updater._sgd_groups(lrn.optimizer) is None
    assert lrn.counts["updates"] == 1
