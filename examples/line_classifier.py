"""Many-to-one on a token stream: who speaks this line of tiny-shakespeare?

Each line of speech of the N most frequent speakers (by lines; N = 5: GLOUCESTER, DUKE
VINCENTIO, KING RICHARD II, LEONTES, CORIOLANUS — each from a different play) is a
segment of a character stream. A ``RecurrentModel`` (embedding, LSTM, a readout of N
logits) reads the characters of a line from the initial state and, at the end of the
line (its newline), the readout of the current state is the prediction: the
readout-on-demand shape. The state is reset for every line, so a line is classified from
its own characters only (no name line, no previous line of the same speech).

Data: speeches (a speaker-name line and the lines after it) are split at random (seed)
into 80 % train and 20 % test, so that no speech has lines on both sides. Training is
offline: lines of equal length are batched (one fused call from the initial state per
batch, the loss on the readout of the final state), Adam, a time budget. A tenth of the
other speeches is kept aside for validation: the weights of the epoch with the best
validation accuracy are the ones tested (early stopping; the test lines are read once).

Test: the held-out lines are concatenated into one text and fed as a live stream in
random-size chunks (as they would arrive); a :class:`LineReader` pushes each chunk's
characters in one fused call per line piece, reads out at every newline, resets. Reported:
accuracy against the majority baseline (always the most frequent training speaker), and
that the streamed predictions equal the batched ones.

Usage (from the repository root)::

    python examples/line_classifier.py --minutes 4 --threads 2
"""

from __future__ import annotations

import argparse
import copy
import random
import time
from collections import Counter
from pathlib import Path

import torch
import torch.nn.functional as F

from streamrnn.adapters.tokens import CharCodec
from streamrnn.cells import LSTM
from streamrnn.heads import Readout, RecurrentModel

TEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "text" / "tinyshakespeare.txt"


def speeches(text: str) -> list[tuple[str, list[str]]]:
    """``(speaker, lines)`` of every speech block (``NAME:`` then its lines)."""
    out = []
    for block in text.split("\n\n"):
        rows = [r for r in block.split("\n") if r]
        if len(rows) >= 2 and rows[0].endswith(":"):
            out.append((rows[0][:-1], rows[1:]))
    return out


def split(blocks, holdout: float, seed: int):
    """Speeches shuffled (seed) and cut into ``1 - holdout`` and ``holdout``."""
    blocks = list(blocks)
    random.Random(seed).shuffle(blocks)
    cut = int(len(blocks) * (1 - holdout))
    return blocks[:cut], blocks[cut:]


def lines_of(blocks, speakers) -> list[tuple[str, int]]:
    """``(line, label)`` of every line of the speeches."""
    return [(line, speakers.index(s)) for s, lines in blocks for line in lines]


def batches(lines, codec, batch: int, gen: random.Random):
    """Lines of equal length (plus the newline) as ``(ids (B, T), labels (B,))``."""
    by_len: dict[int, list] = {}
    for line, label in lines:
        by_len.setdefault(len(line) + 1, []).append((line, label))
    out = []
    for group in by_len.values():
        gen.shuffle(group)
        for i in range(0, len(group), batch):
            part = group[i:i + batch]
            ids = torch.tensor([codec.encode(line + "\n") for line, _ in part])
            out.append((ids, torch.tensor([label for _, label in part])))
    gen.shuffle(out)
    return out


def batched_predictions(model, lines, codec) -> torch.Tensor:
    """Readout at each line's newline, lines of equal length in one call each."""
    preds = torch.empty(len(lines), dtype=torch.int64)
    by_len: dict[int, list] = {}
    for i, (line, _) in enumerate(lines):
        by_len.setdefault(len(line) + 1, []).append(i)
    with torch.no_grad():
        for idx in by_len.values():
            ids = torch.tensor([codec.encode(lines[i][0] + "\n") for i in idx])
            _, state = model(ids)
            preds[idx] = model.readout(state).argmax(-1)
    return preds


