"""MinGRU on the compiled engine (inference): equal to the cell's own forward (the torch
reference) to 1e-5 in float32 and 1e-10 in float64 in any chunking, 1-3 layers, with and
without biases, from a non-zero state with large negative and positive gate values; a
Stream and a StreamBank give the same as the reference whichever engine runs them; a
subclass and MinLSTM stay on torch; the river estimators do not learn a MinGRU on it."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import streamrnn
from streamrnn.engines import CompiledEngine
from streamrnn.engines.compiled import has_compiled_form
from streamrnn.river import RNNForecaster

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}


def model(layers, dtype, bias, seed):
    return streamrnn.MinGRU(4, 6, num_layers=layers, bias=bias, seed=seed).to(dtype)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cuts=st.lists(st.integers(0, 4), min_size=1, max_size=5), seed=st.integers(0, 999))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("bias", [True, False])
def test_compiled_mingru_equals_its_forward_in_any_chunking(dtype, layers, bias, cuts, seed):
    m = model(layers, dtype, bias, seed)
    engine = CompiledEngine.for_model(m)
    assert engine is not None
    gen = torch.Generator().manual_seed(seed)
    x = 4 * torch.randn(3, sum(cuts) + 2, 4, generator=gen, dtype=dtype)  # gates far out
    s0 = m.initial_state(3, dtype=dtype).map(
        lambda t: torch.randn(t.shape, generator=gen, dtype=dtype))
    with torch.no_grad():
        want_y, want_s = m(x, s0)
    ys, state, start = [], s0, 0
    for n in [*cuts, x.shape[1]]:
        y, state = engine.run(x[:, start:start + n], state)
        ys.append(y)
        start += n
        if start >= x.shape[1]:
            break
    torch.testing.assert_close(torch.cat(ys, 1), want_y, rtol=0, atol=TOL[dtype])
    torch.testing.assert_close(state.h, want_s.h, rtol=0, atol=TOL[dtype])


def test_stream_and_bank_equal_the_reference_whichever_engine_runs():
    m = streamrnn.MinGRU(4, 6, num_layers=2, seed=1)
    x = torch.randn(2, 12, 4, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want, _ = m(x)
    stream = streamrnn.Stream(m)
    got = torch.cat([stream.push(x[0, t]).unsqueeze(0) for t in range(12)])  # one step each
    torch.testing.assert_close(got, want[0], rtol=0, atol=1e-5)
    bank = streamrnn.StreamBank(m)
    for t in range(12):
        out = bank.push({"a": x[0, t], "b": x[1, t]})
        torch.testing.assert_close(out["b"], want[1, t], rtol=0, atol=1e-5)


def test_subclasses_minlstm_and_learning_stay_on_torch():
    class Mine(streamrnn.MinGRU):
        pass

    assert CompiledEngine.for_model(Mine(4, 6, seed=0)) is None
    assert CompiledEngine.for_model(streamrnn.MinLSTM(4, 6, seed=0)) is None
    assert has_compiled_form("mingru") and not has_compiled_form("mingru", learning=True)
    assert not RNNForecaster(cell="mingru")._uses_compiled()
