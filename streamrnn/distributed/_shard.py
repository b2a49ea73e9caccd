"""One shard: a StreamBank of the keys it owns, inside a Ray actor (private).

:class:`ShardWorker` is a plain class (``ray.remote`` wraps it in
:mod:`streamrnn.distributed.bank`), so it can be read and tested without a cluster. Every
call that changes state comes with a sequence number from the router and is applied only
in order: a restarted shard refuses work until :meth:`ShardWorker.restore` has read its
checkpoint, and then the router replays what came after it.

A shard file is safetensors with a JSON header (the project's atomic writer): the bank's
own state_dict fields, the sequence number it includes, and each key's input offset (the
steps its stream has consumed since it entered the bank).
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import torch

from .._io import decode_key, read_state_file, write_state_file
from ..bank import StreamBank
from ._folder import ready_folder

__all__ = ["NotRestored", "ShardWorker", "as_tensor", "read_shard_file", "write_shard_file"]

_FORMAT = "streamrnn.ShardedBank.shard"
_VERSION = 1
_BANK_FIELDS = ("format", "version", "config", "keys", "counts")


class NotRestored(RuntimeError):
    """A (re)started shard was asked to work before it restored its checkpoint."""


def write_shard_file(path, bank: StreamBank, offsets: dict, seq: int) -> None:
    """Write ``bank``'s streams, their offsets and ``seq`` to ``path``, atomically."""
    sd = bank.state_dict()
    keys = [decode_key(k) for k in sd["keys"]]
    header = {"bank": {k: sd[k] for k in _BANK_FIELDS}, "seq": seq,
              "offsets": [offsets.get(k, 0) for k in keys]}
    write_state_file(path, sd["tensors"], kind=_FORMAT, version=_VERSION, header=header)


def read_shard_file(path) -> tuple[dict, list, list[int], int]:
    """``(bank state_dict, keys, offsets, seq)`` of a file written by
    :func:`write_shard_file`; ``ValueError`` for anything else."""
    tensors, header = read_state_file(path, kind=_FORMAT, version=_VERSION)
    bank, offsets, seq = header.get("bank"), header.get("offsets"), header.get("seq")
    if not isinstance(bank, dict) or any(f not in bank for f in _BANK_FIELDS):
        raise ValueError(f"path {str(path)!r} header lacks the bank's fields")
    keys = [decode_key(k) for k in bank["keys"]]
    if not isinstance(offsets, list) or len(offsets) != len(keys) or not all(
            type(o) is int and o >= 0 for o in offsets):
        raise ValueError(f"path {str(path)!r} must hold one offset >= 0 per key")
    if type(seq) is not int or seq < 0:
        raise ValueError(f"path {str(path)!r} has a bad sequence number {seq!r}")
    return {**bank, "tensors": tensors}, keys, offsets, seq


