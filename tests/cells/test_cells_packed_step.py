"""The packed one-step path of the LSTM (many streams, no autograd) against the textbook
equations (tests/_oracle.py, float64 to 1e-12) and the cell kernel it replaces (float32
to 1e-6), with and without bias, 1 and 2 layers; a weight changed in place, replaced or
cast between two steps is used at the next one; with autograd on, or below
``PACKED_FROM_BATCH`` streams, the cell kernel runs as before (bitwise).
"""

from __future__ import annotations

import pytest
import torch
from _oracle import reference_forward, weights_of
from hypothesis import given, settings
from hypothesis import strategies as st

import streamrnn
from streamrnn.cells._kernels import PACKED_FROM_BATCH, one_step, packs

F, H = 5, 7


def entering(layers: int, batch: int, seed: int, dtype) -> streamrnn.State:
    gen = torch.Generator().manual_seed(seed)
    return streamrnn.State(torch.randn(layers, batch, H, generator=gen, dtype=dtype),
                           torch.randn(layers, batch, H, generator=gen, dtype=dtype))


def oracle(model, x, state):
    y, h, c = reference_forward("LSTM", weights_of(model.rnn), x.double().numpy(),
                                state.h.double().numpy(), state.c.double().numpy())
    return torch.from_numpy(y), torch.from_numpy(h), torch.from_numpy(c)


@settings(max_examples=25, deadline=None)
@given(layers=st.integers(1, 2), bias=st.booleans(), seed=st.integers(0, 2**16),
       batch=st.integers(PACKED_FROM_BATCH, 3 * PACKED_FROM_BATCH))
def test_packed_step_is_the_lstm_equations(layers, bias, seed, batch):
    model = streamrnn.LSTM(F, H, num_layers=layers, bias=bias, seed=seed).double()
    x = torch.randn(batch, 1, F, generator=torch.Generator().manual_seed(seed),
                    dtype=torch.float64)
    state = entering(layers, batch, seed + 1, torch.float64)
    with torch.no_grad():
        assert packs(model, batch)
        y, new = model(x, state)
    y_r, h_r, c_r = oracle(model, x, state)
    for got, want in ((y, y_r), (new.h, h_r), (new.c, c_r)):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("layers", [1, 2])
def test_packed_step_agrees_with_the_cell_kernel_in_float32(layers):
    model = streamrnn.LSTM(F, H, num_layers=layers, seed=0)
    batch = 2 * PACKED_FROM_BATCH
    x = torch.randn(batch, F, generator=torch.Generator().manual_seed(1))
    state = entering(layers, batch, 2, torch.float32)
    with torch.no_grad():
        y, new = model(x[:, None], state)
        y_cell, new_cell = one_step(model, x, state)
    torch.testing.assert_close(y[:, 0], y_cell, rtol=0, atol=1e-6)
    torch.testing.assert_close(new.c, new_cell.c, rtol=0, atol=1e-6)


def test_changed_weights_are_used_at_the_next_step():
    model = streamrnn.LSTM(F, H, num_layers=2, seed=0).double()
    batch = PACKED_FROM_BATCH
    x = torch.randn(batch, 1, F, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    state = entering(2, batch, 2, torch.float64)

    def check():
        with torch.no_grad():
            y, _ = model(x, state)
        torch.testing.assert_close(y, oracle(model, x, state)[0], rtol=0, atol=1e-12)

    check()
    with torch.no_grad():
        model.rnn.weight_hh_l1.mul_(-0.5)  # in place (an optimizer step)
    check()
    model.load_state_dict(streamrnn.LSTM(F, H, num_layers=2, seed=9).double().state_dict())
    check()
    model.rnn.bias_ih_l0 = torch.nn.Parameter(torch.ones(4 * H, dtype=torch.float64))  # replaced
    check()
    model.float().double()  # cast away and back: new memory
    check()


def test_autograd_and_small_batches_keep_the_cell_kernel():
    model = streamrnn.LSTM(F, H, seed=0)
    for batch, grad in ((PACKED_FROM_BATCH - 1, False), (PACKED_FROM_BATCH, True)):
        x = torch.randn(batch, F, generator=torch.Generator().manual_seed(batch))
        state = entering(1, batch, 3, torch.float32)
        with torch.set_grad_enabled(grad):
            assert not packs(model, batch)
            y, new = model(x[:, None], state)
            y_cell, new_cell = one_step(model, x, state)
        assert torch.equal(y[:, 0], y_cell) and torch.equal(new.c, new_cell.c)
    assert y.requires_grad  # the last run kept its graph


def test_only_the_lstm_packs():
    batch = PACKED_FROM_BATCH
    with torch.no_grad():
        assert not packs(streamrnn.GRU(F, H, seed=0), batch)
        assert not packs(streamrnn.RNN(F, H, seed=0), batch)
        dropout = streamrnn.LSTM(F, H, num_layers=2, dropout=0.5, seed=0).train()
        assert not packs(dropout, batch) and packs(dropout.eval(), batch)


def test_inference_mode_and_no_grad_take_turns_on_one_layer():
    # the kept buffers and packed weights made under one mode serve the other
    model = streamrnn.LSTM(F, H, seed=0)
    x = torch.randn(PACKED_FROM_BATCH, 1, F, generator=torch.Generator().manual_seed(4))
    outs = []
    for mode in (torch.inference_mode, torch.no_grad, torch.inference_mode, torch.no_grad):
        with mode():
            outs.append(model(x)[0].clone())
    assert all(torch.equal(y, outs[0]) for y in outs)


def test_threads_stepping_one_layer_at_once_each_get_their_own_results():
    # forward may run in several threads at once (the Threads rule of the cells): the
    # kept buffers are per thread
    import sys
    import threading

    model = streamrnn.LSTM(F, H, num_layers=2, seed=0)
    gen = torch.Generator().manual_seed(5)
    xs = [torch.randn(12, PACKED_FROM_BATCH, 1, F, generator=gen) for _ in range(4)]

    def run(x, out):
        state = model.initial_state(PACKED_FROM_BATCH)
        with torch.no_grad():
            for t in range(x.shape[0]):
                y, state = model(x[t], state)
                out.append(y.clone())

    serial = [[] for _ in xs]
    for x, out in zip(xs, serial, strict=True):
        run(x, out)
    together = [[] for _ in xs]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=run, args=a) for a in zip(xs, together, strict=True)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    finally:
        sys.setswitchinterval(interval)
    for a, b in zip(serial, together, strict=True):
        assert len(a) == len(b) and all(map(torch.equal, a, b))
