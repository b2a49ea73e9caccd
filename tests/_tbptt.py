"""The one brute-force TBPTT(k1, k2) reference of the tests, for any model given as a
step function, and the pieces the exactness tests share (a recording SGD, chunkings, a
smooth test series).

The reference is written independently of the learner: live states by a plain loop; at
each window end n, recompute steps [n - k2, n) from the live state that entered step
n - k2 (detached) with fresh leaf weights and autograd, mean squared error of the terms
learned at n (by default the last k1 steps), SGD step by hand.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


def series(steps: int, dtype=torch.float64) -> torch.Tensor:
    """A smooth 7-column series (mixed sines and a random walk), z-scored."""
    t = torch.arange(steps, dtype=torch.float64)[:, None]
    gen = torch.Generator().manual_seed(0)
    walk = torch.randn(steps, 7, generator=gen, dtype=torch.float64).cumsum(0) / 5
    x = torch.sin(t / torch.tensor([3.0, 5, 7, 11, 13, 17, 24])) + walk
    return ((x - x.mean(0)) / x.std(0)).to(dtype)


def detach(state):
    """``state`` (a tensor, a ``State``, a list / tuple of them, or ``None``) detached."""
    if state is None:
        return None
    if isinstance(state, list | tuple):
        return type(state)(detach(s) for s in state)
    return state.detach()


def stacked(cell_step: Callable, top: Callable = lambda state: state[-1]) -> Callable:
    """A step function for :func:`reference_tbptt` from ``cell_step(w, x_t, state) ->
    state`` (every layer) and the model's ``head.linear`` readout of ``top(state)`` (by
    default the last layer's entry of a per-layer list)."""
    def step(w: dict, xt: torch.Tensor, state):
        state = cell_step(w, xt, state)
        return top(state) @ w["head.linear.weight"].T + w["head.linear.bias"], state
    return step


def reference_tbptt(step: Callable, w0: dict, state0, x, y, k1: int, k2: int, lr: float,
                    terms_at: Callable | None = None):
    """Predictions and the gradients of every update of TBPTT(k1, k2) with plain SGD.

    ``step(w, x_t, state) -> (out_t, state)`` is one step of the whole model with weights
    ``w`` (named parameters); ``state0`` the state entering step 0; ``terms_at(n)`` the
    steps whose loss terms the update at window end ``n`` learns (default the last
    ``k1``; an update with none is skipped, as the learner skips it).

    Shape
    -----
    x ``(B, T, F)``, y ``(B, T, O)`` -> predictions ``(B, T, O)``.
    """
    terms_at = terms_at or (lambda n: list(range(n - k1, n)))
    w = {k: v.detach().clone() for k, v in w0.items()}
    live = [state0]  # live[t]: the state entering step t
    preds, grads = [], []
    for t in range(x.shape[1]):
        with torch.no_grad():
            out, state = step(w, x[:, t], live[t])
        preds.append(out)
        live.append(state)
        n = t + 1
        terms = terms_at(n) if n % k1 == 0 else []
        if not terms:
            continue
        leaves = {k: v.clone().requires_grad_(True) for k, v in w.items()}
        start = max(0, n - k2)
        state, outs = detach(live[start]), []
        for j in range(start, n):
            out, state = step(leaves, x[:, j], state)
            outs.append(out)
        pred = torch.stack([outs[j - start] for j in terms], 1)
        loss = ((pred - y[:, terms]) ** 2).mean()
        g = torch.autograd.grad(loss, list(leaves.values()))
        grads.append(dict(zip(leaves, g, strict=True)))
        w = {k: (v - lr * gk).detach() for (k, v), gk in zip(w.items(), g, strict=True)}
    return torch.stack(preds, 1), grads


class RecordingSGD(torch.optim.SGD):
    """SGD that keeps a copy of the gradients of every step it takes."""

    def __init__(self, params, lr):
        super().__init__(list(params), lr=lr)
        self.records = []

    def step(self, closure=None):
        self.records.append([p.grad.clone() for p in self.param_groups[0]["params"]])
        return super().step(closure)


def chunk_sizes(steps: int, seed: int, sizes=(0, 1, 2, 3, 7, 11)) -> list[int]:
    """Chunks drawn from ``sizes`` (empty ones included) covering ``steps``, across
    window ends."""
    rng = np.random.default_rng(seed)
    cuts, pos = [], 0
    while pos < steps:
        cuts.append(min(int(rng.choice(sizes)), steps - pos))
        pos += cuts[-1]
    return cuts


def recorded_gradients(learner) -> list[dict]:
    """The gradients of every update a RecordingSGD ``learner`` made, by parameter name."""
    names = [k for k, _ in learner.model.named_parameters()]
    return [dict(zip(names, g, strict=True)) for g in learner.optimizer.records]


def assert_same_updates(got: list[dict], want: list[dict]) -> None:
    """Equal numbers of updates, and each update's gradients equal (1e-10)."""
    assert len(got) == len(want) > 0
    for g, w in zip(got, want, strict=True):
        for name in w:
            torch.testing.assert_close(g[name], w[name], rtol=0, atol=1e-10)


def check_learner_against_reference(learner, step, state0, x, y, k1, k2, lr) -> None:
    """Push ``x``, ``y`` into ``learner`` (a RecordingSGD learner) in uneven chunks and
    assert its gradients and predictions equal :func:`reference_tbptt` (1e-10).

    ``step`` as :func:`reference_tbptt` takes it (see :func:`stacked`)."""
    w0 = dict(learner.model.named_parameters())
    want_pred, want_grads = reference_tbptt(step, w0, state0, x, y, k1, k2, lr)
    keys, got_pred, pos = list(range(x.shape[0])), [], 0
    for size in chunk_sizes(x.shape[1], seed=k1 * 10 + k2):
        got_pred.append(learner.push_many(keys, x[:, pos:pos + size], y[:, pos:pos + size]))
        pos += size
    learner.flush()
    assert len(want_grads) == x.shape[1] // k1
    assert_same_updates(recorded_gradients(learner), want_grads)
    torch.testing.assert_close(torch.cat(got_pred, 1), want_pred, rtol=0, atol=1e-10)
