"""StreamBank: many keyed streams stepped as one batch."""

from __future__ import annotations

import operator
import os
from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor

from streamrnn._checks import all_finite, as_chunk, first_nonfinite, model_device, model_dtype
from streamrnn._io import (
    check_config,
    decode_key,
    encode_key,
    read_state_file,
    write_state_file,
)
from streamrnn.state import State
from streamrnn.stream import check_model

__all__ = ["BankOutputs", "StreamBank", "model_config"]

_FORMAT = "streamrnn.StreamBank"
_VERSION = 1


def model_config(model) -> dict:
    """The configuration a state file records to refuse a model it does not fit."""
    config = model.config() if callable(getattr(model, "config", None)) else {}
    probe = model.initial_state(0, device="cpu")
    return {
        "type": type(model).__name__,
        **config,
        "state": {
            "num_layers": probe.num_layers,
            "hidden_size": probe.hidden_size,
            "cell": probe.c is not None,
        },
    }


_dtype_of = operator.attrgetter("dtype")


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


def _all_finite_state(state: State) -> bool:
    # Two cheap reductions; non-finite sums are confirmed element-wise.
    return all_finite(state.h) and (state.c is None or all_finite(state.c))


def _check_key(key, name: str = "key") -> None:
    if isinstance(key, tuple):
        for part in key:
            _check_key(part, name)
    elif isinstance(key, bool) or not isinstance(key, str | int):
        raise ValueError(
            f"{name} must be a str, an int, or a tuple of them, got {type(key).__name__} {key!r}"
        )


