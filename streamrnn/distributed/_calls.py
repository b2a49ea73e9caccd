"""Calls from a ShardedBank to its shards: sequence numbers, checkpoints, replay (private).

Every call that changes a shard goes through :meth:`ShardCalls.apply`: the
:class:`~._replay.ReplayLog` admits it (having full shards checkpoint first), numbers it
and keeps it until the shard's next checkpoint. A shard whose process died is restarted
by Ray; :meth:`ShardCalls.recover` has it restore its checkpoint and applies the logged
calls after it again, so the caller gets the outputs of a run that never failed.
Read-only calls (:meth:`ShardCalls.ask`) recover a dead shard the same way first.
"""

from __future__ import annotations

import time

from ._replay import ReplayLog
from ._shard import NotRestored

try:
    import ray
    from ray.exceptions import RayActorError
except ImportError as err:  # pragma: no cover - the extra is not installed
    raise ImportError('streamrnn.distributed needs Ray: pip install "streamrnn[ray]"') from err

__all__ = ["ShardCalls"]


class ShardCalls:
    """The shards' Ray actors, the replay log, and the calls that keep them exactly once.

    Parameters
    ----------
    shards : list
        The actor handles, by shard index (the bank's list: it empties it on close).
    log : ReplayLog
        The operations since each shard's last checkpoint.
    timeout : float
        Seconds a dead shard has to come back before ``RuntimeError``.

    Attributes
    ----------
    recoveries : list of float
        Seconds each recovery took (restart, restore, replay).
    sent : list
        Per shard, the key list of the last ``push_many`` it got (``None``: another
        call came since), which it keeps, so the same list is not sent again.
    """

    def __init__(self, shards: list, log: ReplayLog, timeout: float) -> None:
        self.shards, self.log, self.timeout = shards, log, timeout
        self.recoveries: list[float] = []
        self.sent: list = [None] * len(shards)

    def apply(self, ops: dict) -> dict:
        """Run one state-changing operation on each shard in ``ops``, concurrently."""
        log = self.log
        log.admit(ops, self.checkpoint)  # may checkpoint first; never drops
        refs = {}
        for s, (op, args) in ops.items():
            seq, first = log.append(s, op, args)
            wire = args
            if op == "push_many" and args[0] is self.sent[s]:
                wire = (None, args[1])  # the shard keeps the key list it last got
            refs[s] = (seq, self.shards[s].apply.remote(seq, op, wire, first))
        results, error = {}, None
        for s, (seq, ref) in refs.items():
            try:
                result, done = ray.get(ref)
            except (RayActorError, NotRestored):
                result, done = self.recover(s), None
            except Exception as err:  # the shard refused: it changed nothing
                log.discard(s, seq)
                error = error or err
                continue
            if done is not None:
                log.checkpointed(s, done)
            op, args = ops[s]
            self.sent[s] = args[0] if op == "push_many" else None
            results[s] = result
        if error is not None:
            raise error
        return results

    def checkpoint(self, shards: list[int]) -> None:
        """Have ``shards`` checkpoint now; their logs then start after it."""
        done = ray.get([self.shards[s].checkpoint.remote() for s in shards])
        for s, seq in zip(shards, done, strict=True):
            self.log.checkpointed(s, seq)

    def recover(self, s: int):
        """Restore shard ``s`` (restarted by Ray) from its checkpoint and replay every
        operation after it; return the result of the last one."""
        if self.log.every is None:
            raise RuntimeError(f"shard {s} died and checkpoint_every is None: its streams "
                               "are lost")
        start = time.perf_counter()
        self.sent[s] = None
        while True:
            try:
                restored = ray.get(self.shards[s].restore.remote())
                result = None
                for entry in self.log.since(s, restored):
                    result, _ = ray.get(self.shards[s].apply.remote(*entry, False))
                self.recoveries.append(time.perf_counter() - start)
                return result
            except (RayActorError, NotRestored):
                if time.perf_counter() - start > self.timeout:
                    raise RuntimeError(f"shard {s} did not come back within "
                                       f"{self.timeout} s") from None
                time.sleep(0.05)

    def ask(self, method: str, *args) -> list:
        """A read-only call to every shard (recovering a dead one first)."""
        out = []
        for s, shard in enumerate(self.shards):
            try:
                out.append(ray.get(getattr(shard, method).remote(*args)))
            except (RayActorError, NotRestored):
                self.recover(s)
                out.append(ray.get(getattr(shard, method).remote(*args)))
        return out
