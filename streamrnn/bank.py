"""StreamBank: many keyed streams stepped as one batch."""

from __future__ import annotations

import operator
import os
import threading

import numpy as np
import torch
from torch import Tensor

from ._checkpoint import bank_state_dict, load_bank, load_bank_state_dict, model_config, save_bank
from ._checks import (
    all_finite,
    as_chunk,
    as_id_chunk,
    check_id_rows,
    first_nonfinite,
    model_device,
    model_dtype,
    num_tokens,
    plain_tensor,
    shares_memory,
)
from ._outputs import BankOutputs
from ._slots import SlotTable, show_key
from ._validate import check_bool, check_positive_int
from .engines import RowStepper
from .state import State
from .stream import check_model

__all__ = ["BankOutputs", "StreamBank", "model_config"]

_dtype_of = operator.attrgetter("dtype")


class StreamBank:
    """Many live streams, keyed, stepped together in one batched call per push.

    States live in preallocated tensors (grown by doubling up to ``max_streams``). A
    push gathers the rows of the streams that have data, runs one fused step, and
    scatters the new rows back. Chunks of unequal length are grouped by length (one
    call per distinct length; measured cheaper than padding, and exact without masks).

    Parameters
    ----------
    model : RecurrentLayer or recurrent model
        Shared by all streams (see :class:`~streamrnn.Stream`); a token model takes
        token ids.
    max_streams : int
        Most live streams. A new key arriving at the limit evicts the least recently
        used stream (its state is lost); evictions are counted in ``counts``.
    grad : bool
        ``False`` (default): no autograd. Calls of up to
        :data:`~streamrnn.engines.COMPILED_MAX_BATCH` streams of a built-in cell on the
        CPU, and one step of any number of LSTM or RNN streams, run on the compiled
        engine, in place in the bank's state; others on torch under ``torch.no_grad``
        (:mod:`streamrnn.engines`; the engine never changes results beyond float
        rounding). ``True`` keeps the outputs' autograd graph (torch engine).

    Attributes
    ----------
    counts : dict
        ``evicted`` streams, ``nonfinite_resets`` (streams whose state became non-finite
        and was reset), ``steps`` (stream-steps run).
    last_reset : list
        Keys reset for a non-finite state in the last push.

    Threads
    -------
    Safe under concurrent calls: every public method holds the bank's lock (one
    ``threading.RLock``), so calls from several threads run one after another, each
    whole, as if made in some order. The model's weights are shared, not locked: do not
    change them while another thread pushes.

    Shape
    -----
    push: ``{key: (T, F) or (F,)}`` -> ``{key: (T, O) or (O,)}``;
    push_many: ``(N, T, F)`` -> ``(N, T, O)``. A token model takes ids: ``(T,)`` or one
    id per key, ``(N, T)`` in ``push_many``.

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
        self.max_streams = check_positive_int("max_streams", max_streams)
        self.grad = check_bool("grad", grad)
        self.model = model
        self._dtype = model_dtype(model)
        self._device = model_device(model)
        self._features = model.input_size
        self._tokens = num_tokens(model)
        self._config = model_config(model)
        self.counts = {"evicted": 0, "nonfinite_resets": 0, "steps": 0}
        self.last_reset: list = []
        capacity = min(max_streams, 64)
        self._state = model.initial_state(capacity, device=self._device, dtype=self._dtype)
        self._slots = SlotTable(max_streams, capacity, grow=self._grow_rows,
                                reset=self._zero_rows, counts=self.counts)
        self._index: tuple = (None, -1, None)  # slots, generation, rows of the last push
        self._engines = RowStepper(model, grad=grad)  # compiled or torch, chosen per call
        self._lock = threading.RLock()  # every public method holds it (see Threads)

    # -- the hot path --------------------------------------------------------------
    def push(self, chunks: dict) -> dict:
        """Step every stream in ``chunks`` from its own state, in one batched call.

        Parameters
        ----------
        chunks : dict
            ``{key: chunk}``; a chunk is ``(T, F)`` or one step ``(F,)`` (for a token
            model: ``(T,)`` ids or one id). New keys start from the initial state. If any
            chunk is bad (shape, dtype, NaN / inf, id out of range) a ``ValueError``
            names its key and no stream's state changes.

        Returns
        -------
        BankOutputs
            A read-only mapping ``{key: outputs}`` in the same order (``dict(out)``
            makes it a dict); ``out.tensor`` is the whole batch when shapes agree.

        Shape
        -----
        ``(T, F)`` -> ``(T, O)``; ``(F,)`` -> ``(O,)``; ids ``(T,)`` -> ``(T, O)``, one id
        -> ``(O,)``.
        """
        with self._lock:
            return self._push(chunks)

    def _push(self, chunks: dict) -> dict:
        if not isinstance(chunks, dict):
            raise ValueError(f"chunks must be a dict {{key: chunk}}, got {type(chunks).__name__}")
        if not chunks:
            return BankOutputs([], [])
        keys = list(chunks)
        self._slots.validate(keys)  # keys first: the chunks' errors name them
        values = list(chunks.values())
        x = self._stack_uniform(values)
        if x is None:
            return self._push_ragged(keys, values)
        one_step = x.dim() == (1 if self._tokens is not None else 2)  # (N, F) or ids (N,)
        return BankOutputs(keys, self._push_many(keys, x, True, one_step=one_step))

    def _stack_uniform(self, values: list) -> Tensor | None:
        """All chunks as one ``(N, T, F)`` / ``(N, F)`` tensor when they share a shape."""
        if set(map(type, values)) != {Tensor}:
            return None
        want = torch.int64 if self._tokens is not None else self._dtype
        if set(map(_dtype_of, values)) != {want}:
            return None
        try:
            x = torch.stack(values)
        except RuntimeError:  # unequal shapes
            return None
        if self._tokens is not None:  # (N,) one id each or (N, T); ranges: push_many
            return plain_tensor(x, "chunks").to(self._device) if x.dim() in (1, 2) else None
        if x.dim() not in (2, 3) or x.shape[-1] != self._features:
            return None  # the per-chunk path names the key and the rule
        return plain_tensor(x, "chunks").to(self._device)

    def _push_ragged(self, keys: list, values: list) -> BankOutputs:
        # Chunks of unequal length: validate all, allocate all keys at once (one LRU
        # decision for the whole push), then one batched call per distinct length.
        xs, one_step = [], []
        for key, value in zip(keys, values, strict=True):
            name = f"chunk for key {key!r}"
            if self._tokens is not None:
                x, one = as_id_chunk(value, high=self._tokens, device=self._device, name=name)
            else:
                x, one = as_chunk(value, features=self._features, dtype=self._dtype,
                                  device=self._device, name=name)
            xs.append(x)
            one_step.append(one)
        slots = self._slots.lookup(keys)
        groups: dict[int, list[int]] = {}
        for i, x in enumerate(xs):
            groups.setdefault(x.shape[0], []).append(i)
        out: list = [None] * len(keys)
        self.last_reset = []
        for length, members in groups.items():
            x = torch.stack([xs[i] for i in members])
            rows = torch.from_numpy(slots[members]).to(self._device)
            y = self._run(slots[members], rows, x, [keys[i] for i in members])
            for i, yi in zip(members, y.unbind(0), strict=True):
                out[i] = yi[0] if one_step[i] and length == 1 else yi
        return BankOutputs(keys, out)

    def push_many(self, keys: list, x: Tensor, *, _checked: bool = False,
                  _lend: bool = False) -> Tensor:
        """Step N distinct streams with one ``(N, T, F)`` tensor: the zero-copy path.

        Parameters
        ----------
        keys : list
            N distinct keys, row i of ``x`` belongs to ``keys[i]``.
        x : Tensor
            Inputs in the model's dtype; for a token model, int64 token ids.

        Returns
        -------
        Tensor
            Outputs, row i for ``keys[i]``.

        Shape
        -----
        x: ``(N, T, F)`` or ids ``(N, T)`` -> ``(N, T, O)``.
        """
        # _lend (private): the outputs may be the bank's memory, valid until the next call:
        # for a caller that copies them at once (a shard), one copy of the output less.
        with self._lock:
            return self._push_many(keys, x, _checked, _lend)

    def _push_many(self, keys: list, x: Tensor, _checked: bool, lend: bool = False,
                   one_step: bool = False) -> Tensor:
        # one_step (checked x only): x is (N, F) values or (N,) ids, outputs (N, O)
        if not _checked:
            tokens = self._tokens is not None
            dims, layout = (2, "(N, T) token ids") if tokens else (
                3, f"(N, T, F) with F = {self._features}")
            if not isinstance(x, Tensor) or x.dim() != dims or (
                    not tokens and x.shape[2] != self._features):
                shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
                raise ValueError(f"x must be {layout}, got {shape}")
            x = plain_tensor(x, "x")
            want = torch.int64 if tokens else self._dtype
            if x.dtype != want:
                raise ValueError(f"x must have dtype {want}, got {x.dtype}")
            if not isinstance(keys, list | tuple):
                raise ValueError(f"keys must be a list, got {type(keys).__name__}")
            if len(keys) != x.shape[0]:
                raise ValueError(
                    f"keys must be {x.shape[0]} distinct keys (one per row of x), got "
                    f"{len(keys)} keys of which {len(set(map(show_key, keys)))} distinct"
                )
            self._slots.validate(keys)
            x = x.to(self._device)
        if self._tokens is not None:
            check_id_rows(x, keys, high=self._tokens)
        elif not self._engines.finite(x):
            row = first_nonfinite(x)[0]
            raise ValueError(f"chunk for key {keys[row]!r} has a non-finite value (NaN or inf)")
        slots, rows = self._rows_for(list(keys))
        self.last_reset = []
        return self._run(slots, rows, x, keys, lend, one_step)

    def _run(self, slots: np.ndarray, rows, x: Tensor, keys: list, lend=False,
             one_step=False) -> Tensor:
        """Step the streams at ``rows`` with ``x``; reset and report non-finite states."""
        steps = 1 if one_step else x.shape[1]
        if steps == 0:
            return x.new_zeros(x.shape[0], 0, self._output_size())
        compiled = self._engines.takes(x.shape[0], steps, self._state)
        if one_step and (not compiled or self._tokens is not None):  # (N, T, ...) wanted
            return self._run(slots, rows, x.unsqueeze(1), keys, lend)[:, 0]
        self.counts["steps"] += x.shape[0] * steps
        if compiled:
            y, bad = self._engines.step(self._state, slots, x, lend=lend)  # in place
        else:
            y = self._step(rows, x, lend)
            bad = []
            if y is None:  # a state went non-finite: keep the others, report those
                y, bad = self._recover(rows, x)
        if bad:  # reset the streams whose state went non-finite
            self.last_reset += [keys[i] for i in bad]
            self._zero_rows([int(slots[i]) for i in bad])
            self.counts["nonfinite_resets"] += len(bad)
        return y

    def _step(self, rows: Tensor | slice, x: Tensor, lend: bool = False) -> Tensor | None:
        """One batched call; ``None`` (and no state written) if a new state is non-finite."""
        state = self._state
        if isinstance(rows, slice):
            entering = state.rows(rows.start, rows.stop)
        else:
            entering = state.select(rows)
        y, new = self._engines.torch.run(x, entering)
        if not all(map(all_finite, new.values())):
            return None
        if isinstance(rows, slice):
            if rows.start == 0 and rows.stop == state.batch_size:
                self._state = new  # every slot stepped: take the new tensors, no copy
                if not lend and shares_memory(y, new):  # one step of a bare layer: y
                    y = y.clone()  # is the new h, which a later push writes in place
            else:
                state.rows(rows.start, rows.stop).copy_(new)
        else:
            state.scatter_(rows, new)
        return y

    def _recover(self, rows: Tensor | slice, x: Tensor) -> tuple[Tensor, list[int]]:
        # Rare path: keep the finite streams' new states, report the others.
        if isinstance(rows, slice):
            rows = torch.arange(rows.start, rows.stop, device=self._device)
        y, new = self._engines.torch.run(x, self._state.select(rows))
        ok = new.is_finite()
        self._state.scatter_(rows, new)
        return y, (~ok).nonzero().flatten().tolist()

    def _output_size(self) -> int:
        size = getattr(self.model, "output_size", None)
        return size if isinstance(size, int) else self._state.hidden_size

    # -- rows ----------------------------------------------------------------------
    def _grow_rows(self, old: int, new: int) -> None:
        extra = self.model.initial_state(new - old, device=self._device, dtype=self._dtype)
        self._state = State.cat([self._state, extra])

    def _zero_rows(self, slots: list[int]) -> None:
        idx = torch.tensor(slots, dtype=torch.long, device=self._device)
        fresh = self.model.initial_state(len(slots), device=self._device, dtype=self._dtype)
        self._state.scatter_(idx, fresh)

    def _rows_for(self, keys: list) -> tuple[np.ndarray, Tensor | slice]:
        """Slots of ``keys`` as an index for numpy and one for the state tensors.

        A contiguous run of slots becomes a slice, so gather and scatter are views and
        copies instead of index operations; the same slots again reuse the last index.
        """
        slots = self._slots.lookup(keys)
        if not len(slots):  # no keys: nothing to step
            return slots, slice(0, 0)
        cached, generation, rows = self._index
        if cached is slots and generation == self._slots.generation:
            return slots, rows
        first = int(slots[0])
        if np.array_equal(slots, np.arange(first, first + len(slots))):
            rows = slice(first, first + len(slots))
        else:
            rows = torch.from_numpy(slots).to(self._device)
        self._index = (slots, self._slots.generation, rows)
        return slots, rows

    # -- per-key operations --------------------------------------------------------
    def __len__(self) -> int:
        with self._lock:
            return len(self._slots)

    def __contains__(self, key) -> bool:
        with self._lock:
            return key in self._slots

    def keys(self) -> list:
        """Live keys, least recently used first."""
        with self._lock:
            return self._slots.keys()

    def reset(self, key) -> None:
        """Put one stream back to the initial state; the others are untouched."""
        with self._lock:
            self._zero_rows([self._slots.slot(key)])

    def drop(self, key) -> None:
        """Forget one stream and free its slot."""
        with self._lock:
            self._slots.release(self._slots.slot(key))

    def get_state(self, key) -> State:
        """A copy of one stream's state (B = 1)."""
        with self._lock:
            idx = torch.tensor([self._slots.slot(key)], device=self._device)
            return self._state.select(idx).clone()

    # -- checkpoints ---------------------------------------------------------------
    def state_dict(self) -> dict:
        """Every stream's state, keys (least recently used first) and counters.

        Tensors are copies, one per state part; the dict holds only tensors, str, int,
        lists and dicts.
        """
        with self._lock:
            return bank_state_dict(self)

    def load_state_dict(self, state_dict: dict) -> None:
        """Replace every stream with those of ``state_dict``; refuses (``ValueError``,
        nothing changed) one that does not fit."""
        with self._lock:
            load_bank_state_dict(self, state_dict)

    def save(self, path: str | os.PathLike) -> None:
        """Write every stream's state to a safetensors file, atomically (no pickle)."""
        with self._lock:
            save_bank(self, path)

    def load(self, path: str | os.PathLike) -> None:
        """Read a file written by :meth:`save` (this version or version 1); refuses a
        truncated, foreign or unfitting one."""
        with self._lock:
            load_bank(self, path)
