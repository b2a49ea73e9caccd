"""MinGRU / MinLSTM are exact: parity with the paper's equations, and chunked == whole ==
step (the invariant minGRU-pytorch #9 broke), values and gradients.

- the cells equal a plain NumPy loop of the paper's sequential equations (float64, 1e-12),
  from non-zero entering states of both signs, and the paper's own log-space parallel
  form where that is defined (a positive entering state);
- under hypothesis: any split of a chunk (empty and one-step pieces), from a non-zero
  entering state with negative values and inputs of both signs, gives the outputs and
  state of one pass and of the step-by-step recurrence: 1e-10 in float64, 1e-5 in float32
  (chunks up to 600 steps: the paper's float32 log-space scan is already 1e-4 off at 256);
- both ways of running a chunk (the odd/even scan, and the steps one after another inside
  the same autograd node, picked by size) are checked;
- gradients of a loss over a scanned chunk (weights and entering state) equal autograd
  through the step-by-step recurrence (float64, 1e-10).
"""

from __future__ import annotations

import contextlib
import copy
from unittest import mock

import numpy as np
import pytest
import torch
from _min_oracle import paper_parallel_mingru, reference
from hypothesis import given, settings
from hypothesis import strategies as st

import streamrnn
from streamrnn.cells import _scan

CELLS = {"mingru": streamrnn.MinGRU, "minlstm": streamrnn.MinLSTM}
FAST = settings(max_examples=30, deadline=None)
TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


def make(kind: str, features=3, hidden=6, layers=2, dtype=torch.float64, seed=0):
    return CELLS[kind](features, hidden, layers, seed=seed, dtype=dtype)


def draw(seed: int, *shape, dtype=torch.float64, scale=2.0) -> torch.Tensor:
    return scale * torch.randn(*shape, generator=torch.Generator().manual_seed(seed),
                               dtype=dtype)


@pytest.mark.parametrize("kind", CELLS)
@pytest.mark.parametrize("layers,bias", [(1, True), (3, True), (2, False)])
def test_the_cells_equal_the_papers_sequential_equations(kind, layers, bias):
    cell = CELLS[kind](4, 5, layers, bias=bias, seed=3, dtype=torch.float64)
    x, h0 = draw(1, 3, 40, 4), draw(2, layers, 3, 5)  # h0 of both signs
    with torch.no_grad():
        y, state = cell(x, streamrnn.State(h=h0))
    want_y, want_h = reference(kind, cell, x, h0)
    np.testing.assert_allclose(y.numpy(), want_y, rtol=0, atol=1e-12)
    np.testing.assert_allclose(state.h.numpy(), want_h, rtol=0, atol=1e-12)


def test_mingru_equals_the_papers_log_space_parallel_form_from_a_positive_state():
    cell = make("mingru", 4, 5, 1)
    x, h0 = draw(4, 2, 64, 4), draw(5, 2, 5).abs() + 0.1
    with torch.no_grad():
        y, _ = cell(x, streamrnn.State(h=h0[None]))
    torch.testing.assert_close(y, paper_parallel_mingru(cell, x, h0), rtol=0, atol=1e-10)


@st.composite
def splits(draw_, steps_max: int):
    steps = draw_(st.integers(0, steps_max))
    cuts = sorted(draw_(st.lists(st.integers(0, steps), max_size=6)))
    return steps, [0, *cuts, steps]


@contextlib.contextmanager
def path(name: str):
    """Force the scan's method: "scan" (odd/even) or "steps" (one after another)."""
    with mock.patch.object(_scan, "SCAN_BELOW", 1 << 30 if name == "scan" else 0):
        yield


@pytest.mark.parametrize("method", ["scan", "steps"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("kind", CELLS)
@FAST
@given(split=splits(600), layers=st.integers(1, 3), seed=st.integers(0, 2**16),
       scale=st.sampled_from([0.5, 3.0]))
def test_chunked_equals_whole_equals_step(kind, dtype, method, split, layers, seed, scale):
    with path(method):
        check_chunked_whole_step(kind, dtype, split, layers, seed, scale)


def check_chunked_whole_step(kind, dtype, split, layers, seed, scale):
    steps, bounds = split
    cell = make(kind, layers=layers, dtype=dtype, seed=seed % 7)
    x = draw(seed, 2, steps, 3, dtype=dtype, scale=scale)
    h0 = streamrnn.State(h=draw(seed + 1, layers, 2, 6, dtype=dtype))  # negative values too
    assert bool((h0.h < 0).any())
    tol = TOL[dtype]
    with torch.no_grad():
        whole, end = cell(x, h0)
        state, parts = h0, []
        for a, b in zip(bounds, bounds[1:], strict=False):
            y, state = cell(x[:, a:b], state)
            parts.append(y)
        torch.testing.assert_close(torch.cat(parts, 1), whole, rtol=0, atol=tol)
        torch.testing.assert_close(state.h, end.h, rtol=0, atol=tol)
        state, outs = h0, []
        for t in range(steps):
            y, state = cell.step(x[:, t], state)
            outs.append(y)
    if steps:
        torch.testing.assert_close(torch.stack(outs, 1), whole, rtol=0, atol=tol)
    torch.testing.assert_close(state.h, end.h, rtol=0, atol=tol)


@pytest.mark.parametrize("method", ["scan", "steps"])
@pytest.mark.parametrize("kind", CELLS)
@pytest.mark.parametrize("steps", [1, 2, 7, 33])
def test_gradients_of_the_scan_equal_autograd_through_the_steps(kind, steps, method):
    cell = make(kind, layers=2)
    x = draw(7, 3, steps, 3)
    h0 = draw(8, 2, 3, 6).requires_grad_(True)
    weight = draw(9, 3, steps, 6)  # a loss that weighs every output and the state

    def loss(run):
        y, state = run()
        return (y * weight).sum() + (state.h ** 2).sum()

    def stepwise():
        state, ys = streamrnn.State(h=h0), []
        for t in range(steps):
            y, state = cell.step(x[:, t], state)
            ys.append(y)
        return torch.stack(ys, 1), state

    params = [*cell.parameters(), h0]
    with path(method):
        got = torch.autograd.grad(loss(lambda: cell(x, streamrnn.State(h=h0))), params)
    want = torch.autograd.grad(loss(stepwise), params)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind", CELLS)
def test_float32_chunks_stay_close_to_float64_over_long_chunks(kind):
    """4,096 steps in one scan: float32 stays within 1e-5 of the float64 recurrence
    (the same weights and inputs, rounded to float32 first)."""
    cell32 = make(kind, layers=1, dtype=torch.float32)
    cell64 = copy.deepcopy(cell32).double()
    x, h0 = draw(11, 2, 4096, 3, dtype=torch.float32), draw(12, 1, 2, 6, dtype=torch.float32)
    with torch.no_grad():
        y64, _ = cell64(x.double(), streamrnn.State(h=h0.double()))
        y32, _ = cell32(x, streamrnn.State(h=h0))
    torch.testing.assert_close(y32.double(), y64, rtol=0, atol=1e-5)
