"""ShardedBank: keyed streams sharded over Ray actors, exactly once under failures."""

from __future__ import annotations

import os

import numpy as np
import torch

from .._checkpoint import model_config
from .._checks import as_chunk, as_id_chunk, model_device, model_dtype, num_tokens
from .._io import atomic_write_text
from .._validate import check_positive_float, check_positive_int
from ..bank import BankOutputs
from ..engines import finite
from ..stream import check_model
from ._calls import ShardCalls
from ._folder import open_folder, release_folder
from ._replay import ReplayLog
from ._route import Router
from ._shard import ShardWorker
from ._snapshot import load_snapshot, snapshot_manifest

try:
    import ray
except ImportError as err:  # pragma: no cover - the extra is not installed
    raise ImportError('streamrnn.distributed needs Ray: pip install "streamrnn[ray]"') from err

__all__ = ["ShardedBank"]

#: How a ShardedBank or ShardedLearner starts Ray when none runs (``ray.init`` to choose).
RAY_START = {"include_dashboard": False, "object_store_memory": 512 * 2**20}


class ShardedBank:
    """Many keyed streams over ``num_shards`` Ray actors, each a StreamBank of its keys.

    A key belongs to shard ``blake2b(key's JSON encoding) % num_shards`` (the same in every
    process and after restarts). The model is put once in Ray's object store and every
    shard reads it from there; only states live in the shards. A push splits its keys by
    shard, calls the shards concurrently and returns the outputs in the caller's order:
    each stream gets what it gets alone (batch invariance), as in one StreamBank.

    Exactly once: every call that changes a shard carries a sequence number; every
    ``checkpoint_every`` such calls the shard writes its streams, each key's input offset
    and the sequence number to its checkpoint file (atomically) before applying the call.
    The router keeps the calls since each shard's last checkpoint (at most
    ``max_replay_bytes`` of inputs per shard: past that it has the shard checkpoint first,
    i.e. it waits; one call larger than the bound is refused with a ``ValueError``). When
    a shard's process dies, Ray restarts it, it restores its checkpoint, the router
    replays the calls after it, and the push returns the outputs of a run that never
    failed.

    Parameters
    ----------
    model : RecurrentLayer or recurrent model
        Shared by all streams (see :class:`~streamrnn.StreamBank`), on the CPU.
    num_shards : int
        Ray actors holding the streams.
    max_streams_per_shard : int
        Each shard's ``max_streams``: a new key at the limit evicts that shard's least
        recently used stream (counted in ``counts["evicted"]``).
    checkpoint_every : int or None
        Calls per shard between checkpoints; ``None``: no checkpoints and no replay (a
        dead shard is an error).
    max_replay_bytes : int
        Most bytes of inputs the router keeps per shard for replay.
    checkpoint_dir : str or None
        Where shards keep their checkpoint files (``shard-<i>.safetensors``, working
        files, overwritten at start); on a cluster a folder every node sees. ``None``: a
        temporary folder, removed by :meth:`close`.
    cpus_per_shard : float
        CPUs Ray reserves for each shard (its torch threads: at least one).
    timeout : float
        Seconds to wait for the shards to start, or a dead one to come back, before
        raising ``RuntimeError`` (e.g. the cluster lacks the CPUs they reserve).

    Attributes
    ----------
    recoveries : list of float
        Seconds each recovery took (restart, restore, replay).

    Shape
    -----
    push: ``{key: (T, F) or (F,)}`` -> ``{key: (T, O) or (O,)}``; push_many:
    ``(N, T, F)`` -> ``(N, T, O)``.

    Threads
    -------
    Not safe under concurrent calls, and not locked (a lock per call would cost more
    than the call): use it from one thread at a time, or hold your own lock around each
    call.

    Examples
    --------
    >>> import torch, streamrnn
    >>> from streamrnn.distributed import ShardedBank
    >>> model = streamrnn.GRU(2, 3, seed=0)
    >>> bank = ShardedBank(model, num_shards=2, max_streams_per_shard=100)
    >>> out = bank.push({"a": torch.ones(4, 2), "b": torch.zeros(4, 2), 7: torch.ones(2)})
    >>> alone = streamrnn.StreamBank(model).push({"a": torch.ones(4, 2)})
    >>> out["a"].shape, out[7].shape, torch.allclose(out["a"], alone["a"], atol=1e-6)
    (torch.Size([4, 3]), torch.Size([3]), True)
    >>> len(bank), sorted(bank.offsets().items(), key=repr)
    (3, [('a', 4), ('b', 4), (7, 1)])
    >>> bank.drop("b"); len(bank)
    2
    >>> bank.close()
    """

    def __init__(
        self,
        model,
        *,
        num_shards: int = 2,
        max_streams_per_shard: int = 100_000,
        checkpoint_every: int | None = 100,
        max_replay_bytes: int = 256 * 2**20,
        checkpoint_dir: str | os.PathLike | None = None,
        cpus_per_shard: float = 1.0,
        timeout: float = 120.0,
    ) -> None:
        check_model(model)
        check_positive_int("num_shards", num_shards)
        check_positive_int("max_streams_per_shard", max_streams_per_shard)
        check_positive_int("checkpoint_every", checkpoint_every, none_ok=True)
        check_positive_int("max_replay_bytes", max_replay_bytes)
        check_positive_float("cpus_per_shard", cpus_per_shard)
        check_positive_float("timeout", timeout)
        if model_device(model).type != "cpu":
            raise ValueError(f"model must be on the CPU, got {model_device(model)}")
        self.num_shards = num_shards
        self.max_streams_per_shard = max_streams_per_shard
        self.checkpoint_every = checkpoint_every
        self.timeout = float(timeout)
        self._dtype = model_dtype(model)
        self._features = model.input_size
        self._tokens = num_tokens(model)
        size = getattr(model, "output_size", None)
        self._outputs = size if isinstance(size, int) else model.hidden_size
        self.checkpoint_dir, self._own_dir = open_folder(checkpoint_dir)
        self._router = Router(num_shards)
        self._log = ReplayLog(num_shards, max_replay_bytes, checkpoint_every)
        if not ray.is_initialized():
            ray.init(**RAY_START)
        self._model_ref = ray.put(model)  # once; every shard (and restart) reads it
        actor = ray.remote(ShardWorker).options(
            num_cpus=cpus_per_shard, max_restarts=-1 if checkpoint_every else 0,
            max_task_retries=0, max_concurrency=1)
        threads = max(1, int(cpus_per_shard))
        self._shards = [
            actor.remote(self._model_ref, max_streams=max_streams_per_shard,
                         path=self._path(s), threads=threads)
            for s in range(num_shards)
        ]
        self._calls = ShardCalls(self._shards, self._log, self.timeout)
        self.recoveries = self._calls.recoveries
        self._model = model
        try:
            ray.get([a.restore.remote(True) for a in self._shards], timeout=self.timeout)
        except ray.exceptions.GetTimeoutError:
            self.close()
            raise RuntimeError(
                f"{num_shards} shards of {cpus_per_shard} CPU did not start within {timeout} s:"
                f" the cluster has {ray.available_resources().get('CPU', 0)} CPUs free"
            ) from None

    def _path(self, shard: int) -> str:
        return os.path.join(self.checkpoint_dir, f"shard-{shard}.safetensors")

    # -- the hot paths -------------------------------------------------------------
    def push(self, chunks: dict) -> BankOutputs:
        """Step every stream in ``chunks`` from its own state, on the shards that own them.

        Parameters
        ----------
        chunks : dict
            ``{key: chunk}`` as in :meth:`streamrnn.StreamBank.push`. Every chunk is
            checked here first: a bad one raises ``ValueError`` naming its key, and no
            shard is called.

        Returns
        -------
        BankOutputs
            ``{key: outputs}`` in the order of ``chunks``.
        """
        if not isinstance(chunks, dict):
            raise ValueError(f"chunks must be a dict {{key: chunk}}, got {type(chunks).__name__}")
        keys = list(chunks)
        xs = [self._check_chunk(k, v) for k, v in chunks.items()]
        positions, lists = self._split(keys)
        ops = {s: ("push", ({k: xs[i] for k, i in zip(lists[s], positions[s].tolist(),
                                                          strict=True)},))
               for s in range(self.num_shards) if len(lists[s])}
        results = self._calls.apply(ops)
        rows: list = [None] * len(keys)
        for s, (outs, _) in results.items():
            for i, y in zip(positions[s].tolist(), outs, strict=True):
                rows[i] = torch.from_numpy(np.array(y))
        shapes = {tuple(r.shape) for r in rows}
        return BankOutputs(keys, torch.stack(rows) if len(shapes) == 1 else rows)

    def push_many(self, keys: list, x: torch.Tensor) -> torch.Tensor:
        """Step N distinct streams with one ``(N, T, F)`` tensor (ids ``(N, T)``).

        Shape
        -----
        x: ``(N, T, F)`` -> ``(N, T, O)``.
        """
        self._check_many(keys, x)
        if not len(keys):  # no keys: no shard is called
            return torch.zeros((0, x.shape[1], self._outputs), dtype=self._dtype)
        positions, lists = self._split(keys)
        xn = x.detach().cpu().numpy()
        whole = [s for s in range(self.num_shards) if len(lists[s]) == len(keys)]
        ops = {}
        for s in range(self.num_shards):
            if not len(lists[s]):
                continue
            part = xn if whole else xn[positions[s]]
            if whole and self._log is not None:
                part = part.copy()  # the caller may reuse x; the log keeps its own
            ops[s] = ("push_many", (lists[s], part))
        results = self._calls.apply(ops)
        if whole:
            return torch.from_numpy(np.array(results[whole[0]][0]))
        first = next(iter(results.values()))[0]
        out = np.empty((len(keys), *first.shape[1:]), dtype=first.dtype)
        for s, (y, _) in results.items():
            out[positions[s]] = y
        return torch.from_numpy(out)

    def _split(self, keys: list) -> tuple[list, list]:
        positions, lists = self._router.split(keys)
        most = max(map(len, lists))
        if most > self.max_streams_per_shard:
            raise ValueError(f"a push may hold at most max_streams_per_shard = "
                             f"{self.max_streams_per_shard} streams of one shard, got {most}")
        return positions, lists

    def _check_chunk(self, key, value) -> np.ndarray:
        name = f"chunk for key {key!r}"
        if self._tokens is not None:
            x, one = as_id_chunk(value, high=self._tokens, device="cpu", name=name)
        else:
            x, one = as_chunk(value, features=self._features, dtype=self._dtype,
                              device="cpu", name=name)
        x = x.detach()
        return (x[0] if one else x).numpy()

    def _check_many(self, keys: list, x) -> None:
        tokens = self._tokens is not None
        dims, layout = (2, "(N, T) token ids") if tokens else (
            3, f"(N, T, F) with F = {self._features}")
        if not isinstance(x, torch.Tensor) or x.dim() != dims or (
                not tokens and x.shape[2] != self._features):
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must be {layout}, got {shape}")
        want = torch.int64 if tokens else self._dtype
        if x.dtype != want:
            raise ValueError(f"x must have dtype {want}, got {x.dtype}")
        if not isinstance(keys, list | tuple) or len(keys) != x.shape[0]:
            raise ValueError(f"keys must be {x.shape[0]} distinct keys (one per row of x)")
        if tokens:
            bad = (x < 0) | (x >= self._tokens)
            if bool(bad.any()):
                row = int(bad.nonzero()[0, 0])
                raise ValueError(f"chunk for key {keys[row]!r} must hold ids in "
                                 f"[0, {self._tokens})")
        elif not finite(x.detach()):
            row = int((~torch.isfinite(x)).nonzero()[0, 0])
            raise ValueError(f"chunk for key {keys[row]!r} has a non-finite value (NaN or inf)")

    # -- per-key operations --------------------------------------------------------
    def __len__(self) -> int:
        return sum(i["len"] for i in self._calls.ask("info"))

    def __contains__(self, key) -> bool:
        try:
            shard = self._router.shard_of(key)
        except ValueError:
            return False
        return ray.get(self._shards[shard].contains.remote(key))

    @property
    def counts(self) -> dict:
        """Every shard's ``counts`` summed (``evicted``, ``nonfinite_resets``, ``steps``)."""
        total: dict = {}
        for info in self._calls.ask("info"):
            for name, n in info["counts"].items():
                total[name] = total.get(name, 0) + n
        return total

    def keys(self) -> list:
        """Live keys, shard by shard (least recently used first within a shard)."""
        return [k for keys in self._calls.ask("keys") for k in keys]

    def offsets(self) -> dict:
        """Each live key's input offset: the steps its stream consumed since it entered."""
        return {k: n for part in self._calls.ask("offsets_of") for k, n in part.items()}

    def reset(self, key) -> None:
        """Put one stream back to the initial state (``ValueError`` if not live)."""
        self._calls.apply({self._router.shard_of(key): ("reset", (key,))})

    def drop(self, key) -> None:
        """Forget one stream (``ValueError`` if not live)."""
        self._calls.apply({self._router.shard_of(key): ("drop", (key,))})

    def clear(self) -> None:
        """Drop every stream (counters are kept)."""
        self._calls.apply({s: ("clear", ()) for s in range(self.num_shards)})

    def get_state(self, key):
        """A copy of one stream's state (B = 1)."""
        return ray.get(self._shards[self._router.shard_of(key)].get_state.remote(key))

    # -- files ---------------------------------------------------------------------
    def save(self, folder: str | os.PathLike) -> None:
        """Write every shard's streams (with offsets) to ``folder``: one file per shard
        and a manifest written last (atomically), so a reader sees a whole save or the
        previous one."""
        folder = os.fspath(folder)
        os.makedirs(folder, exist_ok=True)
        names = [f"shard-{s}-of-{self.num_shards}.safetensors" for s in range(self.num_shards)]
        ray.get([a.save.remote(os.path.join(folder, n))
                 for a, n in zip(self._shards, names, strict=True)])
        atomic_write_text(os.path.join(folder, "manifest.json"),
                          snapshot_manifest(names, self._config()))

    def load(self, folder: str | os.PathLike) -> None:
        """Replace every stream with those saved in ``folder`` by any number of shards;
        keys are routed to this bank's shards. Refuses (``ValueError``, nothing changed)
        a save that does not fit."""
        per_shard = load_snapshot(os.fspath(folder), self._config(), self._router,
                                  self.max_streams_per_shard)
        self._calls.apply({s: ("load", per_shard[s]) for s in range(self.num_shards)})
        if self.checkpoint_every is not None:  # the loaded streams are the new base
            self._calls.checkpoint(list(range(self.num_shards)))

    def _config(self) -> dict:
        return model_config(self._model)

    def close(self) -> None:
        """Stop the shards (their streams are gone; :meth:`save` first to keep them) and
        remove the temporary checkpoint folder. Ray itself keeps running."""
        for shard in self._shards:
            ray.kill(shard, no_restart=True)
        self._shards.clear()  # in place: the calls hold this list
        release_folder(self.checkpoint_dir, self._own_dir)

    def __enter__(self) -> ShardedBank:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

