"""The online learner's updater: loss, zero_grad, gradient clipping, optimizer step (private).

:meth:`Updater.learn` is one update from its loss terms. Each step does what the plain
torch call does, bit for bit, with less around the kernels in the common case
(``benchmarks/bench_tbptt.py``: the update runs once per window, and its Python runs
with cold caches after the forward and backward kernels):

- :meth:`Updater.zero_grad`: ``optimizer.zero_grad(set_to_none=True)``;
- :meth:`Updater.clip_grads`: ``nn.utils.clip_grad_norm_``;
- :meth:`Updater.step`: ``optimizer.step()``; plain SGD is one ``_foreach_add_``.
"""

from __future__ import annotations

import math
import struct

import torch
from torch import Tensor, nn
from torch.optim import optimizer as _optimizer

from ..engines.compiled import after_optimizer_step

__all__ = ["Updater"]

# Rounding of a Python float to a dtype. One float64 operation on float32 operands,
# rounded to float32, is the correctly rounded float32 operation (53 >= 2 * 24 + 2 bits),
# as torch's float32 kernels compute it.
_F32 = struct.Struct("f")


def _f32(v: float) -> float:
    try:
        return _F32.unpack(_F32.pack(v))[0]
    except OverflowError:  # rounds past the largest float32
        return math.copysign(math.inf, v)


_ROUND = {torch.float64: float, torch.float32: _f32}


# optimizer.step()'s hooks of every optimizer (torch.optim.register_optimizer_step_*_hook).
_GLOBAL_HOOKS = tuple(getattr(_optimizer, name, None) for name in (
    "_global_optimizer_pre_hooks", "_global_optimizer_post_hooks"))
# The compiled engine's own post-hook acts on fused steps only: a plain SGD step skips it.
_OWN_HOOKS = (after_optimizer_step,)


def _no_global_hooks() -> bool:
    return all(h is not None and all(f in _OWN_HOOKS for f in h.values()) for h in _GLOBAL_HOOKS)


