"""Many-to-many of equal length, learned online on real data: a readout at every step.

Regression (next hourly load of the ETTh1 transformer) and classification (next character
of tiny-shakespeare), each scored prequentially: every prediction is made before its
target is learned from.
"""

from __future__ import annotations

import csv

import numpy as np
import torch
import torch.nn.functional as F
from _data import DATA, require

from streamrnn.cells import LSTM
from streamrnn.heads import Readout, RecurrentModel
from streamrnn.learn import OnlineLearner

ETT = DATA / "sensors" / "ett" / "ETTh1.csv"
TEXT = DATA / "text" / "tinyshakespeare.txt"


def ett_column(rows: int, column: str) -> tuple[np.ndarray, np.ndarray]:
    """One ETTh1 column and the hour of day of each row."""
    with require(ETT).open() as f:
        reader = csv.DictReader(f)
        recs = [next(reader) for _ in range(rows)]
    hours = np.array([int(r["date"][11:13]) for r in recs])
    return np.array([float(r[column]) for r in recs], dtype=np.float32), hours


def forecasting_inputs(y: np.ndarray, hours: np.ndarray, warmup: int = 100):
    """Per step: level and change (scaled by the first ``warmup`` steps only, so nothing
    from the future leaks in), and the hour of day on the unit circle."""
    change = np.diff(y, prepend=y[0])
    scale = change[:warmup].std()
    angle = 2 * np.pi * hours / 24
    x = np.stack([(y - y[:warmup].mean()) / y[:warmup].std(), change / scale,
                  np.sin(angle), np.cos(angle)], 1)
    return torch.tensor(x, dtype=torch.float32), float(scale)


def test_online_forecaster_ends_below_the_last_value_forecaster_on_ett():
    """Next-hour HUFL load: the learner predicts the next change (horizon 1, column 1) and
    forecasts last value + change; over the last third of 3,000 hours its prequential MAE
    is below that of the naive last-value forecaster."""
    y, hours = ett_column(3000, "HUFL")
    x, scale = forecasting_inputs(y, hours)
    model = RecurrentModel(LSTM(4, 32, seed=0), Readout(32, 1, seed=100))
    learner = OnlineLearner(model, k1=8, k2=32, lr=1e-2, horizon=1, horizon_column=1)
    change = learner.push(x)[:-1, 0].numpy()
    forecast = y[:-1] + change * scale
    learned = np.abs(forecast - y[1:])
    naive = np.abs(y[:-1] - y[1:])
    last = slice(len(learned) * 2 // 3, None)
    assert learned[last].mean() < 0.97 * naive[last].mean()
    assert learned[last].mean() < learned[: len(learned) // 3].mean()
    learner.flush()
    assert learner.counts["late_dropped"] == 0
    assert learner.counts["learned"] == len(y) - 1


def test_char_model_on_twenty_parallel_streams_beats_the_unigram_model():
    """Next character of tiny-shakespeare, 20 streams of the same text (batchified) in one
    batch: the last quarter's prequential cross-entropy is below the unigram entropy of
    the same text (a frequency model that knew all counts in advance)."""
    text = require(TEXT).read_text()
    vocab = {ch: i for i, ch in enumerate(sorted(set(text)))}
    ids = torch.tensor([vocab[ch] for ch in text[:40_000]])
    data = ids.reshape(20, -1)
    x, y = data[:, :-1], data[:, 1:]
    model = RecurrentModel(LSTM(16, 64, seed=0), Readout(64, len(vocab), seed=1),
                           num_tokens=len(vocab), seed=2)
    learner = OnlineLearner(model, k1=20, lr=3e-3)
    logits = learner.push_many(list(range(20)), x, y)
    assert logits.shape == (20, 1999, len(vocab))
    loss = F.cross_entropy(logits.reshape(-1, len(vocab)), y.reshape(-1), reduction="none")
    loss = loss.reshape(20, -1)
    freq = torch.bincount(ids, minlength=len(vocab)).double() / ids.numel()
    unigram = float(-freq[y.reshape(-1)].log().mean())
    assert float(loss[:, -500:].mean()) < unigram - 0.3
    assert float(loss[:, -500:].mean()) < float(loss[:, :500].mean())
    accuracy = (logits[:, -500:].argmax(-1) == y[:, -500:]).double().mean()
    assert float(accuracy) > float(freq.max())  # beats always guessing the commonest char


def test_readout_every_step_for_regression_and_classes_on_the_same_stream():
    """One sensor stream, two heads: next-value regression and a 3-class label of the next
    change (down / flat / up), both with one output per input step."""
    y, hours = ett_column(400, "OT")
    x, _ = forecasting_inputs(y, hours)
    reg = OnlineLearner(RecurrentModel(LSTM(4, 16, seed=0), Readout(16, 1, seed=1)),
                        k1=10, k2=11, horizon=1, horizon_column=0)
    # 0 down, 1 flat, 2 up
    classes = torch.bucketize(x[1:, 1].contiguous(), torch.tensor([-0.5, 0.5]))
    clf = OnlineLearner(RecurrentModel(LSTM(4, 16, seed=0), Readout(16, 3, seed=1)),
                        k1=10, loss=torch.nn.CrossEntropyLoss())
    assert clf.target_kind == "classes"
    pred = reg.push(x)
    logits = clf.push(x[:-1], classes)
    reg.flush()
    clf.flush()
    assert pred.shape == (400, 1) and logits.shape == (399, 3)
    assert reg.counts["learned"] == 399  # the target of step 399 is not known yet
    assert clf.counts["learned"] == 390  # steps 390..398 wait for the window ending at 400
