"""ShardedBank against in-process banks: routing, batch invariance, per-key operations,
eviction per shard, bad input, the replay bound, and save with N shards / load with M.

Properties:
- routing is a pure function of the key: the same in a process with another hash seed;
- a ShardedBank returns what one in-process StreamBank returns for every stream, for any
  interleaving of keys and chunk lengths (batch invariance across shards);
- reset / drop / len / keys / offsets and eviction act per shard, as per-shard banks do;
- a rejected push or drop changes no shard; the replay log never exceeds its bound
  (backpressure) and a call over the bound is refused;
- a save by N shards loaded by M shards continues as the original.

Starting shards costs seconds on a busy machine: the tests of the default configuration
share one module-scoped bank and start from ``clear()``.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from _sharded import CPUS, KEYS, PerShardTwin, assert_outputs, schedule, steps_of

import streamrnn
from streamrnn._checkpoint import model_config
from streamrnn.distributed import ShardedBank
from streamrnn.distributed._route import Router, key_hash
from streamrnn.distributed._snapshot import load_snapshot

MODEL = streamrnn.LSTM(3, 5, seed=1).double()


@pytest.fixture(scope="module")
def bank():
    with ShardedBank(MODEL, num_shards=2, checkpoint_every=4, cpus_per_shard=CPUS) as b:
        yield b


def test_routing_is_stable_across_processes():
    code = ("from streamrnn.distributed._route import key_hash;"
            f"print([key_hash(k) for k in {KEYS!r}])")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    other = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                           text=True, check=True).stdout.strip()
    assert other == str([key_hash(k) for k in KEYS])
    assert key_hash(1) != key_hash("1")  # keys of other types are other streams
    shares = np.bincount([Router(2).shard_of(f"s{i}") for i in range(2000)], minlength=2)
    assert 900 < shares[0] < 1100
    with pytest.raises(ValueError, match="distinct"):
        Router(2).split(["a", "b", "a"])


def _equals_one_bank(bank, model, dtype, atol):
    one = streamrnn.StreamBank(model)
    steps = bank.counts["steps"]
    for chunks in schedule(0, 25, dtype=dtype):
        assert_outputs(bank.push(chunks), dict(one.push(chunks)), atol)
    keys = KEYS[::-1]  # the zero-copy path, same streams
    x = torch.randn(len(keys), 4, 3, dtype=dtype, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(bank.push_many(keys, x), one.push_many(keys, x),
                               atol=atol, rtol=0)
    assert sorted(bank.keys(), key=repr) == sorted(one.keys(), key=repr)
    assert len(bank) == len(one) and bank.counts["steps"] - steps == one.counts["steps"]
    for k in KEYS:
        got, want = bank.get_state(k), one.get_state(k)
        for part in want.parts:
            torch.testing.assert_close(got[part], want[part], atol=atol, rtol=0)


def test_sharded_bank_equals_one_bank_float64(bank):
    bank.clear()
    _equals_one_bank(bank, MODEL, torch.float64, 1e-10)


def test_sharded_bank_equals_one_bank_float32():
    model = streamrnn.LSTM(3, 5, seed=1)
    with ShardedBank(model, num_shards=2, checkpoint_every=4, cpus_per_shard=CPUS) as b:
        _equals_one_bank(b, model, torch.float32, 1e-5)


def test_reset_drop_offsets_and_eviction_per_shard():
    twin = PerShardTwin(MODEL, 2, max_streams=3)
    with ShardedBank(MODEL, num_shards=2, max_streams_per_shard=3, checkpoint_every=2,
                     cpus_per_shard=CPUS) as b:
        for i, chunks in enumerate(schedule(1, 20, most=3)):
            assert_outputs(b.push(chunks), twin.push(chunks), 0)
            if i == 5:
                key = twin.banks[0].keys()[-1]
                b.reset(key)
                twin.banks[0].reset(key)
            if i == 9:
                key = twin.banks[1].keys()[0]
                b.drop(key)
                twin.banks[1].drop(key)
        assert set(b.keys()) == twin.keys() and len(b) == len(twin.keys())
        evicted = sum(t.counts["evicted"] for t in twin.banks)
        assert evicted > 0 and b.counts["evicted"] == evicted
        assert "nope" not in b and 2.5 not in b and next(iter(twin.keys())) in b
        with pytest.raises(ValueError, match="not a live stream"):
            b.drop("nope")
        with pytest.raises(ValueError, match="at most max_streams_per_shard = 3"):
            b.push({k: torch.zeros(3, dtype=torch.float64) for k in KEYS})
        assert set(b.keys()) == twin.keys()  # the refused calls changed nothing
        last = schedule(9, 1, most=3)[0]
        assert_outputs(b.push(last), twin.push(last), 0)


def test_offsets_count_every_step(bank):
    bank.clear()
    steps: dict = {}
    for chunks in schedule(2, 15):
        bank.push(chunks)
        steps_of(chunks, steps)
    assert bank.offsets() == steps
    bank.drop("a")
    steps.pop("a")
    assert bank.offsets() == steps


def test_a_rejected_push_changes_no_shard(bank):
    bank.clear()
    one = streamrnn.StreamBank(MODEL)
    first = {k: torch.ones(2, 3, dtype=torch.float64) for k in KEYS}
    bank.push(first)
    one.push(first)
    bad = {k: torch.zeros(1, 3, dtype=torch.float64) for k in KEYS}
    bad["zz"] = torch.tensor([[0.0, float("nan"), 0.0]], dtype=torch.float64)
    with pytest.raises(ValueError, match="'zz'.*non-finite"):
        bank.push(bad)
    with pytest.raises(ValueError, match="3 features"):
        bank.push({"a": torch.zeros(2, 4, dtype=torch.float64)})
    with pytest.raises(ValueError, match="key must be"):
        bank.push({2.5: torch.zeros(2, 3, dtype=torch.float64)})
    with pytest.raises(ValueError, match="dtype"):
        bank.push_many(["a"], torch.zeros(1, 2, 3))
    with pytest.raises(ValueError, match="distinct"):
        bank.push_many(["a", "a"], torch.zeros(2, 2, 3, dtype=torch.float64))
    nan = torch.zeros(2, 1, 3, dtype=torch.float64)
    nan[1, 0, 2] = float("inf")
    with pytest.raises(ValueError, match="'b'.*non-finite"):
        bank.push_many(["a", "b"], nan)
    assert bank.offsets() == dict.fromkeys(KEYS, 2)
    after = {k: torch.full((2, 3), 0.5, dtype=torch.float64) for k in KEYS}
    assert_outputs(bank.push(after), dict(one.push(after)), 1e-10)


def test_replay_log_is_bounded_with_backpressure():
    one = streamrnn.StreamBank(MODEL)
    bound = 12 * (4 * 3 * 8 + 64)
    with ShardedBank(MODEL, num_shards=2, checkpoint_every=1000, max_replay_bytes=bound,
                     cpus_per_shard=CPUS) as b:
        for i in range(30):
            chunks = {k: torch.full((4, 3), i / 30, dtype=torch.float64) for k in KEYS}
            assert_outputs(b.push(chunks), dict(one.push(chunks)), 1e-10)
            assert all(n <= bound for n in b._log.bytes)
        assert max(len(e) for e in b._log.entries) < 30  # it checkpointed to make room
        with pytest.raises(ValueError, match="max_replay_bytes"):
            b.push({k: torch.zeros(400, 3, dtype=torch.float64) for k in KEYS})
        assert b.offsets() == dict.fromkeys(KEYS, 120)  # the refused push did nothing


def test_save_with_n_shards_load_with_m(bank, tmp_path):
    bank.clear()
    one = streamrnn.StreamBank(MODEL)
    pushes = schedule(3, 16)
    for chunks in pushes[:8]:
        bank.push(chunks)
        one.push(chunks)
    bank.save(tmp_path)
    saved_offsets, saved_evicted = bank.offsets(), bank.counts["evicted"]
    for num_shards in (3, 1):
        twin = streamrnn.StreamBank(MODEL)
        twin.load_state_dict(one.state_dict())
        with ShardedBank(MODEL, num_shards=num_shards, cpus_per_shard=CPUS) as other:
            other.push({"old": torch.zeros(3, dtype=torch.float64)})  # replaced by load
            other.load(tmp_path)
            assert other.offsets() == saved_offsets
            assert other.counts["evicted"] == saved_evicted
            for chunks in pushes[8:]:
                assert_outputs(other.push(chunks), dict(twin.push(chunks)), 1e-10)
    wrong = model_config(streamrnn.LSTM(3, 6, seed=1).double())
    with pytest.raises(ValueError, match="hidden_size"):
        load_snapshot(str(tmp_path), wrong, Router(2), 100)
    with pytest.raises(ValueError, match="at most|would hold"):
        load_snapshot(str(tmp_path), model_config(MODEL), Router(1), 2)


@pytest.mark.parametrize(("name", "value", "rule"), [
    ("num_shards", 0, "a positive int"),
    ("num_shards", True, "a positive int"),
    ("max_streams_per_shard", 2.0, "a positive int"),
    ("checkpoint_every", 0, "a positive int or None"),
    ("max_replay_bytes", -1, "a positive int"),
    ("cpus_per_shard", float("inf"), "a positive finite number"),
    ("timeout", float("nan"), "a positive finite number"),
    ("timeout", 0, "a positive finite number"),
])
def test_bad_configuration_is_refused_before_any_shard_starts(name, value, rule):
    with pytest.raises(ValueError, match=f"^{name} must be {rule}, got {value!r}$"):
        ShardedBank(MODEL, **{name: value})


def test_outputs_held_by_the_caller_are_never_rewritten_by_later_pushes():
    # A shard lends its bank's memory as the push's result (Ray copies it out before the
    # shard takes its next call): a full shard stepped in one call (its outputs are its
    # new state), then pushes of some rows, which write that state in place.
    n = 40
    keys = list(range(n))
    gen = torch.Generator().manual_seed(3)
    with ShardedBank(MODEL, num_shards=1, max_streams_per_shard=n,
                     cpus_per_shard=CPUS) as sharded:
        one = streamrnn.StreamBank(MODEL, max_streams=n)
        held = []
        for who in (keys, keys, keys[:25], keys[5:30], keys):
            x = torch.randn(len(who), 1, 3, generator=gen, dtype=torch.float64)
            y = sharded.push_many(who, x)
            torch.testing.assert_close(y, one.push_many(who, x), atol=1e-10, rtol=0)
            held.append((y, y.clone()))
        for y, copy in held:
            assert torch.equal(y, copy)


def test_a_push_of_no_keys_returns_no_rows_and_changes_nothing(bank):
    bank.clear()
    bank.push_many(["a", "b"], torch.ones(2, 1, 3, dtype=torch.float64))
    before = bank.offsets
    for steps in (1, 2):
        y = bank.push_many([], torch.zeros(0, steps, 3, dtype=torch.float64))
        assert y.shape == (0, steps, 5) and y.dtype == torch.float64
    assert len(bank.push({})) == 0
    assert bank.offsets == before
