"""A user's own cell (two state parts, not registered) works in Stream and StreamBank.

The cell (tests/_user_cell.py) keeps ``h`` ``(L, B, H)`` and ``m`` ``(L, B, 2)``. The
chunk-invariance and batch-invariance properties of the built-in cells are run on it,
with the bank's eviction, reset and save / load; every part of every state is compared.
"""

from __future__ import annotations

import pytest
import torch
from _user_cell import MemoryCell
from hypothesis import given, settings
from hypothesis import strategies as st

import streamrnn

F, H = 3, 5
ATOL = 1e-10
FAST = settings(max_examples=25, deadline=None)


def cell(layers: int = 2) -> MemoryCell:
    return MemoryCell(F, H, layers, seed=layers)


def signal(seed: int, steps: int) -> torch.Tensor:
    return torch.randn(steps, F, generator=torch.Generator().manual_seed(seed),
                       dtype=torch.float64)


def assert_states_close(a: streamrnn.State, b: streamrnn.State) -> None:
    assert a.parts == b.parts == ("h", "m")
    for part in a.parts:
        torch.testing.assert_close(a[part], b[part], rtol=0, atol=ATOL)


def offline(model, x: torch.Tensor):
    with torch.no_grad():
        y, state = model(x.unsqueeze(0))
    return y[0], state


def chunked(steps: int):
    # Split points of ``steps`` steps: empty and one-step chunks included.
    return st.lists(st.integers(0, steps), max_size=8).map(lambda cuts: sorted(cuts))


@pytest.mark.parametrize("layers", [1, 2])
@FAST
@given(cuts=chunked(23), seed=st.integers(0, 2**16))
def test_stream_of_a_user_cell_equals_one_offline_pass(layers, cuts, seed):
    model = cell(layers)
    x = signal(seed, 23)
    stream = streamrnn.Stream(model)
    bounds = [0, *cuts, 23]
    y = torch.cat([stream.push(x[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)])
    want, state = offline(model, x)
    torch.testing.assert_close(y, want, rtol=0, atol=ATOL)
    assert_states_close(stream.state, state)


def test_one_step_pushes_and_a_readout_model():
    model = streamrnn.RecurrentModel(cell(2), streamrnn.Readout(H, 2, seed=1, dtype=torch.float64))
    x = signal(3, 9)
    stream = streamrnn.Stream(model)
    y = torch.stack([stream.push(x[t]) for t in range(9)])
    want, state = offline(model, x)
    torch.testing.assert_close(y, want, rtol=0, atol=ATOL)
    assert_states_close(stream.state, state)
    with torch.no_grad():
        last = model.readout(stream.state)[0]
    torch.testing.assert_close(last, y[-1], rtol=0, atol=ATOL)


def test_stream_state_setter_takes_and_checks_the_users_parts():
    model = cell(1)
    stream = streamrnn.Stream(model)
    stream.push(signal(0, 4))
    good = stream.state.clone()
    stream.state = good
    with pytest.raises(ValueError, match=r"state\.m is missing"):
        stream.state = streamrnn.State(h=good.h)
    with pytest.raises(ValueError, match=r"state\.m must be"):
        stream.state = streamrnn.State(h=good.h, m=torch.zeros(1, 1, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="non-finite"):
        stream.state = streamrnn.State(h=good.h, m=torch.full_like(good.m, float("nan")))
    assert_states_close(stream.state, good)


@st.composite
def interleavings(draw):
    # Pushes of chunks for streams 0..3, in random order and sizes; every step once.
    left, pos, pushes = [11, 7, 9, 4], [0, 0, 0, 0], []
    while any(left) and len(pushes) < 12:
        who = draw(st.lists(st.sampled_from(range(4)), min_size=1, max_size=4, unique=True))
        push = []
        for i in who:
            n = draw(st.integers(0, min(left[i], 4)))
            push.append((i, pos[i], n))
            pos[i] += n
            left[i] -= n
        pushes.append(push)
    pushes.append([(i, pos[i], left[i]) for i in range(4) if left[i]])  # the rest, at once
    return pushes


@FAST
@given(pushes=interleavings(), save_at=st.integers(0, 30))
def test_bank_of_a_user_cell_gives_each_stream_what_it_gets_alone(tmp_path_factory, pushes,
                                                                  save_at):
    model = cell(2)
    xs = [signal(10 + i, n) for i, n in enumerate([11, 7, 9, 4])]
    keys = ["a", ("b", 2), 7, ("c", ("d",))]
    bank = streamrnn.StreamBank(model, max_streams=8)
    got = {i: [] for i in range(4)}
    path = tmp_path_factory.mktemp("bank") / "bank.safetensors"
    for n, push in enumerate(pushes):
        if n == save_at:  # save, load into a new bank, go on there
            bank.save(path)
            bank = streamrnn.StreamBank(model, max_streams=8)
            bank.load(path)
        out = bank.push({keys[i]: xs[i][a:a + k] for i, a, k in push})
        for i, _, _ in push:
            got[i].append(out[keys[i]])
    for i in range(4):
        if not got[i]:
            continue
        want, state = offline(model, xs[i])
        torch.testing.assert_close(torch.cat(got[i]), want, rtol=0, atol=ATOL)
        assert_states_close(bank.get_state(keys[i]), state)


def test_bank_eviction_reset_and_drop_restart_a_user_cells_stream_from_zero():
    model = cell(1)
    x = signal(5, 6)
    bank = streamrnn.StreamBank(model, max_streams=2)
    bank.push({"a": x[:3], "b": x[:2]})
    bank.push({"c": x[:1]})  # the limit: "a" (least recently used) is evicted
    assert "a" not in bank and bank.counts["evicted"] == 1
    fresh, _ = offline(model, x)
    torch.testing.assert_close(bank.push({"a": x})["a"], fresh, rtol=0, atol=ATOL)
    bank.reset("a")
    assert_states_close(bank.get_state("a"), model.initial_state(1))
    bank.drop("a")
    assert "a" not in bank and len(bank) == 1


def test_a_bank_file_of_a_user_cell_records_its_parts_and_refuses_another_cell(tmp_path):
    bank = streamrnn.StreamBank(cell(1))
    bank.push({"a": signal(0, 3)})
    bank.save(tmp_path / "b.safetensors")
    config = bank.state_dict()["config"]
    assert config["state"] == {"num_layers": 1, "parts": {"h": [H], "m": [2]}}
    other = streamrnn.StreamBank(cell(2))
    with pytest.raises(ValueError, match="num_layers"):
        other.load(tmp_path / "b.safetensors")
    assert len(other) == 0
