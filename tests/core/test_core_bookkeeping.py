"""The bank's slot bookkeeping against a model of it: any sequence of multi-key pushes
(uniform, ragged, empty chunks), drops, resets and reloads from a checkpoint keeps the
keys, their least-recently-used order, the eviction count, and every stream's own state.

Written to kill surviving mutants of the slot table (docs/mutation.md): a dropped slot
taken for live at the next eviction, a slot lost after a reload (a new key evicted a
stream although there was room), a grown table whose recency array no longer matches
its slots.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections import OrderedDict

import pytest
import torch
from _oracle import make_model
from hypothesis import given, settings
from hypothesis import strategies as st

import streamrnn

FEATURES, HIDDEN = 3, 4
ATOL = 1e-10
POOL = [0, 1, "a", ("b", 2), 4, 5, "g"]


@functools.cache
def model() -> streamrnn.RecurrentLayer:
    return make_model("GRU", FEATURES, HIDDEN, 1, dtype=torch.float64, seed=5)


def sequence(seed: int, steps: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(steps, FEATURES, generator=gen, dtype=torch.float64)


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape
    torch.testing.assert_close(a, b, rtol=0, atol=ATOL)


class Model:
    """What the bank should hold: live keys in LRU order, and per key a lone Stream fed
    what that key's stream has seen since it (re)started."""

    def __init__(self, max_streams: int) -> None:
        self.max_streams = max_streams
        self.lru: OrderedDict = OrderedDict()
        self.alone: dict = {}
        self.evicted = 0

    def push(self, keys: list) -> None:
        new = [k for k in keys if k not in self.lru]
        excess = len(self.lru) + len(new) - self.max_streams
        if excess > 0:  # the least recently used streams outside this push go
            victims = [k for k in self.lru if k not in keys][:excess]
            for key in victims:
                del self.lru[key]
                del self.alone[key]
            self.evicted += len(victims)
        for key in keys:  # every key of the push is used now, in push order
            self.lru.pop(key, None)
            self.lru[key] = None
            self.alone.setdefault(key, streamrnn.Stream(model()))

    def drop(self, key) -> None:
        del self.lru[key]
        del self.alone[key]


def check(bank: streamrnn.StreamBank, want: Model) -> None:
    assert bank.keys() == list(want.lru)
    assert len(bank) == len(want.lru)
    assert bank.counts["evicted"] == want.evicted
    assert all((key in bank) == (key in want.lru) for key in POOL)


def reload(bank: streamrnn.StreamBank, how: str) -> streamrnn.StreamBank:
    fresh = streamrnn.StreamBank(model(), max_streams=bank.max_streams)
    fresh.push({"stale": sequence(99, 2)})  # a load replaces every stream
    if how == "file":
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "bank.safetensors")
            bank.save(path)
            fresh.load(path)
    else:
        fresh.load_state_dict(bank.state_dict())
    return fresh


@settings(max_examples=60, deadline=None)
@given(max_streams=st.integers(1, 6), data=st.data())
def test_bank_bookkeeping_follows_a_model_of_lru_drops_resets_and_reloads(max_streams, data):
    bank = streamrnn.StreamBank(model(), max_streams=max_streams)
    want = Model(max_streams)
    ops = data.draw(st.lists(
        st.sampled_from(["push", "push", "push", "drop", "reset", "reload"]),
        min_size=1, max_size=14,
    ))
    for step, op in enumerate(ops):
        live = list(want.lru)
        if op == "push":
            keys = data.draw(st.lists(st.sampled_from(POOL), min_size=1,
                                      max_size=max_streams, unique=True))
            if data.draw(st.booleans()):  # one length for all: the uniform path
                lengths = [data.draw(st.integers(0, 3))] * len(keys)
            else:  # ragged (empty chunks included)
                lengths = [data.draw(st.integers(0, 3)) for _ in keys]
            chunks = {k: sequence(100 * step + i, n) for i, (k, n) in enumerate(
                zip(keys, lengths, strict=True))}
            out = bank.push(chunks)
            want.push(keys)
            for key in keys:
                close(out[key], want.alone[key].push(chunks[key]))
        elif op == "drop" and live:
            key = data.draw(st.sampled_from(live))
            bank.drop(key)
            want.drop(key)
        elif op == "reset" and live:  # back to zero; recency unchanged
            key = data.draw(st.sampled_from(live))
            bank.reset(key)
            want.alone[key].reset()
        elif op == "reload":
            bank = reload(bank, data.draw(st.sampled_from(["file", "state_dict"])))
        check(bank, want)
    probe = {key: sequence(7, 1) for key in want.lru}  # every state is its own
    if probe:
        out = bank.push(probe)
        for key in probe:
            close(out[key], want.alone[key].push(probe[key]))


