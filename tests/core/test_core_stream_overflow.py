"""Stream.push when a state overflows, and the max_chunk bound, on every input path.

A finite input can still overflow a state (pre-activations beyond float range). Whatever
the input form (a tensor of the model's kind takes the fast path; numpy and lists are
validated first) and however ``max_chunk`` slices the chunk, the push returns one row per
step, equal to one pass, counts one reset, warns, and restarts the stream from zero.
Written to kill surviving mutants of ``Stream._run`` (docs/mutation.md); the sliced path
returned only the rows up to the overflowing slice before.
"""

from __future__ import annotations

import os

import pytest
import torch

import streamrnn

F, H = 3, 4


def overflowing_model() -> streamrnn.RNN:
    model = streamrnn.RNN(F, H, nonlinearity="relu", seed=1)
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()  # positive weights: a huge positive input only grows
    return model


def chunk() -> torch.Tensor:
    x = torch.ones(7, F)
    x[1:3] = 3e38  # finite input, overflowing state from step 2 on
    return x


WARNING = (r"^the stream's state became non-finite \(numeric overflow\); it was reset to the "
           r"initial state and counted in counts\['nonfinite_resets'\]$")
FORMS = {"tensor": lambda x: x, "numpy": lambda x: x.numpy(), "list": lambda x: x.tolist()}


@pytest.mark.parametrize("form", list(FORMS))
@pytest.mark.parametrize("max_chunk", [1, 2, 3, 65536])
def test_an_overflow_gives_every_step_its_row_counts_one_reset_and_restarts(form, max_chunk):
    model = overflowing_model()
    one_pass = streamrnn.Stream(model)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        want = one_pass.push(chunk())
    assert not bool(torch.isfinite(want).all())  # the case is real: it overflows

    stream = streamrnn.Stream(model, max_chunk=max_chunk)
    with pytest.warns(RuntimeWarning, match=WARNING) as caught:
        got = stream.push(FORMS[form](chunk()))
    if "MUTANT_UNDER_TEST" not in os.environ:  # mutmut's trampolines add stack frames
        assert [w.filename for w in caught] == [__file__]  # it points at the push
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6, equal_nan=True)
    assert stream.counts == {"nonfinite_resets": 1} and stream.steps == 7
    initial = model.initial_state(1)
    assert all(torch.equal(stream.state[p], initial[p]) for p in initial.parts)
    x = torch.randn(4, F, generator=torch.Generator().manual_seed(0))
    # from zero (engines may differ by float rounding)
    torch.testing.assert_close(stream.push(x), streamrnn.Stream(model).push(x),
                               rtol=0, atol=1e-6)
    with pytest.warns(RuntimeWarning, match=WARNING):
        stream.push(FORMS[form](chunk()))
    assert stream.counts == {"nonfinite_resets": 2} and stream.steps == 18


@pytest.mark.parametrize("form", list(FORMS))
def test_max_chunk_bounds_the_steps_of_every_engine_call(form):
    model = streamrnn.GRU(F, H, seed=0)
    x = torch.randn(10, F, generator=torch.Generator().manual_seed(1))
    stream = streamrnn.Stream(model, max_chunk=F)  # as many steps as features
    runner = stream._runner
    calls: list[int] = []
    run = runner.run

    def spy(part, softmax=False):
        calls.append(part.shape[0])
        return run(part, softmax)

    runner.run = spy
    got = stream.push(FORMS[form](x))
    assert calls == [3, 3, 3, 1]
    torch.testing.assert_close(got, streamrnn.Stream(model).push(x), rtol=0, atol=1e-6)


def test_a_default_stream_keeps_no_graph_and_bad_settings_are_named():
    model = streamrnn.GRU(F, H, seed=0)
    y = streamrnn.Stream(model).push(torch.ones(2, F))
    assert not y.requires_grad and y.grad_fn is None
    for bad in (2.5, "3", 0, True):
        with pytest.raises(ValueError, match=f"max_chunk must be a positive int, got {bad!r}"):
            streamrnn.Stream(model, max_chunk=bad)
    with pytest.raises(ValueError, match="object has no 'input_size'"):
        streamrnn.Stream(object())
