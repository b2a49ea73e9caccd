"""The compiled engine's own properties: its activations against numpy, that it steps the
model's current weights, that a stream's state stays a value, that a user's cell gets a
compiled form by one registration, that its disk cache follows its sources, and that the
torch engine is the one fallback without numba.
"""

from __future__ import annotations

import importlib
import math
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit
from numba.extending import register_jitable

import streamrnn
from streamrnn.cells import register
from streamrnn.engines import CompiledEngine, CompiledForm, register_compiled, weights_changed
from streamrnn.engines.compiled import _jit
from streamrnn.engines.compiled._learn import _sum_squares
from streamrnn.engines.compiled._math import all_finite, expm1, project

EPS32 = float(np.finfo(np.float32).eps)


# -- the activations -------------------------------------------------------------------

def test_float32_expm1_is_within_two_ulps_and_saturates():
    x = np.concatenate([
        np.linspace(-100, 100, 200_001), np.geomspace(1e-30, 80, 5001),
        -np.geomspace(1e-30, 80, 5001), [0.0, 88.0, -88.0, 0.3465, -0.3466],
    ]).astype(np.float32)  # fmt: skip
    got, want = expm1(x).astype(np.float64), np.expm1(x.astype(np.float64))
    finite = np.abs(x) <= 88
    rel = np.abs(got - want)[finite] / np.abs(want[finite]).clip(1e-300)
    assert rel.max() <= 2 * EPS32  # observed < 1 ulp
    assert np.all(got[x > 88] > 1e38) and np.all(got[x < -88] == -1.0)
    odd = expm1(np.array([np.inf, -np.inf, np.nan], dtype=np.float32))
    assert odd[0] > 1e38 and odd[1] == -1.0 and np.isnan(odd[2])


def test_float64_expm1_is_within_two_ulps_and_saturates():
    x = np.concatenate([np.linspace(-40, 40, 20_001), np.linspace(-1e-6, 1e-6, 1001),
                        [0.0, 1e-300, -1e-300, 700.0, -700.0]])
    out = expm1(x)
    want = np.expm1(x)
    assert (np.abs(out - want) <= 2 * np.spacing(np.abs(want)) + 1e-300).all()
    odd = expm1(np.array([np.nan, np.inf, -np.inf]))
    assert np.isnan(odd[0]) and odd[1] > 1e307 and odd[2] == -1.0


@given(n=st.integers(0, 300), bad=st.lists(st.tuples(st.integers(0, 299),
                                               st.sampled_from([np.nan, np.inf, -np.inf])),
                                     max_size=3),
       dtype=st.sampled_from([np.float32, np.float64]))
@settings(max_examples=60, deadline=None)
def test_the_finiteness_check_counts_every_nan_and_inf(n, bad, dtype):
    # the kernels' vectorised check (x - x is NaN exactly for NaN and +-inf), against
    # numpy's isfinite; huge, tiny and subnormal finite values are finite
    info = np.finfo(dtype)
    x = np.random.default_rng(n).choice(np.array(
        [0.0, -0.0, 1.0, -3.5, info.smallest_subnormal, info.max, -info.max], dtype=dtype), n)
    for i, v in bad:
        if i < n:
            x[i] = v
    assert all_finite(x) == bool(np.isfinite(x).all())
    assert all_finite(x.reshape(1, -1, 1)) == bool(np.isfinite(x).all())


@njit(cache=False)
def _project(w, b, x, out):
    project(w, b, x, out)


@njit(cache=False)
def _squares(a, lo, hi):
    return _sum_squares(a, lo, hi)


@given(steps=st.integers(0, 5), k=st.integers(1, 19), m=st.integers(1, 37),
       dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**16))
@settings(max_examples=60, deadline=None)
def test_the_projection_of_every_step_equals_numpy(steps, k, m, dtype, seed):
    # one or two steps by the hand loops, more by one BLAS product: b + x @ w, in float64
    # rounding bounds (k terms of |w x| at most)
    rng = np.random.default_rng(seed)
    w, b = rng.standard_normal((k, m)).astype(dtype), rng.standard_normal(m).astype(dtype)
    x = rng.standard_normal((steps, k)).astype(dtype)
    out = np.full((steps, m), np.nan, dtype=dtype)
    _project(w, b, x, out)
    want = b.astype(np.float64) + x.astype(np.float64) @ w.astype(np.float64)
    bound = (np.abs(x).astype(np.float64) @ np.abs(w).astype(np.float64) + np.abs(b)) * (
        (k + 2) * float(np.finfo(dtype).eps))
    assert np.all(np.abs(out - want) <= bound)


