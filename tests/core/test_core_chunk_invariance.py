"""Invariant 1, chunk invariance: any split of a sequence pushed through a Stream gives the
outputs (and final state) of one offline pass over the whole sequence.

float32 to 1e-5, float64 to 1e-10; all cells, 1 and 2 layers; chunks may be empty, one
step (T, F) = (1, F), one step as (F,), or longer than ``max_chunk``.
"""

from __future__ import annotations

import functools

import pytest
import torch
from _oracle import KINDS, make_model
from hypothesis import given, settings
from hypothesis import strategies as st

import streamrnn

FEATURES, HIDDEN = 3, 5
ATOL = {torch.float32: 1e-5, torch.float64: 1e-10}
CONFIGS = [(kind, layers) for kind in KINDS for layers in (1, 2)]


@functools.cache
def model_for(kind: str, layers: int, dtype: torch.dtype) -> streamrnn.RecurrentLayer:
    # Streams never change a model, so one model per configuration is shared.
    return make_model(kind, FEATURES, HIDDEN, layers, dtype=dtype, seed=layers)


def sequence(seed: int, steps: int, dtype: torch.dtype) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(steps, FEATURES, generator=gen, dtype=torch.float64).to(dtype)


def offline(model, x: torch.Tensor):
    with torch.no_grad():
        y, state = model(x.unsqueeze(0))
    return y[0], state


@st.composite
def splits(draw, steps: int, max_len: int = 8) -> list[tuple[int, bool]]:
    """Chunk lengths summing to ``steps`` (zeros allowed), each with an as-(F,) flag."""
    out, left = [], steps
    while left > 0 or (len(out) < 3 and draw(st.booleans())):
        if len(out) >= 40:
            length = left  # bound the number of pushes
        else:
            length = draw(st.integers(0, min(left, max_len)))
        flat = length == 1 and draw(st.booleans())
        out.append((length, flat))
        left -= length
    return out


def as_form(chunk: torch.Tensor, form: str):
    if form == "list" and chunk.numel() == 0:
        form = "numpy"  # a nested list cannot spell (0, F): [] reads as one step of F = 0
    if form == "numpy":
        return chunk.numpy().copy()
    if form == "list":
        return chunk.tolist()
    return chunk


def push_split(stream: streamrnn.Stream, x: torch.Tensor, split, forms) -> torch.Tensor:
    outs, start = [], 0
    for (length, flat), form in zip(split, forms, strict=True):
        chunk = x[start] if flat else x[start : start + length]
        y = stream.push(as_form(chunk, form))
        if flat:
            assert y.shape == (HIDDEN,), "a (F,) push must return (O,)"
            y = y.unsqueeze(0)
        else:
            assert y.shape == (length, HIDDEN)
        outs.append(y)
        start += length
    return torch.cat(outs) if outs else x.new_zeros(0, HIDDEN)


def assert_state_close(got: streamrnn.State, want: streamrnn.State, atol: float) -> None:
    torch.testing.assert_close(got.h, want.h, rtol=0, atol=atol)
    assert (got.c is None) == (want.c is None)
    if want.c is not None:
        torch.testing.assert_close(got.c, want.c, rtol=0, atol=atol)


@settings(max_examples=60, deadline=None, database=None)
@given(
    config=st.sampled_from(CONFIGS),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    seed=st.integers(0, 2**16),
    data=st.data(),
)
def test_any_split_equals_one_offline_pass(config, dtype, seed, data):
    kind, layers = config
    model = model_for(kind, layers, dtype)
    steps = data.draw(st.integers(0, 30), label="steps")
    split = data.draw(splits(steps), label="split")
    forms = data.draw(
        st.lists(
            st.sampled_from(["tensor", "numpy", "list"]), min_size=len(split), max_size=len(split)
        ),
        label="forms",
    )
    x = sequence(seed, steps, dtype)

    stream = streamrnn.Stream(model)
    got = push_split(stream, x, split, forms)
    want, want_state = offline(model, x)

    assert got.dtype == dtype
    torch.testing.assert_close(got, want, rtol=0, atol=ATOL[dtype])
    assert_state_close(stream.state, want_state, ATOL[dtype])
    assert stream.steps == steps


@settings(max_examples=30, deadline=None, database=None)
@given(
    config=st.sampled_from(CONFIGS),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    max_chunk=st.integers(1, 6),
    seed=st.integers(0, 2**16),
    data=st.data(),
)
def test_max_chunk_smaller_than_chunks_changes_nothing(config, dtype, max_chunk, seed, data):
    kind, layers = config
    model = model_for(kind, layers, dtype)
    steps = data.draw(st.integers(0, 30), label="steps")
    split = data.draw(splits(steps, max_len=20), label="split")
    x = sequence(seed, steps, dtype)

    sliced = streamrnn.Stream(model, max_chunk=max_chunk)
    got = push_split(sliced, x, split, ["tensor"] * len(split))
    want, want_state = offline(model, x)

    torch.testing.assert_close(got, want, rtol=0, atol=ATOL[dtype])
    assert_state_close(sliced.state, want_state, ATOL[dtype])
    assert sliced.steps == steps