def test_a_reloaded_bank_fills_to_max_streams_before_it_evicts():
    bank = streamrnn.StreamBank(model(), max_streams=5)
    bank.push({"a": sequence(1, 2), "b": sequence(2, 3)})
    again = streamrnn.StreamBank(model(), max_streams=5)
    again.load_state_dict(bank.state_dict())
    again.push({k: sequence(3, 1) for k in ("c", "d", "e")})  # 5 live: room for all
    assert again.counts["evicted"] == 0
    assert again.keys() == ["a", "b", "c", "d", "e"]
    again.push({"f": sequence(4, 1)})  # now full: the least recent goes
    assert again.counts["evicted"] == 1
    assert again.keys() == ["b", "c", "d", "e", "f"]


def test_a_dropped_slot_is_reused_and_eviction_takes_the_least_recent_live_stream():
    bank = streamrnn.StreamBank(model(), max_streams=3)
    for i, key in enumerate("abc"):
        bank.push({key: sequence(i, 2)})
    bank.drop("a")  # the least recent slot is free now, not a stream
    bank.push({"d": sequence(5, 1), "e": sequence(6, 1)})  # one fits, one evicts b
    assert bank.counts["evicted"] == 1
    assert bank.keys() == ["c", "d", "e"]
    lone = streamrnn.Stream(model())
    lone.push(sequence(2, 2))
    x = sequence(8, 2)
    close(bank.push({"c": x})["c"], lone.push(x))


def test_a_bank_grown_past_its_first_allocation_evicts_its_least_recent_stream():
    # The first allocation is 64 rows; growth to max_streams = 70, then eviction.
    bank = streamrnn.StreamBank(model(), max_streams=70)
    x = torch.randn(64, 2, FEATURES, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(0))
    bank.push_many(list(range(64)), x)
    bank.push_many(list(range(64, 70)), x[:6])
    assert len(bank) == 70 and bank.counts["evicted"] == 0
    bank.push({70: sequence(1, 1)})
    assert bank.counts["evicted"] == 1
    assert bank.keys() == list(range(1, 71))
    lone = streamrnn.Stream(model())
    lone.push(x[1])
    y = sequence(2, 3)
    close(bank.push({1: y})[1], lone.push(y))


@pytest.mark.parametrize("key", [2.5, None, [1]])
def test_a_key_that_is_not_a_key_is_named_with_its_type(key):
    bank = streamrnn.StreamBank(model(), max_streams=3)
    bank.push({"a": sequence(1, 1)})
    for method in (bank.reset, bank.drop, bank.get_state):
        with pytest.raises(ValueError, match=f"got {type(key).__name__}"):
            method(key)
    assert bank.keys() == ["a"]


def nest(levels: int):
    key = "k"
    for _ in range(levels):
        key = (key,)
    return key


def test_keys_nest_at_most_eight_deep_and_a_deeper_one_is_a_clear_error_everywhere():
    bank = streamrnn.StreamBank(model(), max_streams=4)
    deepest = nest(8)  # eight tuples deep: a key
    bank.push({deepest: sequence(1, 2)})
    before = bank.get_state(deepest).h.clone()
    nan = torch.full((2, FEATURES), float("nan"), dtype=torch.float64)
    for levels in (9, 40, 5000):  # 5000: deeper than Python's repr can go
        key = nest(levels)
        calls = {
            "push": lambda key=key: bank.push({key: sequence(2, 2)}),
            "push NaN": lambda key=key: bank.push({key: nan}),  # keys before chunks
            "push ragged": lambda key=key: bank.push({"b": sequence(3, 1), key: nan[:1]}),
            "push_many": lambda key=key: bank.push_many([key], nan.unsqueeze(0)),
            "reset": lambda key=key: bank.reset(key),
            "drop": lambda key=key: bank.drop(key),
            "get_state": lambda key=key: bank.get_state(key),
        }
        for name, call in calls.items():
            with pytest.raises(ValueError, match="nested at most 8 deep") as err:
                call()
            assert len(str(err.value)) < 300, f"{name}: {err.value}"
        assert key not in bank
    assert bank.keys() == [deepest] and bank.counts["steps"] == 2
    assert torch.equal(bank.get_state(deepest).h, before)


@pytest.mark.parametrize("width", [71, 72, 200])  # reprs of 80, 81 and 209 characters
def test_a_refused_key_is_shown_in_at_most_80_characters(width):
    key = ("x" * width, 1.5)
    shown = repr(key)
    bank = streamrnn.StreamBank(model(), max_streams=4)
    with pytest.raises(ValueError) as err:
        bank.push({key: sequence(1, 1)})
    message = str(err.value)
    if len(shown) <= 80:
        assert message.endswith(f"got tuple {shown}")
    else:
        assert message.endswith(f"got tuple {shown[:77]}...")