class Updater:
    """One TBPTT update from its loss terms: loss, zero_grad, backward, clip, step.

    Parameters
    ----------
    params : list of Parameter
        The model's trainable parameters (all held by ``optimizer``).
    optimizer : torch.optim.Optimizer
    loss : callable
        ``loss(pred, target)``; a per-term result is averaged.
    clip : float or None
        Gradient-norm clip (``None``: none).
    device : torch.device
        The model's device.
    counts : dict
        The learner's counters: ``updates``, ``learned``, ``skipped_nonfinite``.

    Attributes
    ----------
    version : int
        Optimizer steps taken (a forward's graph is valid for one version).
    last_loss : float or None
        The loss of the last update.
    """

    def __init__(self, params: list, optimizer, loss, clip: float | None, device,
                 counts: dict) -> None:
        self.params, self.optimizer, self.loss, self.clip = params, optimizer, loss, clip
        self.device, self.counts = device, counts
        self.version = 0
        self.last_loss: float | None = None
        self._plain = None  # parameters plain, one dtype and device (clip_grads)

    def learn(self, pred: Tensor, target: Tensor) -> None:
        """One update from loss terms ``pred`` / ``target`` (their first dimension);
        a non-finite loss or gradient norm skips it (weights and optimizer state stay
        as they were) and is counted."""
        loss = self.loss(pred, target)
        if not isinstance(loss, Tensor):
            raise ValueError(f"loss must return a Tensor, got {type(loss).__name__}")
        if loss.dim() > 0:
            loss = loss.mean()
        value = float(loss.detach())
        self.zero_grad()
        if not math.isfinite(value):
            self.counts["skipped_nonfinite"] += 1
            return
        loss.backward()
        if not self.clip_grads():
            self.zero_grad()
            self.counts["skipped_nonfinite"] += 1
            return
        self.step()
        self.version += 1
        self.counts["updates"] += 1
        self.counts["learned"] += pred.shape[0]
        self.last_loss = value

    def step(self) -> None:
        """``optimizer.step()``.

        Plain SGD on the CPU (no momentum, weight decay or maximize; a float learning
        rate; dense gradients; nothing hooked to ``step``, no ``lr_scheduler`` wrapping
        it) is what its step runs there, ``param.add_(grad, alpha=-lr)`` for every
        parameter with a gradient, as one ``_foreach_add_``, without the step's hook and
        profiling wrapper and its per-call checks.
        """
        opt = self.optimizer
        groups = self._sgd_groups(opt)
        if groups is None:
            opt.step()
            return
        with torch.no_grad():
            for params, grads, lr in groups:
                torch._foreach_add_(params, grads, alpha=-lr)

    def _sgd_groups(self, opt) -> list | None:
        # (params, grads, lr) of each group when opt.step() is plain SGD on the CPU, as
        # step describes; otherwise None.
        if (type(opt) is not torch.optim.SGD or self.device.type != "cpu"
                or "step" in opt.__dict__ or opt._optimizer_step_pre_hooks
                or opt._optimizer_step_post_hooks or not _no_global_hooks()
                or getattr(opt, "grad_scale", None) is not None
                or getattr(opt, "found_inf", None) is not None):
            return None
        out = []
        for group in opt.param_groups:
            lr = group["lr"]
            if (group["momentum"] != 0 or group["weight_decay"] != 0
                    or group.get("maximize") or group.get("differentiable")
                    or group.get("fused") or type(lr) not in (float, int)):
                return None
            params = [p for p in group["params"] if p.grad is not None]
            grads = [p.grad for p in params]
            if any(g.is_sparse or g.device.type != "cpu" for g in grads):
                return None
            if params:
                out.append((params, grads, lr))
        return out

    def zero_grad(self) -> None:
        """``optimizer.zero_grad(set_to_none=True)``, without its profiling wrapper when
        the optimizer holds exactly the model's trainable parameters (the common case)."""
        groups = self.optimizer.param_groups
        if len(groups) == 1 and len(groups[0]["params"]) == len(self.params):
            for p in self.params:
                p.grad = None
        else:
            self.optimizer.zero_grad(set_to_none=True)

    def clip_grads(self) -> bool:
        """Clip the gradients to norm ``clip`` as ``nn.utils.clip_grad_norm_`` does, bit
        for bit; return whether their norm is finite (if not, they are left as they are).

        When every parameter is a plain float32 or float64 ``nn.Parameter`` of one dtype
        on one CPU or CUDA device (``clip_grad_norm_`` then takes its foreach path) this
        runs the same norm kernels without its grouping, computes the coefficient on the
        host with the dtype's rounding, and skips the multiplication by a coefficient of
        exactly 1, which changes no bit. Anything else calls ``clip_grad_norm_``.
        """
        grads = [p.grad for p in self.params if p.grad is not None]
        if not grads:
            return True
        if self.clip is None or not self._plain_params():
            if self.clip is None:
                norm = nn.utils.get_total_norm(grads)
            else:
                norm = nn.utils.clip_grad_norm_(self.params, self.clip)
            return math.isfinite(float(norm))
        # Gradients do not require grad: no graph is recorded, as under no_grad.
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0)), 2.0)
        value = float(norm)
        if not math.isfinite(value):
            return False
        # clip / (norm + 1e-6) clamped to 1 (Tensor.__rdiv__ is reciprocal() * clip),
        # each operation rounded to the gradients' dtype as the tensor ops round it.
        rnd = _ROUND[norm.dtype]
        coef = min(rnd(rnd(1.0 / rnd(value + rnd(1e-6))) * rnd(self.clip)), 1.0)
        if coef != 1.0:
            torch._foreach_mul_(grads, coef)
        return True

    def _plain_params(self) -> bool:
        # Whether the parameters are plain, of one float32 / float64 dtype on one CPU or
        # CUDA device (they stay on the learner's device and dtype: its buffers are made
        # for them).
        plain = self._plain
        if plain is None:
            p0 = self.params[0]
            plain = self._plain = p0.device.type in ("cpu", "cuda") and p0.dtype in _ROUND and all(
                type(p) is nn.Parameter and p.dtype == p0.dtype and p.device == p0.device
                for p in self.params)
        return plain
