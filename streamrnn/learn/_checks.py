"""Validation of the online learner's inputs, targets, masks and keys (private).

Every check raises ``ValueError`` naming the parameter, the rule and the value seen, and
runs before the learner touches any state. Inputs and targets are data: a tensor that
requires grad is detached (the learner never backpropagates into its inputs, and a
graph attached to its buffers would break every later update).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .._checks import all_finite, as_chunk, as_id_chunk, as_ids, first_nonfinite, plain_tensor

__all__ = ["Spec", "as_chunk_of", "as_inputs", "as_mask", "as_targets", "check_keys",
           "check_targets"]

class Spec:
    """What the learner's inputs and targets look like."""

    def __init__(self, *, features, num_tokens, dtype, device, target_shape, classes):
        self.features = features        # F (value inputs)
        self.num_tokens = num_tokens    # V (token inputs) or None
        self.dtype = dtype              # the model's floating dtype
        self.device = device
        self.target_shape = target_shape
        self.classes = classes          # number of classes, or None for value targets

    @property
    def in_shape(self) -> tuple:
        return () if self.num_tokens is not None else (self.features,)


def _shape_of(value) -> tuple:
    return tuple(value.shape) if hasattr(value, "shape") else (type(value).__name__,)


def _as_values(value, *, name: str, spec: Spec) -> Tensor:
    if isinstance(value, Tensor):
        x = plain_tensor(value, name)  # dense, with data, detached
    elif isinstance(value, np.ndarray):
        if value.dtype.kind != "f":
            raise ValueError(f"{name} must hold floats of dtype {spec.dtype}, got {value.dtype}")
        x = torch.from_numpy(value)
    elif isinstance(value, int | float | list | tuple) and not isinstance(value, bool):
        try:
            x = torch.tensor(value, dtype=spec.dtype)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f"{name} must be a rectangular list of numbers: {err}") from None
    else:
        raise ValueError(
            f"{name} must be a torch.Tensor, numpy array or list, got {type(value).__name__}"
        )
    if x.dtype != spec.dtype:
        raise ValueError(
            f"{name} must have dtype {spec.dtype} (the model's), got {x.dtype}; cast it explicitly"
        )
    x = x.to(spec.device)
    if not all_finite(x):
        raise ValueError(f"{name} has a non-finite value (NaN or inf) at {first_nonfinite(x)}")
    return x


def as_chunk_of(spec: Spec, chunk, name: str = "chunk") -> tuple[Tensor, bool]:
    """One stream's chunk as ``(T, *in)`` plus whether it was one step."""
    if isinstance(chunk, Tensor) and chunk.requires_grad:
        chunk = chunk.detach()
    if spec.num_tokens is None:
        return as_chunk(chunk, features=spec.features, dtype=spec.dtype, device=spec.device,
                        name=name)
    return as_id_chunk(chunk, high=spec.num_tokens, device=spec.device, name=name)


def as_inputs(spec: Spec, x, n: int) -> Tensor:
    """Inputs of ``n`` streams as ``(N, T, *in)``."""
    if spec.num_tokens is not None:
        out = as_ids(x, name="x", high=spec.num_tokens, device=spec.device)
        if out.dim() == 2 and out.shape[0] == n:
            return out
        want = f"(N, T) with N = {n}"
    else:
        out = _as_values(x, name="x", spec=spec)
        if out.dim() == 3 and out.shape[0] == n and out.shape[2] == spec.features:
            return out
        want = f"(N, T, F) with N = {n}, F = {spec.features}"
    raise ValueError(f"x must have shape {want}, got {_shape_of(out)}")


def as_targets(spec: Spec, targets, lead: tuple, name: str = "targets") -> Tensor:
    """Targets as ``(*lead, *target_shape)``; value targets of shape (1,) may drop it."""
    if spec.classes is not None:
        y = as_ids(targets, name=name, high=spec.classes, device=spec.device)
    else:
        y = _as_values(targets, name=name, spec=spec)
    want = (*lead, *spec.target_shape)
    if tuple(y.shape) == want:
        return y
    if spec.target_shape == (1,) and tuple(y.shape) == tuple(lead):
        return y.reshape(want)
    raise ValueError(f"{name} must have shape {want}, got {tuple(y.shape)}")


def check_targets(spec: Spec, targets, lead: tuple, one: bool, *, horizon) -> Tensor | None:
    """Targets given with the steps of a push (``None``: none), as ``(*lead, *target)``;
    ``one``: one step's target, given without its step dimension."""
    if targets is None:
        return None
    if horizon is not None:
        raise ValueError("targets must be None in horizon mode (they come from the inputs)")
    if one:
        return as_targets(spec, targets, ()).reshape(*lead, *spec.target_shape)
    return as_targets(spec, targets, lead)


def as_mask(mask, lead: tuple, device) -> Tensor | None:
    """A boolean mask of shape ``lead`` (True: the target is given), or None."""
    if mask is None:
        return None
    if isinstance(mask, Tensor):
        m = plain_tensor(mask, "mask")
    else:
        try:
            m = torch.as_tensor(mask)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f"mask must be a bool tensor of shape {tuple(lead)}: {err}") from None
    if m.dtype != torch.bool or tuple(m.shape) != tuple(lead):
        raise ValueError(
            f"mask must be a bool tensor of shape {tuple(lead)}, got {m.dtype} "
            f"of shape {tuple(m.shape)}"
        )
    return m.to(device)


def check_keys(keys, table) -> list:
    """Distinct keys by the key rule of ``table`` (a ``SlotTable``)."""
    if not isinstance(keys, list | tuple):
        raise ValueError(f"keys must be a list of stream keys, got {type(keys).__name__}")
    for key in keys:
        table.check_key(key)
    if len(set(keys)) != len(keys):
        raise ValueError(f"keys must be distinct, got {len(keys)} keys of which "
                         f"{len(set(keys))} distinct")
    return list(keys)


def live_slots(table, keys) -> np.ndarray:
    """The slots of ``keys``, distinct live streams of ``table`` (``ValueError`` if not)."""
    if not isinstance(keys, list | tuple):
        raise ValueError(f"keys must be a list, got {type(keys).__name__}")
    slots = np.array([table.slot(k) for k in keys], dtype=np.int64)
    distinct = len(np.unique(slots))
    if distinct != len(slots):
        raise ValueError(f"keys must be distinct, got {len(keys)} keys of which {distinct} "
                         "distinct")
    return slots


def as_step_indices(step_index, count: np.ndarray, keys) -> np.ndarray:
    """``step_index`` as ``(N,)`` int64, each a step already pushed on its stream (of
    ``count`` steps)."""
    steps = np.asarray(step_index)
    if not len(keys) and steps.size == 0:
        return steps.astype(np.int64).reshape(0)
    bad = ""
    ok = steps.shape == (len(keys),) and steps.dtype.kind in "iu"
    if ok:
        out = (steps < 0) | (steps >= count)
        ok = not out.any()
        if not ok:
            bad = f"; stream {keys[int(np.flatnonzero(out)[0])]!r} has no such step"
    if not ok:
        raise ValueError(f"step_index must be {len(keys)} ints, each a step already pushed "
                         f"on its stream{bad}, got {str(step_index)[:200]}")
    return steps.astype(np.int64)
