"""Which shard owns a key: a stable hash of the key's canonical encoding (private).

Python's ``hash`` of a str is salted per process, so it cannot route: the router, a
restarted shard and a later process must all agree. The key is encoded as the JSON value
the checkpoints store (:func:`streamrnn._io.encode_key`; ``1`` and ``"1"`` differ), hashed
with BLAKE2b to 64 bits, and taken modulo the number of shards.
"""

from __future__ import annotations

import hashlib
import json
import operator

import numpy as np

from .._io import encode_key
from .._slots import check_key

__all__ = ["Router", "key_hash"]


def key_hash(key) -> int:
    """A 64-bit hash of ``key`` that is the same in every process and on every machine.

    Examples
    --------
    >>> key_hash("sensor-1"), key_hash(("room", 2)) % 4
    (17684466054431873994, 1)
    """
    data = json.dumps(encode_key(key), separators=(",", ":")).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


class Router:
    """Keys to shards, remembered: each key is validated and hashed once.

    ``split(keys)`` partitions a key list into per-shard positions and key lists; the
    same list again (equal keys) returns the same answer, with the very same per-shard
    key lists, so a shard that keeps its last key list can reuse its own lookups.

    Parameters
    ----------
    num_shards : int
        Shards to route to.
    memo_size : int
        Most keys remembered; the memo is cleared when it is exceeded.

    Examples
    --------
    >>> r = Router(2)
    >>> [r.shard_of(k) for k in ["a", "b", "c", 7]]
    [0, 1, 1, 1]
    >>> pos, sub = r.split(["a", "b", "c", 7])
    >>> [p.tolist() for p in pos], sub
    ([[0], [1, 2, 3]], [['a'], ['b', 'c', 7]])
    """

    def __init__(self, num_shards: int, *, memo_size: int = 4_000_000) -> None:
        self.num_shards = num_shards
        self.memo_size = memo_size
        self._shard: dict = {}
        self._last: tuple = (None,) * 4  # keys (a copy), their types, positions, key lists

    def shard_of(self, key) -> int:
        """The shard that owns ``key``; ``ValueError`` if it is not a stream key."""
        shard = self._shard.get(key) if type(key) in (str, int) else None
        if shard is None:
            check_key(key)
            shard = key_hash(key) % self.num_shards
            if len(self._shard) >= self.memo_size:
                self._shard.clear()
            self._shard[key] = shard
        return shard

    def split(self, keys: list) -> tuple[list[np.ndarray], list[list]]:
        """Per shard, the positions in ``keys`` it owns and those keys, in order."""
        last, types, positions, lists = self._last
        if last is not None and len(last) == len(keys) and (
                all(map(operator.is_, keys, last))
                or (last == keys and list(map(type, keys)) == types)):
            return positions, lists  # the same keys (never True taken for 1)
        if len(set(keys)) != len(keys):
            raise ValueError(f"keys must be {len(keys)} distinct keys, got "
                             f"{len(set(keys))} distinct")
        owner = np.fromiter((self.shard_of(k) for k in keys), dtype=np.int64, count=len(keys))
        positions = [np.flatnonzero(owner == s) for s in range(self.num_shards)]
        lists = [[keys[i] for i in p] for p in positions]
        self._last = (list(keys), list(map(type, keys)), positions, lists)
        return positions, lists
