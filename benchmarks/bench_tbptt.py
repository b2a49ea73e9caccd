"""TBPTT throughput: OnlineLearner against the canonical training loop, side by side.

Task: the character language model of pytorch/examples word_language_model on
tiny-shakespeare (simple character vocabulary): embedding 200, 2-layer LSTM with 200
hidden units, linear decoder, cross-entropy, batch of 20 streams (the canonical batchify:
the text cut into 20 parallel streams), TBPTT windows of 35 steps, gradient clipping 0.25,
SGD lr 20 (the example's defaults; dropout 0 in both so the work is identical).

- canonical: the loop of word_language_model/main.py written out plainly with plain
  torch modules (sequence first, as there): repackage hidden, zero_grad, forward, loss,
  backward, clip_grad_norm_, optimizer step;
- learner: ``OnlineLearner(k1=35)`` fed with ``push_many(keys, x (20, 35), targets)``,
  which returns the predictions and learns every window (one fused forward per window,
  its graph reused by the update, in the same push: the learner's window lane).

Both run in the same process with torch threads 1 and 2, interleaved window by window,
and the median window time is reported in tokens per second (a token is one step of one
stream). Then, in a second interleaved pair, the learner's cost per token with k1=5,
k2=35 (7x the backward work: every 5 steps it recomputes and backpropagates 35) relative
to k1=k2=35.

Each measurement is repeated (``--repeats``, fresh runners; the learner / canonical pair
over twice ``--windows`` windows) and the median ratio printed: single runs of the ratio
vary by a few percent on a shared machine.

Run ``python benchmarks/bench_tbptt.py`` (``--quick`` for a short run).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from streamrnn.cells import LSTM
from streamrnn.heads import Readout, RecurrentModel
from streamrnn.learn import OnlineLearner


def _data_dir() -> Path:
    # ../shared/data beside the checkout (or beside a folder above it, e.g. a worktree)
    for folder in Path(__file__).resolve().parents[1:]:
        if (folder / "shared" / "data").is_dir():
            return folder / "shared" / "data"
    return Path(__file__).resolve().parents[2] / "shared" / "data"


TEXT = _data_dir() / "text" / "tinyshakespeare.txt"
EMB, HIDDEN, LAYERS, BATCH, BPTT, CLIP, LR = 200, 200, 2, 20, 35, 0.25, 20.0


def load() -> tuple[torch.Tensor, int]:
    """The text as ids batchified into 20 streams, ``(B, N)``, and the vocabulary size."""
    text = TEXT.read_text()
    vocab = {ch: i for i, ch in enumerate(sorted(set(text)))}
    ids = torch.tensor([vocab[ch] for ch in text])
    n = ids.shape[0] // BATCH
    return ids[: n * BATCH].reshape(BATCH, n), len(vocab)


class PlainLM(nn.Module):
    """word_language_model's RNNModel (LSTM, no dropout, untied), sequence first."""

    def __init__(self, ntoken: int) -> None:
        super().__init__()
        self.encoder = nn.Embedding(ntoken, EMB)
        self.rnn = nn.LSTM(EMB, HIDDEN, LAYERS)
        self.decoder = nn.Linear(HIDDEN, ntoken)

    def forward(self, data, hidden):
        output, hidden = self.rnn(self.encoder(data), hidden)
        return self.decoder(output), hidden

    def init_hidden(self, bsz):
        weight = next(self.parameters())
        return (weight.new_zeros(LAYERS, bsz, HIDDEN), weight.new_zeros(LAYERS, bsz, HIDDEN))


def repackage_hidden(h):
    return h.detach() if isinstance(h, torch.Tensor) else tuple(repackage_hidden(v) for v in h)