@given(n=st.integers(0, 300), lo=st.integers(0, 300), seed=st.integers(0, 2**16))
@settings(max_examples=60, deadline=None)
def test_the_clipping_norms_sum_of_squares_equals_an_exact_sum(n, lo, seed):
    # the one sum run in the vectoriser's order: within n ulps of the exactly rounded sum
    a = np.random.default_rng(seed).standard_normal(n) * 10.0 ** np.random.default_rng(
        seed).integers(-5, 5, n)
    lo = min(lo, n)
    want = math.fsum(v * v for v in a[lo:])
    got = _squares(a, lo, n)
    assert abs(got - want) <= (n + 1) * 2.3e-16 * want


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("batch, steps", [(1, 1), (1, 3), (3, 1), (3, 3)])
def test_every_kernel_refuses_a_nonfinite_input_and_changes_nothing(kind, batch, steps):
    cell = (streamrnn.LSTM if kind == "LSTM" else streamrnn.GRU)(3, 5, 2, seed=0)
    engine = CompiledEngine.for_model(cell)
    state = cell.initial_state(4).map(lambda t: t + 0.5)
    parts = tuple(state[k].numpy().copy() for k in engine.parts)
    rows = np.array([2, 0, 3][:batch])
    for bad in (np.nan, np.inf):
        x = np.ones((batch, steps, 3), dtype=np.float32)
        x[-1, -1, -1] = bad
        y = np.zeros((batch, steps, 5), dtype=np.float32)
        run = engine.step_rows if batch == 1 else engine.step_batch
        assert run(x, parts, rows, y, np.zeros(batch, dtype=np.uint8)) == -1
        for k, got in zip(engine.parts, parts, strict=True):
            assert np.array_equal(got, state[k].numpy())


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("steps", [1, 2])
def test_a_chunk_of_no_streams_gives_no_rows(kind, steps):
    cell = (streamrnn.LSTM if kind == "LSTM" else streamrnn.GRU)(3, 5, 2, seed=0)
    y, state = CompiledEngine.for_model(cell).run(torch.zeros(0, steps, 3),
                                                   cell.initial_state(0))
    assert y.shape == (0, steps, 5) and state.h.shape == (2, 0, 5)


@pytest.mark.parametrize("grad", [False, True])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_the_chunk_finiteness_check_takes_every_float_dtype(dtype, grad):
    # streamrnn.engines.finite: compiled for float32 / float64 on the CPU, torch's check
    # for the rest; a huge finite chunk whose sum overflows is finite
    from streamrnn.engines import finite

    big = float(torch.finfo(dtype).max)
    for values, want in [([1.0, -2.0], True), ([big, big], True), ([1.0, float("nan")], False),
                         ([float("inf"), 1.0], False), ([-float("inf")], False)]:
        x = torch.tensor(values, dtype=dtype).repeat(3, 1).t().requires_grad_(grad)
        assert finite(x) is want


# -- the current weights -----------------------------------------------------------------

def _pair(seed=0, dtype=torch.float32):
    model = streamrnn.RecurrentModel(streamrnn.LSTM(3, 8, 2, seed=seed, dtype=dtype),
                                     streamrnn.Readout(8, 2, seed=seed + 1, dtype=dtype))
    return model, streamrnn.Stream(model)


def _expected(model, xs):
    with torch.no_grad():
        return model(torch.stack(xs)[None])[0][0, -1]


