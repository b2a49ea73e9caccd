"""The slot table of keyed streams, shared by StreamBank and OnlineLearner (private).

Every live stream owns one slot: one row of its owner's preallocated buffers. The table
keeps the key -> slot mapping, the least-recently-used order, growth by doubling up to
``max_streams`` and eviction at the limit. It holds no data: the owner passes callbacks
that grow its buffers and put rows back to the initial state. One key rule serves every
owner (:func:`check_key`); an owner with a default stream (the learner's ``key=None``)
also takes ``None`` (``SlotTable(..., default_key=True)``).
"""

from __future__ import annotations

import operator
from collections.abc import Callable

import numpy as np

__all__ = ["MAX_KEY_DEPTH", "SlotTable", "check_key", "is_key", "key_from_json", "show_key"]

#: Deepest tuple nesting a key may have ((("a", 1), 2) has depth 2).
MAX_KEY_DEPTH = 8


def is_key(key, depth: int = 0) -> bool:
    """Whether ``key`` is a stream key: a str, an int (not a bool, not a subclass), or a
    tuple of keys nested at most :data:`MAX_KEY_DEPTH` deep.

    Exact types only, so a key comes back from a checkpoint as the very same value and
    type (a str ``Enum`` member or ``True`` would come back as a plain str or int).
    """
    kind = type(key)
    if kind is str or kind is int:
        return True
    if kind is tuple and depth < MAX_KEY_DEPTH:
        return all(is_key(part, depth + 1) for part in key)
    return False


def show_key(key) -> str:
    """``repr(key)`` for a message: at most 80 characters, and a short stand-in where the
    repr itself fails (a tuple nested too deep for Python's repr raises RecursionError).

    Examples
    --------
    >>> show_key(("room", 2)), len(show_key("x" * 200))
    ("('room', 2)", 80)
    """
    try:
        shown = repr(key)
    except RecursionError:
        shown = f"<{type(key).__name__} nested too deep to show>"
    return shown if len(shown) <= 80 else shown[:77] + "..."


def check_key(key, name: str = "key") -> None:
    """Raise ``ValueError`` naming ``name`` unless ``key`` is a stream key.

    Examples
    --------
    >>> check_key(("room", 2))
    >>> check_key(2.5)
    Traceback (most recent call last):
    ...
    ValueError: key must be a str, an int, or a tuple of them (nested at most 8 deep), got float 2.5
    """
    if not is_key(key):
        raise _not_a_key(name, key)


def _not_a_key(name: str, key, kind: type | None = None) -> ValueError:
    shown = show_key(key)
    return ValueError(
        f"{name} must be a str, an int, or a tuple of them (nested at most "
        f"{MAX_KEY_DEPTH} deep), got {(kind or type(key)).__name__} {shown}"
    )


def key_from_json(value, name: str = "key", *, none: bool = False, depth: int = 0):
    """The key that ``streamrnn._io.encode_key`` wrote as ``value`` (str and int as they
    are, a tuple as ``{"t": [...]}``; ``None`` too with ``none``), by the rule of
    :func:`is_key`; anything else, a nesting deeper than :data:`MAX_KEY_DEPTH` included,
    is a ``ValueError`` naming ``name`` (a file is never trusted).

    Examples
    --------
    >>> key_from_json({"t": ["room", {"t": [2, "b"]}]})
    ('room', (2, 'b'))
    >>> key_from_json(2.5)
    Traceback (most recent call last):
    ...
    ValueError: key must be a str, an int, or a tuple of them (nested at most 8 deep), got float 2.5
    """
    kind = type(value)
    if kind is str or kind is int or (value is None and none and depth == 0):
        return value
    if kind is dict and list(value) == ["t"] and type(value["t"]) is list:
        if depth < MAX_KEY_DEPTH:
            return tuple(key_from_json(v, name, depth=depth + 1) for v in value["t"])
        raise _not_a_key(name, f"a tuple nested deeper than {MAX_KEY_DEPTH}", tuple)
    raise _not_a_key(name, value)


