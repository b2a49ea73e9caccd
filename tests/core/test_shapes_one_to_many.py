"""One-to-many: roll the state forward feeding each output back in, on real data, without
disturbing the live state, the weights or what the learner does next."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _data import DATA, require
from river import datasets

from streamrnn.cells import GRU, LSTM
from streamrnn.heads import Readout, RecurrentModel
from streamrnn.learn import OnlineLearner
from streamrnn.shapes import rollout

TEXT = DATA / "text" / "tinyshakespeare.txt"


def passengers() -> torch.Tensor:
    """river's AirlinePassengers (144 months), log-scaled and standardised on 1949-1952."""
    y = np.log(np.array([v for _, v in datasets.AirlinePassengers()], dtype=np.float64))
    return torch.tensor((y - y[:48].mean()) / y[:48].std()).unsqueeze(1)


def make_learner():
    model = RecurrentModel(LSTM(1, 16, seed=0, dtype=torch.float64),
                           Readout(16, 1, seed=1, dtype=torch.float64))
    return OnlineLearner(model, k1=6, k2=24, lr=1e-2, horizon=1)


def test_rollout_forecasts_a_horizon_without_disturbing_the_live_stream():
    series = passengers()
    learner, twin = make_learner(), make_learner()
    learner.push(series[:120])
    twin.push(series[:120])
    state = learner.state()
    h, c = state.h.clone(), state.c.clone()
    weights = [p.clone() for p in learner.model.parameters()]
    counts = dict(learner.counts)

    path = learner.rollout(12)  # 1959 forecast month by month

    assert path.shape == (12, 1)
    assert torch.equal(learner.state().h, h) and torch.equal(learner.state().c, c)
    assert all(torch.equal(a, b) for a, b in zip(weights, learner.model.parameters(),
                                                 strict=True))
    assert learner.counts == counts
    assert torch.equal(learner.push(series[120:]), twin.push(series[120:]))  # nothing changed



def test_rollout_equals_feeding_the_outputs_back_by_hand():
    series = passengers()
    model = RecurrentModel(GRU(1, 12, seed=3, dtype=torch.float64),
                           Readout(12, 1, seed=4, dtype=torch.float64))
    with torch.no_grad():
        y, state = model(series[None, :100])
        outs, s, nxt = [], state, y[:, -1]
        for _ in range(10):
            outs.append(nxt)
            out, s = model(nxt[:, None], s)
            nxt = out[:, 0]
    kept = state.h.clone()
    got = rollout(model, state, 10)
    torch.testing.assert_close(got, torch.stack(outs, 1), rtol=0, atol=1e-12)
    assert torch.equal(state.h, kept)
    with pytest.raises(ValueError, match="steps must be a positive int, got 0"):
        rollout(model, state, 0)


def test_token_rollout_generates_text_greedily_or_by_seeded_sampling():
    require(TEXT)
    text = TEXT.read_text()
    chars = sorted(set(text))
    vocab = {ch: i for i, ch in enumerate(chars)}
    ids = torch.tensor([vocab[ch] for ch in text[:12_000]]).reshape(4, -1)
    model = RecurrentModel(LSTM(16, 64, seed=0), Readout(64, len(chars), seed=1),
                           num_tokens=len(chars), seed=2)
    learner = OnlineLearner(model, k1=25, lr=5e-3)
    learner.push_many([0, 1, 2, 3], ids[:, :-1], ids[:, 1:])
    h = learner.state(key=0).h.clone()
    greedy = learner.rollout(40, key=0)
    a = learner.rollout(40, key=0, sample=True, seed=7)
    b = learner.rollout(40, key=0, sample=True, seed=7)
    assert greedy.dtype == torch.int64 and greedy.shape == (40,)
    assert torch.equal(a, b) and torch.equal(learner.state(key=0).h, h)
    sample = "".join(chars[i] for i in a.tolist())
    assert sum(ch in " \n" for ch in sample) >= 3  # it learned that words are separated
