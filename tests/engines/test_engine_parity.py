"""Invariant 3, parity, for every engine: each equals the torch reference (the model's own
forward) to 1e-5 in float32 and 1e-10 in float64, for every built-in cell, dtype, depth,
batch and chunking (hypothesis over splits with empty and one-step chunks), with and
without a head and an embedding; the built-in cells equal torch.nn modules and a plain
NumPy loop of their equations (tests/_oracle.py). Stream and StreamBank give the same
results whichever engine their rules pick.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _oracle import KINDS, make_model, reference_forward, torch_module, weights_of
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import streamrnn
from streamrnn.engines import CompiledEngine, TorchEngine
from streamrnn.engines.compiled import WORK_STEPS

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
SETTINGS = settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ENGINES = {"torch": TorchEngine, "compiled": CompiledEngine.for_model}
F_IN, HIDDEN = 4, 6

chunkings = st.lists(st.integers(0, 4), min_size=1, max_size=5)


def _engine(name, model):
    engine = ENGINES[name](model)
    assert engine is not None, f"the {name} engine declined {model}"
    return engine


def _state(model, batch, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    init = model.initial_state(batch, dtype=dtype)
    return init.map(lambda t: 0.5 * torch.randn(t.shape, generator=gen, dtype=dtype))


def _chunked(engine, x, state, cuts):
    ys, start = [], 0
    for n in [*cuts, x.shape[1]]:  # the last slice takes the rest
        y, state = engine.run(x[:, start : start + n], state)
        ys.append(y)
        start += n
        if start >= x.shape[1]:
            break
    return torch.cat(ys, 1), state


def _close(got, want, dtype):
    torch.testing.assert_close(got, want, rtol=0, atol=TOL[dtype])


@SETTINGS
@given(cuts=chunkings, seed=st.integers(0, 1000))
@pytest.mark.parametrize("engine", sorted(ENGINES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("kind", KINDS)
def test_every_engine_equals_the_reference_in_any_chunking(kind, batch, layers, dtype, engine,
                                                           cuts, seed):
    model = make_model(kind, F_IN, HIDDEN, layers, dtype=dtype, seed=seed)
    steps = sum(cuts) + 2
    x = torch.randn(batch, steps, F_IN, generator=torch.Generator().manual_seed(seed),
                    dtype=dtype)
    s0 = _state(model, batch, dtype, seed + 1)
    with torch.no_grad():
        want_y, want_s = model(x, s0)
    got_y, got_s = _chunked(_engine(engine, model), x, s0, cuts)
    _close(got_y, want_y, dtype)
    for part in want_s.parts:
        _close(got_s[part], want_s[part], dtype)
    if dtype == torch.float64:  # and the textbook equations (tests/_oracle.py)
        y_r, h_r, c_r = reference_forward(
            kind, weights_of(model.rnn), x.numpy(), s0.h.numpy(),
            None if s0.c is None else s0.c.numpy())
        np.testing.assert_allclose(got_y.numpy(), y_r, rtol=0, atol=1e-10)
        np.testing.assert_allclose(got_s.h.numpy(), h_r, rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bias", [True, False])
def test_the_compiled_engine_equals_torch_nn_modules(kind, bias):
    ref = torch_module(kind, F_IN, HIDDEN, 2, bias=bias, dtype=torch.float64)
    ours = make_model(kind, F_IN, HIDDEN, 2, bias=bias, dtype=torch.float64, seed=0)
    with torch.no_grad():
        for name, p in ref.named_parameters():
            getattr(ours.rnn, name).copy_(p)
    x = torch.randn(2, 7, F_IN, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    y, state = _engine("compiled", ours).run(x, ours.initial_state(2))
    with torch.no_grad():
        y_t, h_t = ref(x)
    _close(y, y_t, torch.float64)
    _close(state.h, h_t[0] if kind == "LSTM" else h_t, torch.float64)


def _head_model(kind, dtype, head, tokens, seed=0):
    cell = make_model(kind, F_IN, HIDDEN, 2, dtype=dtype, seed=seed)
    heads = {"readout": streamrnn.Readout(HIDDEN, 3, dtype=dtype, seed=seed + 1),
             "linear": torch.nn.Linear(HIDDEN, 3, dtype=dtype), "none": None}
    return streamrnn.RecurrentModel(cell, heads[head], num_tokens=7 if tokens else None,
                                    seed=seed + 2)


@SETTINGS
@given(cuts=chunkings, seed=st.integers(0, 1000))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("head", ["readout", "linear", "none"])
@pytest.mark.parametrize("tokens", [False, True], ids=["values", "tokens"])
@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_heads_and_embeddings_equal_the_reference(kind, tokens, head, dtype, cuts, seed):
    model = _head_model(kind, dtype, head, tokens, seed)
    gen = torch.Generator().manual_seed(seed)
    steps = sum(cuts) + 2
    x = (torch.randint(0, 7, (2, steps), generator=gen) if tokens else
         torch.randn(2, steps, F_IN, generator=gen, dtype=dtype))
    s0 = _state(model, 2, dtype, seed)
    with torch.no_grad():
        want_y, want_s = model(x, s0)
    got_y, got_s = _chunked(_engine("compiled", model), x, s0, cuts)
    _close(got_y, want_y, dtype)
    _close(got_s.h, want_s.h, dtype)


@pytest.mark.parametrize("steps", [1, 2, 3, WORK_STEPS, WORK_STEPS + 1, 4 * WORK_STEPS])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("tokens", [False, True], ids=["values", "tokens"])
def test_one_stream_in_kept_scratch_or_its_own_equals_the_reference(tokens, dtype, steps):
    # step_rows runs chunks of up to WORK_STEPS steps in the engine's kept scratch and
    # longer ones in scratch of their own; one to two steps project by the hand loops,
    # more by one BLAS product: every path, three chunks in a row from one state
    model = _head_model("LSTM", dtype, "readout", tokens, seed=steps)
    gen = torch.Generator().manual_seed(steps)
    x = (torch.randint(0, 7, (1, 3 * steps), generator=gen) if tokens else
         torch.randn(1, 3 * steps, F_IN, generator=gen, dtype=dtype))
    s0 = _state(model, 1, dtype, steps)
    with torch.no_grad():
        want_y, want_s = model(x, s0)
    got_y, got_s = _chunked(_engine("compiled", model), x, s0, [steps, steps])
    _close(got_y, want_y, dtype)
    _close(got_s.c, want_s.c, dtype)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
def test_saturating_and_infinite_gate_inputs_as_torch(kind, dtype):
    # biases far from 0 of both signs, and +-inf: the gates saturate as torch's do
    model = make_model(kind, F_IN, HIDDEN, 2, dtype=dtype, seed=0)
    with torch.no_grad():
        b = model.rnn.bias_ih_l0
        b.copy_(torch.tensor([1e4, -1e4, 60.0, -60.0, float("inf"), -float("inf")],
                             dtype=dtype).repeat(b.numel() // 6 + 1)[: b.numel()])
    x = torch.randn(2, 5, F_IN, generator=torch.Generator().manual_seed(0), dtype=dtype)
    with torch.no_grad():
        want_y, want_s = model(x)
    got_y, got_s = _engine("compiled", model).run(x, model.initial_state(2))
    assert torch.equal(torch.isfinite(got_y), torch.isfinite(want_y))
    finite = torch.isfinite(want_y)
    _close(got_y[finite], want_y[finite], dtype)


# -- Stream and StreamBank: the rules pick an engine, the results do not change ---------

@SETTINGS
@given(cuts=chunkings, seed=st.integers(0, 1000))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_stream_on_either_engine_gives_the_same_outputs(kind, dtype, cuts, seed):
    model = make_model(kind, F_IN, HIDDEN, 2, dtype=dtype, seed=seed)
    x = torch.randn(sum(cuts) + 3, F_IN, generator=torch.Generator().manual_seed(seed),
                    dtype=dtype)
    fast, slow = streamrnn.Stream(model), streamrnn.Stream(model, grad=True)
    ys_fast, ys_slow, start = [], [], 0
    for n in [*cuts, 1, 2]:
        chunk = x[start : start + n]
        if n == 1:
            chunk = chunk[0]  # one (F,) step
        ys_fast.append(fast.push(chunk).reshape(-1, HIDDEN))
        ys_slow.append(slow.push(chunk).detach().reshape(-1, HIDDEN))
        start += n
    assert fast.engine == "compiled" and slow.engine == "torch"
    _close(torch.cat(ys_fast), torch.cat(ys_slow), dtype)
    _close(fast.state.h, slow.state.h, dtype)


@SETTINGS
@given(cuts=chunkings, seed=st.integers(0, 1000))
@pytest.mark.parametrize("strided", [False, True], ids=["contiguous", "strided"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("head", ["readout", "none"])
@pytest.mark.parametrize("tokens", [False, True], ids=["values", "tokens"])
@pytest.mark.parametrize("grad", [False, True], ids=["compiled", "torch"])
def test_a_streams_softmax_is_torchs_softmax_of_the_reference(grad, tokens, head, dtype,
                                                              strided, cuts, seed):
    # push(softmax=True) in any chunking (empty, one-step, strided chunks): the softmax
    # of the model's forward over the last dimension, and the state of a plain push
    model = _head_model("LSTM", dtype, head, tokens, seed)
    gen = torch.Generator().manual_seed(seed)
    steps = sum(cuts) + 3
    if tokens:
        x = torch.randint(0, 7, (steps,), generator=gen)
    else:  # logits of several units: the softmax is far from uniform
        x = 4 * torch.randn(F_IN, steps, generator=gen, dtype=dtype).t()  # (steps, F) strided
        x = x if strided else x.contiguous()
    with torch.no_grad():
        want_y, want_s = model(x.unsqueeze(0))
    want = torch.softmax(want_y[0], dim=-1)
    stream = streamrnn.Stream(model, grad=grad)
    ys, start = [], 0
    for n in [*cuts, 1, steps]:  # the last one takes the rest
        chunk = x[start : start + n]
        if n == 1:
            chunk = chunk[0]  # one step (F,), or one id
        ys.append(stream.push(chunk, softmax=True).detach().reshape(-1, want.shape[-1]))
        start += n
    assert stream.engine == ("torch" if grad else "compiled")
    _close(torch.cat(ys), want, dtype)
    _close(stream.state.h, want_s.h, dtype)


@pytest.mark.parametrize("shape", [(F_IN,), (5, F_IN)], ids=["step", "chunk"])
def test_a_negative_view_is_pushed_as_its_values(shape):
    # torch._neg_view shares the memory of x and reads it negated: the compiled engine,
    # which reads a chunk by its address, must see -x, not x
    model = _head_model("GRU", torch.float32, "readout", False)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    view = torch._neg_view(x)
    assert view.is_neg() and view.is_contiguous()
    a, b = streamrnn.Stream(model), streamrnn.Stream(model)
    torch.testing.assert_close(a.push(view), b.push(-x), rtol=0, atol=0)
    assert a.engine == "compiled"


@pytest.mark.parametrize("top", [0, 1, 2], ids=["first", "middle", "last"])
@pytest.mark.parametrize("grad", [False, True], ids=["compiled", "torch"])
def test_a_streams_softmax_of_huge_logits_is_finite_as_torchs(grad, top):
    # logits of +-1000 (exp overflows float32 and float64 past ~88 / ~709): the softmax
    # subtracts the largest, wherever it is, and gives torch's one-hot rows
    model = _head_model("LSTM", torch.float32, "readout", False)
    with torch.no_grad():
        model.head.linear.bias.copy_(torch.full((3,), -1000.0))
        model.head.linear.bias[top] = 1000.0
    x = torch.randn(4, F_IN, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = torch.softmax(model(x.unsqueeze(0))[0][0], dim=-1)
    got = streamrnn.Stream(model, grad=grad).push(x, softmax=True).detach()
    assert torch.equal(want, torch.nn.functional.one_hot(torch.full((4,), top), 3).float())
    _close(got, want, torch.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_bank_on_either_engine_gives_the_same_outputs(kind, dtype):
    model = make_model(kind, F_IN, HIDDEN, 2, dtype=dtype, seed=1)
    fast, slow = streamrnn.StreamBank(model), streamrnn.StreamBank(model, grad=True)
    gen = torch.Generator().manual_seed(2)
    for step in range(8):  # few streams: compiled (1: per stream, more: batched)
        keys = [f"k{i}" for i in range(step % 4 * 7 + 1)]  # 1, 8, 15, 22 (torch) streams
        chunks = {k: torch.randn(step % 2 + 1, F_IN, generator=gen, dtype=dtype) for k in keys}
        a, b = fast.push(chunks), slow.push(chunks)
        for k in keys:
            _close(a[k], b[k].detach(), dtype)
    for k in fast.keys():
        _close(fast.get_state(k).h, slow.get_state(k).h, dtype)


def test_a_big_bank_call_runs_on_torch_and_a_small_one_compiled():
    # beyond COMPILED_MAX_BATCH streams only one step of a form whose gates add (LSTM,
    # RNN: one stacked product per layer) stays compiled
    from streamrnn.engines import COMPILED_MAX_BATCH, RowStepper

    for kind, wide in [("LSTM", True), ("RNN_RELU", True), ("GRU", False)]:
        model = make_model(kind, F_IN, HIDDEN, seed=0)
        stepper = RowStepper(model, grad=False)
        state = model.initial_state(64)
        assert stepper.takes(1, 1, state)
        assert stepper.takes(COMPILED_MAX_BATCH, 5, state)
        assert not stepper.takes(COMPILED_MAX_BATCH + 1, 2, state)
        assert stepper.takes(COMPILED_MAX_BATCH + 1, 1, state) is wide
        assert stepper.takes(64, 1, state) is wide
        assert not RowStepper(model, grad=True).takes(1, 1, state)


@pytest.mark.parametrize("block", [5, 1024], ids=["blocks-of-5", "one-block"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("head", ["readout", "linear", "none"])
@pytest.mark.parametrize("tokens", [False, True], ids=["values", "tokens"])
@pytest.mark.parametrize("kind", KINDS)
def test_one_step_of_scattered_rows_equals_the_reference(kind, tokens, head, dtype, block,
                                                          monkeypatch):
    # step_batch on T = 1 (LSTM, RNN: the stacked product, in blocks of STEP_BLOCK
    # streams: 37 = 7 x 5 + 2, or one block; GRU: two products) for 37 of 50 slots in a
    # scattered order, 2 layers: the stepped rows equal the model's forward from their
    # states, every other row is untouched
    monkeypatch.setattr(streamrnn.engines.compiled, "STEP_BLOCK", block)
    cell = make_model(kind, F_IN, HIDDEN, 2, dtype=dtype, seed=3)
    heads = {"readout": streamrnn.Readout(HIDDEN, 3, dtype=dtype, seed=4),
             "linear": torch.nn.Linear(HIDDEN, 3, dtype=dtype), "none": None}
    model = streamrnn.RecurrentModel(cell, heads[head], num_tokens=7 if tokens else None,
                                     seed=5)
    engine = _engine("compiled", model)
    gen = torch.Generator().manual_seed(6)
    s0 = _state(model, 50, dtype, 7)
    rows = torch.randperm(50, generator=gen)[:37]
    x = (torch.randint(0, 7, (37, 1), generator=gen) if tokens else
         torch.randn(37, 1, F_IN, generator=gen, dtype=dtype))
    parts = tuple(s0[k].numpy().copy() for k in engine.parts)
    y = np.empty((37, 1, 3 if head != "none" else HIDDEN), dtype=engine.np_dtype)
    bad = np.zeros(37, dtype=np.uint8)
    assert engine.step_batch(x.numpy(), parts, rows.numpy(), y, bad) == 0
    with torch.no_grad():
        want_y, want_s = model(x, s0.select(rows))
    _close(torch.from_numpy(y), want_y, dtype)
    others = torch.ones(50, dtype=torch.bool)
    others[rows] = False
    for k, got in zip(engine.parts, parts, strict=True):
        _close(torch.from_numpy(got)[:, rows], want_s[k], dtype)
        assert torch.equal(torch.from_numpy(got)[:, others], s0[k][:, others])
