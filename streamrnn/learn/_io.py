"""Optimizer state as plain tensors plus JSON, for pickle-free checkpoints (private).

``torch.optim.Optimizer.state_dict()`` is a nest of dicts holding tensors, numbers,
tuples and ``None``. :func:`optimizer_to_tensors` splits it into named tensors (for
safetensors) and a JSON-able description; :func:`optimizer_from_tensors` rebuilds it
from a file's (untrusted) parts, restoring tuples where the live optimizer has tuples
(e.g. Adam's ``betas``), and refuses anything that does not fit: a malformed entry, a
missing tensor, a non-finite value, or a state that the optimizer cannot step from
(:func:`check_steps`: a copy of the optimizer, holding copies of the parameters, loads
it and takes one step with zero gradients).
"""

from __future__ import annotations

import copy
import json
import math
from collections import OrderedDict

import torch
from torch import Tensor

__all__ = ["check_steps", "optimizer_from_tensors", "optimizer_to_tensors"]

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


def _is_tensor_mark(value) -> bool:
    return isinstance(value, str) and value == _TENSOR


def _json_value(value, where: str, depth: int = 0):
    # A JSON scalar or a (shallow) list of them, numbers finite; else ValueError.
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"{where} is not finite: {value!r}")
        return value
    if isinstance(value, list) and depth < 2:
        return [_json_value(v, where, depth + 1) for v in value]
    raise ValueError(f"{where} must be a number, a string, a bool, null or a list of "
                     f"them, got {type(value).__name__}")


def optimizer_from_tensors(
    optimizer, tensors: dict, meta, prefix: str = "optimizer."
) -> tuple[dict, set]:
    """The ``state_dict`` for ``optimizer`` that :func:`optimizer_to_tensors` described,
    and the names of the tensors it took.

    Raises ``ValueError`` naming the field if it was written by another optimizer type,
    lacks a tensor, or holds anything malformed or non-finite.
    """
    if not isinstance(meta, dict):
        raise ValueError(f"meta.optimizer must be a dict, got {type(meta).__name__}")
    if meta.get("type") != type(optimizer).__name__:
        raise ValueError(
            f"optimizer state is for {meta.get('type')!r}, this learner's optimizer is "
            f"{type(optimizer).__name__!r}"
        )
    used: set = set()

    def tensor(name: str) -> Tensor:
        value = tensors.get(name)
        if not isinstance(value, Tensor):
            raise ValueError(f"optimizer state lacks tensor {name!r}")
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ValueError(f"optimizer tensor {name!r} has non-finite values")
        used.add(name)
        return value.detach().clone()  # the optimizer steps it in place: never shared

    live = optimizer.state_dict()
    n_params = sum(len(g["params"]) for g in live["param_groups"])
    entries, groups_meta = meta.get("state"), meta.get("param_groups")
    if not isinstance(entries, dict) or not isinstance(groups_meta, list):
        raise ValueError("meta.optimizer must hold 'state' (a dict) and 'param_groups' (a list)")
    state = {}
    for pid, entry in entries.items():
        where = f"meta.optimizer.state[{pid!r}]"
        if not (isinstance(pid, str) and pid.isdigit() and str(int(pid)) == pid
                and int(pid) < n_params):
            raise ValueError(f"{where}: not a parameter index in [0, {n_params})")
        if not isinstance(entry, dict):
            raise ValueError(f"{where} must be a dict, got {type(entry).__name__}")
        if not all(isinstance(name, str) for name in entry):
            raise ValueError(f"{where} must have str field names")
        state[int(pid)] = {
            name: tensor(f"{prefix}state.{pid}.{name}") if _is_tensor_mark(value)
            else _json_value(value, f"{where}[{name!r}]")
            for name, value in entry.items()
        }
    if len(live["param_groups"]) != len(groups_meta):
        raise ValueError(
            f"optimizer state has {len(groups_meta)} parameter groups, this "
            f"learner's optimizer has {len(live['param_groups'])}"
        )
    groups = []
    for i, (group, mine) in enumerate(zip(groups_meta, live["param_groups"], strict=True)):
        where = f"meta.optimizer.param_groups[{i}]"
        if not isinstance(group, dict):
            raise ValueError(f"{where} must be a dict, got {type(group).__name__}")
        if not all(isinstance(name, str) for name in group):
            raise ValueError(f"{where} must have str field names")
        if group.get("params") != mine["params"]:
            raise ValueError(f"{where}['params'] must be {mine['params']}, "
                             f"got {group.get('params')!r}")
        groups.append({
            name: tensor(f"{prefix}group.{i}.{name}") if _is_tensor_mark(value)
            else _like(_json_value(value, f"{where}[{name!r}]"), mine.get(name))
            for name, value in group.items()
        })
    return {"state": state, "param_groups": groups}, used


def check_steps(optimizer, state_dict: dict) -> None:
    """Refuse (``ValueError``) an optimizer state that ``optimizer`` could load but not
    step from: a copy of the optimizer, holding copies of its parameters, loads it and
    takes one step with zero gradients; it must not raise, and every parameter and state
    value must stay finite. ``optimizer`` is untouched.
    """
    params = [p for g in optimizer.param_groups for p in g["params"]]
    memo = {id(p): p.detach().clone().requires_grad_(p.requires_grad) for p in params}
    try:
        probe = copy.deepcopy(optimizer, memo)
    except Exception:  # noqa: BLE001 - an optimizer that cannot be copied: no dry run
        return
    # Only the class's step, never a wrapper or hook that may reach the live optimizer.
    probe.__dict__.pop("step", None)
    probe._optimizer_step_pre_hooks = OrderedDict()
    probe._optimizer_step_post_hooks = OrderedDict()
    copies = [memo[id(p)] for p in params]
    try:
        probe.load_state_dict(copy.deepcopy(state_dict))
        for c in copies:
            c.grad = torch.zeros_like(c)
        probe.step()
    except Exception as err:  # noqa: BLE001 - any failure means the state does not fit
        raise ValueError(f"optimizer state does not fit this learner's optimizer "
                         f"({type(err).__name__}: {err})") from None
    finite = all(bool(torch.isfinite(c).all()) for c in copies) and all(
        bool(torch.isfinite(v).all()) for entry in probe.state.values() for v in entry.values()
        if isinstance(v, Tensor) and v.is_floating_point())
    if not finite:
        raise ValueError("optimizer state makes the weights or the optimizer state "
                         "non-finite at the next step")
