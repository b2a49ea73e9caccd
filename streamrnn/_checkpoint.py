"""State files of banks and learners: what a checkpoint records and how it is checked
(private).

:func:`model_config` is what every checkpoint records of its model, so that a file is
refused by a model it does not fit; the bank's checkpoint (:func:`bank_state_dict`,
:func:`load_bank_state_dict`, :func:`save_bank`, :func:`load_bank`) is written here, next
to it. Files are safetensors with a versioned JSON header, written atomically
(:mod:`streamrnn._io`).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from ._checks import model_dtype
from ._io import check_config, decode_key, encode_key, read_state_file, write_state_file
from ._slots import check_key
from .state import State

__all__ = ["bank_state_dict", "config_from_v1", "load_bank", "load_bank_state_dict",
           "model_config", "save_bank"]

_FORMAT = "streamrnn.StreamBank"
_VERSION = 2  # 2: state parts by name (1: h and an optional c)


def model_config(model) -> dict:
    """The configuration a state file records to refuse a model it does not fit: the
    model's own ``config()``, its dtype, and its state's layers and parts (each part's
    shape after ``(L, B)``)."""
    config = model.config() if callable(getattr(model, "config", None)) else {}
    probe = model.initial_state(0, device="cpu")
    return {
        "type": type(model).__name__,
        **config,
        "dtype": str(model_dtype(model)),
        "state": {
            "num_layers": probe.num_layers,
            "parts": {k: list(v) for k, v in probe.trailing_shapes().items()},
        },
    }


def config_from_v1(config: dict) -> dict:
    """A version-1 file's configuration in today's terms: it recorded the state as
    ``{num_layers, hidden_size, cell}``, i.e. parts ``h`` (and ``c``) of shape ``(H,)``."""
    if not isinstance(config, dict) or not isinstance(config.get("state", {}), dict):
        return config  # not a configuration: check_config refuses it
    state = dict(config.get("state", {}))
    if "parts" not in state and "hidden_size" in state:
        size = [state.pop("hidden_size")]
        parts = {"h": size}
        if state.pop("cell", False):
            parts["c"] = size
        state["parts"] = parts
    return {**config, "state": state}


def bank_state_dict(bank) -> dict:
    """A :class:`~streamrnn.StreamBank`'s state_dict: every stream's state, its keys (least
    recently used first) and counters.

    Tensors are copies, one per state part; the dict holds only tensors, str, int,
    lists and dicts.
    """
    keys = bank.keys()
    idx = torch.tensor([bank._slots.slot_of[k] for k in keys], dtype=torch.long)
    state = bank._state.select(idx.to(bank._device)).to("cpu")
    return {
        "format": _FORMAT,
        "version": _VERSION,
        "config": bank._config,
        "keys": [encode_key(k) for k in keys],
        "counts": dict(bank.counts),
        "tensors": state.to_tensors(),
    }

def load_bank_state_dict(bank, state_dict: dict) -> None:
    """Replace every stream with those of ``state_dict``; refuses (``ValueError``,
    nothing changed) one that does not fit."""
    if not isinstance(state_dict, dict):
        raise ValueError(f"state_dict must be a dict, got {type(state_dict).__name__}")
    version = state_dict.get("version")
    if state_dict.get("format") != _FORMAT or version not in (1, _VERSION):
        raise ValueError(
            f"state_dict must be a {_FORMAT} version {_VERSION} (or 1) state, got "
            f"{state_dict.get('format')!r} version {version!r}"
        )
    for field, kind in (("config", dict), ("keys", list), ("counts", dict), ("tensors", dict)):
        if type(state_dict.get(field)) is not kind:
            raise ValueError(f"state_dict[{field!r}] must be a {kind.__name__}, got "
                             f"{type(state_dict.get(field)).__name__}")
    config = state_dict["config"]
    check_config(config_from_v1(config) if version == 1 else config, bank._config)
    counts = state_dict["counts"]
    for name, value in counts.items():
        if name not in bank.counts or type(value) is not int or value < 0:
            raise ValueError(f"state_dict['counts'] must map {sorted(bank.counts)} to "
                             f"counts (int >= 0), got {name!r}: {value!r}")
    keys = [decode_key(k) for k in state_dict["keys"]]
    for key in keys:
        check_key(key, "a key in the state")
    if len(set(keys)) != len(keys):
        raise ValueError("the state lists a key twice")
    if len(keys) > bank.max_streams:
        raise ValueError(f"state holds {len(keys)} streams, max_streams is {bank.max_streams}")
    probe = bank.model.initial_state(len(keys), device="cpu", dtype=bank._dtype)
    state = State.from_tensors(state_dict["tensors"], parts=probe.parts)
    for part, want in probe.items():
        if state[part].shape != want.shape:
            raise ValueError(f"state part {part!r} has shape {tuple(state[part].shape)}, "
                             f"expected {tuple(want.shape)}")
    if not state.all_finite():
        raise ValueError("the state has non-finite values (NaN or inf); refusing to load it")
    # -- everything checked: now replace ------------------------------------------
    n = len(keys)
    capacity = max(min(bank.max_streams, 64), n)
    bank._state = bank.model.initial_state(capacity, device=bank._device, dtype=bank._dtype)
    bank._slots.clear(capacity)
    bank._index = (None, -1, None)
    if n:
        bank._slots.restore(keys, np.arange(1, n + 1), n)
        bank._state.rows(0, n).copy_(state.to(device=bank._device, dtype=bank._dtype))
    bank.counts.update(counts)

def save_bank(bank, path: str | os.PathLike) -> None:
    """Write every stream's state to a safetensors file, atomically (no pickle)."""
    sd = bank_state_dict(bank)
    header = {k: sd[k] for k in ("config", "keys", "counts")}
    write_state_file(path, sd["tensors"], kind=_FORMAT, version=_VERSION, header=header)

def load_bank(bank, path: str | os.PathLike) -> None:
    """Read a file written by :meth:`save` (this version or version 1); refuses a
    truncated, foreign or unfitting one."""
    try:
        tensors, header = read_state_file(path, kind=_FORMAT, version=_VERSION)
        version = _VERSION
    except ValueError as err:
        if "format version '1'" not in str(err):
            raise
        tensors, header = read_state_file(path, kind=_FORMAT, version=1, checksum=False)
        version = 1
    for field in ("config", "keys", "counts"):
        if field not in header:
            raise ValueError(f"path {str(path)!r} header lacks {field!r}")
    load_bank_state_dict(bank,
        {"format": _FORMAT, "version": version, **header, "tensors": tensors}
    )