class SlotTable:
    """Key -> slot bookkeeping of keyed streams: LRU order, growth, eviction.

    Parameters
    ----------
    max_streams : int
        Most live streams; a new key at the limit evicts the least recently used one.
    capacity : int
        Slots to start with (grown by doubling up to ``max_streams``).
    grow : callable
        ``grow(old, new)``: extend the owner's buffers from ``old`` to ``new`` rows.
    reset : callable
        ``reset(slots)``: put those rows back to the initial state (a new key's slot, an
        evicted or dropped one).
    counts : dict
        The owner's counters; ``counts["evicted"]`` counts evictions.
    default_key : bool
        Whether ``None`` is a key too (the owner's default stream, e.g. the learner's
        ``push(chunk)`` without a key).

    Attributes
    ----------
    last_used : numpy.ndarray
        Per slot, the tick of its last use: every key of a lookup gets its own tick, in
        order, so recency is a strict order.
    generation : int
        Bumped whenever the key -> slot mapping changes (owners cache by it).

    Examples
    --------
    >>> t = SlotTable(3, 2, grow=lambda old, new: None, reset=lambda slots: None,
    ...               counts={"evicted": 0})
    >>> t.lookup(["a", "b"]).tolist(), t.lookup(["c"]).tolist(), t.capacity
    ([0, 1], [2], 3)
    >>> t.lookup(["a", "d"]).tolist(), t.keys(), t.counts["evicted"]   # b was least recent
    ([0, 1], ['c', 'a', 'd'], 1)
    """

    def __init__(
        self,
        max_streams: int,
        capacity: int,
        *,
        grow: Callable[[int, int], None],
        reset: Callable[[list[int]], None],
        counts: dict,
        default_key: bool = False,
    ) -> None:
        self.max_streams = max_streams
        self.default_key = default_key
        self._grow_rows = grow
        self._reset_rows = reset
        self.counts = counts
        self.generation = 0
        self.clear(capacity)

    def clear(self, capacity: int) -> None:
        """Forget every key; ``capacity`` free slots (the owner sized its buffers)."""
        self.slot_of: dict = {}
        self.key_of: list = [None] * capacity
        self._free = list(range(capacity - 1, -1, -1))
        self.last_used = np.zeros(capacity, dtype=np.int64)
        self.tick = 0
        self.generation += 1
        self._memo: tuple = (None, None, None, False)  # keys, their types, slots, tuples?

    @property
    def capacity(self) -> int:
        """Slots allocated (live or free)."""
        return len(self.key_of)

    def __len__(self) -> int:
        return len(self.slot_of)

    def __contains__(self, key) -> bool:
        return self.is_key(key) and key in self.slot_of

    def is_key(self, key) -> bool:
        """Whether ``key`` is a key of this table (:func:`is_key`, or ``None`` with
        ``default_key``)."""
        return is_key(key) or (key is None and self.default_key)

    def check_key(self, key, name: str = "key") -> None:
        """:func:`check_key`, with ``None`` accepted when ``default_key``."""
        if key is not None or not self.default_key:
            check_key(key, name)

    # -- lookups -------------------------------------------------------------------
    def lookup(self, keys: list) -> np.ndarray:
        """Slots of ``keys`` (distinct), allocating and evicting for new ones; stamps
        their use in order.

        Every key is validated before anything changes. The same key list looked up again
        (the steady state of a live bank: the same key objects, or equal keys of the same
        types) reuses the last answer.
        """
        memo_slots = self.recall(keys)
        if memo_slots is not None:
            self.stamp(memo_slots)
            return memo_slots
        self._check(keys)
        get = self.slot_of.get
        slots = [get(k, -1) for k in keys]
        new = [i for i, s in enumerate(slots) if s < 0]
        if new:
            live = len(self.slot_of)
            if live + len(new) > self.capacity and self.capacity < self.max_streams:
                self._grow(live + len(new))
            known = [s for s in slots if s >= 0]
            self.last_used[known] = self.tick + len(keys) + 1  # never evicted by this push
            shortfall = len(new) - len(self._free)
            if shortfall > 0:
                self._evict(shortfall)
            taken = [self._free.pop() for _ in new]
            for i, slot in zip(new, taken, strict=True):
                self.slot_of[keys[i]] = slot
                self.key_of[slot] = keys[i]
                slots[i] = slot
            self._reset_rows(taken)
            self.generation += 1
        out = np.asarray(slots, dtype=np.int64)
        self.stamp(out)
        types = list(map(type, keys))
        self._memo = (list(keys), types, out, tuple in types)
        return out

    def recall(self, keys: list) -> np.ndarray | None:
        """The slots of ``keys`` when they are the key list of the last :meth:`lookup`
        (the same key objects, or equal keys of the same types) and no slot was freed
        since, else ``None``; nothing changes (the returned array is the table's: do not
        modify it).

        An owner that may still decline a push asks this first and stamps (:meth:`stamp`)
        once it takes the push, as :meth:`lookup` would have.
        """
        memo_keys, memo_types, memo_slots, tuples = self._memo
        if memo_keys is None or len(keys) != len(memo_keys):
            return None
        if all(map(operator.is_, keys, memo_keys)):
            return memo_slots
        # Equal keys of the same types; a tuple equal to a key may hold what the rule
        # refuses (("a", True) == ("a", 1)), so tuples are checked.
        if keys == memo_keys and list(map(type, keys)) == memo_types and (
                not tuples or all(map(is_key, keys))):
            return memo_slots
        return None

    def validate(self, keys: list) -> None:
        """Raise ``ValueError`` unless ``keys`` are distinct stream keys, at most
        ``max_streams`` of them; changes nothing. The key list of the last lookup (the
        steady state of a live bank) is known good and not checked again."""
        if self.recall(keys) is None:
            self._check(keys)

    def _check(self, keys: list) -> None:
        for key in keys:
            self.check_key(key)
        if len(keys) > self.max_streams:
            raise ValueError(
                f"a push may hold at most max_streams = {self.max_streams} streams, "
                f"got {len(keys)}"
            )
        distinct = len(set(keys))
        if distinct != len(keys):
            raise ValueError(f"keys must be {len(keys)} distinct keys, got {len(keys)} keys "
                             f"of which {distinct} distinct")

    def stamp(self, slots) -> None:
        """Mark ``slots`` used now, in order (each its own tick)."""
        n = len(slots)
        if n <= 8:  # a few scalar writes beat building an index array
            tick, last_used = self.tick, self.last_used
            for slot in slots:
                tick += 1
                last_used[slot] = tick
            self.tick = tick
            return
        self.last_used[slots] = np.arange(self.tick + 1, self.tick + n + 1)
        self.tick += n

    def slot(self, key) -> int:
        """The slot of a live key; ``ValueError`` if it is not one."""
        if not self.is_key(key):
            raise ValueError(
                f"key {show_key(key)} is not a live stream (keys are str, int, or tuples "
                f"of them nested at most {MAX_KEY_DEPTH} deep; "
                f"got {type(key).__name__})"
            )
        try:
            return self.slot_of[key]
        except KeyError:
            raise ValueError(f"key {key!r} is not a live stream") from None

    def keys(self) -> list:
        """Live keys, least recently used first."""
        return sorted(self.slot_of, key=lambda k: self.last_used[self.slot_of[k]])

    def keys_by_slot(self) -> list:
        """Live keys in slot order."""
        return [self.key_of[s] for s in sorted(self.slot_of.values())]

    # -- changes -------------------------------------------------------------------
    def release(self, slot: int) -> None:
        """Forget the key at ``slot`` and free it (its rows are reset)."""
        self._reset_rows([slot])
        del self.slot_of[self.key_of[slot]]
        self.key_of[slot] = None
        self._free.append(slot)
        self.generation += 1
        self._memo = (None, None, None, False)

    def restore(self, keys: list, last_used: np.ndarray, tick: int) -> None:
        """After :meth:`clear`: keys at slots ``0 .. n-1`` with their recency (a loaded
        checkpoint's)."""
        n = len(keys)
        for slot, key in enumerate(keys):
            self.slot_of[key] = slot
            self.key_of[slot] = key
        self._free = [s for s in self._free if s >= n]
        self.last_used[:n] = last_used
        self.tick = int(tick)
        self.generation += 1

    def _grow(self, need: int) -> None:
        old = self.capacity
        new = min(self.max_streams, max(need, 2 * old))
        self._grow_rows(old, new)
        self.key_of.extend([None] * (new - old))
        self._free = list(range(new - 1, old - 1, -1)) + self._free
        self.last_used = np.concatenate([self.last_used, np.zeros(new - old, np.int64)])

    def _evict(self, n: int) -> None:
        # Live slots not touched by this lookup have ticks below the current one.
        order = np.argsort(self.last_used, kind="stable")
        victims = [int(s) for s in order if self.key_of[s] is not None][:n]
        for slot in victims:
            del self.slot_of[self.key_of[slot]]
            self.key_of[slot] = None
            self._free.append(slot)
        self.counts["evicted"] += len(victims)
        self.generation += 1
