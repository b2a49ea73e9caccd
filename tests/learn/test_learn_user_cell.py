"""A user's own cell (two state parts, ``h`` and ``m``, unregistered) in OnlineLearner.

The cell of ``tests/_user_cell.py`` keeps a memory ``m`` of its own trailing shape next to
``h``; nothing in the learner knows its parts. If the learner lost ``m`` anywhere (the
entering states of its windows, a checkpoint, a reset), the gradients below would differ
from the reference, which keeps whole ``State`` values.

- TBPTT(k1, k2) exactness (invariant 5): gradients and predictions equal a brute-force
  autograd reference of the same truncation (float64, 1e-10), for horizon targets and
  targets given with their steps, k1 < k2 and k1 == k2, one and two layers, one and two
  streams, any split of the streams into chunks;
- chunk invariance of the predictions while learning (hypothesis over splits with empty
  and one-step chunks);
- exact resume: N steps, save, load into a new learner, N steps equals 2N steps bitwise.
"""

from __future__ import annotations

import pytest
import torch
from _tbptt import (
    RecordingSGD,
    assert_same_updates,
    chunk_sizes,
    recorded_gradients,
    reference_tbptt,
)
from _user_cell import MemoryCell
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.func import functional_call

from streamrnn.heads import Readout, RecurrentModel
from streamrnn.learn import OnlineLearner

F64 = torch.float64
H = 5


def model(features: int = 1, layers: int = 1) -> RecurrentModel:
    return RecurrentModel(MemoryCell(features, H, layers, seed=3),
                          Readout(H, 1, seed=4, dtype=F64))


def series(batch: int, steps: int, features: int, seed: int = 0) -> torch.Tensor:
    """Smooth signals (sums of two sines with random phases), ``(B, T, F)``."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(steps, dtype=F64)[None, :, None]
    phase = torch.rand(batch, 1, features, generator=gen, dtype=F64) * 6
    return torch.sin(t / 3 + phase) + 0.5 * torch.sin(t / 7 + 2 * phase)


def model_step(net):
    """The model's own one-step forward with given weights, as a step for the shared
    reference (whole ``State`` values, every part; ``None``: the initial state)."""
    def step(w: dict, xt: torch.Tensor, state):
        out, state = functional_call(net, w, (xt[:, None], state))
        return out[:, 0], state
    return step


CASES = [  # k1, k2, layers, batch, horizon
    (4, 8, 1, 1, True),   # the learner: OnlineLearner(..., k1=4, k2=8, horizon=1)
    (4, 8, 2, 2, True),
    (3, 7, 1, 2, False),
    (2, 9, 2, 1, False),
    (5, 5, 1, 2, False),  # k1 == k2: the fused window and the window lane
]


@pytest.mark.parametrize("k1,k2,layers,batch,horizon", CASES)
def test_gradients_and_predictions_equal_brute_force(k1, k2, layers, batch, horizon):
    steps, lr = 41, 0.05
    if horizon:
        x = series(batch, steps, 1, seed=k2)
        y = torch.cat([x[:, 1:], torch.zeros(batch, 1, 1, dtype=F64)], 1)  # y[t] = x[t+1]

        def terms_at(n):  # the target of step t arrives with step t + 1
            return [t for t in range(n) if n - k1 < t + 2 <= n]
    else:
        x = series(batch, steps, 2, seed=k1)
        y = torch.tanh(x[..., :1] - 0.5 * x[..., 1:])

        def terms_at(n):
            return list(range(n - k1, n))
    net = model(x.shape[2], layers)
    want_pred, want_grads = reference_tbptt(model_step(net), dict(net.named_parameters()),
                                            None, x, y, k1, k2, lr, terms_at)
    learner = OnlineLearner(model(x.shape[2], layers), optimizer=RecordingSGD, lr=lr, k1=k1,
                            k2=k2, clip=None, horizon=1 if horizon else None)
    keys, got_pred, pos = list(range(batch)), [], 0
    for size in chunk_sizes(steps, seed=k1 * 7 + k2, sizes=(0, 1, 2, 3, 5, 9)):
        chunk = x[:, pos:pos + size]
        got_pred.append(learner.push_many(keys, chunk) if horizon else
                        learner.push_many(keys, chunk, y[:, pos:pos + size]))
        pos += size
    learner.flush()
    got_grads = recorded_gradients(learner)
    assert learner.counts["late_dropped"] == 0 and learner.counts["updates"] == len(want_grads)
    assert_same_updates(got_grads, want_grads)
    torch.testing.assert_close(torch.cat(got_pred, 1), want_pred, rtol=0, atol=1e-10)
    assert learner.state(key=0).parts == ("h", "m")


def learner_of(k1=4, k2=8):
    return OnlineLearner(model(), k1=k1, k2=k2, horizon=1, lr=1e-2)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=st.lists(st.sampled_from([0, 1, 1, 2, 3, 4, 7, 13]), min_size=1, max_size=12),
       k=st.sampled_from([(4, 8), (3, 5), (4, 4)]))
def test_predictions_do_not_depend_on_the_chunking(sizes, k):
    x = series(1, 40, 1, seed=5)[0]
    whole = learner_of(*k)
    want = whole.push(x)
    whole.flush()
    chunked, outs, pos = learner_of(*k), [], 0
    for size in sizes:
        outs.append(chunked.push(x[pos:pos + size]))
        pos += size
    outs.append(chunked.push(x[pos:]))
    chunked.flush()
    torch.testing.assert_close(torch.cat(outs), want, rtol=0, atol=1e-10)
    assert chunked.counts == whole.counts and whole.counts["updates"] > 0
    for a, b in zip(chunked.model.parameters(), whole.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


def run(learner, x, lo, hi):
    """Steps lo .. hi of two streams, one pushed step by step (the one-step lane), one in
    chunks of 3, and a third that is reset half way."""
    outs = []
    for t in range(lo, hi):
        outs.append(learner.push(x[0, t], key="steps"))
    for t in range(lo, hi, 3):
        outs.append(learner.push(x[1, t:min(t + 3, hi)], key=("chunks", 1)))
    outs.append(learner.push_many(["a", "b"], x[:, lo:hi] * 0.5))
    if lo == 0:
        learner.reset("b")
    return torch.cat([o.reshape(-1) for o in outs])


def test_save_load_resume_equals_an_uninterrupted_run(tmp_path):
    x = series(2, 60, 1, seed=9)
    straight = learner_of()
    run(straight, x, 0, 30)
    want = run(straight, x, 30, 60)
    straight.flush()

    first = learner_of()
    run(first, x, 0, 30)
    first.save(tmp_path / "user.safetensors")
    resumed = learner_of()
    resumed.load(tmp_path / "user.safetensors")
    got = run(resumed, x, 30, 60)
    resumed.flush()

    assert torch.equal(got, want)
    for a, b in zip(resumed.model.parameters(), straight.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert resumed.counts == straight.counts and straight.counts["updates"] > 0
    for key in straight.keys():
        for part in ("h", "m"):
            assert torch.equal(resumed.state(key=key)[part], straight.state(key=key)[part])
    assert sorted(resumed.state_dict()["tensors"]) == sorted(straight.state_dict()["tensors"])
    assert {"streams.enter.h", "streams.enter.m", "streams.live.h", "streams.live.m"} <= set(
        straight.state_dict()["tensors"])
