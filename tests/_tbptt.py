"""A brute-force TBPTT(k1, k2) reference for any cell given as a step function, and the
pieces the exactness tests share (a recording SGD, chunkings, a smooth test series).

The reference is written independently of the learner: live states by a plain loop; at
each window end n, recompute steps [n - k2, n) from the live state that entered step
n - k2 (detached) with autograd, mean squared error of the last k1 steps, SGD step.
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


def reference_tbptt(step: Callable, w0: dict, zeros: list, x, y, k1: int, k2: int, lr: float):
    """Predictions and the gradients of every update of TBPTT(k1, k2) with SGD.

    ``step(w, x_t, hs) -> hs`` is one step of the cell (every layer) with weights ``w``
    (the model's named parameters, ``cell.*``); ``zeros`` the initial per-layer states;
    the readout is ``head.linear``.
    """
    w = {k: v.clone() for k, v in w0.items()}
    batch, steps = x.shape[:2]

    def read(params, h):
        return h @ params["head.linear.weight"].T + params["head.linear.bias"]

    live = [zeros]  # live[t]: the states entering step t
    preds, grads = [], []
    for t in range(steps):
        with torch.no_grad():
            hs = step(w, x[:, t], live[t])
            preds.append(read(w, hs[-1]))
        live.append(hs)
        n = t + 1
        if n % k1:
            continue
        params = {k: v.clone().requires_grad_(True) for k, v in w.items()}
        start = max(0, n - k2)
        hs, out = [s.detach() for s in live[start]], {}
        for j in range(start, n):
            hs = step(params, x[:, j], hs)
            out[j] = read(params, hs[-1])
        terms = range(n - k1, n)
        pred = torch.stack([torch.stack([out[j][b] for j in terms]) for b in range(batch)])
        target = torch.stack([torch.stack([y[b, j] for j in terms]) for b in range(batch)])
        g = torch.autograd.grad(((pred - target) ** 2).mean(), list(params.values()))
        grads.append(dict(zip(params, g, strict=True)))
        w = {k: (v - lr * gk).detach() for (k, v), gk in zip(w.items(), g, strict=True)}
    return torch.stack(preds, 1), grads


class RecordingSGD(torch.optim.SGD):
    """SGD that keeps a copy of the gradients of every step it takes."""

    def __init__(self, params, lr):
        params = list(params)
        super().__init__(params, lr=lr)
        self.records = []

    def step(self, closure=None):
        self.records.append([p.grad.clone() for p in self.param_groups[0]["params"]])
        return super().step(closure)


def chunk_sizes(steps: int, seed: int) -> list[int]:
    """Chunks of 0 to 11 steps covering ``steps``, across window ends."""
    rng = np.random.default_rng(seed)
    sizes, pos = [], 0
    while pos < steps:
        sizes.append(min(int(rng.choice([0, 1, 2, 3, 7, 11])), steps - pos))
        pos += sizes[-1]
    return sizes


def check_learner_against_reference(learner, step, zeros, x, y, k1, k2, lr) -> None:
    """Push ``x``, ``y`` into ``learner`` (a RecordingSGD learner) in uneven chunks and
    assert its gradients and predictions equal :func:`reference_tbptt` (1e-10)."""
    names = [k for k, _ in learner.model.named_parameters()]
    w0 = {k: v.detach().clone() for k, v in learner.model.named_parameters()}
    want_pred, want_grads = reference_tbptt(step, w0, zeros, x, y, k1, k2, lr)
    keys, got_pred, pos = list(range(x.shape[0])), [], 0
    for size in chunk_sizes(x.shape[1], seed=k1 * 10 + k2):
        got_pred.append(learner.push_many(keys, x[:, pos:pos + size], y[:, pos:pos + size]))
        pos += size
    learner.flush()
    got_grads = [dict(zip(names, g, strict=True)) for g in learner.optimizer.records]
    assert len(got_grads) == len(want_grads) == x.shape[1] // k1
    for got, want in zip(got_grads, want_grads, strict=True):
        for name in want:
            torch.testing.assert_close(got[name], want[name], rtol=0, atol=1e-10)
    torch.testing.assert_close(torch.cat(got_pred, 1), want_pred, rtol=0, atol=1e-10)