class LineReader:
    """A live character stream classified line by line: the readout at each newline.

    ``push(text)`` takes any piece of the stream; every line it completes is read out
    (many-to-one on demand) and the state is reset for the next line.
    """

    def __init__(self, model, codec: CharCodec) -> None:
        self.model, self.codec = model, codec
        self.encoder = codec.encoder()
        self.newline = codec.encode("\n")[0]
        self.state = None  # None: the initial state

    def push(self, text: str) -> list[int]:
        """Predicted labels of the lines this piece ends."""
        ids = torch.tensor(self.encoder.push(text), dtype=torch.int64)
        labels, start = [], 0
        ends = (ids == self.newline).nonzero().flatten().tolist()
        with torch.no_grad():
            for end in [*ends, len(ids) - 1]:
                if end < start:
                    continue
                _, self.state = self.model(ids[None, start:end + 1], self.state)
                if end in ends:
                    labels.append(int(self.model.readout(self.state).argmax(-1)))
                    self.state = None
                start = end + 1
        return labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", default=str(TEXT))
    parser.add_argument("--speakers", type=int, default=5, help="N most frequent speakers")
    parser.add_argument("--minutes", type=float, default=4.0, help="training budget")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--emb", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    text = Path(args.file).read_text(encoding="utf-8")
    blocks = speeches(text)
    counts = Counter()
    for speaker, lines in blocks:
        counts[speaker] += len(lines)
    speakers = [s for s, _ in counts.most_common(args.speakers)]
    rest, test = split([b for b in blocks if b[0] in speakers], 0.2, args.seed)
    train, valid = split(rest, 0.1, args.seed + 1)
    train, valid, test = (lines_of(part, speakers) for part in (train, valid, test))

    codec = CharCodec(text)
    cell = LSTM(args.emb, args.hidden, args.layers, seed=args.seed)
    model = RecurrentModel(cell, Readout(args.hidden, len(speakers), seed=args.seed + 1),
                           num_tokens=codec.vocab_size, seed=args.seed + 2)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)

    majority = Counter(label for _, label in train).most_common(1)[0][0]
    print(f"speakers: {', '.join(speakers)}")
    print(f"lines: {len(train):,} train, {len(valid):,} validation, {len(test):,} test "
          f"(split by speech, seed {args.seed}); model: {args.layers}-layer LSTM "
          f"{args.hidden}, embedding {args.emb}")

    gen, start, epoch = random.Random(args.seed), time.perf_counter(), 0
    best, best_acc = None, -1.0
    valid_labels = torch.tensor([label for _, label in valid])
    while time.perf_counter() - start < args.minutes * 60:
        epoch += 1
        total, n = 0.0, 0
        for ids, labels in batches(train, codec, args.batch, gen):
            _, state = model(ids)  # each line from the initial state
            loss = F.cross_entropy(model.readout(state), labels)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            total, n = total + loss.item() * len(labels), n + len(labels)
            if time.perf_counter() - start >= args.minutes * 60:
                break
        acc = float((batched_predictions(model, valid, codec) == valid_labels).float().mean())
        if acc > best_acc:
            best, best_acc = copy.deepcopy(model.state_dict()), acc
        print(f"epoch {epoch}: train loss {total / n:.3f}, validation accuracy {acc:.3f} "
              f"({time.perf_counter() - start:.0f} s)", flush=True)
    model.load_state_dict(best)
    print(f"best validation accuracy {best_acc:.3f}: those weights are tested")

    # the held-out lines as a live stream, in random-size chunks
    stream = "".join(line + "\n" for line, _ in test)
    reader, streamed, pos = LineReader(model, codec), [], 0
    chunker = random.Random(args.seed + 1)
    while pos < len(stream):
        size = chunker.randint(1, 200)
        streamed.extend(reader.push(stream[pos:pos + size]))
        pos += size
    labels = torch.tensor([label for _, label in test])
    streamed = torch.tensor(streamed)
    batched = batched_predictions(model, test, codec)
    acc = float((streamed == labels).float().mean())
    base = float((labels == majority).float().mean())
    print(f"streamed readout == batched readout on {int((streamed == batched).sum())} of "
          f"{len(test)} lines")
    print(f"test accuracy {acc:.3f} vs majority baseline ({speakers[majority]}) {base:.3f} "
          f"over {len(test):,} held-out lines of {len(speakers)} speakers")


if __name__ == "__main__":
    main()
