"""A bank stream whose state overflows is reset and reported on every engine and layout:
compiled (few streams), torch (grad=True, or more than COMPILED_MAX_BATCH streams),
uniform and ragged pushes. The other streams of the push keep their new states.

Written to kill surviving mutants of ``StreamBank._step`` / ``_output_size``
(docs/mutation.md): the torch engine's overflow path and the ragged report were untested.
"""

from __future__ import annotations

import pytest
import torch

import streamrnn
from streamrnn.engines import COMPILED_MAX_BATCH

F, H = 3, 4


def overflowing_model() -> streamrnn.RNN:
    model = streamrnn.RNN(F, H, nonlinearity="relu", seed=1)
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()  # positive weights: a huge positive input only grows
    return model


@pytest.mark.parametrize("layout", ["uniform", "ragged"])
@pytest.mark.parametrize("engine", ["compiled", "torch grad", "torch batch"])
def test_an_overflowing_stream_is_reset_and_reported_and_the_others_go_on(engine, layout):
    model = overflowing_model()
    bank = streamrnn.StreamBank(model, grad=engine == "torch grad")
    calm_keys = list(range(COMPILED_MAX_BATCH + 2 if engine == "torch batch" else 2))
    length = 3 if layout == "uniform" else 2
    calm_x = {k: torch.rand(length, F) for k in calm_keys}
    loud = torch.full((3, F), 3e38)  # finite input, overflowing state
    alone = {k: streamrnn.Stream(model) for k in calm_keys}
    bank.push({"loud": torch.ones(1, F), **calm_x})  # every key live, "loud" first
    with torch.no_grad():
        for k in calm_keys:
            alone[k].push(calm_x[k])
    bank.push({**calm_x, "loud": loud})
    assert bank.last_reset == ["loud"]
    assert bank.counts["nonfinite_resets"] == 1
    initial = model.initial_state(1)
    assert torch.equal(bank.get_state("loud").h, initial.h)
    with torch.no_grad():
        for k in calm_keys:
            alone[k].push(calm_x[k])
            torch.testing.assert_close(bank.get_state(k).h, alone[k].state.h,
                                       rtol=1e-6, atol=1e-6)
    bank.push({k: torch.rand(1, F) for k in calm_keys})
    assert bank.last_reset == [] and bank.counts["nonfinite_resets"] == 1
    bank.push({"loud": loud, **calm_x})  # in slot order: the rows are one slice
    assert bank.last_reset == ["loud"] and bank.counts["nonfinite_resets"] == 2
    assert torch.equal(bank.get_state("loud").h, initial.h)


def test_an_overflow_in_a_slice_of_rows_not_starting_at_zero_resets_that_stream_only():
    # torch engine, the stepped rows one slice starting at row 10: the recovery re-runs
    # exactly those rows (an index from 0 would step other streams' states)
    model = overflowing_model()
    n = 3 * COMPILED_MAX_BATCH
    bank = streamrnn.StreamBank(model, max_streams=n)
    alone = [streamrnn.Stream(model) for _ in range(n)]
    x = torch.rand(n, 1, F)
    bank.push_many(list(range(n)), x)
    for k in range(n):
        alone[k].push(x[k])
    sub = list(range(10, 10 + COMPILED_MAX_BATCH + 4))
    x = torch.rand(len(sub), 3, F)
    x[3] = 3e38  # stream 13: finite input, overflowing state
    bank.push_many(sub, x)
    assert bank.last_reset == [13] and bank.counts["nonfinite_resets"] == 1
    for i, k in enumerate(sub):
        if k != 13:
            alone[k].push(x[i])
    for k in range(n):
        want = model.initial_state(1).h if k == 13 else alone[k].state.h
        torch.testing.assert_close(bank.get_state(k).h, want, rtol=1e-6, atol=1e-6)


def test_overflows_in_chunks_of_two_lengths_are_all_reported():
    bank = streamrnn.StreamBank(overflowing_model())
    bank.push({"calm": torch.rand(2, F), "loud3": torch.full((3, F), 3e38),
               "loud4": torch.full((4, F), 3e38)})  # ragged: one call per length
    assert sorted(bank.last_reset) == ["loud3", "loud4"]
    assert bank.counts["nonfinite_resets"] == 2


def test_empty_chunks_give_outputs_of_the_heads_size():
    lm = streamrnn.RecurrentModel(streamrnn.LSTM(3, 8, seed=0), streamrnn.Readout(8, 5, seed=1))
    bank = streamrnn.StreamBank(lm)
    out = bank.push({"a": torch.zeros(0, 3), "b": torch.zeros(0, 3)})
    assert out["a"].shape == (0, 5) and out.tensor.shape == (2, 0, 5)
    assert bank.push_many(["a", "b"], torch.zeros(2, 0, 3)).shape == (2, 0, 5)


def test_an_overflow_in_one_step_of_many_streams_resets_that_stream_only():
    # one step of more than COMPILED_MAX_BATCH streams of an RNN: the compiled engine's
    # stacked product (one matrix product per layer); the rows are scattered slots
    model = overflowing_model()
    with torch.no_grad():
        model.rnn.weight_ih_l0.fill_(1.0)  # 3 * 3e38 overflows float32 in one step
    n = COMPILED_MAX_BATCH + 9
    bank = streamrnn.StreamBank(model, max_streams=n)
    alone = {k: streamrnn.Stream(model) for k in range(n)}
    x = torch.rand(n, 1, F)
    bank.push_many(list(range(n)), x)
    for k in range(n):
        alone[k].push(x[k])
    keys = list(range(n))[::-1][: n - 2]  # slots in reverse: not one slice
    assert bank._engines.takes(len(keys), 1, bank._state)  # the compiled engine runs it
    x = torch.rand(len(keys), 1, F)
    x[4] = 3e38
    loud = keys[4]
    bank.push_many(keys, x)
    assert bank.last_reset == [loud] and bank.counts["nonfinite_resets"] == 1
    with torch.no_grad():
        for i, k in enumerate(keys):
            if k != loud:
                alone[k].push(x[i])
    for k in range(n):
        want = model.initial_state(1).h if k == loud else alone[k].state.h
        torch.testing.assert_close(bank.get_state(k).h, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("n", [2, COMPILED_MAX_BATCH + 9], ids=["few", "many"])
def test_a_state_with_one_nonfinite_value_is_reset(n):
    # only hidden unit 0 overflows: one inf among the state's values is enough (the
    # small-batch kernel, and the stacked one-step kernel of many streams)
    model = overflowing_model()
    with torch.no_grad():
        model.rnn.weight_ih_l0.zero_()
        model.rnn.weight_ih_l0[0].fill_(1.0)
        model.rnn.weight_hh_l0.zero_()
    bank = streamrnn.StreamBank(model, max_streams=n)
    x = torch.rand(n, 1, F)
    x[1] = 3e38
    bank.push_many(list(range(n)), torch.rand(n, 1, F))
    bank.push_many(list(range(n)), x)
    assert bank.last_reset == [1] and bank.counts["nonfinite_resets"] == 1
    assert torch.equal(bank.get_state(1).h, model.initial_state(1).h)
