"""What a push hands back stays as it was: later pushes never change earlier outputs.

One step of a bare layer returns its new ``h`` as the output; a bank that keeps the
new state tensors as its own (every slot stepped) must not hand that memory out, or the
next push that writes some rows in place rewrites outputs the caller holds. Each
engine's path is reached: the compiled engine (a few streams), the per-layer cell
kernel (more than ``COMPILED_MAX_BATCH``) and the fused kernel (``FUSED_FROM_BATCH`` and
more), for pushes of every key, of a leading run and of a scattered subset.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import streamrnn
from streamrnn.cells._kernels import FUSED_FROM_BATCH
from streamrnn.engines import COMPILED_MAX_BATCH

F = 3
SIZES = [2, COMPILED_MAX_BATCH + 4, FUSED_FROM_BATCH + 3]


def cell(kind: str, layers: int) -> torch.nn.Module:
    return getattr(streamrnn, kind)(F, 4, num_layers=layers, seed=0)


def key_sets(n: int):
    every = st.just(list(range(n)))
    run = st.integers(1, n).map(lambda k: list(range(k)))
    scattered = st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True)
    return st.lists(st.one_of(every, run, scattered), min_size=2, max_size=5)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("kind,layers", [("LSTM", 1), ("GRU", 1), ("RNN", 1), ("LSTM", 2)])
@settings(max_examples=8, deadline=None)
@given(data=st.data())
def test_bank_outputs_are_never_rewritten_by_later_pushes(n, kind, layers, data):
    bank = streamrnn.StreamBank(cell(kind, layers), max_streams=n)
    gen = torch.Generator().manual_seed(data.draw(st.integers(0, 2**16)))
    held = []
    for keys in [list(range(n)), *data.draw(key_sets(n))]:
        x = torch.randn(len(keys), 1, F, generator=gen)
        if data.draw(st.booleans()):
            y = bank.push_many(keys, x)
        else:
            y = bank.push(dict(zip(keys, x[:, 0], strict=True))).tensor
        held.append((y, y.clone()))
    for y, copy in held:
        assert torch.equal(y, copy)


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_stream_outputs_are_never_rewritten_by_later_pushes(kind):
    stream = streamrnn.Stream(cell(kind, 1))
    gen = torch.Generator().manual_seed(0)
    held = []
    for steps in (1, 1, 3, 1):
        y = stream.push(torch.randn(steps, F, generator=gen))
        held.append((y, y.clone()))
    for y, copy in held:
        assert torch.equal(y, copy)


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_lent_outputs_equal_the_kept_ones_at_each_call(kind):
    # push_many(_lend=True) (what a shard calls: Ray copies the result out at once) may
    # hand out memory its next call rewrites; at each call it equals a twin bank's
    # outputs, through growing and shrinking batches
    lender = streamrnn.StreamBank(cell(kind, 2), max_streams=64)
    twin = streamrnn.StreamBank(cell(kind, 2), max_streams=64)
    gen = torch.Generator().manual_seed(1)
    for n, steps in [(20, 1), (40, 1), (10, 1), (40, 2), (64, 1)]:
        keys = list(range(n))[::-1]
        x = torch.randn(n, steps, F, generator=gen)
        got = lender.push_many(keys, x, _lend=True)
        assert torch.equal(got, twin.push_many(keys, x))


@pytest.mark.parametrize("grad", [False, True], ids=["compiled", "torch"])
@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_a_push_of_no_keys_returns_no_rows_and_changes_nothing(kind, grad):
    bank = streamrnn.StreamBank(cell(kind, 2), grad=grad)
    bank.push({"a": torch.ones(F)})
    state, counts = bank.get_state("a").h.clone(), dict(bank.counts)
    for steps in (1, 2):
        y = bank.push_many([], torch.zeros(0, steps, F))
        assert y.shape == (0, steps, 4)
    assert len(bank.push({})) == 0
    assert torch.equal(bank.get_state("a").h, state) and bank.counts == counts
