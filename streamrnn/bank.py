"""StreamBank: many keyed streams stepped as one batch."""

from __future__ import annotations

import os

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

__all__ = ["StreamBank", "model_config"]

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
        self._last_used[slots] = self._tick
        return slots

    def _evict(self, n: int) -> None:
        # Live slots not touched by this push have ticks below the current one.
        order = np.argsort(self._last_used, kind="stable")
        victims = [int(s) for s in order if self._key_of[s] is not None][:n]
        for slot in victims:
            del self._slot_of[self._key_of[slot]]
            self._key_of[slot] = None
            self._free.append(slot)
        self.counts["evicted"] += len(victims)

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
        dict
            ``{key: outputs}`` in the same order.

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
            return dict(zip(keys, (y[:, 0] if one_step else y).unbind(0), strict=True))
        return self._push_ragged(keys, values)

    def _stack_uniform(self, values: list) -> Tensor | None:
        """All chunks as one ``(N, T, F)`` / ``(N, F)`` tensor when they share a shape."""
        if not all(type(v) is Tensor for v in values):
            return None
        if {v.dtype for v in values} != {self._dtype} or len({v.shape for v in values}) != 1:
            return None
        x = torch.stack(values)
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
        return dict(zip(keys, out, strict=True))

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
        slots = self._slots_for(keys)
        if x.shape[1] == 0:
            return x.new_zeros(x.shape[0], 0, self._output_size())
        idx = torch.tensor(slots, dtype=torch.long, device=self._device)
        if self.grad:
            y = self._step(idx, x, keys)
        else:
            with torch.inference_mode():
                y = self._step(idx, x, keys)
        self.counts["steps"] += x.shape[0] * x.shape[1]
        return y

    def _step(self, idx: Tensor, x: Tensor, keys: list) -> Tensor:
        y, new = self.model(x, self._state.select(idx))
        if self.grad:
            new = new.detach()
        self._state.scatter_(idx, new)
        self.last_reset = []
        ok = new.is_finite()
        if not bool(ok.all()):
            bad = (~ok).nonzero().flatten().tolist()
            self.last_reset = [keys[i] for i in bad]
            self._zero_rows([int(idx[i]) for i in bad])
            self.counts["nonfinite_resets"] += len(bad)
        return y

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