class StreamBank:
    """Many live streams, keyed, stepped together in one batched call per push.

    States live in preallocated tensors (grown by doubling up to ``max_streams``). A
    push gathers the rows of the streams that have data, runs one fused step, and
    scatters the new rows back. Chunks of unequal length are grouped by length (one
    call per distinct length; measured cheaper than padding, and exact without masks).

    Parameters
    ----------
    model : RecurrentLayer or recurrent model
        Shared by all streams (see :class:`~streamrnn.Stream`).
    max_streams : int
        Most live streams. A new key arriving at the limit evicts the least recently
        used stream (its state is lost); evictions are counted in ``counts``.
    grad : bool
        ``False`` (default) steps under ``torch.inference_mode``.

    Attributes
    ----------
    counts : dict
        ``evicted`` streams, ``nonfinite_resets`` (streams whose state became non-finite
        and was reset), ``steps`` (stream-steps run).
    last_reset : list
        Keys reset for a non-finite state in the last push.

    Shape
    -----
    push: ``{key: (T, F) or (F,)}`` -> ``{key: (T, O) or (O,)}``;
    push_many: ``(N, T, F)`` -> ``(N, T, O)``.

    Examples
    --------
    >>> import torch, streamrnn
    >>> bank = streamrnn.StreamBank(streamrnn.LSTM(2, 4, seed=0), max_streams=100)
    >>> out = bank.push({"a": torch.ones(3, 2), ("b", 1): torch.ones(2)})
    >>> out["a"].shape, out[("b", 1)].shape
    (torch.Size([3, 4]), torch.Size([4]))
    >>> len(bank), "a" in bank, "zz" in bank
    (2, True, False)
    >>> bank.drop("a"); len(bank)
    1
    """

    def __init__(self, model, *, max_streams: int = 100_000, grad: bool = False) -> None:
        check_model(model)
        if isinstance(max_streams, bool) or not isinstance(max_streams, int) or max_streams < 1:
            raise ValueError(f"max_streams must be a positive int, got {max_streams!r}")
        if not isinstance(grad, bool):
            raise ValueError(f"grad must be a bool, got {grad!r}")
        self.model = model
        self.max_streams = max_streams
        self.grad = grad
        self._dtype = model_dtype(model)
        self._device = model_device(model)
        self._features = model.input_size
        self._config = model_config(model)
        self.counts = {"evicted": 0, "nonfinite_resets": 0, "steps": 0}
        self.last_reset: list = []
        self._clear(min(max_streams, 64))

    # -- bookkeeping ---------------------------------------------------------------
    def _clear(self, capacity: int) -> None:
        self._slot_of: dict = {}
        self._key_of: list = [None] * capacity
        self._free = list(range(capacity - 1, -1, -1))
        self._last_used = np.zeros(capacity, dtype=np.int64)
        self._tick = 0
        self._state = self.model.initial_state(capacity, device=self._device, dtype=self._dtype)
        self._generation = 0  # bumped whenever the key -> slot mapping changes
        self._cache: tuple = (-1, None, None, None)  # generation, keys, slots, rows

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

    def _slots_for(self, keys: list) -> list[int]:
        """Slots of ``keys``, allocating (and evicting least recently used) for new ones."""
        self._tick += 1
        get = self._slot_of.get
        slots = [get(k, -1) for k in keys]
        new = [i for i, s in enumerate(slots) if s < 0]
        if new:
            for i in new:
                _check_key(keys[i])
            if len(keys) > self.max_streams:
                raise ValueError(
                    f"a push may hold at most max_streams = {self.max_streams} streams, "
                    f"got {len(keys)}"
                )
            live = len(self._slot_of)
            if live + len(new) > len(self._key_of) and len(self._key_of) < self.max_streams:
                self._grow(live + len(new))
            known = np.asarray([s for s in slots if s >= 0], dtype=np.int64)
            self._last_used[known] = self._tick
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
        self._last_used[slots] = self._tick
        return slots

    def _rows_for(self, keys: list) -> tuple[np.ndarray, Tensor | slice]:
        """Slots of ``keys`` as an index for numpy and one for the state tensors.

        The same key list pushed again (the steady state of a live bank) reuses the last
        index; a contiguous run of slots becomes a slice, so gather and scatter are views
        and copies instead of index operations.
        """
        generation, cached_keys, slots, rows = self._cache
        if generation == self._generation and keys == cached_keys:
            self._tick += 1
            self._last_used[slots] = self._tick
            return slots, rows
        slots = np.asarray(self._slots_for(keys), dtype=np.int64)
        first = int(slots[0])
        if np.array_equal(slots, np.arange(first, first + len(slots))):
            rows: Tensor | slice = slice(first, first + len(slots))
        else:
            rows = torch.from_numpy(slots).to(self._device)
        self._cache = (self._generation, list(keys), slots, rows)
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

    # -- the hot path --------------------------------------------------------------
    def push(self, chunks: dict) -> dict:
        """Step every stream in ``chunks`` from its own state, in one batched call.

        Parameters
        ----------
        chunks : dict
            ``{key: chunk}``; a chunk is ``(T, F)`` or one step ``(F,)``. New keys start
            from the initial state. If any chunk is bad (shape, dtype, NaN / inf) a
            ``ValueError`` names its key and no stream's state changes.

        Returns
        -------
        BankOutputs
            A read-only mapping ``{key: outputs}`` in the same order (``dict(out)``
            makes it a dict); ``out.tensor`` is the whole batch when shapes agree.

        Shape
        -----
        ``(T, F)`` -> ``(T, O)``; ``(F,)`` -> ``(O,)``.
        """
        if not isinstance(chunks, dict):
            raise ValueError(f"chunks must be a dict {{key: chunk}}, got {type(chunks).__name__}")
        if not chunks:
            return {}
        keys = list(chunks)
        values = list(chunks.values())
        x = self._stack_uniform(values)
        if x is not None:
            one_step = x.dim() == 2
            y = self.push_many(keys, x.unsqueeze(1) if one_step else x, _checked=True)
            return BankOutputs(keys, y[:, 0] if one_step else y)
        return self._push_ragged(keys, values)

    def _stack_uniform(self, values: list) -> Tensor | None:
        """All chunks as one ``(N, T, F)`` / ``(N, F)`` tensor when they share a shape."""
        if set(map(type, values)) != {Tensor}:
            return None
        if set(map(_dtype_of, values)) != {self._dtype}:
            return None
        try:
            x = torch.stack(values)
        except RuntimeError:  # unequal shapes
            return None
        if x.dim() not in (2, 3) or x.shape[-1] != self._features:
            return None  # the per-chunk path names the key and the rule
        return x.to(self._device)

    def _push_ragged(self, keys: list, values: list) -> dict:
        xs, steps = [], []
        for key, value in zip(keys, values, strict=True):
            x, one = as_chunk(
                value,
                features=self._features,
                dtype=self._dtype,
                device=self._device,
                name=f"chunk for key {key!r}",
            )
            xs.append(x)
            steps.append(0 if one else x.shape[0])  # 0 marks a one-step (F,) chunk
        groups: dict[int, list[int]] = {}
        for i, x in enumerate(xs):
            groups.setdefault(x.shape[0], []).append(i)
        out: list = [None] * len(keys)
        for length, members in groups.items():
            x = torch.stack([xs[i] for i in members])
            y = self.push_many([keys[i] for i in members], x, _checked=True)
            for i, yi in zip(members, y.unbind(0), strict=True):
                out[i] = yi[0] if steps[i] == 0 and length == 1 else yi
        return BankOutputs(keys, out)

    def push_many(self, keys: list, x: Tensor, *, _checked: bool = False) -> Tensor:
        """Step N distinct streams with one ``(N, T, F)`` tensor: the zero-copy path.

        Parameters
        ----------
        keys : list
            N distinct keys, row i of ``x`` belongs to ``keys[i]``.
        x : Tensor
            Inputs in the model's dtype.

        Returns
        -------
        Tensor
            Outputs, row i for ``keys[i]``.

        Shape
        -----
        x: ``(N, T, F)`` -> ``(N, T, O)``.
        """
        if not _checked:
            if not isinstance(x, Tensor) or x.dim() != 3 or x.shape[2] != self._features:
                shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
                raise ValueError(f"x must be (N, T, F) with F = {self._features}, got {shape}")
            if x.dtype != self._dtype:
                raise ValueError(f"x must have dtype {self._dtype}, got {x.dtype}")
            if len(keys) != x.shape[0] or len(set(keys)) != len(keys):
                raise ValueError(
                    f"keys must be {x.shape[0]} distinct keys (one per row of x), got "
                    f"{len(keys)} keys of which {len(set(keys))} distinct"
                )
            x = x.to(self._device)
        if not all_finite(x):
            row = first_nonfinite(x)[0]
            raise ValueError(f"chunk for key {keys[row]!r} has a non-finite value (NaN or inf)")
        slots, rows = self._rows_for(keys)
        self.last_reset = []
        if x.shape[1] == 0:
            return x.new_zeros(x.shape[0], 0, self._output_size())
        if self.grad:
            y = self._step(rows, x)
        else:
            with torch.inference_mode():
                y = self._step(rows, x)
        self.counts["steps"] += x.shape[0] * x.shape[1]
        if y is None:  # a state went non-finite: reset those streams, report them
            with torch.inference_mode():
                y, bad = self._recover(rows, x)
            self.last_reset = [keys[i] for i in bad]
            self._zero_rows([int(slots[i]) for i in bad])
            self.counts["nonfinite_resets"] += len(bad)
        return y

    def _step(self, rows: Tensor | slice, x: Tensor) -> Tensor | None:
        """One batched call; ``None`` (and no state written) if a new state is non-finite."""
        state = self._state
        if isinstance(rows, slice):
            entering = State(state.h[:, rows], None if state.c is None else state.c[:, rows])
        else:
            entering = state.select(rows)
        y, new = self.model(x, entering)
        if self.grad:
            new = new.detach()
        if not _all_finite_state(new):
            return None
        if isinstance(rows, slice):
            state.h[:, rows].copy_(new.h)
            if state.c is not None:
                state.c[:, rows].copy_(new.c)
        else:
            state.scatter_(rows, new)
        return y

    def _recover(self, rows: Tensor | slice, x: Tensor) -> tuple[Tensor, list[int]]:
        # Rare path: keep the finite streams' new states, report the others.
        if isinstance(rows, slice):
            rows = torch.arange(rows.start, rows.stop, device=self._device)
        y, new = self.model(x, self._state.select(rows))
        new = new.detach()
        ok = new.is_finite()
        self._state.scatter_(rows, new)
        return y, (~ok).nonzero().flatten().tolist()

    def _output_size(self) -> int:
        size = getattr(self.model, "output_size", None)
        return size if isinstance(size, int) else self._state.hidden_size

    # -- per-key operations --------------------------------------------------------
    def __len__(self) -> int:
        return len(self._slot_of)

    def __contains__(self, key) -> bool:
        return key in self._slot_of

    def keys(self) -> list:
        """Live keys, least recently used first."""
        return sorted(self._slot_of, key=lambda k: self._last_used[self._slot_of[k]])

    def _slot(self, key) -> int:
        try:
            return self._slot_of[key]
        except (KeyError, TypeError):
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
        state = State.from_tensors(state_dict["tensors"])
        want = (state.num_layers, len(keys), state.hidden_size)
        probe = self.model.initial_state(len(keys), device="cpu", dtype=self._dtype)
        if tuple(probe.h.shape) != tuple(state.h.shape) or (probe.c is None) != (state.c is None):
            raise ValueError(f"state tensors have shape {tuple(state.h.shape)}, expected {want}")
        if len(keys) > self.max_streams:
            raise ValueError(f"state holds {len(keys)} streams, max_streams is {self.max_streams}")
        self._clear(max(min(self.max_streams, 64), len(keys)))
        if keys:
            self._slots_for(keys)  # allocates slots 0..n-1 in order
            self._last_used[: len(keys)] = np.arange(1, len(keys) + 1)
            self._tick = len(keys)
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
