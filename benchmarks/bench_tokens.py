"""Token streams: train-lm's training loop and CharLM's generation against plain torch.

Training: tokens per second of the ``streamrnn train-lm`` loop (:class:`LMTrainer`: the
text batchified into 20 streams, one ``push_many`` + update per window) against the
canonical loop of pytorch/examples ``word_language_model/main.py`` and the bare
``OnlineLearner``, all three on the identical task of ``benchmarks/bench_tbptt.py``
(imported from there: tiny-shakespeare characters, embedding 200, 2-layer LSTM 200,
batch 20, k1 = k2 = 35, SGD lr 20, clip 0.25, no dropout), interleaved window by window,
median window time, torch threads 1 and 2.

Generation: latency per sampled token on 1 thread, the median over the tokens, of
:meth:`CharLM.sample` (one fused step from the live state, softmax sampling with a local
generator, the incremental decoder) against the sampling loop of ``word_language_model/
generate.py`` written out with plain torch modules (``nn.LSTM`` step, exp of the
logits / temperature, ``torch.multinomial``), for the model above and train-lm's
default model (embedding 64, 2-layer LSTM 256). Blocks of 50 tokens alternate between the
two so that load changes hit both alike. Weights are untrained (the cost does not depend
on them).

Run ``python benchmarks/bench_tokens.py`` (``--quick`` for a short run).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_tbptt as canon  # noqa: E402  (the canonical loop, as written there)

from streamrnn.adapters.tokens import CharCodec  # noqa: E402
from streamrnn.apps.lm import CharLM, LMTrainer, build_model  # noqa: E402


class TrainLM:
    """``train-lm``'s loop on the same task: LMTrainer.train, one window per call."""

    def __init__(self) -> None:
        self.trainer = LMTrainer(canon.TEXT, hidden=canon.HIDDEN, layers=canon.LAYERS,
                                 emb=canon.EMB, batch=canon.BATCH, k1=canon.BPTT,
                                 lr=canon.LR, clip=canon.CLIP, optimizer="sgd")

    def window(self, i: int) -> None:
        self.trainer.train(steps=self.trainer.steps + canon.BPTT)


class PlainSampler:
    """word_language_model/generate.py's loop with plain torch modules."""

    def __init__(self, vocab: int, emb: int, hidden: int, layers: int) -> None:
        torch.manual_seed(0)
        self.encoder = nn.Embedding(vocab, emb)
        self.rnn = nn.LSTM(emb, hidden, layers)
        self.decoder = nn.Linear(hidden, vocab)
        self.hidden = (torch.zeros(layers, 1, hidden), torch.zeros(layers, 1, hidden))
        self.input = torch.zeros(1, 1, dtype=torch.long)
        self.gen = torch.Generator().manual_seed(0)

    def step(self) -> int:
        with torch.no_grad():
            output, self.hidden = self.rnn(self.encoder(self.input), self.hidden)
            weights = self.decoder(output).squeeze().div(1.0).exp().cpu()
            idx = torch.multinomial(weights, 1, generator=self.gen)[0]
            self.input.fill_(idx)
        return int(idx)


def latency(emb: int, hidden: int, layers: int, tokens: int) -> tuple[float, float]:
    """Median seconds per token: (plain loop, CharLM.sample)."""
    codec = CharCodec(canon.TEXT.read_text()[:100_000])
    lm = CharLM(build_model(codec.vocab_size, emb=emb, hidden=hidden, layers=layers), codec)
    lm.push("First Citizen:\n")
    plain = PlainSampler(codec.vocab_size, emb, hidden, layers)
    blocks = -(-(tokens + 20) // 50)
    ours = lm.sample(blocks * 50, seed=0)
    t_plain, t_ours = [], []
    for _ in range(blocks):
        for _ in range(50):
            start = time.perf_counter()
            plain.step()
            t_plain.append(time.perf_counter() - start)
        for _ in range(50):
            start = time.perf_counter()
            next(ours)
            t_ours.append(time.perf_counter() - start)
    return statistics.median(t_plain[20:]), statistics.median(t_ours[20:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer windows and tokens")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--part", choices=("all", "train", "generate"), default="all")
    args = parser.parse_args()
    windows, tokens = (10, 300) if args.quick else (40, 1000)
    if args.part != "generate":
        train_table(args.threads, windows)
    if args.part != "train":
        generate_table(tokens)


def train_table(threads_list: list[int], windows: int) -> None:
    data, ntoken = canon.load()
    per_window = canon.BPTT * canon.BATCH
    print(f"training: char LM on {canon.TEXT.name}, emb {canon.EMB}, {canon.LAYERS}-layer "
          f"LSTM {canon.HIDDEN}, batch {canon.BATCH}, k1=k2={canon.BPTT}, SGD lr {canon.LR}, "
          f"clip {canon.CLIP}; tokens/s of the median of {windows} windows, interleaved")
    print(f"{'threads':>7} | {'canonical loop':>14} | {'OnlineLearner':>13} | "
          f"{'train-lm loop':>13} | {'train-lm / canonical':>20}")
    for threads in threads_list:
        torch.set_num_threads(threads)
        sec = canon.measure({"canonical": canon.Canonical(data, ntoken),
                             "learner": canon.Learner(data, ntoken), "train-lm": TrainLM()},
                            windows)
        c, le, t = (per_window / sec[k] for k in ("canonical", "learner", "train-lm"))
        print(f"{threads:>7} | {c:>14,.0f} | {le:>13,.0f} | {t:>13,.0f} | {t / c:>20.3f}")


def generate_table(tokens: int) -> None:
    torch.set_num_threads(1)
    print(f"\ngeneration: 1 thread, median latency per token over {tokens} tokens "
          f"(blocks of 50 alternating)")
    print(f"{'model':>28} | {'plain generate.py loop':>22} | {'CharLM.sample':>13} | "
          f"{'ratio':>5}")
    for name, (emb, hidden, layers) in {"emb 200, 2-layer LSTM 200": (200, 200, 2),
                                        "emb 64, 2-layer LSTM 256": (64, 256, 2)}.items():
        plain, ours = latency(emb, hidden, layers, tokens)
        print(f"{name:>28} | {plain * 1e6:>19,.0f} µs | {ours * 1e6:>10,.0f} µs | "
              f"{ours / plain:>5.2f}")


if __name__ == "__main__":
    main()
