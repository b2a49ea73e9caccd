"""ShardedLearner: one online learner over keyed streams sharded across Ray actors."""

from __future__ import annotations

import os
import time

import numpy as np
import torch

from .._validate import check_int, check_positive_float, check_positive_int
from ..learn.learner import OnlineLearner
from ._folder import open_folder, release_folder
from ._learn_shard import LearnerShard
from ._lockstep import LockstepCalls, ShardFailed
from ._replay import ReplayLog
from ._route import Router
from .bank import RAY_START

try:
    import ray
except ImportError as err:  # pragma: no cover - the extra is not installed
    raise ImportError('streamrnn.distributed needs Ray: pip install "streamrnn[ray]"') from err

__all__ = ["ShardedLearner"]


class ShardedLearner:
    """Online learning (TBPTT) over keyed streams sharded across Ray actors.

    Each shard holds an :class:`~streamrnn.OnlineLearner` of the streams its keys hash to
    and a copy of the weights (from one object in Ray's object store). The rule that keeps
    the copies identical is a synchronous gradient all-reduce per update (torch.distributed,
    gloo, between the shard processes): every shard's loss is its sum of squared errors
    over the number of terms of all shards, the gradients are summed across shards, clipped
    by their global norm, and every shard takes the same optimizer step. With lockstep
    streams (every push brings the same steps to every stream) this is one OnlineLearner
    over all the streams, to float rounding.

    Exactly once: every ``checkpoint_every`` pushes, every shard saves its whole learner
    (weights, optimizer, streams, counters; :meth:`OnlineLearner.save`) at the same push
    boundary, a consistent cut since updates are synchronous. The router keeps the pushes
    since then (at most ``max_replay_bytes`` of inputs and targets per shard: past that
    the shards checkpoint first, i.e. the caller waits). When a shard's process dies, the
    router sees it at once (it waits on the shards with ``ray.wait``, so the survivors
    blocked in an all-reduce with the dead shard do not hold it up), kills every shard,
    starts fresh ones from their checkpoints, forms a new gloo group, replays the pushes
    since the checkpoint and runs the failed push again: its outputs, and every later
    output and weight, equal bitwise those of a run that never failed.

    Scope: a dead shard (``ray.kill``, SIGKILL of its worker, before a push or while it
    runs) changes no output, weight or counter: tested bitwise against a run that never
    failed, float64, 2 shards, 22 kills in 13 runs. A recovery starts a new worker process
    per shard (importing torch): 2.4-2.6 s with 1,000 streams and 5.2-5.9 s with 10,000
    (10 pushes to replay; ``benchmarks/bench_distributed.py --learner-kills 10``, a
    shared 2-core machine). Not handled yet: mean-squared-error value targets only;
    lockstep pushes of the same key list every time (a shard with no update would wait
    for the others until ``timeout``); no late targets (:meth:`OnlineLearner.learn`);
    the router's log dies with the router (no router failover); a hung shard (alive,
    e.g. SIGSTOP) is seen only when the others' all-reduce times out (``timeout``).

    Parameters
    ----------
    model : recurrent model
        Shared by all streams, e.g. :class:`~streamrnn.heads.RecurrentModel`.
    num_shards : int
        Ray actors.
    optimizer, lr, k1, k2, clip
        As in :class:`~streamrnn.OnlineLearner` (``clip`` is applied to the summed
        gradient), except that ``optimizer`` may not be an instance (each shard makes its
        own, from a class or a factory, for its copy of the model).
    max_streams_per_shard : int
        Each shard learner's ``max_streams``; a push may hold at most this many streams
        of one shard.
    checkpoint_every : int or None
        Pushes between checkpoints; ``None``: no checkpoints and no replay (a dead shard
        is an error).
    max_replay_bytes : int
        Most bytes of inputs and targets the router keeps per shard for replay; one push
        larger than that is refused (``ValueError``).
    checkpoint_dir : str or None
        Where shards keep their checkpoint files (``learner-<shard>-at-<pushes>
        .safetensors``, working files: a shard removes its earlier ones when it starts);
        on a cluster a folder every node sees. ``None``: a temporary folder, removed by
        :meth:`close`.
    cpus_per_shard : float
        CPUs Ray reserves per shard (its torch threads: at least one).
    timeout : float
        Seconds an all-reduce waits for the other shards, and that starting the shards
        or recovering from a failure may take before ``RuntimeError``.

    Attributes
    ----------
    recoveries : list of float
        Seconds each recovery took (restart of every shard, restore, replay, the failed
        push again).

    Shape
    -----
    push_many: ``(B, T, F)``, targets ``(B, T, O)`` -> ``(B, T, O)``.

    Threads
    -------
    Not safe under concurrent calls, and not locked (a lock per call would cost more
    than the call): use it from one thread at a time, or hold your own lock around each
    call.

    Examples
    --------
    >>> import torch, streamrnn
    >>> from streamrnn.cells import GRU
    >>> from streamrnn.heads import Readout, RecurrentModel
    >>> model = RecurrentModel(GRU(2, 8, seed=0), Readout(8, 1, seed=1))
    >>> learner = ShardedLearner(model, num_shards=2, k1=4, lr=0.05, cpus_per_shard=0.5)
    >>> keys = ["a", "b", "c", "d"]
    >>> y = learner.push_many(keys, torch.ones(4, 8, 2), torch.zeros(4, 8, 1))
    >>> y.shape, learner.counts()["updates"], learner.same_weights()
    (torch.Size([4, 8, 1]), 2, True)
    >>> learner.close()
    """

    def __init__(self, model, *, num_shards: int = 2, optimizer=None, lr: float | None = None,
                 k1: int = 8, k2: int | None = None, clip: float | None = 1.0,
                 max_streams_per_shard: int = 100_000, checkpoint_every: int | None = 100,
                 max_replay_bytes: int = 256 * 2**20,
                 checkpoint_dir: str | os.PathLike | None = None, cpus_per_shard: float = 1.0,
                 timeout: float = 120.0) -> None:
        check_positive_int("num_shards", num_shards)
        check_positive_int("checkpoint_every", checkpoint_every, none_ok=True)
        check_positive_int("max_replay_bytes", max_replay_bytes)
        check_positive_float("cpus_per_shard", cpus_per_shard)
        check_positive_float("timeout", timeout)
        if isinstance(optimizer, torch.optim.Optimizer):
            raise ValueError("optimizer must be None, an Optimizer class or a factory "
                             "(params -> optimizer): each shard makes its own for its copy "
                             "of the model, and an instance cannot travel with its "
                             f"parameters; got an instance of {type(optimizer).__name__}")
        # Fails here, not in the actors; its checks of each push's arguments run here too,
        # so the shards are only sent pushes they accept.
        self._inputs = OnlineLearner(model, optimizer=optimizer, lr=lr, k1=k1, k2=k2,
                                     clip=clip, max_streams=max_streams_per_shard).inputs
        self.num_shards = num_shards
        self.max_streams_per_shard = max_streams_per_shard
        self.checkpoint_every = checkpoint_every
        self.timeout = float(timeout)
        self.checkpoint_dir, self._own_dir = open_folder(checkpoint_dir)
        self._router = Router(num_shards)
        self._keys: list | None = None
        if not ray.is_initialized():
            ray.init(**RAY_START)
        ref = ray.put(model)  # once; every shard (and every restart) reads it from there
        actor = ray.remote(LearnerShard).options(num_cpus=cpus_per_shard, max_restarts=0,
                                                 max_task_retries=0)
        config = {"folder": self.checkpoint_dir, "optimizer": optimizer, "lr": lr, "k1": k1,
                  "k2": k2, "clip": clip, "max_streams": max_streams_per_shard,
                  "threads": max(1, int(cpus_per_shard))}
        log = ReplayLog(num_shards, max_replay_bytes, checkpoint_every)
        self._calls = LockstepCalls(lambda s: actor.remote(ref, shard=s, **config), num_shards,
                                    log, self.timeout)
        self.recoveries = self._calls.recoveries
        try:
            self._calls.start(time.monotonic() + self.timeout)
        except ShardFailed as failure:
            self.close()
            if isinstance(failure.error, TimeoutError):
                raise RuntimeError(
                    f"{num_shards} shards of {cpus_per_shard} CPU did not start within "
                    f"{timeout} s: the cluster has "
                    f"{ray.available_resources().get('CPU', 0)} CPUs free") from None
            raise RuntimeError(f"shard {failure.shard} did not start: {failure.error}") from None

    def push_many(self, keys: list, x: torch.Tensor, targets: torch.Tensor | None = None):
        """Predict T steps of every stream, then learn as windows end (see the class).

        Every argument is checked here first (as :meth:`OnlineLearner.push_many` checks
        it): a bad one raises ``ValueError`` and no shard is called.

        Shape
        -----
        x ``(B, T, F)``, targets ``(B, T, O)`` -> ``(B, T, O)``.
        """
        keys, x, targets, _ = self._inputs.many(keys, x, targets, None)
        if self._keys is not None and keys != self._keys:
            raise ValueError("keys must be the same list at every push (lockstep streams)")
        positions, lists = self._router.split(keys)
        if self._keys is None:
            if min(map(len, lists)) == 0:
                raise ValueError("every shard must hold streams (lockstep): use more keys "
                                 "or fewer shards")
            most = max(map(len, lists))
            if most > self.max_streams_per_shard:
                raise ValueError(f"a push may hold at most max_streams_per_shard = "
                                 f"{self.max_streams_per_shard} streams of one shard, got "
                                 f"{most}")
        xn = x.detach().cpu().numpy()
        tn = None if targets is None else targets.detach().cpu().numpy()
        # Each shard's rows are copies (fancy indexing): the log keeps them, never the
        # caller's arrays.
        outs = self._calls.push([(lists[s], xn[positions[s]],
                                  None if tn is None else tn[positions[s]])
                                 for s in range(self.num_shards)])
        self._keys = keys
        y = np.empty((len(keys), *outs[0].shape[1:]), dtype=outs[0].dtype)
        for s, out in enumerate(outs):
            y[positions[s]] = out
        return torch.from_numpy(y)

    def weights(self, shard: int = 0) -> dict:
        """A copy of one shard's model weights (``state_dict``)."""
        check_int("shard", shard, minimum=0, maximum=self.num_shards - 1)
        return self._calls.ask("weights", [shard])[0]

    def same_weights(self) -> bool:
        """Whether every shard holds bitwise the same weights."""
        all_w = self._calls.ask("weights")
        return all(torch.equal(w[k], all_w[0][k]) for w in all_w[1:] for k in w)

    def counts(self) -> dict:
        """Every shard learner's ``counts`` summed, except ``updates`` (shards update
        together: the number of synchronous updates)."""
        total: dict = {}
        for c in self._calls.ask("counts"):
            for k, n in c.items():
                total[k] = total.get(k, 0) + n if k != "updates" else n
        return total

    def close(self) -> None:
        """Stop the shards and remove the temporary checkpoint folder. Ray itself keeps
        running."""
        self._calls.close()
        release_folder(self.checkpoint_dir, self._own_dir)

    def __enter__(self) -> ShardedLearner:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
