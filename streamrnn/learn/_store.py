"""Per-stream rows of the online learner: states and window rings on the slot table (private).

Every live stream owns one slot of the shared :class:`~streamrnn._slots.SlotTable` (one
key rule and one LRU rule with :class:`~streamrnn.StreamBank`), i.e. one row of each
preallocated buffer:

- ``live``: the state after the stream's last step (a ``State`` of any parts, rows on
  dim 1);
- ``enter``: per state part, a ring of R = k2 // k1 + 1 live states, each the state
  that enters a future learning window (``(R, L, N, ...)``; which states and which ring
  slot: :class:`~streamrnn.learn._windows.Windows`);
- ``xbuf``: the last k2 inputs (step t at ring position ``t % k2``);
- ``ybuf`` / ``tstat``: the targets of those steps and their status (``NONE``, ``PENDING``
  not yet learned from, ``LEARNED``);
- ``count``: steps seen; ``due``: a learning window ended and its update is pending.

The window lane may hold back its writes (:meth:`StreamRows.hold`); the buffers it
writes are properties that do them before any other read or write.

``live``, ``enter``, ``xbuf`` and ``ybuf`` hold data and live on the model's device;
``tstat``, ``count`` and ``due`` (and the table's ``last_used``) are bookkeeping and live
on the host as numpy arrays, so deciding what to learn never waits on the device. Index
tensors of slots and ring positions are cached (:meth:`StreamRows.index`), not rebuilt
every step.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from .._slots import SlotTable
from ..state import State
from ._windows import Windows

__all__ = ["LEARNED", "NONE", "PENDING", "StreamRows", "finite_total"]

NONE, PENDING, LEARNED = 0, 1, 2
_BUFFERS = ("live", "enter", "xbuf", "ybuf", "tstat", "count", "due")


def finite_total(state: State, alike: bool) -> bool:
    """Whether the sum of all values of all parts is finite: one reduction when the parts
    are ``alike`` (of one shape). (A finite state whose sum overflows reads as not finite:
    the caller then checks stream by stream.)"""
    parts = iter(state.values())
    total = next(parts)
    if alike:
        for p in parts:
            total = total + p
        total = total.sum()
    else:
        total = torch.stack([total.sum(), *(p.sum() for p in parts)]).sum()
    return math.isfinite(float(total))


def _held_back(name: str) -> property:
    # A buffer that the window lane's held-back writes (StreamRows.hold) may touch: every
    # read does them first; setting it anew (grow, install) drops them.
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
    """States and window rings of the live streams of
    :class:`~streamrnn.learn.OnlineLearner`, one row per slot of ``table``."""

    def __init__(
        self,
        model,
        windows: Windows,
        *,
        max_streams: int,
        in_shape: tuple,
        in_dtype: torch.dtype,
        target_shape: tuple,
        target_dtype: torch.dtype,
        device: torch.device,
        dtype: torch.dtype,
        counts: dict,
    ) -> None:
        self.model, self.windows = model, windows
        self.in_shape, self.in_dtype = in_shape, in_dtype
        self.target_shape, self.target_dtype = target_shape, target_dtype
        self.device, self.dtype = device, dtype
        self.counts = counts  # shared with the learner: evicted, lost_pending
        self._index: dict[tuple, Tensor] = {}
        self._held = None  # a lane window's writes, held back (see hold)
        self.epoch = 0     # see bump
        capacity = min(max_streams, 16)
        probe = model.initial_state(1, device=device, dtype=dtype)
        self.alike = len(set(probe.trailing_shapes().values())) == 1  # parts of one shape
        self.table = SlotTable(max_streams, capacity, grow=self._grow, reset=self.zero_rows,
                               counts=counts, default_key=True)
        self._set(self.blank(capacity))

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
    def blank(self, n: int) -> dict:
        """Buffers for ``n`` streams at step 0 (new objects; nothing here changes)."""
        live = self.model.initial_state(n, device=self.device, dtype=self.dtype)
        ring = self.windows.ring
        return {
            "live": live,
            "enter": {k: v.new_zeros((ring, *v.shape)) for k, v in live.items()},
            "xbuf": torch.zeros((n, self.windows.k2, *self.in_shape), dtype=self.in_dtype,
                                device=self.device),
            "ybuf": torch.zeros((n, self.windows.k2, *self.target_shape),
                                dtype=self.target_dtype, device=self.device),
            "tstat": np.zeros((n, self.windows.k2), dtype=np.uint8),
            "count": np.zeros(n, dtype=np.int64),
            "due": np.zeros(n, dtype=bool),
        }

    def _set(self, buffers: dict) -> None:
        for name in _BUFFERS:
            setattr(self, name, buffers[name])
        self.bump()

    def install(self, buffers: dict, keys: list, last_used: np.ndarray, tick: int) -> None:
        """Replace every stream: ``buffers`` (from :meth:`blank`, filled) with ``keys`` at
        slots ``0 .. n-1`` and their recency (a loaded checkpoint's). Nothing here can
        fail: the caller validated everything."""
        self._set(buffers)
        self.table.clear(len(buffers["count"]))
        self.table.restore(keys, last_used, tick)

    def _grow(self, old: int, new: int) -> None:
        # The table's growth callback: ``new - old`` more rows at step 0.
        extra = self.blank(new - old)
        self.live = State.cat([self.live, extra["live"]])
        self.enter = {k: torch.cat([v, extra["enter"][k]], dim=2)
                      for k, v in self.enter.items()}
        for name in ("xbuf", "ybuf"):
            setattr(self, name, torch.cat([getattr(self, name), extra[name]]))
        for name in ("tstat", "count", "due"):
            setattr(self, name, np.concatenate([getattr(self, name), extra[name]]))

    def zero_rows(self, slots: list[int]) -> None:
        """Put streams back to step 0: initial state, empty window, nothing due (the
        table's reset callback too: new, evicted and dropped slots). Their pending
        targets are counted as lost."""
        if not len(slots):
            return
        self.bump()
        self.counts["lost_pending"] += int((self.tstat[slots] == PENDING).sum())
        fresh = self.model.initial_state(len(slots), device=self.device, dtype=self.dtype)
        self.live.scatter_(self.index(slots), fresh)
        self.tstat[slots] = NONE
        self.count[slots] = 0
        self.due[slots] = False

    def bump(self) -> None:
        """Note that step counts or pending updates changed other than by the window lane
        (:mod:`streamrnn.learn._window`), which then reads them again."""
        self.epoch += 1

    # -- a lane's writes held back ---------------------------------------------------
    live = _held_back("live")
    enter = _held_back("enter")
    count = _held_back("count")
    tstat = _held_back("tstat")

    def hold(self, idx: Tensor, at_host: slice | np.ndarray, count: int, rows: State) -> None:
        """Hold back the writes of a window the lane learned (:mod:`streamrnn.learn._window`)
        for streams ``idx`` (``at_host`` on the host) in lockstep: their new live state
        ``rows``, which also enters their next window, their step count ``count`` (a
        window start) and their targets learned.

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
        ring = self.windows.ring_slot(count)
        entries = {} if held is None else held[1]
        entries.pop(ring, None)
        entries[ring] = (count, rows)
        self._held = (idx, entries, rows, at_host, count)

    def held(self, idx: Tensor) -> State | None:
        """The live state of streams ``idx`` (the same object) if it is held back."""
        held = self._held
        return held[2] if held is not None and held[0] is idx else None

    def write_held(self) -> None:
        """Do the writes held back by :meth:`hold`."""
        idx, entries, rows, at_host, count = self._held
        self._held = None
        self._count[at_host] = count
        self._tstat[at_host] = LEARNED
        for start, state in entries.values():
            self.store_enter_lockstep(start, idx, state)
        self._live.scatter_(idx, rows)

    # -- entering states -----------------------------------------------------------
    def store_enter(self, slots: np.ndarray, idx: Tensor, rows: State) -> None:
        """Keep the live state of streams whose count makes it a future window's start."""
        count = self.count[slots]
        keep = self.windows.enters(count)
        if not keep.any():
            return
        if keep.all() and (count == count[0]).all():  # lockstep streams: one ring slot
            self.store_enter_lockstep(int(count[0]), idx, rows)
            return
        sel = np.nonzero(keep)[0]
        ring = self.index(self.windows.ring_slot(count[sel]))
        where = self.index(sel)
        cols = idx.index_select(0, where)
        for part, rings in self.enter.items():
            rings[ring, :, cols] = rows[part].index_select(1, where).transpose(0, 1)

    def store_enter_lockstep(self, count: int, idx: Tensor, rows: State) -> None:
        """:meth:`store_enter` of streams whose counts all equal ``count``, one that makes
        their state a future window's start."""
        r = self.windows.ring_slot(count)
        for part, rings in self.enter.items():
            rings[r].index_copy_(1, idx, rows[part])

    def store_enter_one(self, slot: int, count: int, rows: State) -> None:
        """:meth:`store_enter` of one stream (``rows`` with B = 1) whose count is ``count``."""
        if self.windows.enters(count):
            r = self.windows.ring_slot(count)
            for part, rings in self.enter.items():
                rings[r, :, slot] = rows[part][:, 0]

    def enter_state(self, slots: np.ndarray, idx: Tensor, ends: np.ndarray) -> State:
        """The state entering the windows that end at step counts ``ends`` (a copy).

        Streams whose window starts at step 0 get the initial state.
        """
        n = len(slots)
        start = ends - self.windows.k2
        if n == 1 and start[0] > 0:
            r = self.windows.ring_slot(int(start[0]))
            return State(**{part: rings[r].index_select(1, idx)
                            for part, rings in self.enter.items()})
        state = self.model.initial_state(n, device=self.device, dtype=self.dtype)
        if (start > 0).any():
            sel = np.nonzero(start > 0)[0]
            ring = self.index(self.windows.ring_slot(start[sel]))
            cols = self.index(slots[sel])
            where = self.index(sel)
            for part, rings in self.enter.items():
                state[part].index_copy_(1, where, rings[ring, :, cols].transpose(0, 1))
        return state
