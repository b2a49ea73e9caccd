"""Invariant 2, batch invariance: streams stepped together in a StreamBank get exactly the
outputs each gets alone in a Stream, whatever the order and timing of their chunks.

Also the bank's bookkeeping that this rests on: LRU eviction (an evicted stream restarts
from zero and is counted), reset of one stream, drop / len / in, and keys of every kind.
"""

from __future__ import annotations

import functools
from collections import OrderedDict

import pytest
import torch
from _oracle import KINDS, make_model, states_equal
from hypothesis import given, settings
from hypothesis import strategies as st

import streamrnn
from streamrnn.cells._kernels import FUSED_FROM_BATCH
from streamrnn.engines import COMPILED_MAX_BATCH

FEATURES, HIDDEN = 3, 4
ATOL = 1e-10
CONFIGS = [(kind, layers) for kind in KINDS for layers in (1, 2)]

scalar_keys = st.one_of(st.text(max_size=4), st.integers(-(2**40), 2**40))
keys_strategy = st.one_of(
    scalar_keys,
    st.tuples(scalar_keys, scalar_keys),
    st.tuples(scalar_keys, st.tuples(scalar_keys)),
    st.just(()),
)


@functools.cache
def model_for(kind: str, layers: int) -> streamrnn.RecurrentLayer:
    return make_model(kind, FEATURES, HIDDEN, layers, dtype=torch.float64, seed=11 + layers)


