"""Per-stream rows of the online learner: slots, states and window rings (private).

Every live stream owns one slot, i.e. one row of each preallocated buffer:

- ``live``: the state after the stream's last step (``State``, rows on dim 1);
- ``enter_h`` / ``enter_c``: a ring of R = k2 // k1 + 1 live states, each the state that
  enters a future learning window (stored when the stream's step count s satisfies
  ``(s + k2) % k1 == 0``, in ring slot ``((s + k2) // k1) % R``);
- ``xbuf``: the last k2 inputs (step t at ring position ``t % k2``);
- ``ybuf`` / ``tstat``: the targets of those steps and their status (``NONE``, ``PENDING``
  not yet learned from, ``LEARNED``);
- ``count``: steps seen; ``due``: a learning window ended and its update is pending.

The window lane may hold back its writes (:meth:`StreamRows.hold`); the buffers it
writes are properties that do them before any other read or write.

``live``, ``enter_*``, ``xbuf`` and ``ybuf`` hold data and live on the model's device;
``tstat``, ``count``, ``due`` and ``last_used`` are bookkeeping and live on the host as
numpy arrays, so deciding what to learn never waits on the device. Index tensors of slots
and ring positions are cached (:meth:`StreamRows.index`), not rebuilt every step.

Slots are allocated like :class:`~streamrnn.StreamBank`'s (grown by doubling up to
``max_streams``, least recently used evicted at the limit).
"""

from __future__ import annotations

import operator

import numpy as np
import torch
from torch import Tensor

from ..state import State

__all__ = ["NONE", "PENDING", "LEARNED", "StreamRows"]

NONE, PENDING, LEARNED = 0, 1, 2


def check_key(key, name: str = "key") -> None:
    """Raise ``ValueError`` unless ``key`` is a str, an int or a tuple of them."""
    if isinstance(key, tuple):
        for part in key:
            check_key(part, name)
    elif isinstance(key, bool) or not isinstance(key, str | int):
        raise ValueError(
            f"{name} must be a str, an int, or a tuple of them, got {type(key).__name__} {key!r}"
        )


def _held_back(name: str) -> property:
    # A buffer that the window lane's held-back writes (StreamRows.hold) may touch: every
    # read does them first; setting it anew (clear, grow) drops them.
    private = "_" + name

    def get(self):
        if self._held is not None:
            self.write_held()
        return getattr(self, private)

    def put(self, value) -> None:
        self._held = None
        setattr(self, private, value)

    return property(get, put, doc=f"``{name}``, with any held-back writes done.")


