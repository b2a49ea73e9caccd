"""Calls from a ShardedLearner to all its shards at once: checkpoints, recovery, replay
(private).

The shards of a learner work in lockstep: every push goes to every shard, and inside it
they meet in gloo all-reduces. So a shard cannot be restored alone: when one fails, the
others may be blocked in an all-reduce with it, or already past it. :class:`LockstepCalls`
therefore

- collects the shards' results with ``ray.wait`` (never ``ray.get`` in order: a dead
  shard is seen at once, not after the survivors' gloo timeout);
- every ``checkpoint_every`` pushes has every shard save its whole learner at the same
  push boundary (a consistent cut: updates are synchronous), and commits the boundary
  once every shard has written it;
- keeps the pushes since the committed boundary in a :class:`~._replay.ReplayLog` (one
  log per shard, in lockstep; full: checkpoint first, never drop);
- when a shard fails, kills every shard, starts fresh ones at the committed boundary,
  forms a new gloo group, replays the logged pushes (their outputs discarded), and runs
  the failed call again.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ._replay import ReplayLog

try:
    import ray
    from ray.exceptions import RayActorError, WorkerCrashedError
except ImportError as err:  # pragma: no cover - the extra is not installed
    raise ImportError('streamrnn.distributed needs Ray: pip install "streamrnn[ray]"') from err

__all__ = ["LockstepCalls", "ShardFailed"]

#: Seconds to wait for the other shards' results after one failed, to see whether one
#: died (a survivor's gloo error can arrive before the dead shard's RayActorError).
GRACE = 1.0


class ShardFailed(Exception):
    """A call to shard ``shard`` failed: its process died (``died``) or it raised
    ``error`` (or did not answer by the deadline); ``left`` holds the other shards'
    calls of that round, not retrieved."""

    def __init__(self, shard: int, error: BaseException, died: bool) -> None:
        super().__init__(f"shard {shard}: {type(error).__name__}: {error}")
        self.shard, self.error, self.died = shard, error, died
        self.left: list = []


def drain(refs: list) -> None:
    """Retrieve and drop the results of calls that a failure left behind (those done
    by now), so that Ray does not report their errors as unhandled."""
    ready = ray.wait(refs, num_returns=len(refs), timeout=0)[0] if refs else []
    for ref in ready:
        try:
            ray.get(ref)
        except Exception:  # noqa: BLE001 - the shard is gone; its failure was seen
            pass


def gather(refs: dict, deadline: float | None = None) -> dict:
    """``{shard: result}`` of one call per shard (``{shard: ref}``), in any order of
    completion. The first failure raises :class:`ShardFailed`; it names a shard whose
    process died if one of the others shows it within :data:`GRACE` seconds. A call not
    done by ``deadline`` (``time.monotonic()``; ``None``: none) fails too."""
    pending = {ref: s for s, ref in refs.items()}
    out: dict = {}
    failure = None
    while pending:
        now = time.monotonic()
        ends = [t for t in (deadline, failure and failure[0] + GRACE) if t is not None]
        wait = max(0.0, min(ends) - now) if ends else None
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=wait)
        if not ready:
            if failure is not None:
                break
            s = min(pending.values())
            raise ShardFailed(s, TimeoutError("no answer by the deadline"), died=False)
        for ref in ready:
            s = pending.pop(ref)
            try:
                out[s] = ray.get(ref)
            except (RayActorError, WorkerCrashedError) as err:
                died = ShardFailed(s, err, died=True)
                died.left = list(pending)
                raise died from None
            except Exception as err:  # noqa: BLE001 - the caller decides
                failure = failure or (time.monotonic(), ShardFailed(s, err, died=False))
    if failure is not None:
        failure[1].left = list(pending)
        raise failure[1]
    return out


class LockstepCalls:
    """The shards' actors, the replay log, the committed checkpoint, and recovery.

    Parameters
    ----------
    make : callable
        ``make(shard)``: a new actor of :class:`~._learn_shard.LearnerShard`.
    num_shards : int
        Shards (the gloo group's size).
    log : ReplayLog
        The pushes since the committed checkpoint, per shard.
    timeout : float
        Seconds to start the shards, or to recover from a failure, before
        ``RuntimeError``; also the gloo group's timeout.

    Attributes
    ----------
    shards : list
        The live actors, by shard index.
    committed : int
        The push boundary every shard has a checkpoint of (0: the initial model).
    recoveries : list of float
        Seconds each recovery took, from the failure seen to the failed call's result.
    """

    def __init__(self, make: Callable, num_shards: int, log: ReplayLog, timeout: float) -> None:
        self.make, self.num_shards, self.log, self.timeout = make, num_shards, log, timeout
        self.shards: list = []
        self.committed = 0
        self.recoveries: list[float] = []

    # -- calls ---------------------------------------------------------------------
    def start(self, deadline: float) -> None:
        """Kill the shards there are, start new ones at the committed boundary and form
        their gloo group (on a new port)."""
        for actor in self.shards:
            ray.kill(actor, no_restart=True)
        self.shards[:] = [self.make(s) for s in range(self.num_shards)]
        gather({s: a.restore.remote(self.committed) for s, a in enumerate(self.shards)},
               deadline)
        address, port = gather({0: self.shards[0].address.remote()}, deadline)[0]
        gather({s: a.join.remote(address, port, s, self.num_shards, self.timeout)
                for s, a in enumerate(self.shards)}, deadline)

    def push(self, args: list) -> list:
        """Push ``args[s]`` = ``(keys, x, targets)`` to every shard ``s``; return each
        shard's outputs. Checkpoints first when the log says so (every
        ``checkpoint_every`` pushes, or to make room)."""
        log = self.log
        log.admit({s: ("push", a) for s, a in enumerate(args)}, self._make_room)
        seq, first = 0, False
        for s, a in enumerate(args):
            seq, first = log.append(s, "push", a)

        def undo() -> None:  # the push failed on fresh shards too: it never happened
            for s in range(self.num_shards):
                log.discard(s, seq)

        if first:
            self.run(lambda deadline: self._checkpoint(seq - 1, deadline), seq - 1, undo)
        out = self.run(lambda deadline: gather(
            {s: a.push.remote(seq, *args[s]) for s, a in enumerate(self.shards)}, deadline),
            seq - 1, undo)
        return [out[s] for s in range(self.num_shards)]

    def checkpoint(self) -> None:
        """Have every shard checkpoint now, at the boundary after the last push."""
        last = self.log.last[0]
        self.run(lambda deadline: self._checkpoint(last, deadline), last)

    def _make_room(self, shards: list[int]) -> None:
        self.checkpoint()  # every shard: a checkpoint is a consistent cut only whole

    def _checkpoint(self, pushes: int, deadline: float | None) -> None:
        gather({s: a.checkpoint.remote(pushes, self.committed)
                for s, a in enumerate(self.shards)}, deadline)
        self.committed = pushes
        for s in range(self.num_shards):
            self.log.checkpointed(s, pushes)

    def ask(self, method: str, shards: list[int] | None = None) -> list:
        """A read-only call to ``shards`` (all: ``None``), recovering a failed one first."""
        shards = list(range(self.num_shards)) if shards is None else shards
        out = self.run(lambda deadline: gather(
            {s: getattr(self.shards[s], method).remote() for s in shards}, deadline),
            self.log.last[0])
        return [out[s] for s in shards]

    # -- failures ------------------------------------------------------------------
    def run(self, action: Callable, through: int, undo: Callable | None = None):
        """``action(deadline)``; when a shard fails, restart every shard at the state
        after push ``through`` and run it again.

        A failure that is not a death (a shard raised) is retried once on fresh shards,
        since a survivor's gloo error can be the first sign of another shard's death;
        if it fails there too, ``undo()`` forgets the call, the shards are restarted
        without it and its error is raised. A recovery not done within ``timeout``
        raises ``RuntimeError`` naming the shard.
        """
        try:
            return action(None)
        except ShardFailed as failure:
            first = failure
        if self.log.every is None:
            if first.died:
                raise RuntimeError(f"shard {first.shard} died and checkpoint_every is None: "
                                   "the learner's state is lost") from None
            raise first.error
        left = first.left  # the calls the failures leave behind
        try:
            return self._recover(action, through, undo, first, left)
        finally:
            drain(left)

    def _recover(self, action: Callable, through: int, undo: Callable | None,
                 first: ShardFailed, left: list):
        start = time.monotonic()
        deadline = start + self.timeout
        failure, refused, errors = first, None, int(not first.died)
        while True:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"shard {first.shard} failed ({type(first.error).__name__}) and the "
                    f"shards were not recovered within timeout = {self.timeout} s (last "
                    f"failure: {failure})") from None
            try:
                self._restart(through, deadline)
            except ShardFailed as again:
                failure = again
                left += again.left
                time.sleep(0.05)  # e.g. the cluster has not freed the dead shards' CPUs
                continue
            if refused is not None:
                self.recoveries.append(time.monotonic() - start)
                raise refused
            try:
                result = action(deadline)
            except ShardFailed as again:
                failure = again
                left += again.left
                errors += not again.died
                if errors >= 2:  # it fails on fresh shards too: not a death
                    refused = again.error
                    if undo is not None:
                        undo()
                continue
            self.recoveries.append(time.monotonic() - start)
            return result

    def _restart(self, through: int, deadline: float) -> None:
        # Fresh shards at the committed boundary, then the logged pushes up to `through`.
        self.start(deadline)
        logs = [self.log.since(s, self.committed) for s in range(self.num_shards)]
        for entries in zip(*logs, strict=True):
            seq = entries[0][0]
            if seq > through:
                break
            gather({s: a.push.remote(seq, *entries[s][2])
                    for s, a in enumerate(self.shards)}, deadline)

    def close(self) -> None:
        """Stop the shards."""
        for actor in self.shards:
            ray.kill(actor, no_restart=True)
        self.shards.clear()
