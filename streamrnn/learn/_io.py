"""Optimizer state as plain tensors plus JSON, for pickle-free checkpoints (private).

``torch.optim.Optimizer.state_dict()`` is a nest of dicts holding tensors, numbers,
tuples and ``None``. :func:`optimizer_to_tensors` splits it into named tensors (for
safetensors) and a JSON-able description; :func:`optimizer_from_tensors` rebuilds it,
restoring tuples where the live optimizer has tuples (e.g. Adam's ``betas``).
"""

from __future__ import annotations

import json

import torch
from torch import Tensor

__all__ = ["load_optimizer", "optimizer_from_tensors", "optimizer_to_tensors"]

_TENSOR = "__tensor__"


def _plain(value, where: str):
    """A JSON-able copy of ``value`` (tuples become lists); refuse anything else."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v, where) for v in value]
    raise ValueError(
        f"optimizer state {where} holds a {type(value).__name__}, which cannot be saved "
        f"without pickle (only tensors, numbers, strings, None and lists of them can)"
    )


def optimizer_to_tensors(optimizer, prefix: str = "optimizer.") -> tuple[dict, dict]:
    """Split ``optimizer.state_dict()`` into named tensor copies and a JSON-able dict."""
    sd = optimizer.state_dict()
    tensors: dict[str, Tensor] = {}
    state: dict[str, dict] = {}
    for pid, entry in sd["state"].items():
        plain = {}
        for name, value in entry.items():
            if isinstance(value, Tensor):
                tensors[f"{prefix}state.{pid}.{name}"] = value.detach().clone()
                plain[name] = _TENSOR
            else:
                plain[name] = _plain(value, f"for parameter {pid}, field {name!r},")
        state[str(pid)] = plain
    groups = []
    for i, group in enumerate(sd["param_groups"]):
        plain = {}
        for name, value in group.items():
            if isinstance(value, Tensor):
                tensors[f"{prefix}group.{i}.{name}"] = value.detach().clone()
                plain[name] = _TENSOR
            else:
                plain[name] = _plain(value, f"in param group {i}, field {name!r},")
        groups.append(plain)
    meta = {"type": type(optimizer).__name__, "state": state, "param_groups": groups}
    json.dumps(meta)  # fail here, not at write time
    return tensors, meta


def _like(value, current):
    """``value`` (from JSON) with tuples restored where ``current`` has tuples."""
    if isinstance(current, tuple) and isinstance(value, list):
        return tuple(_like(v, c) for v, c in zip(value, current, strict=False))
    return value


def optimizer_from_tensors(
    optimizer, tensors: dict, meta: dict, prefix: str = "optimizer."
) -> dict:
    """The ``state_dict`` for ``optimizer`` that :func:`optimizer_to_tensors` described.

    Raises ``ValueError`` if it was written by another optimizer type or lacks a tensor.
    """
    if meta.get("type") != type(optimizer).__name__:
        raise ValueError(
            f"optimizer state is for {meta.get('type')!r}, this learner's optimizer is "
            f"{type(optimizer).__name__!r}"
        )

    def tensor(name: str) -> Tensor:
        if name not in tensors:
            raise ValueError(f"optimizer state lacks tensor {name!r}")
        return tensors[name]

    state = {}
    for pid, entry in meta["state"].items():
        state[int(pid)] = {
            name: tensor(f"{prefix}state.{pid}.{name}") if value == _TENSOR else value
            for name, value in entry.items()
        }
    live_groups = optimizer.state_dict()["param_groups"]
    if len(live_groups) != len(meta["param_groups"]):
        raise ValueError(
            f"optimizer state has {len(meta['param_groups'])} parameter groups, this "
            f"learner's optimizer has {len(live_groups)}"
        )
    groups = []
    for i, (group, live) in enumerate(zip(meta["param_groups"], live_groups, strict=True)):
        groups.append({
            name: tensor(f"{prefix}group.{i}.{name}") if value == _TENSOR
            else _like(value, live.get(name))
            for name, value in group.items()
        })
    return {"state": state, "param_groups": groups}


def load_optimizer(optimizer, tensors: dict, meta: dict, prefix: str = "optimizer.") -> None:
    """Load what :func:`optimizer_to_tensors` wrote into ``optimizer``."""
    sd = optimizer_from_tensors(optimizer, tensors, meta, prefix)
    with torch.no_grad():
        optimizer.load_state_dict(sd)