class Canonical:
    """word_language_model/main.py's train loop, one window per call."""

    def __init__(self, data: torch.Tensor, ntoken: int) -> None:
        torch.manual_seed(0)
        self.model = PlainLM(ntoken)
        self.model.train()
        self.criterion = nn.CrossEntropyLoss()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=LR)
        self.source = data.t().contiguous()  # (N, B): sequence first, as batchify makes it
        self.hidden = self.model.init_hidden(BATCH)
        self.ntoken = ntoken

    def window(self, i: int) -> None:
        seq = self.source[i * BPTT:(i + 1) * BPTT]
        target = self.source[i * BPTT + 1:(i + 1) * BPTT + 1].reshape(-1)
        self.model.zero_grad()
        self.hidden = repackage_hidden(self.hidden)
        output, self.hidden = self.model(seq, self.hidden)
        loss = self.criterion(output.view(-1, self.ntoken), target)
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), CLIP)
        self.optimizer.step()


class Learner:
    """The same model and optimizer in an OnlineLearner, one window pushed per call."""

    def __init__(self, data: torch.Tensor, ntoken: int, k1: int = BPTT, k2: int = BPTT):
        model = RecurrentModel(LSTM(EMB, HIDDEN, LAYERS, seed=0),
                               Readout(HIDDEN, ntoken, seed=1), num_tokens=ntoken, seed=2)
        self.learner = OnlineLearner(model, optimizer=torch.optim.SGD, lr=LR, k1=k1, k2=k2,
                                     clip=CLIP)
        self.data, self.keys = data, list(range(BATCH))

    def window(self, i: int) -> None:
        # Predictions of the window, which is learned in the same push (the window lane).
        self.learner.push_many(self.keys, self.data[:, i * BPTT:(i + 1) * BPTT],
                               self.data[:, i * BPTT + 1:(i + 1) * BPTT + 1])


def measure(runners: dict, windows: int) -> dict:
    """Median seconds per window of each runner, interleaved window by window (the order
    rotates) so that load changes on a busy machine hit all of them alike."""
    times = {name: [] for name in runners}
    names = list(runners)
    for i in range(2):  # warm-up
        for run in runners.values():
            run.window(i)
    for i in range(2, windows + 2):
        for name in names[i % len(names):] + names[: i % len(names)]:
            start = time.perf_counter()
            runners[name].window(i)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer windows")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--windows", type=int, default=None, help="windows timed per runner")
    parser.add_argument("--repeats", type=int, default=5, help="repeats (fresh runners)")
    args = parser.parse_args()
    windows = args.windows or (15 if args.quick else 60)
    data, ntoken = load()
    tokens = BPTT * BATCH
    print(f"char LM on {TEXT.name}: vocab {ntoken}, emb {EMB}, {LAYERS}-layer LSTM {HIDDEN}, "
          f"batch {BATCH}, bptt {BPTT}, SGD lr {LR}, clip {CLIP}; median of {2 * windows} "
          f"(learner / canonical) and {windows} (k1 = 5) windows, interleaved")
    for threads in args.threads:
        torch.set_num_threads(threads)
        ratios, costs = [], []
        for rep in range(args.repeats):
            # Each comparison interleaves exactly the two runs it compares: a third,
            # 7x heavier runner in the same rotation disturbs the pair unevenly.
            sec = measure({"canonical": Canonical(data, ntoken),
                           "learner": Learner(data, ntoken)}, 2 * windows)
            c, lr_ = tokens / sec["canonical"], tokens / sec["learner"]
            sec = measure({"learner": Learner(data, ntoken),
                           "k1=5": Learner(data, ntoken, k1=5, k2=35)}, windows)
            s = tokens / sec["k1=5"]
            ratios.append(lr_ / c)
            costs.append(sec["k1=5"] / sec["learner"])
            print(f"threads {threads}, repeat {rep + 1}: canonical loop {c:9,.0f} tok/s | "
                  f"learner k1=k2=35 {lr_:9,.0f} tok/s | ratio {ratios[-1]:.3f} | "
                  f"k1=5,k2=35 {s:7,.0f} tok/s, cost per token {costs[-1]:.2f}x")
        print(f"threads {threads}: median ratio learner/canonical "
              f"{statistics.median(ratios):.3f} (range {min(ratios):.3f}-{max(ratios):.3f}); "
              f"k1=5,k2=35 cost per token {statistics.median(costs):.2f}x that of k1=k2=35 "
              f"(7x the backward work)")


if __name__ == "__main__":
    main()