def sequence(seed: int, steps: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(steps, FEATURES, generator=gen, dtype=torch.float64)


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    assert a.shape == b.shape
    torch.testing.assert_close(a, b, rtol=0, atol=ATOL)


def state_close(a: streamrnn.State, b: streamrnn.State) -> None:
    close(a.h, b.h)
    assert (a.c is None) == (b.c is None)
    if a.c is not None:
        close(a.c, b.c)


@st.composite
def schedules(draw, lengths: list[int]):
    """Pushes as lists of ``(stream, start, length, flat)``; every step is pushed once.

    Streams, chunk lengths (empty chunks included) and the order inside a push are random;
    a push may be sent as ``push_many`` when all its chunks are (T, F) of one length.
    """
    left = list(lengths)
    pos = [0] * len(lengths)
    pushes = []
    while any(left) and len(pushes) < 25:
        who = draw(st.lists(st.sampled_from(range(len(lengths))), min_size=1, unique=True))
        push = []
        for i in who:
            length = draw(st.integers(0, min(left[i], 5)))
            flat = length == 1 and draw(st.booleans())
            push.append((i, pos[i], length, flat))
            pos[i] += length
            left[i] -= length
        many = not any(p[3] for p in push) and len({p[2] for p in push}) == 1
        pushes.append((push, many and draw(st.booleans())))
    for i in range(len(lengths)):  # flush: whatever is left, one push per stream
        if left[i]:
            pushes.append(([(i, pos[i], left[i], False)], False))
    return pushes


@settings(max_examples=40, deadline=None, database=None)
@given(
    config=st.sampled_from(CONFIGS),
    keys=st.lists(keys_strategy, min_size=2, max_size=5, unique=True),
    seed=st.integers(0, 2**16),
    data=st.data(),
)
def test_interleaved_bank_equals_each_stream_alone(config, keys, seed, data):
    model = model_for(*config)
    lengths = data.draw(st.lists(st.integers(0, 12), min_size=len(keys), max_size=len(keys)))
    xs = [sequence(seed + i, n) for i, n in enumerate(lengths)]
    schedule = data.draw(schedules(lengths), label="schedule")

    bank = streamrnn.StreamBank(model, max_streams=64)
    alone = [streamrnn.Stream(model) for _ in keys]
    got = [[] for _ in keys]
    seen = set()
    for push, many in schedule:
        chunks = {
            keys[i]: xs[i][start] if flat else xs[i][start : start + length]
            for i, start, length, flat in push
        }
        if many:
            y = bank.push_many(list(chunks), torch.stack(list(chunks.values())))
            out = dict(zip(chunks, y.unbind(0), strict=True))
        else:
            out = bank.push(chunks)
            assert list(out) == list(chunks), "outputs come back in the push's key order"
        for i, _, _, _ in push:
            seen.add(i)
            want = alone[i].push(chunks[keys[i]])
            close(out[keys[i]], want)
            got[i].append(out[keys[i]].reshape(-1, HIDDEN))

    assert len(bank) == len(seen)
    assert bank.counts["evicted"] == 0
    assert bank.counts["steps"] == sum(lengths[i] for i in seen)
    for i in seen:
        state_close(bank.get_state(keys[i]), alone[i].state)
        # and, through invariant 1, the whole sequence in one offline pass
        with torch.no_grad():
            whole, _ = model(xs[i].unsqueeze(0))
        close(torch.cat(got[i]), whole[0])


@pytest.mark.parametrize("n_keys", [COMPILED_MAX_BATCH + 24, FUSED_FROM_BATCH + 8])
@pytest.mark.parametrize("config", CONFIGS)
@settings(max_examples=2, deadline=None, database=None)
@given(seed=st.integers(0, 2**16), data=st.data())
def test_large_pushes_equal_each_stream_alone(n_keys, config, seed, data):
    # The pushes above hold a few streams (the compiled engine); these hold enough for
    # torch's paths: the cell kernel, the packed LSTM step (16+ streams, one step), the
    # fused kernel (512+ streams, or chunks of several steps); whole and partial pushes.
    model = model_for(*config)
    bank = streamrnn.StreamBank(model, max_streams=n_keys)
    alone = [streamrnn.Stream(model) for _ in range(n_keys)]
    subsets = st.one_of(st.just(list(range(n_keys))),
                        st.lists(st.integers(0, n_keys - 1), min_size=COMPILED_MAX_BATCH + 1,
                                 max_size=n_keys, unique=True))
    for push in range(data.draw(st.integers(2, 4))):
        who = data.draw(subsets)
        steps = data.draw(st.sampled_from([1, 1, 3]))
        x = torch.stack([sequence(seed + 7919 * push + i, steps) for i in who])
        y = bank.push_many(who, x)
        for row, i in enumerate(who):
            close(y[row], alone[i].push(x[row]))
    for i in range(n_keys):
        if i in bank:
            state_close(bank.get_state(i), alone[i].state)


@settings(max_examples=30, deadline=None, database=None)
@given(
    config=st.sampled_from(CONFIGS),
    n_keys=st.integers(2, 5),
    max_streams=st.integers(1, 3),
    seed=st.integers(0, 2**16),
    data=st.data(),
)
def test_eviction_is_lru_restarts_from_zero_and_is_counted(config, n_keys, max_streams, seed, data):
    # One key per push, so "least recently used" is a strict order the test can model.
    model = model_for(*config)
    order = data.draw(st.lists(st.integers(0, n_keys - 1), min_size=1, max_size=20))
    bank = streamrnn.StreamBank(model, max_streams=max_streams)
    alone = [streamrnn.Stream(model) for _ in range(n_keys)]
    lru: OrderedDict[int, None] = OrderedDict()
    evicted = 0
    for step, i in enumerate(order):
        key = ("k", i)
        if i in lru:
            lru.move_to_end(i)
        else:
            if len(lru) == max_streams:
                victim, _ = lru.popitem(last=False)
                alone[victim].reset()  # its state is lost: it restarts from zero
                evicted += 1
            lru[i] = None
        chunk = sequence(seed + step, data.draw(st.integers(1, 4)))
        close(bank.push({key: chunk})[key], alone[i].push(chunk))
        assert bank.counts["evicted"] == evicted
        assert bank.keys() == [("k", j) for j in lru]
        assert len(bank) == len(lru)
        assert all((("k", j) in bank) == (j in lru) for j in range(n_keys))


def test_evicted_stream_restarts_from_zero_state():
    model = model_for("LSTM", 2)
    bank = streamrnn.StreamBank(model, max_streams=2)
    a, b, c = sequence(1, 5), sequence(2, 3), sequence(3, 4)
    bank.push({"a": a})
    bank.push({"b": b})
    bank.push({"c": c})  # "a" is the least recently used: evicted
    assert "a" not in bank and "b" in bank and "c" in bank
    assert bank.counts["evicted"] == 1
    again = sequence(4, 3)
    fresh = streamrnn.Stream(model).push(again)
    close(bank.push({"a": again})["a"], fresh)
    assert bank.counts["evicted"] == 2  # "b" made room for "a"


def test_ragged_push_never_evicts_a_stream_of_the_same_push():
    model = model_for("GRU", 1)
    bank = streamrnn.StreamBank(model, max_streams=2)
    alone_a = streamrnn.Stream(model)
    first = sequence(1, 2)
    bank.push({"a": first})
    alone_a.push(first)
    bank.push({"b": sequence(2, 2)})
    # "a" is least recently used, but it is in this push: "b" must go, "a" continue.
    more = sequence(3, 2)
    out = bank.push({"c": sequence(4, 3), "a": more})
    close(out["a"], alone_a.push(more))
    assert bank.counts["evicted"] == 1
    assert set(bank.keys()) == {"a", "c"}


@pytest.mark.parametrize("kind", KINDS)
def test_reset_touches_only_that_stream(kind):
    model = model_for(kind, 2)
    keys = ["x", 7, ("room", 3)]
    bank = streamrnn.StreamBank(model)
    alone = {k: streamrnn.Stream(model) for k in keys}
    for r in range(3):
        chunks = {k: sequence(10 * r + j, 2 + j) for j, k in enumerate(keys)}
        bank.push(chunks)
        for k, x in chunks.items():
            alone[k].push(x)
    before = {k: bank.get_state(k) for k in keys}

    bank.reset(7)
    alone[7].reset()

    assert states_equal(bank.get_state("x"), before["x"])
    assert states_equal(bank.get_state(("room", 3)), before[("room", 3)])
    reset_state = bank.get_state(7)
    assert not states_equal(reset_state, before[7])
    assert states_equal(reset_state, model.initial_state(1))
    assert len(bank) == 3
    chunks = {k: sequence(99 + j, 3) for j, k in enumerate(keys)}
    out = bank.push(chunks)
    for k in keys:
        close(out[k], alone[k].push(chunks[k]))


def test_drop_len_and_in():
    model = model_for("LSTM", 1)
    bank = streamrnn.StreamBank(model)
    assert len(bank) == 0
    keys = ["a", 0, ("a",), ("a", 0), (("a",), 0)]
    bank.push({k: sequence(j, 2) for j, k in enumerate(keys)})
    assert len(bank) == 5 and all(k in bank for k in keys)
    assert "b" not in bank and 1 not in bank and ("a", 1) not in bank

    bank.drop(("a",))
    assert len(bank) == 4 and ("a",) not in bank
    assert all(k in bank for k in keys if k != ("a",))
    # a dropped key comes back as a new stream, from the zero state
    x = sequence(50, 3)
    close(bank.push({("a",): x})[("a",)], streamrnn.Stream(model).push(x))
    assert len(bank) == 5
    for k in keys:
        bank.drop(k)
    assert len(bank) == 0 and bank.keys() == []
    assert bank.counts["evicted"] == 0  # dropping is not evicting


def test_keys_that_look_alike_are_distinct_streams():
    # 1, "1", (1,), ("1",) and ((1,),) are five different keys: five different states.
    model = model_for("RNN_TANH", 2)
    keys = [1, "1", (1,), ("1",), ((1,),)]
    bank = streamrnn.StreamBank(model)
    alone = {k: streamrnn.Stream(model) for k in keys}
    for r in range(2):
        chunks = {k: sequence(r * 10 + j, 1 + j) for j, k in enumerate(keys)}
        out = bank.push(chunks)
        for k in keys:
            close(out[k], alone[k].push(chunks[k]))
    assert len(bank) == 5
    for k in keys:
        state_close(bank.get_state(k), alone[k].state)


def test_many_streams_one_step_each_equal_alone():
    # The hot path at a size where slots are reallocated (capacity grows past 64).
    model = model_for("LSTM", 2)
    n = 150
    bank = streamrnn.StreamBank(model)
    x = torch.randn(3, n, FEATURES, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    keys = [("s", i) for i in range(n)]
    outs = [bank.push_many(keys, x[t].unsqueeze(1)) for t in range(2)]
    outs.append(bank.push_many(keys[::-1], x[2].flip(0).unsqueeze(1)).flip(0))
    got = torch.cat(outs, dim=1)  # (N, 3, H)
    with torch.no_grad():
        want, _ = model(x.transpose(0, 1))
    close(got, want)
    assert len(bank) == n and bank.counts["steps"] == 3 * n