@pytest.mark.parametrize("optimizer", [
    lambda p: torch.optim.SGD(p, lr=0.1),
    lambda p: torch.optim.Adam(p, lr=0.05),
    lambda p: torch.optim.Adam(p, lr=0.05, fused=True),  # its steps bump no version
])
def test_a_model_trained_between_pushes_is_stepped_with_its_new_weights(optimizer):
    model, stream = _pair()
    opt = optimizer(model.parameters())
    gen = torch.Generator().manual_seed(0)
    xs = []
    for _ in range(5):
        x = torch.randn(3, generator=gen)
        xs.append(x)
        opt.zero_grad()
        model(torch.randn(2, 4, 3, generator=gen))[0].square().mean().backward()
        opt.step()
        # the stream's state came from the older weights: compare one step from it
        state = stream.state
        with torch.no_grad():
            want = model(x.view(1, 1, 3), state)[0][0, 0]
        got = stream.push(x)
        assert stream.engine == "compiled"
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_load_state_dict_in_place_or_assigned_and_in_place_edits_are_seen():
    model, stream = _pair()
    other, _ = _pair(seed=5)
    x = torch.ones(3)
    stream.push(x)
    model.load_state_dict(other.state_dict())  # copied in place
    _check_next(model, stream, x)
    model.load_state_dict({k: v * 0.5 for k, v in other.state_dict().items()}, assign=True)
    _check_next(model, stream, x)
    with torch.no_grad():
        model.head.linear.bias.add_(3.0)
    _check_next(model, stream, x)
    model.head.linear.bias.data.add_(1.0)  # bypasses the version counter: say so
    weights_changed()
    _check_next(model, stream, x)
    assert stream.engine == "compiled"


def test_a_replaced_parameter_is_seen_even_at_the_same_version():
    # the check reads each parameter's identity as well as its version counter: a fresh
    # parameter put in place of one (not the first) with an equal version is noticed
    model, stream = _pair()
    x = torch.ones(3)
    stream.push(x)
    old = model.head.linear.bias
    new = torch.nn.Parameter(old.detach().clone() + 1.0)
    with torch.no_grad():
        while new._version < old._version:
            new.add_(0.0)  # bumps its version counter, changes no value
    assert new._version == old._version
    model.head.linear.bias = new
    _check_next(model, stream, x)


def _check_next(model, stream, x):
    # the stream's next push equals torch's step from the stream's state
    with torch.no_grad():
        want = model(x.view(1, 1, -1), stream.state)[0][0, 0]
    torch.testing.assert_close(stream.push(x), want, rtol=0, atol=1e-5)


def test_a_model_moved_to_another_dtype_leaves_the_compiled_engine():
    model, stream = _pair()
    stream.push(torch.ones(3))
    engine = stream._runner.compiled
    assert engine.ready()
    model.double()
    assert not engine.ready()  # the stream's torch path then refuses the float32 state
    model.float()
    assert engine.ready()


def test_dropout_while_training_runs_on_torch():
    model = streamrnn.LSTM(3, 4, 2, dropout=0.5, seed=0)  # a new module trains
    stream = streamrnn.Stream(model)
    stream.push(torch.ones(3))
    assert stream.engine == "torch"
    model.eval()  # no dropout
    stream.push(torch.ones(3))
    assert stream.engine == "compiled"
    model.train()
    stream.push(torch.ones(3))
    assert stream.engine == "torch"
    model.eval()
    stream.push(torch.ones(3))
    assert stream.engine == "compiled"


# -- the state is a value ----------------------------------------------------------------

def test_the_state_a_stream_hands_out_is_not_changed_by_later_pushes():
    _, stream = _pair()
    stream.push(torch.ones(2, 3))
    before = stream.state
    copy = before.clone()
    y = stream.push(torch.ones(3))
    y.mul_(0.0)  # and a caller's in-place change of an output leaves the state alone
    stream.push(torch.ones(3))
    assert all(torch.equal(before[k], copy[k]) for k in copy.parts)
    assert not torch.equal(stream.state.h, before.h)


# -- one registration gives a new cell a compiled form ------------------------------------

@register_jitable
def half_tanh_step(gi, gh, s, out, act, bits):
    for u in range(s.shape[1]):
        out[0, u] = np.tanh(0.5 * (gi[u] + gh[u]))


