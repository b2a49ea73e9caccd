"""Exactly once under failure: shards killed at random moments change no output.

Properties:
- a shard checkpoint holds the streams and each key's input offset as of its sequence
  number (read back from the file);
- 20 runs, each killing one shard at a random push (``ray.kill`` or SIGKILL of the
  worker process, before a push or while it is in flight): every output equals the
  per-shard in-process banks bitwise (a run that never failed), every key's offset equals
  the steps pushed to it (no key lost, none counted twice), and each kill costs exactly
  one recovery;
- with checkpoints off a dead shard is an error, never a silent loss.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np
import pytest
import ray
import torch
from _sharded import CPUS, PerShardTwin, assert_outputs, gone, schedule, steps_of

import streamrnn
from streamrnn.distributed import ShardedBank
from streamrnn.distributed._shard import read_shard_file

MODEL = streamrnn.GRU(3, 4, seed=2).double()
RUNS = 20


@pytest.fixture(scope="module")
def bank():
    with ShardedBank(MODEL, num_shards=2, checkpoint_every=3, cpus_per_shard=CPUS) as b:
        yield b


def _kill(bank, shard: int, pid: int, how: str) -> None:
    if how == "sigkill":
        os.kill(pid, signal.SIGKILL)
    else:
        ray.kill(bank._shards[shard], no_restart=False)


def test_checkpoints_hold_states_and_offsets(bank):
    bank.clear()
    twin = PerShardTwin(MODEL, 2)
    keys = [f"c{i}" for i in range(6)]
    x = torch.randn(5, 6, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    first = [bank._log.last[s] + 1 for s in range(2)]  # the first push's sequence number
    snapshots = []  # per push: each shard's states after it
    for i in range(5):  # checkpoint_every=3: a checkpoint is written within 4 operations
        bank.push_many(keys, x[i])
        twin.push(dict(zip(keys, x[i], strict=True)))
        snapshots.append([{k: b.get_state(k) for k in b.keys()} for b in twin.banks])
    for s in range(2):
        sd, file_keys, offsets, file_seq = read_shard_file(bank._path(s))
        pushes = file_seq - first[s] + 1  # pushes the checkpoint includes
        assert 1 <= pushes <= 4 and file_seq < bank._log.last[s]
        want = snapshots[pushes - 1][s]
        assert set(file_keys) == set(want)
        assert offsets == [2 * pushes] * len(file_keys)  # 2 steps per push
        restored = streamrnn.StreamBank(MODEL)
        restored.load_state_dict(sd)
        for k in file_keys:
            assert torch.equal(restored.get_state(k).h, want[k].h)


@pytest.mark.parametrize("runs", [
    4,  # the default run: one of each kill mode (a restart costs seconds on a busy machine)
    pytest.param(RUNS, marks=pytest.mark.slow),  # the 20 runs: pytest -m slow
])
def test_twenty_random_kills_change_nothing(bank, runs):
    rng = np.random.default_rng(7)
    modes = ["ray.kill", "ray.kill in flight", "sigkill", "sigkill in flight"]
    for run in range(runs):
        keys = [f"r{run}-{i}" for i in range(6)]
        pushes = schedule(100 + run, 10, keys=keys)
        twin = PerShardTwin(MODEL, 2)
        at, shard, mode = int(rng.integers(10)), int(rng.integers(2)), modes[run % 4]
        pid = ray.get(bank._shards[shard].pid.remote())
        before, steps, timer = len(bank.recoveries), {}, None
        for i, chunks in enumerate(pushes):
            if i == at:
                how = mode.split()[0]
                if mode.endswith("in flight"):
                    timer = threading.Timer(float(rng.uniform(0, 0.004)), _kill,
                                            (bank, shard, pid, how))
                    timer.start()
                else:
                    _kill(bank, shard, pid, how)
            assert_outputs(bank.push(chunks), twin.push(chunks), 0)
            steps_of(chunks, steps)
        timer and timer.join()
        deadline = time.monotonic() + 30
        while not gone(pid):
            assert time.monotonic() < deadline, f"run {run}: shard {shard} was not killed"
            time.sleep(0.01)
        offsets = bank.offsets()  # recovers the shard if no push saw it die
        assert {k: offsets[k] for k in keys if k in offsets} == steps, f"run {run} ({mode})"
        assert len(bank.recoveries) == before + 1, f"run {run} ({mode})"
        assert ray.get(bank._shards[shard].pid.remote()) != pid


def test_without_checkpoints_a_dead_shard_is_an_error():
    with ShardedBank(MODEL, num_shards=1, checkpoint_every=None, cpus_per_shard=CPUS) as b:
        b.push({"a": torch.zeros(2, 3, dtype=torch.float64)})
        ray.kill(b._shards[0], no_restart=False)
        with pytest.raises(RuntimeError, match="checkpoint_every is None"):
            for _ in range(100):  # the kill takes effect asynchronously
                b.push({"a": torch.zeros(2, 3, dtype=torch.float64)})
                time.sleep(0.02)
