"""One shard of a ShardedLearner: an OnlineLearner in a Ray actor, in a gloo group (private).

:class:`LearnerShard` is a plain class (``ray.remote`` wraps it in
:mod:`streamrnn.distributed.learner`), so it can be read and tested without a cluster.
Pushes come numbered from the router and are applied only in order. A checkpoint is the
whole learner (weights, optimizer, streams, counters) in the project's atomic format
(:meth:`streamrnn.OnlineLearner.save`), one file per shard and push boundary,
``learner-<shard>-at-<pushes>.safetensors``: the router commits a boundary once every
shard has written it, and a shard keeps only the committed file and the one it writes.
A fresh shard :meth:`~LearnerShard.restore`\\ s the committed boundary (0: the initial
model) and :meth:`~LearnerShard.join`\\ s a new group.
"""

from __future__ import annotations

import datetime
import os
import re
import socket

import numpy as np
import torch
import torch.distributed as dist

from ..learn.learner import OnlineLearner
from ._folder import ready_folder
from ._shard import as_tensor

try:
    import ray
except ImportError as err:  # pragma: no cover - the extra is not installed
    raise ImportError('streamrnn.distributed needs Ray: pip install "streamrnn[ray]"') from err

__all__ = ["AllReduce", "LearnerShard", "checkpoint_name"]

_NAME = re.compile(r"^learner-(\d+)-at-(\d+)\.safetensors$")


def checkpoint_name(shard: int, pushes: int) -> str:
    """The file of shard ``shard`` at the boundary after ``pushes`` pushes.

    Examples
    --------
    >>> checkpoint_name(1, 300)
    'learner-1-at-300.safetensors'
    """
    return f"learner-{shard}-at-{pushes}.safetensors"


class AllReduce:
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
    """One shard's learner, the pushes it has applied, and its checkpoint files.

    Parameters
    ----------
    model : recurrent model
        The initial model (in an actor: resolved from the object store).
    shard : int
        This shard's index (its rank in the gloo group).
    folder : str
        The checkpoint folder.
    optimizer, lr, k1, k2, clip, max_streams
        As in :class:`~streamrnn.OnlineLearner` (``clip`` acts on the summed gradient).
    threads : int
        torch threads in this process (fixed: the same bits after a restart).

    Attributes
    ----------
    pushes : int
        Pushes applied (from the restored boundary on).

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from streamrnn.cells import GRU
    >>> from streamrnn.heads import Readout, RecurrentModel
    >>> model = RecurrentModel(GRU(2, 4, seed=0), Readout(4, 1, seed=1))
    >>> folder = tempfile.mkdtemp()
    >>> w = LearnerShard(model, shard=0, folder=folder, optimizer=None, lr=None, k1=4,
    ...                  k2=None, clip=None, max_streams=10, threads=1)
    >>> w.restore(0)
    0
    >>> x = np.ones((2, 3, 2), dtype=np.float32)
    >>> w.push(1, ["a", "b"], x, None).shape    # no targets: no update, no group needed
    (2, 3, 1)
    >>> w.checkpoint(1, 0), sorted(os.listdir(folder))
    (1, ['learner-0-at-1.safetensors'])
    >>> w.push(3, ["a", "b"], x, None)
    Traceback (most recent call last):
    ...
    RuntimeError: shard 0 expected push 2, got 3
    >>> _ = w.push(2, ["a", "b"], x, None); w.restore(1), w.learner.counts["steps"]
    (1, 6)
    """

    def __init__(self, model, *, shard: int, folder: str, optimizer, lr, k1, k2, clip,
                 max_streams, threads: int) -> None:
        torch.set_num_threads(threads)
        self.shard, self.folder = shard, folder
        self.rule = AllReduce(clip)
        self.learner = OnlineLearner(model, loss=self.rule.loss, optimizer=optimizer, lr=lr,
                                     k1=k1, k2=k2, clip=None, max_streams=max_streams)
        self.learner.optimizer.register_step_pre_hook(self.rule.before_step)
        self.pushes = 0

    # -- lifecycle -----------------------------------------------------------------
    def restore(self, pushes: int) -> int:
        """Start at the committed boundary ``pushes``: load its file (0: keep the initial
        model and remove this shard's files, those of an earlier run)."""
        ready_folder(self.folder)
        if pushes:
            self.learner.load(os.path.join(self.folder, checkpoint_name(self.shard, pushes)))
        else:
            self._remove(keep=())
        self.pushes = pushes
        return pushes

    def address(self) -> tuple[str, int]:
        """This node's address and a free port, for the group's rendezvous."""
        with socket.socket() as s:
            s.bind(("", 0))
            return ray.util.get_node_ip_address(), s.getsockname()[1]

    def join(self, address: str, port: int, rank: int, world: int, timeout: float) -> None:
        """Join the gloo group of ``world`` shards as ``rank``."""
        dist.init_process_group("gloo", init_method=f"tcp://{address}:{port}", rank=rank,
                                world_size=world,
                                timeout=datetime.timedelta(seconds=timeout))

    def checkpoint(self, pushes: int, committed: int) -> int:
        """Write the learner at boundary ``pushes`` (where it must be) and remove this
        shard's files other than it and the ``committed`` one."""
        if pushes != self.pushes:
            raise RuntimeError(f"shard {self.shard} is after push {self.pushes}, asked to "
                               f"checkpoint after push {pushes}")
        self.learner.save(os.path.join(self.folder, checkpoint_name(self.shard, pushes)))
        self._remove(keep=(pushes, committed))
        return pushes

    def _remove(self, keep: tuple) -> None:
        for name in os.listdir(self.folder):
            match = _NAME.match(name)
            if match and int(match[1]) == self.shard and int(match[2]) not in keep:
                os.remove(os.path.join(self.folder, name))

    # -- work ----------------------------------------------------------------------
    def push(self, seq: int, keys: list, x: np.ndarray, targets: np.ndarray | None):
        """Apply push ``seq`` (exactly the next one): ``push_many`` of this shard's
        streams. Returns the predictions as an array.

        Shape
        -----
        x ``(B, T, F)``, targets ``(B, T, O)`` -> ``(B, T, O)``.
        """
        if seq != self.pushes + 1:
            raise RuntimeError(f"shard {self.shard} expected push {self.pushes + 1}, got {seq}")
        tg = None if targets is None else as_tensor(targets)
        y = self.learner.push_many(keys, as_tensor(x), tg).detach().numpy()
        self.pushes = seq
        return y

    def weights(self) -> dict:
        """A copy of the model's weights (``state_dict``)."""
        return {k: v.clone() for k, v in self.learner.model.state_dict().items()}

    def counts(self) -> dict:
        """The learner's counters."""
        return dict(self.learner.counts)

    def pid(self) -> int:
        """This process's id (for tests that kill it)."""
        return os.getpid()
