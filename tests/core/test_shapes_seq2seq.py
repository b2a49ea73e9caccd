"""Many-to-many of different lengths: at every hour an encoder state starts a decoder that
forecasts the next 6 hours as one sequence, learned online on ETTh1."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from _data import DATA, require

from streamrnn.cells import GRU, LSTM
from streamrnn.heads import Readout
from streamrnn.learn import OnlineLearner
from streamrnn.shapes import Seq2Seq

ETT = DATA / "sensors" / "ett" / "ETTh1.csv"


def hufl(rows: int):
    require(ETT)
    with ETT.open() as f:
        reader = csv.DictReader(f)
        recs = [next(reader) for _ in range(rows)]
    y = np.array([float(r["HUFL"]) for r in recs], dtype=np.float32)
    angle = 2 * np.pi * np.array([int(r["date"][11:13]) for r in recs]) / 24
    change = np.diff(y, prepend=y[0])
    scale = float(change[:100].std())  # from the first 100 hours only
    x = np.stack([(y - y[:100].mean()) / y[:100].std(), change / scale,
                  np.sin(angle), np.cos(angle)], 1)
    return y, torch.tensor(x, dtype=torch.float32), scale


def test_online_seq2seq_forecasts_six_hours_better_than_persistence():
    """Targets: the next 6 changes (horizon_path over column 1), arriving 6 hours late;
    forecast = last value + cumulative predicted changes. Over the last third of 3,000
    hours the mean absolute error over the 6 hours beats repeating the last value."""
    y, x, scale = hufl(3000)
    h, n = 6, len(y)
    model = Seq2Seq(LSTM(4, 32, seed=0), LSTM(1, 32, seed=1), Readout(32, 1, seed=2), horizon=h)
    learner = OnlineLearner(model, k1=8, k2=32, lr=1e-2, horizon=h, horizon_column=1,
                            horizon_path=True)
    pred = learner.push(x)
    assert pred.shape == (n, h, 1)
    forecast = y[: n - h, None] + np.cumsum(pred[: n - h, :, 0].numpy() * scale, 1)
    future = np.stack([y[i + 1: n - h + i + 1] for i in range(h)], 1)
    err = np.abs(forecast - future).mean(1)
    persistence = np.abs(future - y[: n - h, None]).mean(1)
    last = slice(len(err) * 2 // 3, None)
    assert err[last].mean() < 0.9 * persistence[last].mean()
    assert learner.counts["late_dropped"] == 0  # k2 >= k1 + horizon


def test_path_targets_equal_the_next_inputs_given_by_hand():
    """horizon_path: the target of step t is the inputs of steps t+1 .. t+h (column 1),
    learned exactly as if given with learn(t, x[t+1:t+h+1, 1:2]) when step t+h arrives."""
    _, x, _ = hufl(80)
    x = x.double()

    def make():
        model = Seq2Seq(GRU(4, 8, seed=0, dtype=torch.float64),
                        GRU(1, 8, seed=1, dtype=torch.float64),
                        Readout(8, 1, seed=2, dtype=torch.float64), horizon=3)
        return model

    auto = OnlineLearner(make(), k1=4, k2=8, horizon=3, horizon_column=1, horizon_path=True)
    manual = OnlineLearner(make(), k1=4, k2=8)
    for t in range(80):
        a, b = auto.step(x[t]), manual.step(x[t])
        assert torch.equal(a, b)
        if t >= 3:
            assert manual.learn(t - 3, x[t - 2:t + 1, 1:2])
    auto.flush()
    manual.flush()
    assert auto.counts == manual.counts and auto.counts["learned"] == 77
    assert all(torch.equal(p, q) for p, q in zip(auto.model.parameters(),
                                                 manual.model.parameters(), strict=True))


def test_decoder_must_fit_the_encoder_and_the_head():
    with pytest.raises(ValueError, match="decoder.hidden_size must equal encoder.output_size"):
        Seq2Seq(GRU(4, 8), GRU(1, 16), Readout(16, 1), horizon=3)
    with pytest.raises(ValueError, match="decoder.input_size must equal the head's output size"):
        Seq2Seq(GRU(4, 8), GRU(2, 8), Readout(8, 1), horizon=3)
    with pytest.raises(ValueError, match="horizon must be a positive int, got 0"):
        Seq2Seq(GRU(4, 8), GRU(1, 8), Readout(8, 1), horizon=0)