@register("halftanh")
class HalfTanh(streamrnn.RNN):
    """A user's cell: ``h' = tanh((W_ih x + b_ih + W_hh h + b_hh) / 2)``."""

    def forward(self, x, state=None):
        h = (state or self.initial_state(x.shape[0], dtype=x.dtype)).h
        ys = []
        for t in range(x.shape[1]):
            inp, hs = x[:, t], []
            for k in range(self.num_layers):
                w = [getattr(self.rnn, f"{n}_l{k}") for n in
                     ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
                hk = torch.tanh(0.5 * (inp @ w[0].T + w[2] + h[k] @ w[1].T + w[3]))
                hs.append(hk)
                inp = hk
            h = torch.stack(hs)
            ys.append(inp)
        return torch.stack(ys, 1), streamrnn.State(h)


def _half_tanh_weights(cell):
    return [tuple(getattr(cell.rnn, f"{n}_l{k}") for n in
                  ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
            for k in range(cell.num_layers)]


def test_a_users_cell_gets_a_compiled_form_by_one_registration():
    cell = HalfTanh(3, 5, 2, seed=0)
    assert CompiledEngine.for_model(cell) is None  # no form yet: torch runs it
    register_compiled("halftanh", CompiledForm(gates=1, acts=1, parts=("h",),
                                               step=half_tanh_step,
                                               weights=_half_tanh_weights))
    stream = streamrnn.Stream(cell)
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(0))
    y = torch.cat([stream.push(x[:2]), stream.push(x[2:])])
    assert stream.engine == "compiled"
    with torch.no_grad():
        want = cell(x[None])[0][0]
    torch.testing.assert_close(y, want, rtol=0, atol=1e-5)


# -- the disk cache follows the sources ---------------------------------------------------

def test_the_cache_key_of_every_kernel_carries_a_digest_of_its_sources(tmp_path, monkeypatch):
    engine = CompiledEngine.for_model(streamrnn.GRU(2, 3))
    cells = [c.cell_contents for c in engine.run_values.py_func.__closure__]
    assert _jit.stamp(engine.packed.plan.form.step) in cells
    # the digest changes with any source a kernel depends on
    module = tmp_path / "my_form.py"
    module.write_text("def step():\n    return 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import my_form

    before = _jit.stamp(my_form.step)
    module.write_text("def step():\n    return 22\n")  # another size: no stale .pyc
    _jit._file_digest.cache_clear()
    stale = _jit.stamp(my_form.step)  # new file, old code still running
    assert stale != before
    importlib.reload(my_form)  # a process that imports the edited file
    assert _jit.stamp(my_form.step) not in (before, stale)
    # a form defined where no file is (a notebook, exec): keyed by its own code
    fileless = types.ModuleType("fileless_form")
    monkeypatch.setitem(sys.modules, "fileless_form", fileless)
    exec("def step():\n    return 1\n", fileless.__dict__)  # noqa: S102
    one = _jit.stamp(fileless.step)
    exec("def step():\n    return 2\n", fileless.__dict__)  # noqa: S102
    assert _jit.stamp(fileless.step) != one


# -- without numba, the torch engine runs everything --------------------------------------

def test_without_numba_streams_and_banks_run_on_torch():
    code = (
        "import sys; sys.modules['numba'] = None\n"
        "import torch, streamrnn\n"
        "from streamrnn.engines import CompiledEngine\n"
        "m = streamrnn.LSTM(2, 3, seed=0)\n"
        "assert CompiledEngine.for_model(m) is None\n"
        "s = streamrnn.Stream(m); y = s.push(torch.ones(4, 2))\n"
        "b = streamrnn.StreamBank(m); out = b.push({'a': torch.ones(4, 2)})\n"
        "print(s.engine, float((y - out['a']).abs().max()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["torch", "0.0"]


def test_kernels_of_different_forms_never_share_a_cache_entry(tmp_path):
    # Every built-in form's kernels have the same source (closures of one factory); their
    # cache keys carry the forms' names, so loading from the disk cache in any order gives
    # each form its own code (once, a relu RNN ran a tanh RNN's cached kernel).
    code = (
        "import torch, streamrnn\n"
        "out = []\n"
        "for kind, batch in (('tanh', 1), ('relu', 2), ('relu', 1), ('tanh', 2)):\n"
        "    m = streamrnn.RNN(3, 4, nonlinearity=kind, seed=0)\n"
        "    bank = streamrnn.StreamBank(m)\n"
        "    x = 3 * torch.randn(batch, 2, 3, generator=torch.Generator().manual_seed(0))\n"
        "    y = bank.push_many([f'k{i}' for i in range(batch)], x)\n"
        "    with torch.no_grad():\n"
        "        out.append(float((y - m(x)[0]).abs().max()))\n"
        "print(max(out))\n"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    for _ in range(2):  # compile and save, then load from the cache
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True, env=env).stdout
        assert float(out) < 1e-5