def as_tensor(x) -> torch.Tensor:
    """A tensor on ``x``'s memory, without copying: arrays from the object store are
    read-only views, and the bank and the learner only read their inputs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(x)


class ShardWorker:
    """The state of one shard: a StreamBank, each key's offset, the last sequence number.

    Parameters
    ----------
    model : torch.nn.Module
        The shared model (in an actor: resolved from the object store).
    max_streams : int
        The bank's ``max_streams``.
    path : str
        This shard's checkpoint file.
    threads : int
        torch threads in this process.

    Examples
    --------
    >>> import os, tempfile, torch, streamrnn
    >>> path = os.path.join(tempfile.mkdtemp(), "shard-0.safetensors")
    >>> w = ShardWorker(streamrnn.GRU(2, 3, seed=0), max_streams=10, path=path, threads=1)
    >>> w.restore(fresh=True)
    0
    >>> (y, resets), done = w.apply(1, "push_many", (["a", "b"], torch.ones(2, 4, 2).numpy()),
    ...                             False)
    >>> y.shape, w.offsets_of(["a", "b"])
    ((2, 4, 3), [4, 4])
    >>> w.apply(2, "push_many", (None, torch.ones(2, 1, 2).numpy()), True)[1]  # checkpoint
    1
    >>> w.restore(), w.offsets_of(["a", "b"])     # back to the checkpoint: seq 1
    (1, [4, 4])
    """

    def __init__(self, model, *, max_streams: int, path: str, threads: int = 1) -> None:
        torch.set_num_threads(threads)
        self.model = model
        self.max_streams = max_streams
        self.path = path
        self.bank: StreamBank | None = None  # None until restore()
        self.seq = 0
        self._offsets: dict = {}
        self._owed = 0  # steps every key of _keys was pushed, not yet in _offsets
        self._keys: list | None = None  # the last key list of push_many

    @property
    def offsets(self) -> dict:
        """Each key's input offset: the steps pushed to it. The pushes of one key list
        again and again (the router's steady state) are counted once per push and added
        per key here, when first read, instead of a Python loop over every key per push."""
        if self._owed:
            steps, offsets = self._owed, self._offsets
            for key in self._keys:
                offsets[key] = offsets.get(key, 0) + steps
            self._owed = 0
        return self._offsets

    @offsets.setter
    def offsets(self, value: dict) -> None:
        self._offsets, self._owed = value, 0

    # -- lifecycle -----------------------------------------------------------------
    def restore(self, fresh: bool = False) -> int:
        """Start from this shard's checkpoint (or empty); return its sequence number."""
        ready_folder(os.path.dirname(self.path))
        bank = StreamBank(self.model, max_streams=self.max_streams)
        offsets, seq = {}, 0
        if fresh:
            if os.path.exists(self.path):
                os.remove(self.path)
        elif os.path.exists(self.path):
            sd, keys, offs, seq = read_shard_file(self.path)
            bank.load_state_dict(sd)
            offsets = dict(zip(keys, offs, strict=True))
        self.bank, self.offsets, self.seq, self._keys = bank, offsets, seq, None
        return seq

    def checkpoint(self) -> int:
        """Write the checkpoint now; return the sequence number it includes."""
        self._live()
        write_shard_file(self.path, self.bank, self.offsets, self.seq)
        return self.seq

    def apply(self, seq: int, op: str, args: tuple, checkpoint_first: bool):
        """Apply operation ``seq`` (exactly the next one); with ``checkpoint_first``,
        checkpoint the state before it. Returns ``(result, checkpointed seq or None)``."""
        self._live()
        if seq != self.seq + 1:
            raise RuntimeError(f"shard expected operation {self.seq + 1}, got {seq}")
        done = self.checkpoint() if checkpoint_first else None
        result = getattr(self, "_" + op)(*args)
        self.seq = seq
        return result, done

    def _live(self) -> None:
        if self.bank is None:
            raise NotRestored("the shard has not restored its checkpoint")

    # -- operations (each applied once, in sequence order) --------------------------
    def _push_many(self, keys: list | None, x: np.ndarray):
        if keys is None:
            keys = self._keys
        elif keys is not self._keys:
            self.offsets  # noqa: B018 - the last key list's steps, added first
            self._keys = keys
        bank, evicted = self.bank, self.bank.counts["evicted"]
        y = bank.push_many(keys, as_tensor(x), _lend=True)  # Ray copies the result out
        self._owed += x.shape[1]
        self._forget_evicted(evicted)
        return y.numpy(), bank.last_reset

    def _push(self, chunks: dict):
        bank, evicted = self.bank, self.bank.counts["evicted"]
        tensors = {k: as_tensor(v) for k, v in chunks.items()}
        out = bank.push(tensors)
        offsets, tokens = self.offsets, bank._tokens is not None
        for key, x in tensors.items():
            one = x.dim() == (0 if tokens else 1)
            offsets[key] = offsets.get(key, 0) + (1 if one else x.shape[0])
        self._forget_evicted(evicted)
        return [out[k].numpy() for k in chunks], bank.last_reset

    def _forget_evicted(self, before: int) -> None:
        if self.bank.counts["evicted"] != before:
            live = self.bank
            self.offsets = {k: v for k, v in self.offsets.items() if k in live}

    def _reset(self, key) -> None:
        self.bank.reset(key)

    def _drop(self, key) -> None:
        self.bank.drop(key)
        self.offsets.pop(key, None)
        self._keys = None

    def _clear(self) -> None:
        for key in self.bank.keys():
            self.bank.drop(key)
        self.offsets = {}
        self._keys = None

    def _load(self, state_dict: dict, offsets: list) -> None:
        self.bank.load_state_dict(state_dict)
        keys = self.bank.keys()
        self.offsets = dict(zip(keys, offsets, strict=True))
        self._keys = None

    # -- reads ---------------------------------------------------------------------
    def info(self) -> dict:
        """Live streams, counters and the sequence number."""
        self._live()
        return {"len": len(self.bank), "counts": dict(self.bank.counts), "seq": self.seq}

    def keys(self) -> list:
        """Live keys, least recently used first."""
        self._live()
        return self.bank.keys()

    def offsets_of(self, keys: list | None = None) -> list[int] | dict:
        """Input offsets of ``keys`` (all live keys as a dict when ``None``)."""
        self._live()
        if keys is None:
            return {k: self.offsets.get(k, 0) for k in self.bank.keys()}
        return [self.offsets.get(k, 0) for k in keys]

    def contains(self, key) -> bool:
        self._live()
        return key in self.bank

    def get_state(self, key):
        self._live()
        return self.bank.get_state(key)

    def pid(self) -> int:
        """This process's id (for tests that kill it)."""
        return os.getpid()

    def save(self, path: str) -> None:
        """Write this shard's streams to ``path`` (a shard file)."""
        self._live()
        write_shard_file(path, self.bank, self.offsets, self.seq)
