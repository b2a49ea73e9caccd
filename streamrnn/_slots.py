"""StreamBank's slot table and checkpoints (private).

The slot table maps stream keys to rows of preallocated state tensors, keeps least
recently used order, evicts at the limit and caches the index of a repeated key list.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor

from ._checks import model_dtype
from ._io import check_config, decode_key, encode_key, read_state_file, write_state_file
from .state import State

__all__ = ["BankOutputs", "SlotTable", "check_key", "model_config"]

_FORMAT = "streamrnn.StreamBank"
_VERSION = 1


def model_config(model) -> dict:
    """The configuration a state file records to refuse a model it does not fit."""
    config = model.config() if callable(getattr(model, "config", None)) else {}
    probe = model.initial_state(0, device="cpu")
    return {
        "type": type(model).__name__,
        **config,
        "dtype": str(model_dtype(model)),
        "state": {
            "num_layers": probe.num_layers,
            "hidden_size": probe.hidden_size,
            "cell": probe.c is not None,
        },
    }


class BankOutputs(Mapping):
    """The outputs of one :meth:`StreamBank.push`: a read-only ``{key: outputs}`` mapping.

    Rows are handed out as views on first access, so a push over thousands of streams
    does not pay for thousands of tensor objects nobody reads. ``tensor`` is the whole
    batch in key order when all chunks had the same shape (else ``None``).

    Shape
    -----
    ``out[key]``: ``(T, O)`` or ``(O,)``; ``tensor``: ``(N, T, O)`` or ``(N, O)``.

    Examples
    --------
    >>> import torch
    >>> out = BankOutputs(["a", "b"], torch.arange(6.0).reshape(2, 3))
    >>> out["b"], list(out), len(out), out.tensor.shape
    (tensor([3., 4., 5.]), ['a', 'b'], 2, torch.Size([2, 3]))
    """

    def __init__(self, keys: list, rows: Tensor | list) -> None:
        self._keys = keys
        self._rows = rows
        self._pos: dict | None = None
        self.tensor = rows if isinstance(rows, Tensor) else None

    def __getitem__(self, key):
        if self._pos is None:
            self._pos = dict(zip(self._keys, range(len(self._keys)), strict=True))
        return self._rows[self._pos[key]]

    def __iter__(self):
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"BankOutputs({len(self._keys)} streams)"


def _is_key(key) -> bool:
    if isinstance(key, tuple):
        return all(_is_key(part) for part in key)
    return type(key) is str or type(key) is int


def check_key(key, name: str = "key") -> None:
    if not _is_key(key):
        raise ValueError(
            f"{name} must be a str, an int, or a tuple of them, got {type(key).__name__} {key!r}"
        )


class SlotTable:
    """Key -> slot bookkeeping and checkpoints of :class:`~streamrnn.StreamBank`.

    Needs ``model``, ``max_streams``, ``counts``, ``_device``, ``_dtype``, ``_config``.
    """

    # -- bookkeeping ---------------------------------------------------------------
    def _clear(self, capacity: int) -> None:
        self._slot_of: dict = {}
        self._key_of: list = [None] * capacity
        self._free = list(range(capacity - 1, -1, -1))
        self._last_used = np.zeros(capacity, dtype=np.int64)
        self._tick = 0
        self._state = self.model.initial_state(capacity, device=self._device, dtype=self._dtype)
        self._generation = 0  # bumped whenever the key -> slot mapping changes
        self._cache: tuple = (-1, None, None, None, None)  # generation, keys, types, slots, rows

    def _grow(self, need: int) -> None:
        old = len(self._key_of)
        new = min(self.max_streams, max(need, 2 * old))
        extra = self.model.initial_state(new - old, device=self._device, dtype=self._dtype)
        self._state = State.cat([self._state, extra])
        self._key_of.extend([None] * (new - old))
        self._free = list(range(new - 1, old - 1, -1)) + self._free
        self._last_used = np.concatenate([self._last_used, np.zeros(new - old, np.int64)])

    def _zero_rows(self, slots: list[int]) -> None:
        idx = torch.tensor(slots, dtype=torch.long, device=self._device)
        fresh = self.model.initial_state(len(slots), device=self._device, dtype=self._dtype)
        self._state.scatter_(idx, fresh)

    def _stamp(self, slots) -> None:
        # Each key of a push gets its own tick, in push order: recency is a strict order.
        n = len(slots)
        self._last_used[slots] = np.arange(self._tick + 1, self._tick + n + 1)
        self._tick += n

    def _slots_for(self, keys: list) -> list[int]:
        """Slots of ``keys``, allocating (and evicting least recently used) for new ones.

        Every key is validated before anything changes.
        """
        for key in keys:
            check_key(key)
        if len(keys) > self.max_streams:
            raise ValueError(
                f"a push may hold at most max_streams = {self.max_streams} streams, "
                f"got {len(keys)}"
            )
        get = self._slot_of.get
        slots = [get(k, -1) for k in keys]
        new = [i for i, s in enumerate(slots) if s < 0]
        if new:
            live = len(self._slot_of)
            if live + len(new) > len(self._key_of) and len(self._key_of) < self.max_streams:
                self._grow(live + len(new))
            known = [s for s in slots if s >= 0]
            self._last_used[known] = self._tick + len(keys) + 1  # never evicted by this push
            shortfall = len(new) - len(self._free)
            if shortfall > 0:
                self._evict(shortfall)
            taken = [self._free.pop() for _ in new]
            for i, slot in zip(new, taken, strict=True):
                self._slot_of[keys[i]] = slot
                self._key_of[slot] = keys[i]
                slots[i] = slot
            self._zero_rows(taken)
            self._generation += 1
        self._stamp(slots)
        return slots

    def _rows_for(self, keys: list) -> tuple[np.ndarray, Tensor | slice]:
        """Slots of ``keys`` as an index for numpy and one for the state tensors.

        The same key list pushed again (the steady state of a live bank) reuses the last
        index (keys compared by value and type, so ``True`` is never the stream ``1``);
        a contiguous run of slots becomes a slice, so gather and scatter are views and
        copies instead of index operations.
        """
        generation, cached_keys, cached_types, slots, rows = self._cache
        if (
            generation == self._generation
            and keys == cached_keys
            and list(map(type, keys)) == cached_types
        ):
            self._stamp(slots)
            return slots, rows
        slots = np.asarray(self._slots_for(keys), dtype=np.int64)
        first = int(slots[0])
        if np.array_equal(slots, np.arange(first, first + len(slots))):
            rows: Tensor | slice = slice(first, first + len(slots))
        else:
            rows = torch.from_numpy(slots).to(self._device)
        self._cache = (self._generation, list(keys), list(map(type, keys)), slots, rows)
        return slots, rows

    def _evict(self, n: int) -> None:
        # Live slots not touched by this push have ticks below the current one.
        order = np.argsort(self._last_used, kind="stable")
        victims = [int(s) for s in order if self._key_of[s] is not None][:n]
        for slot in victims:
            del self._slot_of[self._key_of[slot]]
            self._key_of[slot] = None
            self._free.append(slot)
        self.counts["evicted"] += len(victims)
        self._generation += 1

    # -- per-key operations --------------------------------------------------------
    def __len__(self) -> int:
        return len(self._slot_of)

    def __contains__(self, key) -> bool:
        return _is_key(key) and key in self._slot_of

    def keys(self) -> list:
        """Live keys, least recently used first."""
        return sorted(self._slot_of, key=lambda k: self._last_used[self._slot_of[k]])

    def _slot(self, key) -> int:
        if not _is_key(key):
            raise ValueError(
                f"key {key!r} is not a live stream in this bank (keys are str, int, or "
                f"tuples of them; got {type(key).__name__})"
            )
        try:
            return self._slot_of[key]
        except KeyError:
            raise ValueError(f"key {key!r} is not a live stream in this bank") from None

    def reset(self, key) -> None:
        """Put one stream back to the initial state; the others are untouched."""
        self._zero_rows([self._slot(key)])

    def drop(self, key) -> None:
        """Forget one stream and free its slot."""
        slot = self._slot(key)
        del self._slot_of[key]
        self._key_of[slot] = None
        self._free.append(slot)
        self._generation += 1

    def get_state(self, key) -> State:
        """A copy of one stream's state (B = 1)."""
        idx = torch.tensor([self._slot(key)], device=self._device)
        return self._state.select(idx).clone()

    # -- checkpoints ---------------------------------------------------------------
    def state_dict(self) -> dict:
        """Every stream's state, keys (least recently used first) and counters.

        Tensors are copies; the dict holds only tensors, str, int, lists and dicts.
        """
        keys = self.keys()
        idx = torch.tensor([self._slot_of[k] for k in keys], dtype=torch.long)
        state = self._state.select(idx.to(self._device)).to("cpu")
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "config": self._config,
            "keys": [encode_key(k) for k in keys],
            "counts": dict(self.counts),
            "tensors": state.to_tensors(),
        }

    def load_state_dict(self, state_dict: dict) -> None:
        """Replace every stream with those of ``state_dict``; refuses one that does not fit."""
        if state_dict.get("format") != _FORMAT or state_dict.get("version") != _VERSION:
            raise ValueError(
                f"state_dict must be a {_FORMAT} version {_VERSION} state, got "
                f"{state_dict.get('format')!r} version {state_dict.get('version')!r}"
            )
        check_config(state_dict["config"], self._config)
        keys = [decode_key(k) for k in state_dict["keys"]]
        for key in keys:
            check_key(key, "a key in the state")
        if len(set(keys)) != len(keys):
            raise ValueError("the state lists a key twice")
        state = State.from_tensors(state_dict["tensors"])
        if not bool(state.is_finite().all()):
            raise ValueError("the state has non-finite values (NaN or inf); refusing to load it")
        want = (state.num_layers, len(keys), state.hidden_size)
        probe = self.model.initial_state(len(keys), device="cpu", dtype=self._dtype)
        if tuple(probe.h.shape) != tuple(state.h.shape) or (probe.c is None) != (state.c is None):
            raise ValueError(f"state tensors have shape {tuple(state.h.shape)}, expected {want}")
        if len(keys) > self.max_streams:
            raise ValueError(f"state holds {len(keys)} streams, max_streams is {self.max_streams}")
        self._clear(max(min(self.max_streams, 64), len(keys)))
        if keys:
            self._slots_for(keys)  # allocates slots 0..n-1 in order, stamps 1..n
            idx = torch.arange(len(keys), device=self._device)
            self._state.scatter_(idx, state.to(device=self._device, dtype=self._dtype))
        self.counts = {**self.counts, **state_dict["counts"]}

    def save(self, path: str | os.PathLike) -> None:
        """Write every stream's state to a safetensors file, atomically (no pickle)."""
        sd = self.state_dict()
        header = {k: sd[k] for k in ("config", "keys", "counts")}
        write_state_file(path, sd["tensors"], kind=_FORMAT, version=_VERSION, header=header)

    def load(self, path: str | os.PathLike) -> None:
        """Read a file written by :meth:`save`; refuses a truncated, foreign or unfitting one."""
        tensors, header = read_state_file(path, kind=_FORMAT, version=_VERSION)
        for field in ("config", "keys", "counts"):
            if field not in header:
                raise ValueError(f"path {str(path)!r} header lacks {field!r}")
        self.load_state_dict(
            {"format": _FORMAT, "version": _VERSION, **header, "tensors": tensors}
        )
