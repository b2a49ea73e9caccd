"""DecayGRU (GRU-D's hidden decay by elapsed time, Δt as the last input column).

- parity: with Δt = 0 (and b = 0) it is ``torch.nn.GRU`` with the same weights; with any
  Δt it equals a plain NumPy loop of its equations (float64, 1e-12);
- chunk invariance with Δt: any split of an irregular stream (zero steps, one step, huge
  gaps) through Stream gives one offline pass (float64 1e-10, float32 1e-5); a stream in
  a StreamBank gets what it gets alone;
- a gap of many timescales forgets the state: the output equals a fresh start's;
- TBPTT(k1 < k2) through OnlineLearner equals a brute-force autograd reference (1e-10);
- bad input: negative Δt and a too-small input_size are refused, naming the rule.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _tbptt import RecordingSGD, check_learner_against_reference, series, stacked
from hypothesis import given, settings
from hypothesis import strategies as st

import streamrnn
from streamrnn import DecayGRU, OnlineLearner, Readout, RecurrentModel

FAST = settings(max_examples=20, deadline=None)
F, H = 3, 5  # features (Δt not counted)


def events(seed: int, steps: int, dtype=torch.float64, gaps=True) -> torch.Tensor:
    """``(steps, F + 1)``: values and irregular Δt (zeros, ~1, and rare huge gaps)."""
    gen = torch.Generator().manual_seed(seed)
    x = 2 * torch.randn(steps, F, generator=gen, dtype=torch.float64)
    dt = torch.rand(steps, generator=gen, dtype=torch.float64) * 2
    dt[torch.rand(steps, generator=gen) < 0.15] = 0.0
    if gaps:
        dt[torch.rand(steps, generator=gen) < 0.05] = 5e3
    return torch.cat([x, dt[:, None]], 1).to(dtype)


def sigmoid(v):
    return 1 / (1 + np.exp(-v))


def numpy_reference(cell: DecayGRU, x: torch.Tensor, h0: np.ndarray) -> np.ndarray:
    """Outputs ``(B, T, H)``: gamma = exp(-relu(w dt + b)); h = GRU(u, gamma * h)."""
    xs = x.detach().double().numpy()
    hs = [h.copy() for h in h0]
    w = {k: v.detach().double().numpy() for k, v in cell.named_parameters()}
    ys = []
    for t in range(xs.shape[1]):
        inp, dt = xs[:, t, :-1], xs[:, t, -1:]
        for i in range(cell.num_layers):
            gamma = np.exp(-np.maximum(0, w["decay_rate"][i] * dt + w["decay_bias"][i]))
            h = gamma * hs[i]
            gi = inp @ w[f"rnn.weight_ih_l{i}"].T + w[f"rnn.bias_ih_l{i}"]
            gh = h @ w[f"rnn.weight_hh_l{i}"].T + w[f"rnn.bias_hh_l{i}"]
            r = sigmoid(gi[:, :H] + gh[:, :H])
            z = sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
            n = np.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
            hs[i] = (1 - z) * n + z * h
            inp = hs[i]
        ys.append(inp)
    return np.stack(ys, 1)


@pytest.mark.parametrize("layers,bias", [(1, True), (2, True), (3, False)])
def test_with_no_elapsed_time_it_is_torch_gru(layers, bias):
    cell = DecayGRU(F + 1, H, layers, bias=bias, seed=1, dtype=torch.float64)
    x = events(2, 30)
    x[..., -1] = 0.0
    h0 = torch.randn(layers, 4, H, generator=torch.Generator().manual_seed(3),
                     dtype=torch.float64)
    xb = x.expand(4, -1, -1).clone()
    with torch.no_grad():
        y, state = cell(xb, streamrnn.State(h=h0))
        want, want_h = cell.rnn(xb[..., :-1], h0)  # torch.nn.GRU, the same weights
    torch.testing.assert_close(y, want, rtol=0, atol=1e-12)
    torch.testing.assert_close(state.h, want_h, rtol=0, atol=1e-12)


@pytest.mark.parametrize("layers", [1, 2])
def test_equals_a_plain_loop_of_its_equations(layers):
    cell = DecayGRU(F + 1, H, layers, seed=4, dtype=torch.float64)
    with torch.no_grad():  # non-trivial decay parameters of both signs
        cell.decay_rate.copy_(torch.linspace(-0.5, 2.0, layers * H).view(layers, H))
        cell.decay_bias.copy_(torch.linspace(-1.0, 0.5, layers * H).view(layers, H))
    x = torch.stack([events(5, 25, gaps=False), events(6, 25)])
    h0 = np.random.default_rng(0).normal(size=(layers, 2, H))
    with torch.no_grad():
        y, _ = cell(x, streamrnn.State(h=torch.tensor(h0)))
    np.testing.assert_allclose(y.numpy(), numpy_reference(cell, x, h0), rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@FAST
@given(cuts=st.lists(st.integers(0, 60), max_size=8).map(sorted), seed=st.integers(0, 999))
def test_an_irregular_stream_in_any_chunking_equals_one_pass(dtype, tol, cuts, seed):
    cell = DecayGRU(F + 1, H, num_layers=2, seed=seed, dtype=dtype)
    model = RecurrentModel(cell, Readout(H, 2, seed=1, dtype=dtype))
    x = events(seed, 60, dtype)
    stream = streamrnn.Stream(model)
    bounds = [0, *cuts, 60]
    got = torch.cat([stream.push(x[a:b]) for a, b in zip(bounds, bounds[1:], strict=False)])
    with torch.no_grad():
        want, state = model(x[None])
    torch.testing.assert_close(got, want[0], rtol=0, atol=tol)
    torch.testing.assert_close(stream.state.h, state.h, rtol=0, atol=tol)


def test_a_stream_in_a_bank_gets_what_it_gets_alone():
    cell = DecayGRU(F + 1, H, num_layers=2, seed=7, dtype=torch.float64)
    xs = [events(10 + i, n) for i, n in enumerate([17, 5, 11])]
    bank = streamrnn.StreamBank(cell, max_streams=4)
    got = {i: [] for i in range(3)}
    for a, b in [(0, 1), (1, 4), (4, 4), (4, 9), (9, 17)]:
        out = bank.push({i: xs[i][a:b] for i in range(3) if a < len(xs[i])})
        for i, y in out.items():
            got[i].append(y)
    for i in range(3):
        with torch.no_grad():
            want, state = cell(xs[i][None])
        torch.testing.assert_close(torch.cat(got[i]), want[0], rtol=0, atol=1e-10)
        torch.testing.assert_close(bank.get_state(i).h, state.h, rtol=0, atol=1e-10)


def test_a_long_gap_forgets_the_state():
    cell = DecayGRU(F + 1, H, num_layers=2, seed=8, dtype=torch.float64)
    x = events(9, 12, gaps=False)
    x[7, -1] = 1e5  # 100 times the slowest initial timescale
    with torch.no_grad():
        y, _ = cell(x[None])
        fresh, _ = cell(x[None, 7:])
    torch.testing.assert_close(y[0, 7:], fresh[0], rtol=0, atol=1e-12)
    x[7, -1] = 1.0  # an ordinary step does not
    with torch.no_grad():
        assert not torch.allclose(cell(x[None])[0][0, 7:], fresh[0], atol=1e-3)


def decaygru_step(w: dict, layers: int, xt: torch.Tensor, hs: list) -> list:
    inp, dt, out = xt[:, :-1], xt[:, -1:], []
    for i in range(layers):
        gamma = torch.exp(-torch.relu(w["cell.decay_rate"][i] * dt + w["cell.decay_bias"][i]))
        h = gamma * hs[i]
        gi = inp @ w[f"cell.rnn.weight_ih_l{i}"].T + w[f"cell.rnn.bias_ih_l{i}"]
        gh = h @ w[f"cell.rnn.weight_hh_l{i}"].T + w[f"cell.rnn.bias_hh_l{i}"]
        r = torch.sigmoid(gi[:, :H] + gh[:, :H])
        z = torch.sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
        n = torch.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
        out.append((1 - z) * n + z * h)
        inp = out[-1]
    return out


@pytest.mark.parametrize("k1,k2,layers,batch", [(3, 7, 1, 1), (4, 10, 2, 2)])
def test_k1_below_k2_gradients_equal_brute_force(k1, k2, layers, batch):
    data = series(80)
    dt = torch.rand(batch, 48, 1, generator=torch.Generator().manual_seed(0),
                    dtype=torch.float64) * 3
    x = torch.cat([torch.stack([data[i * 5: i * 5 + 48, :3] for i in range(batch)]), dt], 2)
    y = torch.stack([data[i * 5 + 1: i * 5 + 49, 6:] for i in range(batch)])
    model = RecurrentModel(DecayGRU(F + 1, H, layers, seed=2, dtype=torch.float64),
                           Readout(H, 1, seed=3, dtype=torch.float64))
    learner = OnlineLearner(model, optimizer=RecordingSGD, lr=0.05, k1=k1, k2=k2, clip=None)
    zeros = [torch.zeros(batch, H, dtype=torch.float64) for _ in range(layers)]
    check_learner_against_reference(
        learner, stacked(lambda w, xt, hs: decaygru_step(w, layers, xt, hs)), zeros, x, y,
        k1, k2, 0.05)


def test_bad_input_is_refused_and_changes_nothing():
    with pytest.raises(ValueError, match=r"input_size must count the features and the Δt "
                                         r"column \(>= 2\), got 1"):
        DecayGRU(1, 4)
    cell = DecayGRU(F + 1, H, seed=0)
    stream = streamrnn.Stream(cell)
    stream.push(events(0, 4, torch.float32))
    before = stream.state.h.clone()
    bad = events(1, 3, torch.float32)
    bad[1, -1] = -0.25
    with pytest.raises(ValueError, match=r"x\[\.\.\., -1\] \(Δt\) must be >= 0, got -0\.25"):
        stream.push(bad)
    assert torch.equal(stream.state.h, before) and stream.steps == 4
    with pytest.raises(ValueError, match=r"features \+ Δt"):
        cell(torch.zeros(1, 2, F))
