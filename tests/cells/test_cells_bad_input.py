"""Bad configuration or input to the new cells: a clear error naming the parameter, the
rule and the value; a rejected push changes nothing; NaN never enters a state."""

from __future__ import annotations

import pytest
import torch

import streamrnn

CELLS = [streamrnn.MinGRU, streamrnn.MinLSTM]


@pytest.mark.parametrize("cls", CELLS)
@pytest.mark.parametrize("kwargs,match", [
    ({"input_size": 0}, r"input_size must be a positive int, got 0"),
    ({"hidden_size": 2.5}, r"hidden_size must be a positive int, got 2.5"),
    ({"num_layers": True}, r"num_layers must be a positive int, got True"),
    ({"bias": 1}, r"bias must be a bool, got 1"),
    ({"seed": "7"}, r"seed must be an int or None, got '7'"),
])
def test_configuration_is_checked(cls, kwargs, match):
    args = {"input_size": 3, "hidden_size": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        cls(**args)


@pytest.mark.parametrize("cls", CELLS)
def test_wrong_shapes_are_refused(cls):
    cell = cls(3, 4, seed=0)
    with pytest.raises(ValueError, match=r"x must have shape \(B, T, F\) with F = 3, got "
                                         r"\(2, 5, 4\)"):
        cell(torch.zeros(2, 5, 4))
    with pytest.raises(ValueError, match=r"x must have shape \(B, F\) with F = 3, got "
                                         r"\(2, 5, 3\)"):
        cell.step(torch.zeros(2, 5, 3))
    with pytest.raises(ValueError, match=r"batch_size must be a non-negative int, got -1"):
        cell.initial_state(-1)
    with pytest.raises(ValueError, match=r"state\.h must have shape \(1, 2, 4\), got \(1, 2, 5\)"):
        cell.check_state(streamrnn.State(h=torch.zeros(1, 2, 5)), 2)


@pytest.mark.parametrize("cls", CELLS)
def test_a_rejected_push_changes_nothing_and_no_state_is_non_finite(cls):
    stream = streamrnn.Stream(cls(3, 4, num_layers=2, seed=0))
    stream.push(torch.randn(5, 3, generator=torch.Generator().manual_seed(0)))
    before = stream.state.h.clone()
    bad = torch.zeros(4, 3)
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        stream.push(bad)
    assert torch.equal(stream.state.h, before) and stream.steps == 5
    with pytest.raises(ValueError, match="3 features"):
        stream.push(torch.zeros(4, 2))
    assert torch.equal(stream.state.h, before)
    stream.push(torch.full((2, 3), 3e38))  # huge finite inputs: the gates saturate
    assert bool(torch.isfinite(stream.state.h).all())
    with pytest.warns(RuntimeWarning, match="non-finite"):  # here the state overflows
        stream.push(torch.full((2, 3), -3e38))
    assert stream.counts["nonfinite_resets"] == 1
    assert torch.equal(stream.state.h, torch.zeros(2, 1, 4))
