"""Reading a learner checkpoint into new objects, validating everything first (private).

:func:`read_state` takes an untrusted state dict (from a file or from memory) and returns
new objects (weights, optimizer state, stream buffers, keys, recency, counters) only if
every field fits the learner: format and version, configuration, keys by the slot
table's rule (distinct, at most ``max_streams``), counters, every tensor's presence,
shape, dtype and range, finite weights, states, inputs and targets, and an optimizer
state the optimizer can step from. Nothing of the learner changes here; the caller
swaps the result in (:meth:`~streamrnn.learn._state.Checkpoint.load_state_dict`).
Every refusal is a ``ValueError`` naming the field.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._checkpoint import config_from_v1
from .._io import check_config
from .._slots import key_from_json
from ..state import State
from ._config import COUNTS
from ._io import check_steps, optimizer_from_tensors

__all__ = ["FORMAT", "VERSION", "read_state"]

FORMAT = "streamrnn.OnlineLearner"
VERSION = 2  # 2: entering states per state part (streams.enter.<part>); 1: enter_h / enter_c


def _int(value, where: str, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{where} must be an int >= {low}, got {value!r}")
    return value


def _typed(sd: dict, name: str, kind: type):
    if name not in sd:
        raise ValueError(f"state lacks {name!r}")
    if not isinstance(sd[name], kind):
        raise ValueError(f"state field {name!r} must be a {kind.__name__}, "
                         f"got {type(sd[name]).__name__}")
    return sd[name]


def _tensor(tensors: dict, name: str, shape: tuple, dtype: torch.dtype) -> Tensor:
    t = tensors.get(name)
    if name not in tensors:
        raise ValueError(f"state lacks tensor {name!r}")
    if not isinstance(t, Tensor):
        raise ValueError(f"state tensor {name!r} is a {type(t).__name__}, not a tensor")
    if t.layout != torch.strided:
        raise ValueError(f"state tensor {name!r} must be dense, got {t.layout}")
    if tuple(t.shape) != tuple(shape):
        raise ValueError(f"state tensor {name!r} has shape {tuple(t.shape)}, expected "
                         f"{tuple(shape)}")
    if t.dtype != dtype:
        raise ValueError(f"state tensor {name!r} has dtype {t.dtype}, expected {dtype}")
    t = t.detach()
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"state tensor {name!r} has non-finite values (NaN or inf)")
    return t


def _in_range(t: Tensor, name: str, low: int, high: int | None) -> None:
    if t.numel() and (int(t.min()) < low or (high is not None and int(t.max()) >= high)):
        raise ValueError(f"state tensor {name!r} must hold values in [{low}, "
                         f"{'inf' if high is None else high}), got "
                         f"{int(t.min())} .. {int(t.max())}")


def _header(parts, sd) -> tuple:
    if not isinstance(sd, dict):
        raise ValueError(f"state_dict must be a dict, got {type(sd).__name__}")
    version = sd.get("version")
    if sd.get("format") != FORMAT or version not in (1, VERSION):
        raise ValueError(
            f"state_dict must be a {FORMAT} version {VERSION} (or 1) state, got "
            f"{sd.get('format')!r} version {version!r}"
        )
    config = _typed(sd, "config", dict)
    if not all(isinstance(k, str) for k in config):
        raise ValueError("state field 'config' must have str keys")
    if version == 1 and isinstance(config.get("model"), dict):
        config = {**config, "model": config_from_v1(config["model"])}
    check_config(config, parts.config(), what="learner")
    keys = [key_from_json(v, f"keys[{i}]", none=True)
            for i, v in enumerate(_typed(sd, "keys", list))]
    if len(set(keys)) != len(keys):
        raise ValueError(f"state lists a key twice ({len(keys)} keys, "
                         f"{len(set(keys))} distinct)")
    limit = parts.rows.table.max_streams
    if len(keys) > limit:
        raise ValueError(f"state holds {len(keys)} streams, max_streams is {limit}")
    counts = _typed(sd, "counts", dict)
    if set(counts) != set(COUNTS):
        raise ValueError(f"state counts must be exactly {list(COUNTS)}, got {sorted(counts)}")
    counts = {k: _int(counts[k], f"counts[{k!r}]") for k in COUNTS}
    meta = _typed(sd, "meta", dict)
    for field in ("optimizer", "optimizer_steps", "tick", "last_loss"):
        if field not in meta:
            raise ValueError(f"state meta lacks {field!r}")
    steps, tick = _int(meta["optimizer_steps"], "meta.optimizer_steps"), _int(
        meta["tick"], "meta.tick")
    last = meta["last_loss"]
    if last is not None and (isinstance(last, bool) or not isinstance(last, int | float)
                             or not math.isfinite(last)):
        raise ValueError(f"meta.last_loss must be a finite number or null, got {last!r}")
    tensors = _typed(sd, "tensors", dict)
    if not all(isinstance(k, str) for k in tensors):
        raise ValueError("state field 'tensors' must map str names to tensors")
    if version == 1:  # entering states were enter_h and enter_c
        tensors = {("streams.enter." + k[len("streams.enter_"):]
                    if k.startswith("streams.enter_") else k): v for k, v in tensors.items()}
    return keys, counts, meta, steps, tick, last, tensors


def read_state(parts, sd) -> dict:
    """Everything of state dict ``sd`` as new objects, validated for the learner whose
    parts are ``parts`` (a :class:`~streamrnn.learn._state.Checkpoint`); ``ValueError``
    naming the field otherwise."""
    keys, counts, meta, steps, tick, last, tensors = _header(parts, sd)
    model, rows, optimizer = parts.model, parts.rows, parts.updater.optimizer
    windows, spec = rows.windows, parts.stepper.spec
    # -- weights ---------------------------------------------------------------------
    live_weights = model.state_dict()
    names = {k for k in tensors if k.startswith("model.")}
    if names != {"model." + k for k in live_weights}:
        raise ValueError("state's model weights do not fit this model: names differ ("
                         f"{sorted(names ^ {'model.' + k for k in live_weights})[:5]})")
    weights = {k: _tensor(tensors, "model." + k, v.shape, v.dtype)
               for k, v in live_weights.items()}
    # -- streams ---------------------------------------------------------------------
    n, k2 = len(keys), windows.k2
    probe = model.initial_state(n, device="cpu", dtype=rows.dtype)
    live = State(**{p: _tensor(tensors, f"streams.live.{p}", v.shape, v.dtype)
                    for p, v in probe.items()})
    enter = {p: _tensor(tensors, f"streams.enter.{p}", (windows.ring, *v.shape), v.dtype)
             for p, v in probe.items()}
    xbuf = _tensor(tensors, "streams.xbuf", (n, k2, *rows.in_shape), rows.in_dtype)
    ybuf = _tensor(tensors, "streams.ybuf", (n, k2, *rows.target_shape), rows.target_dtype)
    if spec.num_tokens is not None:
        _in_range(xbuf, "streams.xbuf", 0, spec.num_tokens)
    if spec.classes is not None:
        _in_range(ybuf, "streams.ybuf", 0, spec.classes)
    tstat = _tensor(tensors, "streams.tstat", (n, k2), torch.uint8)
    _in_range(tstat, "streams.tstat", 0, 3)
    count = _tensor(tensors, "streams.count", (n,), torch.int64)
    _in_range(count, "streams.count", 0, None)
    due = _tensor(tensors, "streams.due", (n,), torch.uint8)
    _in_range(due, "streams.due", 0, 2)
    last_used = _tensor(tensors, "streams.last_used", (n,), torch.int64)
    _in_range(last_used, "streams.last_used", 0, tick + 1)
    count_np, due_np = count.cpu().numpy().copy(), due.cpu().numpy().astype(bool)
    if (due_np & ((count_np == 0) | ~windows.ends(count_np))).any():
        raise ValueError("state marks an update due for a stream that is not at a window end")
    # -- optimizer -------------------------------------------------------------------
    opt_state, used = optimizer_from_tensors(optimizer, tensors, meta["optimizer"])
    check_steps(optimizer, opt_state)
    stream_names = {f"streams.{k}" for k in ("xbuf", "ybuf", "tstat", "count", "due",
                                              "last_used")}
    stream_names |= {f"streams.{kind}.{p}" for kind in ("live", "enter") for p in probe.parts}
    extra = set(tensors) - names - stream_names - used
    if extra:
        raise ValueError(f"state has tensors this learner does not use: {sorted(extra)[:5]}")
    # -- new buffers -----------------------------------------------------------------
    buffers = rows.blank(max(min(rows.table.max_streams, 16), n))
    if n:
        buffers["live"].rows(0, n).copy_(live.to(rows.device))
        for p, ring in enter.items():
            buffers["enter"][p][:, :, :n] = ring.to(rows.device)
        buffers["xbuf"][:n] = xbuf.to(rows.device)
        buffers["ybuf"][:n] = ybuf.to(rows.device)
        buffers["tstat"][:n] = tstat.cpu().numpy()
        buffers["count"][:n] = count_np
        buffers["due"][:n] = due_np
    return {"weights": weights, "optimizer": opt_state, "buffers": buffers, "keys": keys,
            "last_used": last_used.cpu().numpy().copy(), "tick": tick, "counts": counts,
            "optimizer_steps": steps, "last_loss": last}
