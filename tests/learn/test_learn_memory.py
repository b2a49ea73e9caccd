"""Long dependencies learned online: remember a marked bit for 100+ steps.

Each of 16 streams is a run of episodes. At the start of an episode a *write* flag marks
the step whose value (+1 / -1) must be remembered; after a delay of 1 to 130 steps
(log-uniform, so short delays teach the task and long ones test it) a *query* flag asks
for that bit (two classes). Every other step carries a random +1 / -1 distractor on the
same value channel, so a memory must open only on the write flag. The target is given
only at query steps (a mask). TBPTT(k1=20, k2=140) covers the longest delay.

LSTM and GRU (default initialisation) learn it online and answer correctly after 100+
steps; the plain tanh RNN, which has no gate to shut out the distractors and whose
gradient vanishes over 100 steps, stays near chance.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamrnn.cells import GRU, LSTM, RNN
from streamrnn.heads import Readout, RecurrentModel
from streamrnn.learn import OnlineLearner

STREAMS, STEPS, LONGEST = 16, 12_000, 130


def episodes(rng: np.random.Generator, steps: int):
    """One stream: inputs (value, query, write), bit targets, target mask, delay."""
    x = np.zeros((steps, 3), np.float32)
    x[:, 0] = rng.choice([-1.0, 1.0], steps)  # distractors
    y = np.zeros(steps, np.int64)
    mask = np.zeros(steps, bool)
    delay = np.zeros(steps, np.int64)
    t = 0
    while t < steps:
        d = int(np.exp(rng.uniform(0.0, np.log(LONGEST + 1))))
        bit = int(rng.integers(2))
        x[t, 0], x[t, 2] = (1.0 if bit else -1.0), 1.0
        if t + d < steps:
            x[t + d, 1], y[t + d], mask[t + d], delay[t + d] = 1.0, bit, True, d
        t += d + 1
    return x, y, mask, delay


@pytest.mark.slow
@pytest.mark.parametrize("cell,learns", [(LSTM, True), (GRU, True), (RNN, False)])
def test_gated_cells_remember_a_bit_for_100_steps_online_plain_rnn_does_not(cell, learns):
    rng = np.random.default_rng(0)
    data = [episodes(rng, STEPS) for _ in range(STREAMS)]
    x, y, mask = (torch.tensor(np.stack([d[i] for d in data])) for i in range(3))
    delay = np.stack([d[3] for d in data])
    model = RecurrentModel(cell(3, 32, seed=0), Readout(32, 2, seed=1))
    learner = OnlineLearner(model, k1=20, k2=LONGEST + 10, lr=5e-3, target_kind="classes")
    keys = list(range(STREAMS))
    guesses = torch.cat([
        learner.push_many(keys, x[:, i:i + 500], y[:, i:i + 500], mask=mask[:, i:i + 500])
        .argmax(-1) for i in range(0, STEPS, 500)], 1).numpy()
    last = np.zeros_like(mask.numpy())
    last[:, -STEPS // 4:] = True
    long_queries = mask.numpy() & last & (delay >= 100)
    assert long_queries.sum() >= 40
    accuracy = float((guesses[long_queries] == y.numpy()[long_queries]).mean())
    if learns:
        assert accuracy >= 0.9, accuracy
    else:
        assert accuracy <= 0.7, accuracy
    learner.flush()
    assert learner.counts["learned"] == int(mask.sum())  # every query was learned from
