"""Learner checkpoints of format version 1, written by earlier streamrnn (``data/``).

Version 1 stored the entering states as ``streams.enter_h`` / ``streams.enter_c`` and,
before commit 7ff21fc, the model's state as ``{num_layers, hidden_size, cell}``; both
kinds of file exist. Each file here was written at step ``HALF`` of :func:`run` by the
commit named in :data:`FILES`; to write one again, run this module under a checkout of
that commit::

    git worktree add /tmp/old <commit>
    PYTHONPATH=/tmp/old python tests/learn/_v1_files.py <name>

The module uses public names only, so the tests run the same :func:`make` and
:func:`run` with today's streamrnn.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from streamrnn.cells import GRU, LSTM
from streamrnn.heads import Readout, RecurrentModel
from streamrnn.learn import OnlineLearner

DATA = Path(__file__).parent / "data"
F64 = torch.float64
STEPS, HALF = 40, 20
# name -> (the commit that wrote it, the cell)
FILES = {"lstm_v1_efbbe9e": ("efbbe9e", "LSTM"), "gru_v1_8ef9ebb": ("8ef9ebb", "GRU")}


def make(cell: str) -> OnlineLearner:
    kind = {"LSTM": LSTM, "GRU": GRU}[cell]
    model = RecurrentModel(kind(2, 4, seed=0, dtype=F64), Readout(4, 1, seed=1, dtype=F64))
    return OnlineLearner(model, k1=3, k2=7, lr=1e-2)


def series() -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``(3, STEPS, 2)`` and targets ``(3, STEPS, 1)`` of three streams."""
    t = torch.arange(STEPS, dtype=F64)[None, :, None]
    x = torch.sin(t / torch.tensor([3.0, 4.0, 5.0], dtype=F64)[:, None, None]
                  + torch.tensor([0.0, 1.0], dtype=F64))
    return x, torch.tanh(x[..., :1] - x[..., 1:])


def run(learner: OnlineLearner, lo: int, hi: int) -> torch.Tensor:
    """Steps ``lo .. hi`` of the default stream (one at a time, targets two steps late)
    and of streams "a" and ("b", 1) (chunks of 4 with their targets)."""
    x, y = series()
    outs = []
    for t in range(lo, hi):
        outs.append(learner.step(x[0, t]))
        if t >= 2:
            learner.learn(t - 2, y[0, t - 2])
    for t in range(lo, hi, 4):
        cut = slice(t, min(t + 4, hi))
        outs.append(learner.push_many(["a", ("b", 1)], x[1:, cut], y[1:, cut]).reshape(-1))
    return torch.cat([o.reshape(-1) for o in outs])


if __name__ == "__main__":
    name = sys.argv[1]
    learner = make(FILES[name][1])
    run(learner, 0, HALF)
    learner.save(DATA / f"{name}.safetensors")