class StreamRows:
    """Slots and per-stream buffers of :class:`~streamrnn.learn.OnlineLearner`."""

    def __init__(
        self,
        model,
        *,
        k1: int,
        k2: int,
        max_streams: int,
        in_shape: tuple,
        in_dtype: torch.dtype,
        target_shape: tuple,
        target_dtype: torch.dtype,
        device: torch.device,
        dtype: torch.dtype,
        counts: dict,
    ) -> None:
        self.model = model
        self.k1, self.k2 = k1, k2
        self.ring = k2 // k1 + 1
        self.max_streams = max_streams
        self.in_shape, self.in_dtype = in_shape, in_dtype
        self.target_shape, self.target_dtype = target_shape, target_dtype
        self.device, self.dtype = device, dtype
        self.counts = counts  # shared with the learner: evicted, lost_pending
        self._index: dict[tuple, Tensor] = {}
        self._held = None  # a lane window's writes, held back (see hold)
        self.clear(min(max_streams, 16))

    def index(self, ints) -> Tensor:
        """``ints`` (slots or ring positions) as an int64 tensor on the device.

        Short ones (what one or a few streams use every step) are cached.
        """
        if len(ints) > 64:
            return torch.as_tensor(np.asarray(ints, dtype=np.int64), device=self.device)
        key = tuple(ints.tolist() if isinstance(ints, np.ndarray) else ints)
        out = self._index.get(key)
        if out is None:
            if len(self._index) >= 4096:
                self._index.clear()
            out = self._index[key] = torch.tensor(key, dtype=torch.long, device=self.device)
        return out

    # -- allocation ----------------------------------------------------------------
    def _blank(self, n: int) -> dict:
        live = self.model.initial_state(n, device=self.device, dtype=self.dtype)
        enter_h = live.h.new_zeros((self.ring, *live.h.shape))
        enter_c = None if live.c is None else live.c.new_zeros((self.ring, *live.c.shape))
        return {
            "live": live,
            "enter_h": enter_h,
            "enter_c": enter_c,
            "xbuf": torch.zeros((n, self.k2, *self.in_shape), dtype=self.in_dtype,
                                device=self.device),
            "ybuf": torch.zeros((n, self.k2, *self.target_shape), dtype=self.target_dtype,
                                device=self.device),
            "tstat": np.zeros((n, self.k2), dtype=np.uint8),
            "count": np.zeros(n, dtype=np.int64),
            "due": np.zeros(n, dtype=bool),
            "last_used": np.zeros(n, dtype=np.int64),
        }

    def clear(self, capacity: int) -> None:
        """Forget every stream; ``capacity`` empty slots."""
        self.slot_of: dict = {}
        self.key_of: list = [None] * capacity
        self.free = list(range(capacity - 1, -1, -1))
        self.tick = 0
        self._memo = None  # the keys of the last push and their slots (see recall)
        self.epoch = getattr(self, "epoch", 0) + 1  # see bump
        for name, value in self._blank(capacity).items():
            setattr(self, name, value)

    # -- a lane's writes held back ---------------------------------------------------
    live = _held_back("live")
    enter_h = _held_back("enter_h")
    enter_c = _held_back("enter_c")
    count = _held_back("count")
    tstat = _held_back("tstat")
    last_used = _held_back("last_used")

    def hold(self, idx: Tensor, at_host: slice | np.ndarray, count: int, rows: State) -> None:
        """Hold back the writes of a window the lane learned (:mod:`streamrnn.learn._window`)
        for streams ``idx`` (``at_host`` on the host) in lockstep: their new live state
        ``rows``, which also enters their next window, their step count ``count`` (a
        window start), their targets learned, and their use at the current tick.

        The writes are done by the next read or write of any buffer they touch. Until
        then :meth:`held` gives the live state, and a later hold of the same streams
        (the same ``idx`` object) supersedes this one's writes to the same places: a
        stream loop's next window starts from the state the last one left, with no copy
        out of the buffers and back and no host array touched in between. The buffers
        then hold exactly what the writes done one by one would have left.
        """
        held = self._held
        if held is not None and held[0] is not idx:
            self.write_held()
            held = None
        ring = (count + self.k2) // self.k1 % self.ring
        entries = {} if held is None else held[1]
        entries.pop(ring, None)
        entries[ring] = (count, rows)
        self._held = (idx, entries, rows, at_host, count, self.tick)

    def held(self, idx: Tensor) -> State | None:
        """The live state of streams ``idx`` (the same object) if it is held back."""
        held = self._held
        return held[2] if held is not None and held[0] is idx else None

    def write_held(self) -> None:
        """Do the writes held back by :meth:`hold`."""
        idx, entries, rows, at_host, count, tick = self._held
        self._held = None
        self._count[at_host] = count
        self._tstat[at_host] = LEARNED
        self._last_used[at_host] = tick
        for start, state in entries.values():
            self.store_enter_lockstep(start, idx, state)
        self._live.scatter_(idx, rows)

    @property
    def capacity(self) -> int:
        return len(self.key_of)

    def _grow(self, need: int) -> None:
        old = self.capacity
        new = min(self.max_streams, max(need, 2 * old))
        extra = self._blank(new - old)
        self.live = State.cat([self.live, extra["live"]])
        self.enter_h = torch.cat([self.enter_h, extra["enter_h"]], dim=2)
        if self.enter_c is not None:
            self.enter_c = torch.cat([self.enter_c, extra["enter_c"]], dim=2)
        for name in ("xbuf", "ybuf"):
            setattr(self, name, torch.cat([getattr(self, name), extra[name]]))
        for name in ("tstat", "count", "due", "last_used"):
            setattr(self, name, np.concatenate([getattr(self, name), extra[name]]))
        self.key_of.extend([None] * (new - old))
        self.free = list(range(new - 1, old - 1, -1)) + self.free

    def slots_for(self, keys: list) -> list[int]:
        """Slots of ``keys`` (validated, distinct), allocating and evicting for new ones."""
        self.tick += 1
        slots = [self.slot_of.get(k, -1) for k in keys]
        new = [i for i, s in enumerate(slots) if s < 0]
        if new:
            if len(keys) > self.max_streams:
                raise ValueError(
                    f"a push may hold at most max_streams = {self.max_streams} streams, "
                    f"got {len(keys)}"
                )
            live = len(self.slot_of)
            if live + len(new) > self.capacity and self.capacity < self.max_streams:
                self._grow(live + len(new))
            known = np.asarray([s for s in slots if s >= 0], dtype=np.int64)
            self.last_used[known] = self.tick
            shortfall = len(new) - len(self.free)
            if shortfall > 0:
                self._evict(shortfall)
            taken = [self.free.pop() for _ in new]
            for i, slot in zip(new, taken, strict=True):
                self.slot_of[keys[i]] = slot
                self.key_of[slot] = keys[i]
                slots[i] = slot
            self.zero_rows(taken)
        self.last_used[slots] = self.tick
        self._memo = (tuple(keys), slots)
        return slots

    def recall(self, keys) -> tuple[np.ndarray, Tensor, slice | np.ndarray] | None:
        """Slots (increasing), their index tensor and their host index (a slice when
        they are consecutive) of ``keys`` when they are the very key objects of the last
        :meth:`slots_for` and no slot was taken or freed since; otherwise ``None``.
        Nothing changes: the caller stamps ``last_used`` (:meth:`hold`).

        A stream loop pushes the same keys every time: this skips their validation and
        lookup (the same objects were validated and looked up then).
        """
        memo = self._memo
        if memo is None or len(keys) != len(memo[0]) or not all(
                map(operator.is_, keys, memo[0])):
            return None
        if len(memo) == 2:  # first recall: as arrays, or None when not increasing
            slots = np.asarray(memo[1], dtype=np.int64)
            step = np.diff(slots)
            known = None if (step <= 0).any() else (slots, self.index(slots), slice(
                int(slots[0]), int(slots[-1]) + 1) if (step == 1).all() else slots)
            memo = self._memo = (*memo, known)
        return memo[2]

    def bump(self) -> None:
        """Note that step counts or pending updates changed other than by the window lane
        (:mod:`streamrnn.learn._window`), which then reads them again."""
        self.epoch += 1

    def _evict(self, n: int) -> None:
        order = np.argsort(self.last_used, kind="stable")
        victims = [int(s) for s in order if self.key_of[s] is not None][:n]
        for slot in victims:
            self.release(slot)
        self.counts["evicted"] += len(victims)

    def release(self, slot: int) -> None:
        """Free ``slot``; its pending targets are counted as lost."""
        self.zero_rows([slot])
        self._memo = None
        del self.slot_of[self.key_of[slot]]
        self.key_of[slot] = None
        self.free.append(slot)

    def zero_rows(self, slots: list[int]) -> None:
        """Put streams back to step 0: initial state, empty window, nothing due."""
        if not slots:
            return
        self.bump()
        self.counts["lost_pending"] += int((self.tstat[slots] == PENDING).sum())
        fresh = self.model.initial_state(len(slots), device=self.device, dtype=self.dtype)
        self.live.scatter_(self.index(slots), fresh)
        self.tstat[slots] = NONE
        self.count[slots] = 0
        self.due[slots] = False

    def keys_by_slot(self) -> list:
        """Live keys in slot order."""
        return [self.key_of[s] for s in sorted(self.slot_of.values())]

    # -- entering states -----------------------------------------------------------
    def store_enter(self, slots: np.ndarray, idx: Tensor, rows: State) -> None:
        """Keep the live state of streams whose count makes it a future window's start."""
        count = self.count[slots]
        keep = (count + self.k2) % self.k1 == 0
        if not keep.any():
            return
        if keep.all() and (count == count[0]).all():  # lockstep streams: one ring slot
            self.store_enter_lockstep(int(count[0]), idx, rows)
            return
        sel = np.nonzero(keep)[0]
        ring = self.index((count[sel] + self.k2) // self.k1 % self.ring)
        where = self.index(sel)
        cols = idx.index_select(0, where)
        self.enter_h[ring, :, cols] = rows.h.index_select(1, where).transpose(0, 1)
        if self.enter_c is not None:
            self.enter_c[ring, :, cols] = rows.c.index_select(1, where).transpose(0, 1)

    def store_enter_lockstep(self, count: int, idx: Tensor, rows: State) -> None:
        """:meth:`store_enter` of streams whose counts all equal ``count``, one that makes
        their state a future window's start."""
        r = (count + self.k2) // self.k1 % self.ring
        self.enter_h[r].index_copy_(1, idx, rows.h)
        if self.enter_c is not None:
            self.enter_c[r].index_copy_(1, idx, rows.c)

    def store_enter_one(self, slot: int, count: int, rows: State) -> None:
        """:meth:`store_enter` of one stream (``rows`` with B = 1) whose count is ``count``."""
        if (count + self.k2) % self.k1 == 0:
            ring = (count + self.k2) // self.k1 % self.ring
            self.enter_h[ring, :, slot] = rows.h[:, 0]
            if self.enter_c is not None:
                self.enter_c[ring, :, slot] = rows.c[:, 0]

    def enter_state(self, slots: np.ndarray, idx: Tensor, ends: np.ndarray) -> State:
        """The state entering the windows that end at step counts ``ends`` (a copy).

        Streams whose window starts at step 0 get the initial state.
        """
        n = len(slots)
        start = ends - self.k2
        if n == 1 and start[0] > 0:
            ring = int(ends[0]) // self.k1 % self.ring
            return State(self.enter_h[ring].index_select(1, idx),
                         None if self.enter_c is None else self.enter_c[ring].index_select(1, idx))
        state = self.model.initial_state(n, device=self.device, dtype=self.dtype)
        if (start > 0).any():
            sel = np.nonzero(start > 0)[0]
            ring = self.index(ends[sel] // self.k1 % self.ring)
            cols = self.index(slots[sel])
            where = self.index(sel)
            state.h.index_copy_(1, where, self.enter_h[ring, :, cols].transpose(0, 1))
            if state.c is not None:
                state.c.index_copy_(1, where, self.enter_c[ring, :, cols].transpose(0, 1))
        return state
