"""The router's replay log: per shard, the operations since its last checkpoint (private).

Bounded in bytes of inputs: :meth:`ReplayLog.admit` has full shards checkpoint before a
call is appended (the caller waits: backpressure), and refuses a call that alone exceeds
the bound. Nothing is ever dropped from the log except by a shard's checkpoint.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import numpy as np
import torch

__all__ = ["ReplayLog", "size_of"]

_KEY_BYTES = 64  # a rough size of one key in the log


def size_of(op: str, args: tuple) -> int:
    """Bytes an operation's arguments hold (arrays and tensors; keys roughly)."""
    total = 0
    stack = list(args)
    while stack:
        item = stack.pop()
        if isinstance(item, np.ndarray | torch.Tensor):
            total += item.nbytes
        elif isinstance(item, dict):
            total += _KEY_BYTES * len(item)
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            total += _KEY_BYTES * len(item)
        else:
            total += _KEY_BYTES
    return total


class ReplayLog:
    """Per shard: sequence numbers handed out, and the operations not yet checkpointed.

    Parameters
    ----------
    num_shards : int
        Shards.
    max_bytes : int
        Most bytes of arguments kept per shard.
    every : int or None
        Operations between checkpoints; ``None``: keep nothing (sequence numbers only).

    Examples
    --------
    >>> log = ReplayLog(1, max_bytes=1000, every=2)
    >>> [log.append(0, "reset", ("a",)) for _ in range(3)]   # the third checkpoints first
    [(1, False), (2, False), (3, True)]
    >>> log.checkpointed(0, 2); [seq for seq, _, _ in log.since(0, 2)]
    [3]
    >>> log.since(0, 1)          # a checkpoint older than the log's start is refused
    Traceback (most recent call last):
    ...
    RuntimeError: shard 0 restored operation 1, but the log starts at 3: ...
    """

    def __init__(self, num_shards: int, max_bytes: int, every: int | None) -> None:
        self.max_bytes = max_bytes
        self.every = every
        self.last = [0] * num_shards  # the last sequence number handed out
        self.entries: list[deque] = [deque() for _ in range(num_shards)]
        self.bytes = [0] * num_shards

    def admit(self, ops: dict, checkpoint: Callable[[list[int]], None]) -> None:
        """Make room for ``ops`` ({shard: (op, args)}): ``ValueError`` if one alone is
        over the bound; ``checkpoint(shards)`` for those that would go over it."""
        if self.every is None:
            return
        sizes = {s: size_of(*op) for s, op in ops.items()}
        for s, n in sizes.items():
            if n > self.max_bytes:
                raise ValueError(f"one call to shard {s} holds {n} bytes of inputs, more than "
                                 f"max_replay_bytes = {self.max_bytes}; push fewer streams "
                                 "or steps at once, or raise max_replay_bytes")
        full = [s for s, n in sizes.items() if self.bytes[s] + n > self.max_bytes]
        if full:
            checkpoint(full)

    def append(self, s: int, op: str, args: tuple) -> tuple[int, bool]:
        """The next sequence number for shard ``s`` and whether the shard should
        checkpoint before applying it; the operation is kept for replay."""
        self.last[s] += 1
        seq = self.last[s]
        if self.every is None:
            return seq, False
        first = len(self.entries[s]) >= self.every
        n = size_of(op, args)
        self.entries[s].append((seq, op, args, n))
        self.bytes[s] += n
        return seq, first

    def discard(self, s: int, seq: int) -> None:
        """Forget operation ``seq`` (the last one), which shard ``s`` refused."""
        if self.entries[s] and self.entries[s][-1][0] == seq:
            self.bytes[s] -= self.entries[s].pop()[3]
        self.last[s] -= 1

    def checkpointed(self, s: int, seq: int) -> None:
        """Shard ``s`` checkpointed everything up to ``seq``: forget those operations."""
        entries = self.entries[s]
        while entries and entries[0][0] <= seq:
            self.bytes[s] -= entries.popleft()[3]

    def since(self, s: int, seq: int) -> list[tuple[int, str, tuple]]:
        """``(seq, op, args)`` of shard ``s``'s operations after ``seq``, in order."""
        if self.every is None:
            raise RuntimeError("nothing is kept for replay (checkpoint_every is None)")
        first = self.entries[s][0][0] if self.entries[s] else self.last[s] + 1
        if seq + 1 < first:
            raise RuntimeError(f"shard {s} restored operation {seq}, but the log starts at "
                               f"{first}: its checkpoint file is older than it said")
        return [(q, op, args) for q, op, args, _ in self.entries[s] if q > seq]
