"""ShardedLearner: one online learner over keyed streams sharded across Ray actors."""

from __future__ import annotations

import datetime
import socket

import numpy as np
import torch
import torch.distributed as dist

from .._validate import check_positive_float, check_positive_int
from ..learn.learner import OnlineLearner
from ._route import Router
from .bank import RAY_START

try:
    import ray
except ImportError as err:  # pragma: no cover - the extra is not installed
    raise ImportError('streamrnn.distributed needs Ray: pip install "streamrnn[ray]"') from err

__all__ = ["ShardedLearner"]


class _AllReduce:
    """The rule that keeps every shard's weights identical (one per shard process).

    Each shard's loss is the SUM of its squared-error terms divided by the number of terms
    of ALL shards in this update (one all-reduce of a count), so the all-reduced SUM of
    the shards' gradients is exactly the gradient of the mean loss over every stream.
    Before each optimizer step (a step pre-hook), the gradients are summed across shards
    in one flat all-reduce, clipped by their global norm, and every shard takes the same
    step from the same weights.
    """

    def __init__(self, clip: float | None) -> None:
        self.clip = clip

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        terms = torch.tensor([pred.numel()], dtype=torch.float64)
        dist.all_reduce(terms)
        return torch.nn.functional.mse_loss(pred, target, reduction="sum") / terms.item()

    def before_step(self, optimizer, args, kwargs) -> None:
        params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        dist.all_reduce(flat)
        pos = 0
        for p in params:
            p.grad.copy_(flat[pos:pos + p.numel()].view_as(p.grad))
            pos += p.numel()
        if self.clip is not None:
            torch.nn.utils.clip_grad_norm_(params, self.clip)


class LearnerShard:
    """One shard of a :class:`ShardedLearner` (wrapped by ``ray.remote``)."""

    def __init__(self, model, *, optimizer, lr, k1, k2, clip, max_streams, threads) -> None:
        torch.set_num_threads(threads)
        self.rule = _AllReduce(clip)
        self.learner = OnlineLearner(model, loss=self.rule.loss, optimizer=optimizer, lr=lr,
                                     k1=k1, k2=k2, clip=None, max_streams=max_streams)
        self.learner.optimizer.register_step_pre_hook(self.rule.before_step)

    def address(self) -> tuple[str, int]:
        with socket.socket() as s:
            s.bind(("", 0))
            return ray.util.get_node_ip_address(), s.getsockname()[1]

    def join(self, address: str, port: int, rank: int, world: int, timeout: float) -> None:
        dist.init_process_group("gloo", init_method=f"tcp://{address}:{port}", rank=rank,
                                world_size=world,
                                timeout=datetime.timedelta(seconds=timeout))

    def push_many(self, keys: list, x: np.ndarray, targets: np.ndarray | None) -> np.ndarray:
        tg = None if targets is None else torch.from_numpy(np.array(targets))
        return self.learner.push_many(keys, torch.from_numpy(np.array(x)), tg).detach().numpy()

    def weights(self) -> dict:
        return {k: v.clone() for k, v in self.learner.model.state_dict().items()}

    def counts(self) -> dict:
        return dict(self.learner.counts)


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

    Scope (what is not handled yet): mean-squared-error value targets only; lockstep
    pushes of the same key list every time (a shard with no update would wait for the
    others until ``timeout``); no checkpoints or recovery of shards (a dead shard is an
    error); no late targets (:meth:`OnlineLearner.learn`).

    Parameters
    ----------
    model : recurrent model
        Shared by all streams, e.g. :class:`~streamrnn.heads.RecurrentModel`.
    num_shards : int
        Ray actors.
    optimizer, lr, k1, k2, clip
        As in :class:`~streamrnn.OnlineLearner` (``clip`` is applied to the summed
        gradient).
    max_streams_per_shard : int
        Each shard learner's ``max_streams``.
    cpus_per_shard : float
        CPUs Ray reserves per shard.
    timeout : float
        Seconds an all-reduce waits for the other shards.

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
                 max_streams_per_shard: int = 100_000, cpus_per_shard: float = 1.0,
                 timeout: float = 120.0) -> None:
        check_positive_int("num_shards", num_shards)
        check_positive_float("cpus_per_shard", cpus_per_shard)
        check_positive_float("timeout", timeout)
        # the shard learners validate the rest; this one fails here, not in the actors
        OnlineLearner(model, optimizer=optimizer, lr=lr, k1=k1, k2=k2, clip=clip,
                      max_streams=max_streams_per_shard)
        if not ray.is_initialized():
            ray.init(**RAY_START)
        self.num_shards = num_shards
        self._router = Router(num_shards)
        self._keys: list | None = None
        ref = ray.put(model)  # once; every shard reads its copy from there
        actor = ray.remote(LearnerShard).options(num_cpus=cpus_per_shard, max_restarts=0)
        self._shards = [actor.remote(ref, optimizer=optimizer, lr=lr, k1=k1, k2=k2, clip=clip,
                                     max_streams=max_streams_per_shard,
                                     threads=max(1, int(cpus_per_shard)))
                        for _ in range(num_shards)]
        address, port = ray.get(self._shards[0].address.remote(), timeout=timeout)
        ray.get([a.join.remote(address, port, r, num_shards, timeout)
                 for r, a in enumerate(self._shards)], timeout=timeout)

    def push_many(self, keys: list, x: torch.Tensor, targets: torch.Tensor | None = None):
        """Predict T steps of every stream, then learn as windows end (see the class).

        Shape
        -----
        x ``(B, T, F)``, targets ``(B, T, O)`` -> ``(B, T, O)``.
        """
        keys = list(keys)
        if self._keys is None:
            positions, lists = self._router.split(keys)
            if min(map(len, lists)) == 0:
                raise ValueError("every shard must hold streams (lockstep): use more keys "
                                 "or fewer shards")
            self._keys = keys
        elif keys != self._keys:
            raise ValueError("keys must be the same list at every push (lockstep streams)")
        positions, lists = self._router.split(keys)
        xn = x.detach().numpy()
        tn = None if targets is None else targets.detach().numpy()
        refs = [a.push_many.remote(lists[s], xn[positions[s]],
                                   None if tn is None else tn[positions[s]])
                for s, a in enumerate(self._shards)]
        outs = ray.get(refs)
        y = np.empty((len(keys), *outs[0].shape[1:]), dtype=outs[0].dtype)
        for s, out in enumerate(outs):
            y[positions[s]] = out
        return torch.from_numpy(y)

    def weights(self, shard: int = 0) -> dict:
        """A copy of one shard's model weights (``state_dict``)."""
        return ray.get(self._shards[shard].weights.remote())

    def same_weights(self) -> bool:
        """Whether every shard holds bitwise the same weights."""
        all_w = ray.get([a.weights.remote() for a in self._shards])
        return all(torch.equal(w[k], all_w[0][k]) for w in all_w[1:] for k in w)

    def counts(self) -> dict:
        """Every shard learner's ``counts`` summed, except ``updates`` (shards update
        together: the number of synchronous updates)."""
        total: dict = {}
        for c in ray.get([a.counts.remote() for a in self._shards]):
            for k, n in c.items():
                total[k] = total.get(k, 0) + n if k != "updates" else n
        return total

    def close(self) -> None:
        """Stop the shards."""
        for a in self._shards:
            ray.kill(a, no_restart=True)
        self._shards = []
