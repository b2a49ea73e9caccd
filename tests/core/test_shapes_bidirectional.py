"""Bidirectional: offline only, refused on live streams with a pointer to the bounded
lookahead; the lookahead on a stream is chunk-invariant and equals its offline form,
on real smartphone motion (HAPT)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from streamrnn.bank import StreamBank
from streamrnn.cells import GRU, LSTM
from streamrnn.heads import Readout
from streamrnn.learn import OnlineLearner
from streamrnn.lookahead import Bidirectional, Lookahead
from streamrnn.stream import Stream

HAPT = Path(__file__).resolve().parents[3] / "shared" / "data" / "sensors" / "hapt" / "RawData"


@pytest.fixture(scope="module")
def motion() -> torch.Tensor:
    """300 steps of 6-channel smartphone motion (acc + gyro) while walking (samples
    9,700 to 9,999 of user 1's first recording), standardised, float64."""
    acc = HAPT / "acc_exp01_user01.txt.gz"
    if not acc.exists():
        pytest.skip(f"{acc} is absent")
    with gzip.open(acc, "rt") as f, gzip.open(HAPT / "gyro_exp01_user01.txt.gz", "rt") as g:
        x = np.concatenate([np.loadtxt(f, max_rows=10_000), np.loadtxt(g, max_rows=10_000)], 1)
    x = torch.tensor(x[9700:10_000])
    return (x - x.mean(0)) / x.std(0)


def bidirectional(cell=GRU):
    return Bidirectional(cell(6, 8, seed=0, dtype=torch.float64),
                         cell(6, 8, seed=1, dtype=torch.float64),
                         Readout(16, 3, seed=2, dtype=torch.float64))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(0, 40), max_size=12), st.integers(0, 6),
       st.sampled_from([GRU, LSTM]))
def test_lookahead_stream_is_chunk_invariant_and_equals_offline(motion, sizes, lookahead, cell):
    x = motion[:120]
    model = bidirectional(cell)
    live = Lookahead(model, lookahead=lookahead)
    outs, pos = [], 0
    for size in sizes:
        out = live.push(x[pos:pos + size])
        pos = min(120, pos + size)
        assert live.emitted == max(0, pos - lookahead)  # each output exactly L steps late
        outs.append(out)
    outs.append(live.push(x[pos:]))
    outs.append(live.flush())
    with torch.no_grad():
        want = model(x[None], lookahead=lookahead)[0]
    torch.testing.assert_close(torch.cat(outs), want, rtol=0, atol=1e-10)


def test_full_lookahead_is_the_offline_bidirectional_layer_of_torch(motion):
    """Weights copied into nn.LSTM(bidirectional=True): the same outputs."""
    model = Bidirectional(LSTM(6, 8, seed=0, dtype=torch.float64),
                          LSTM(6, 8, seed=1, dtype=torch.float64))
    ref = nn.LSTM(6, 8, batch_first=True, bidirectional=True, dtype=torch.float64)
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(ref, name).copy_(getattr(model.fwd.rnn, name))
            getattr(ref, name + "_reverse").copy_(getattr(model.bwd.rnn, name))
        x = motion[None, :200]
        want = ref(x)[0]
        torch.testing.assert_close(model(x), want, rtol=0, atol=1e-10)
        torch.testing.assert_close(model(x, lookahead=199), want, rtol=0, atol=1e-10)


def test_a_bidirectional_model_on_a_live_stream_is_a_clear_error(motion):
    model = bidirectional()
    hint = r"cannot run on a stream .*Lookahead\(model, lookahead=L\)"
    with pytest.raises(ValueError, match=hint):
        Stream(model)
    with pytest.raises(ValueError, match=hint):
        StreamBank(model)
    with pytest.raises(ValueError, match=hint):
        OnlineLearner(model)
    with pytest.raises(ValueError, match=hint):
        model(motion[None, :5], model.fwd.initial_state(1))
    with pytest.raises(ValueError, match="lookahead must be an int >= 0, got -1"):
        Lookahead(model, lookahead=-1)
    with pytest.raises(ValueError, match="model must be a Bidirectional, got GRU"):
        Lookahead(GRU(6, 8), lookahead=2)


def test_lookahead_lets_a_stream_see_the_future_it_needs(motion):
    """Learn (offline) to output the 3-step-ahead value of a real signal (walking,
    acceleration x): with lookahead 3 it is a copy task, which a causal model (lookahead 0)
    cannot do."""
    x = motion[:200, :1].float()
    target = x[3:]

    def fit(lookahead):
        model = Bidirectional(GRU(1, 8, seed=0), GRU(1, 8, seed=1), Readout(16, 1, seed=2))
        opt = torch.optim.Adam(model.parameters(), lr=2e-2)
        for _ in range(40):
            loss = (model(x[None], lookahead=lookahead)[0, :-3] - target).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return float(loss.detach()), model

    causal, _ = fit(0)
    ahead, model = fit(3)
    assert ahead < 0.1 * causal
    live = Lookahead(model, lookahead=3)
    streamed = torch.cat([live.push(x[i:i + 7]) for i in range(0, 200, 7)] + [live.flush()])
    with torch.no_grad():
        torch.testing.assert_close(streamed, model(x[None], lookahead=3)[0], rtol=0,
                                   atol=1e-5)
