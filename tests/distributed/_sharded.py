"""Helpers of the distributed tests: schedules of pushes, the references a ShardedBank
must equal, and whether a killed shard's process has ended."""

from __future__ import annotations

import numpy as np
import torch

import streamrnn
from streamrnn.distributed._route import Router

#: CPUs each test shard reserves: the session's cluster has 2, and a few banks live at once.
CPUS = 0.25

KEYS = ["a", "b", 3, ("room", 1), ("room", 2), "zz", 17, "sensor/9"]


def schedule(seed: int, n: int, *, keys=KEYS, most: int | None = None, features: int = 3,
             dtype=torch.float64) -> list[dict]:
    """n pushes: random key subsets (at most ``most`` keys), random chunk lengths (0..3
    steps, or one step ``(F,)``)."""
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        pick = rng.choice(len(keys), size=rng.integers(1, (most or len(keys)) + 1),
                          replace=False)
        chunks = {}
        for i in pick:
            t = int(rng.integers(-1, 4))
            shape = (features,) if t < 0 else (t, features)
            chunks[keys[i]] = torch.randn(*shape, generator=g, dtype=dtype)
        out.append(chunks)
    return out


def gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (or is a zombie: killed, not yet reaped)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" in f.read()
    except FileNotFoundError:
        return True


def steps_of(chunks: dict, into: dict) -> dict:
    """Add each chunk's steps to ``into`` (a one-step ``(F,)`` chunk is one step)."""
    for k, v in chunks.items():
        into[k] = into.get(k, 0) + (1 if v.dim() == 1 else v.shape[0])
    return into


class PerShardTwin:
    """One in-process StreamBank per shard, routed by the same stable hash: the exact
    reference of a ShardedBank (same batches per shard, same eviction)."""

    def __init__(self, model, num_shards: int, max_streams: int = 100_000) -> None:
        self.router = Router(num_shards)
        self.banks = [streamrnn.StreamBank(model, max_streams=max_streams)
                      for _ in range(num_shards)]

    def push(self, chunks: dict) -> dict:
        out = {}
        for s, bank in enumerate(self.banks):
            mine = {k: v for k, v in chunks.items() if self.router.shard_of(k) == s}
            if mine:
                out.update(bank.push(mine))
        return {k: out[k] for k in chunks}

    def keys(self) -> set:
        return {k for b in self.banks for k in b.keys()}


def assert_outputs(got, want: dict, atol: float) -> None:
    assert list(got) == list(want)
    for k in want:
        assert got[k].shape == want[k].shape, k
        if atol == 0:
            assert torch.equal(got[k], want[k]), k
        else:
            torch.testing.assert_close(got[k], want[k], atol=atol, rtol=0)