@pytest.mark.parametrize("kind", KINDS)
def test_one_step_pushes_equal_one_offline_pass(kind):
    # The extreme split: every step alone as (F,), i.e. only the T == 1 fast path.
    model = model_for(kind, 2, torch.float64)
    x = sequence(7, 25, torch.float64)
    stream = streamrnn.Stream(model)
    got = torch.stack([stream.push(row) for row in x])
    want, want_state = offline(model, x)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
    assert_state_close(stream.state, want_state, 1e-10)


@pytest.mark.parametrize("kind", KINDS)
def test_empty_chunks_leave_state_bitwise_unchanged(kind):
    model = model_for(kind, 2, torch.float64)
    stream = streamrnn.Stream(model)
    stream.push(sequence(1, 4, torch.float64))
    before = stream.state.clone()
    y = stream.push(torch.zeros(0, FEATURES, dtype=torch.float64))
    assert y.shape == (0, HIDDEN)
    assert torch.equal(stream.state.h, before.h)
    assert stream.state.c is None or torch.equal(stream.state.c, before.c)
    assert stream.steps == 4


def test_reset_then_replay_equals_a_fresh_stream():
    model = model_for("LSTM", 2, torch.float64)
    x = sequence(3, 9, torch.float64)
    stream = streamrnn.Stream(model)
    stream.push(sequence(4, 6, torch.float64))
    stream.reset()
    assert stream.steps == 0
    got = stream.push(x)
    want, _ = offline(model, x)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)


def test_numpy_views_of_any_stride_are_accepted():
    model = model_for("GRU", 1, torch.float64)
    x = sequence(5, 6, torch.float64)
    reversed_view = x.numpy()[::-1]  # a valid float64 (T, F) array, negative stride
    got = streamrnn.Stream(model).push(reversed_view)
    want, _ = offline(model, x.flip(0))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)


class _Doubled(streamrnn.GRU):
    """A user subclass that changes forward (outputs times 2): a model of the protocol."""

    def forward(self, x, state=None):
        y, state = super().forward(x, state)
        return 2 * y, state


def test_one_step_pushes_go_through_an_overridden_forward():
    model = _Doubled(FEATURES, HIDDEN, seed=0, dtype=torch.float64)
    x = sequence(2, 5, torch.float64)
    stream = streamrnn.Stream(model)
    got = torch.stack([stream.push(row) for row in x])
    want, _ = offline(model, x)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)


@settings(max_examples=40, deadline=None, database=None)
@given(
    config=st.sampled_from(CONFIGS),
    seed=st.integers(0, 2**16),
    ops=st.lists(st.sampled_from(["step", "step", "step", "chunk", "read", "set", "reset"]),
                 max_size=30),
)
def test_reading_or_setting_the_state_between_steps_changes_nothing(config, seed, ops):
    # A single layer's one-step pushes carry the state as bare tensors and make the State
    # only when asked (Stream._state): every read must see the live state, and a set or
    # reset in between must take effect.
    kind, layers = config
    model = model_for(kind, layers, torch.float64)
    x = sequence(seed, 2 * len(ops) + 1, torch.float64)
    stream, pos, start, steps = streamrnn.Stream(model), 0, 0, 0
    for op in ops:
        if op == "step":
            got = stream.push(x[pos])
            want = offline(model, x[start : pos + 1])[0][-1]
            torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
            pos, steps = pos + 1, steps + 1
        elif op == "chunk":
            got = stream.push(x[pos : pos + 2])
            torch.testing.assert_close(got, offline(model, x[start : pos + 2])[0][-2:],
                                       rtol=0, atol=1e-10)
            pos, steps = pos + 2, steps + 2
        elif op == "read" and pos > start:
            assert_state_close(stream.state, offline(model, x[start:pos])[1], 1e-10)
        elif op == "set":  # the initial state, set from outside: the next step starts there
            stream.state = model.initial_state(1, dtype=torch.float64)
            start = pos
        elif op == "reset":
            stream.reset()
            start, steps = pos, 0
    assert stream.steps == steps


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("form", ["(F,)", "(1, F)", "(1, F) grad"])
def test_changing_an_output_in_place_leaves_the_state_alone(kind, layers, form):
    # One step of a bare layer outputs its new top-layer state; the stream must hand out
    # a copy, or a caller's in-place change (a sigmoid_, a clamp_) would rewrite it.
    model = model_for(kind, layers, torch.float64)
    x = sequence(3, 6, torch.float64)
    grad = form.endswith("grad")
    touched, clean = (streamrnn.Stream(model, grad=grad) for _ in range(2))
    for t in range(len(x)):
        chunk = x[t] if form == "(F,)" else x[t : t + 1]
        got, want = touched.push(chunk), clean.push(chunk)
        torch.testing.assert_close(got, want, rtol=0, atol=0)
        with torch.inference_mode(), torch.no_grad():  # outputs may be inference tensors
            got.mul_(100.0)
    assert_state_close(touched.state, clean.state, 0.0)
