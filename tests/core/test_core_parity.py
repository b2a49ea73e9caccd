"""Invariant 3, parity: with weights copied, the cells equal torch.nn.LSTM / GRU / RNN and
a plain NumPy loop of the textbook equations (tests/_oracle.py), float64 to 1e-10; the
one-step fast path (torch._VF cell kernels) equals the fused path; ``seed=`` draws the
same weights for the same seed, other weights for another, from a local generator.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _oracle import KINDS, copy_weights, make_model, reference_forward, torch_module, weights_of

import streamrnn

ATOL = 1e-10
F_IN, HIDDEN, BATCH = 4, 6, 3


def randn(*shape, seed: int, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def copied_pair(kind: str, layers: int, bias: bool, seed: int, dtype=torch.float64):
    """A torch.nn module (its own random init) and our layer with its weights copied in."""
    gen_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        ref = torch_module(kind, F_IN, HIDDEN, layers, bias=bias, dtype=dtype)
    finally:
        torch.random.set_rng_state(gen_state)
    ours = make_model(kind, F_IN, HIDDEN, layers, bias=bias, dtype=dtype, seed=0)
    copy_weights(ref, ours.rnn)
    return ref, ours


def entering_state(kind: str, layers: int, seed: int):
    h0 = randn(layers, BATCH, HIDDEN, seed=seed) * 0.5
    c0 = randn(layers, BATCH, HIDDEN, seed=seed + 1) * 0.5 if kind == "LSTM" else None
    return h0, c0


def run_torch(ref, kind, x, h0, c0):
    with torch.no_grad():
        y, hn = ref(x, (h0, c0) if kind == "LSTM" else h0)
    return (y, hn[0], hn[1]) if kind == "LSTM" else (y, hn, None)


def assert_np_close(got: torch.Tensor, want: np.ndarray) -> None:
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=0, atol=ATOL)


def test_oracle_is_the_textbook_lstm_on_a_hand_checked_case():
    # Guard the guard: one LSTM step by hand. With W = 0 every gate is sigmoid(b) or
    # tanh(b): i = f = o = sigmoid(1), g = tanh(1), c' = f c + i g, h' = o tanh(c').
    hidden = 1
    w = {
        "w_ih": np.zeros((4 * hidden, 1)),
        "w_hh": np.zeros((4 * hidden, hidden)),
        "b_ih": np.ones(4 * hidden),
        "b_hh": np.zeros(4 * hidden),
    }
    s = 1 / (1 + np.exp(-1.0))
    y, h, c = reference_forward("LSTM", [w], np.zeros((1, 1, 1)), c0=np.full((1, 1, 1), 2.0))
    c_want = s * 2.0 + s * np.tanh(1.0)
    assert np.isclose(c[0, 0, 0], c_want) and np.isclose(h[0, 0, 0], s * np.tanh(c_want))
    assert np.isclose(y[0, 0, 0], h[0, 0, 0])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("steps", [1, 2, 9])
def test_cells_match_torch_nn_and_the_reference_loop(kind, layers, bias, steps):
    ref, ours = copied_pair(kind, layers, bias, seed=layers * 10 + steps)
    x = randn(BATCH, steps, F_IN, seed=steps)
    h0, c0 = entering_state(kind, layers, seed=layers)

    with torch.no_grad():
        y, state = ours(x, streamrnn.State(h0, c0))
    y_t, h_t, c_t = run_torch(ref, kind, x, h0, c0)
    y_r, h_r, c_r = reference_forward(
        kind, weights_of(ref), x.numpy(), h0.numpy(), None if c0 is None else c0.numpy()
    )

    assert y.shape == (BATCH, steps, HIDDEN) and y.dtype == torch.float64
    assert state.h.shape == (layers, BATCH, HIDDEN)
    # vs torch.nn
    torch.testing.assert_close(y, y_t, rtol=0, atol=ATOL)
    torch.testing.assert_close(state.h, h_t, rtol=0, atol=ATOL)
    # vs the equations
    assert_np_close(y, y_r)
    assert_np_close(state.h, h_r)
    if kind == "LSTM":
        torch.testing.assert_close(state.c, c_t, rtol=0, atol=ATOL)
        assert_np_close(state.c, c_r)
    else:
        assert state.c is None, "RNN and GRU states carry c = None"


@pytest.mark.parametrize("kind", KINDS)
def test_zero_state_default_matches_reference(kind):
    ref, ours = copied_pair(kind, 2, True, seed=5)
    x = randn(BATCH, 4, F_IN, seed=6)
    with torch.no_grad():
        y, _ = ours(x)
    y_r, _, _ = reference_forward(kind, weights_of(ref), x.numpy())
    assert_np_close(y, y_r)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize(
    ("dtype", "atol"), [(torch.float64, 1e-12), (torch.float32, 1e-6)], ids=["f64", "f32"]
)
def test_one_step_fast_path_equals_fused_path(kind, layers, dtype, atol):
    # T == 1 goes through torch._VF.*_cell; the wrapped fused module is the other path.
    model = make_model(kind, F_IN, HIDDEN, layers, dtype=dtype, seed=3)
    x = randn(BATCH, 1, F_IN, seed=1, dtype=dtype)
    h0, c0 = entering_state(kind, layers, seed=2)
    h0, c0 = h0.to(dtype), None if c0 is None else c0.to(dtype)
    with torch.no_grad():
        y_fast, s_fast = model(x, streamrnn.State(h0, c0))
        y_fused, hn = model.rnn(x, (h0, c0) if kind == "LSTM" else h0)
    torch.testing.assert_close(y_fast, y_fused, rtol=0, atol=atol)
    torch.testing.assert_close(s_fast.h, hn[0] if kind == "LSTM" else hn, rtol=0, atol=atol)
    if kind == "LSTM":
        torch.testing.assert_close(s_fast.c, hn[1], rtol=0, atol=atol)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bias", [True, False])
def test_stepping_one_at_a_time_equals_one_fused_chunk(kind, bias):
    model = make_model(kind, F_IN, HIDDEN, 2, bias=bias, dtype=torch.float64, seed=4)
    x = randn(BATCH, 12, F_IN, seed=8)
    with torch.no_grad():
        y_fused, s_fused = model(x)
        state, ys = None, []
        for t in range(x.shape[1]):
            y, state = model(x[:, t : t + 1], state)
            ys.append(y)
    torch.testing.assert_close(torch.cat(ys, 1), y_fused, rtol=0, atol=ATOL)
    torch.testing.assert_close(state.h, s_fused.h, rtol=0, atol=ATOL)


@pytest.mark.parametrize("kind", KINDS)
def test_empty_chunk_returns_no_steps_and_the_entering_state(kind):
    model = make_model(kind, F_IN, HIDDEN, 2, dtype=torch.float64, seed=1)
    h0, c0 = entering_state(kind, 2, seed=3)
    y, state = model(torch.zeros(BATCH, 0, F_IN, dtype=torch.float64), streamrnn.State(h0, c0))
    assert y.shape == (BATCH, 0, HIDDEN)
    assert torch.equal(state.h, h0) and (c0 is None or torch.equal(state.c, c0))


def test_rnn_nonlinearities_differ():
    # relu and tanh with the same weights give different outputs: the flag is honoured.
    x = randn(1, 6, F_IN, seed=0)
    tanh = make_model("RNN_TANH", F_IN, HIDDEN, dtype=torch.float64, seed=1)
    relu = make_model("RNN_RELU", F_IN, HIDDEN, dtype=torch.float64, seed=1)
    with torch.no_grad():
        y_tanh, _ = tanh(x)
        y_relu, _ = relu(x)
    assert (y_relu >= 0).all() and (y_tanh < 0).any()
    assert relu.nonlinearity == "relu" and tanh.nonlinearity == "tanh"


# -- seeds ---------------------------------------------------------------------------------
def params(model) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_same_seed_same_weights_other_seed_other_weights(kind, dtype):
    a = params(make_model(kind, F_IN, HIDDEN, 2, dtype=dtype, seed=123))
    b = params(make_model(kind, F_IN, HIDDEN, 2, dtype=dtype, seed=123))
    c = params(make_model(kind, F_IN, HIDDEN, 2, dtype=dtype, seed=124))
    assert len(a) == len(b) == len(c) == 8
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    assert all(not torch.equal(p, q) for p, q in zip(a, c, strict=True))
    bound = 1 / HIDDEN**0.5  # torch's init, U(-1/sqrt(H), 1/sqrt(H))
    assert all(p.abs().max() <= bound for p in a)


def test_seeded_weights_do_not_depend_on_the_global_rng():
    torch.manual_seed(1)
    a = params(make_model("LSTM", F_IN, HIDDEN, seed=9))
    torch.manual_seed(2)
    b = params(make_model("LSTM", F_IN, HIDDEN, seed=9))
    assert all(torch.equal(p, q) for p, q in zip(a, b, strict=True))


def test_reset_parameters_with_seed_redraws_the_seeded_weights():
    model = make_model("GRU", F_IN, HIDDEN, seed=5)
    first = params(model)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    model.reset_parameters(5)
    assert all(torch.equal(p, q) for p, q in zip(first, params(model), strict=True))


@pytest.mark.parametrize("kind", KINDS)
def test_seed_leaves_the_global_rng_untouched(kind):
    before = torch.random.get_rng_state()
    make_model(kind, F_IN, HIDDEN, 2, seed=7)
    assert torch.equal(torch.random.get_rng_state(), before)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("steps", [2, 7])  # one step takes the cell kernel (to rounding)
def test_time_first_path_is_bitwise_torch_nn_in_values_and_gradients(kind, layers, steps):
    # forward_time_first skips nn's checks and the batch-first transposes; the kernel and
    # its numbers must be those of torch.nn (batch first) exactly, backward included.
    ref, ours = copied_pair(kind, layers, True, seed=layers + steps, dtype=torch.float32)
    ref.batch_first = True
    x = randn(BATCH, steps, F_IN, seed=steps, dtype=torch.float32)
    h0, c0 = (t if t is None else t.float() for t in entering_state(kind, layers, seed=3))
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    y_t, hn = ref(xa, (h0, c0) if kind == "LSTM" else h0)
    y, state = ours.forward_time_first(xb.transpose(0, 1), streamrnn.State(h0, c0))
    y = y.transpose(0, 1)
    assert torch.equal(y, y_t)
    assert torch.equal(state.h, hn[0] if kind == "LSTM" else hn)
    g = randn(*y.shape, seed=9, dtype=torch.float32)
    (y_t * g).sum().backward()
    (y * g).sum().backward()
    assert torch.equal(xa.grad, xb.grad)
    for a, b in zip(ref.parameters(), ours.rnn.parameters(), strict=True):
        assert torch.equal(a.grad, b.grad)


@pytest.mark.parametrize("tokens", [False, True])
def test_model_time_first_path_equals_the_batch_first_composition(tokens):
    cell = streamrnn.LSTM(5, 8, num_layers=2, seed=0)
    model = streamrnn.RecurrentModel(cell, streamrnn.Readout(8, 3, seed=1),
                                     num_tokens=11 if tokens else None, seed=2)
    x = (torch.randint(0, 11, (4, 6), generator=torch.Generator().manual_seed(0)) if tokens
         else randn(4, 6, 5, seed=0, dtype=torch.float32))
    y, state = model(x)
    h, want_state = cell(model.embed(x))
    assert torch.equal(y, model.head(h))
    assert torch.equal(state.h, want_state.h) and torch.equal(state.c, want_state.c)
    # a bad input is reported in the caller's (batch-first) layout
    with pytest.raises(ValueError, match=r"\(4, 6" if tokens else r"got \(4, 6, 2\)"):
        model(x.float()) if tokens else model(x[..., :2])
