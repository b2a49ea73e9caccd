"""Per-timestep activity recognition on raw 50 Hz smartphone signals (HAPT), users held out.

Data: HAPT (UCI dataset 341, Reyes-Ortiz et al.), 3-axis accelerometer (g) and gyroscope
(rad/s) at 50 Hz from a phone on the waist, 21 users of the official training
partition, labelled segments of 6 activities and 6 postural transitions. Research use
only (see the data folder's README): it is read from ``../shared/data/sensors/hapt``
(``--data``) and never copied.

Task: at every time step (20 ms), name the activity now (12 classes), from the signal so
far only: a causal, many-to-many stream. Steps outside any labelled segment (~27%) are
neither learned from nor scored. Label ranges are read as 1-based and inclusive.

Split: the first 16 users (1, 3, 5, 6, 7, 8, 11, 14, 15, 16, 17, 19, 21, 22, 23, 25) train;
the other 5 (26, 27, 28, 29, 30) are held out and only ever streamed once, for scoring.

Training (the library's online learner, in epochs over the training users): 32 keyed
streams ("lanes") of a :class:`streamrnn.learn.OnlineLearner` each play random clips of
the training sessions (random session, random start, 2.56 s to 60 s), 2.56 s (128
steps) per ``push_many`` with their labels (unlabelled steps masked out of the loss), so
every push is one TBPTT(128, 128) update over 32 streams whose states are carried from
push to push, as at test time; a lane is reset when it starts a new clip. Adam, lr 2e-3
decaying linearly to 2e-4, gradient norm clipped to 1, 15 epochs (an epoch = as many
steps as the training sessions hold). Inputs are z-scored with the training users'
channel statistics. These settings were fixed before looking at held-out scores, apart
from one change: playing whole sessions side by side from their starts (every session
follows the same protocol, so each batch held a single activity) collapsed, at 59%.

Test: each held-out session is replayed as a live sensor: timestamped records, 1 s at a
time (50 records), through :class:`~streamrnn.adapters.sensor.SensorAdapter` (period
20 ms) into a :class:`streamrnn.Stream`, and the class of every step is the argmax of
its output. Reported: per-timestep accuracy on the held-out users' labelled steps, on
the 6 basic activities alone, and the majority-class baseline (the most frequent
training class).

Run::

    python examples/hapt_activity.py                 # 15 epochs
    python examples/hapt_activity.py --epochs 3      # a quicker, weaker run
"""

from __future__ import annotations

import argparse
import gzip
import re
import time
from pathlib import Path

import numpy as np
import torch

import streamrnn
from streamrnn.adapters.sensor import SensorAdapter
from streamrnn.heads import Readout, RecurrentModel
from streamrnn.learn import OnlineLearner

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "sensors" / "hapt"
TEST_USERS = (26, 27, 28, 29, 30)
CHANNELS = ["acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]
NAMES = ["WALKING", "WALKING_UPSTAIRS", "WALKING_DOWNSTAIRS", "SITTING", "STANDING",
         "LAYING", "STAND_TO_SIT", "SIT_TO_STAND", "SIT_TO_LIE", "LIE_TO_SIT",
         "STAND_TO_LIE", "LIE_TO_STAND"]
PERIOD = 0.02  # 50 Hz


def _read(path: Path) -> np.ndarray:
    with gzip.open(path, "rt") as f:
        return np.loadtxt(f, dtype=np.float64)


def load(data: Path) -> list[dict]:
    """Every session: user, experiment, signals ``(T, 6)``, labels ``(T,)`` (-1: none)."""
    raw = data / "RawData"
    segments: dict = {}
    for line in (raw / "labels.txt").read_text().split("\n"):
        if line.strip():
            exp, user, act, start, end = (int(v) for v in line.split())
            segments.setdefault((exp, user), []).append((act, start, end))
    sessions = []
    for acc_path in sorted(raw.glob("acc_exp*_user*.txt.gz")):
        exp, user = (int(v) for v in re.findall(r"\d+", acc_path.name))
        x = np.concatenate([_read(acc_path), _read(raw / acc_path.name.replace("acc", "gyro"))],
                           axis=1)
        labels = np.full(len(x), -1, dtype=np.int64)
        for act, start, end in segments.get((exp, user), []):
            labels[start - 1 : end] = act - 1  # 1-based, inclusive
        sessions.append({"user": user, "exp": exp, "x": x, "y": labels})
    if not sessions:
        raise SystemExit(f"no HAPT sessions under {raw} (pass --data)")
    return sessions


def train(sessions: list[dict], mean, std, *, epochs: int, hidden: int, chunk: int,
          lr: float, seed: int, lanes: int = 32, log=print) -> RecurrentModel:
    """Train a 2-layer LSTM with the online learner on ``lanes`` streams of random clips.

    Every lane is a keyed stream of the learner that plays a clip (a random session from
    a random start, 2.56 s to 60 s long), ``chunk`` steps per push, its state carried
    from push to push; at the end of a clip the lane is reset and starts another one.
    Each push is one TBPTT(chunk, chunk) update over all lanes. The sessions all follow
    the same protocol (the same order of activities), so playing them side by side
    from their starts would give batches of one activity at a time; random clips mix
    the activities in every batch. The learning rate decays linearly to a tenth.
    """
    rng = np.random.default_rng(seed)
    model = RecurrentModel(streamrnn.LSTM(6, hidden, num_layers=2, seed=seed),
                           Readout(hidden, len(NAMES), seed=seed + 1))
    learner = OnlineLearner(model, loss=torch.nn.CrossEntropyLoss(), lr=lr, k1=chunk,
                            clip=1.0, max_streams=lanes)
    z = [((s["x"] - mean) / std).astype(np.float32) for s in sessions]
    labels = [s["y"] for s in sessions]
    keys = [f"lane-{i}" for i in range(lanes)]
    clips: list = [None] * lanes  # [session, position, end] of each lane

    def new_clip(i: int) -> None:
        k = int(rng.integers(len(z)))
        start = int(rng.integers(0, len(z[k]) - chunk + 1))
        end = min(len(z[k]), start + int(rng.integers(chunk, 3000)))
        clips[i] = [k, start, end]

    for i in range(lanes):
        new_clip(i)
    per_epoch = sum(len(v) for v in z) // (lanes * chunk)
    total, done = epochs * per_epoch, 0
    for epoch in range(epochs):
        t0, losses = time.perf_counter(), []
        for _ in range(per_epoch):
            x = np.empty((lanes, chunk, 6), dtype=np.float32)
            y = np.empty((lanes, chunk), dtype=np.int64)
            for i, key in enumerate(keys):
                if clips[i][1] + chunk > clips[i][2]:
                    new_clip(i)
                    if key in learner:
                        learner.reset(key=key)
                k, pos, _ = clips[i]
                x[i], y[i] = z[k][pos : pos + chunk], labels[k][pos : pos + chunk]
                clips[i][1] = pos + chunk
            for group in learner.optimizer.param_groups:
                group["lr"] = lr * (1.0 - 0.9 * done / total)
            yt = torch.from_numpy(y)
            learner.push_many(keys, torch.from_numpy(x), yt.clamp(min=0), mask=yt >= 0)
            learner.flush()
            done += 1
            if learner.last_loss is not None:
                losses.append(learner.last_loss)
        log(f"epoch {epoch + 1}/{epochs}: mean loss {np.mean(losses):.3f} "
            f"({time.perf_counter() - t0:.0f} s)")
    return model


def stream_session(model, session: dict, mean, std, *, second: int = 50) -> np.ndarray:
    """Replay one session as a live 50 Hz sensor; the predicted class of every step."""
    adapter = SensorAdapter(CHANNELS, PERIOD, normalize=False, mask_features=False,
                            age_features=False, dtype=torch.float64)
    stream = streamrnn.Stream(model)
    records = [(i * PERIOD, dict(zip(CHANNELS, row, strict=True)))
               for i, row in enumerate(session["x"].tolist())]
    scale_mean = torch.from_numpy(mean)
    scale_std = torch.from_numpy(std)
    out = []

    def step(rows: torch.Tensor) -> None:
        if len(rows):
            z = ((rows - scale_mean) / scale_std).to(torch.float32)
            out.append(stream.push(z).argmax(-1))

    for a in range(0, len(records), second):
        step(adapter.push(records[a : a + second]))
    step(adapter.flush())
    pred = torch.cat(out).numpy()
    if len(pred) != len(session["x"]):
        raise RuntimeError(f"adapter gave {len(pred)} rows for {len(session['x'])} samples")
    return pred


def run(data: Path, *, epochs: int, hidden: int, chunk: int, lr: float, seed: int,
        log=print) -> dict:
    """Train on the training users, stream the held-out ones; accuracies and timings."""
    t0 = time.perf_counter()
    sessions = load(data)
    train_s = [s for s in sessions if s["user"] not in TEST_USERS]
    test_s = [s for s in sessions if s["user"] in TEST_USERS]
    stacked = np.concatenate([s["x"] for s in train_s])
    mean, std = stacked.mean(0), stacked.std(0)
    users = sorted({s["user"] for s in train_s})
    log(f"HAPT: {len(train_s)} training sessions (users {users}), {len(test_s)} held-out "
        f"sessions (users {list(TEST_USERS)}); loaded in {time.perf_counter() - t0:.0f} s")
    t1 = time.perf_counter()
    model = train(train_s, mean, std, epochs=epochs, hidden=hidden, chunk=chunk, lr=lr,
                  seed=seed, log=log)
    train_seconds = time.perf_counter() - t1
    model.eval()
    t2 = time.perf_counter()
    pred = np.concatenate([stream_session(model, s, mean, std) for s in test_s])
    stream_seconds = time.perf_counter() - t2
    truth = np.concatenate([s["y"] for s in test_s])
    labelled = truth >= 0
    basic = labelled & (truth < 6)
    train_labels = np.concatenate([s["y"] for s in train_s])
    majority = int(np.bincount(train_labels[train_labels >= 0]).argmax())
    return {
        "accuracy": float((pred[labelled] == truth[labelled]).mean()),
        "accuracy_basic": float((pred[basic] == truth[basic]).mean()),
        "majority": majority,
        "majority_accuracy": float((truth[labelled] == majority).mean()),
        "majority_accuracy_basic": float((truth[basic] == majority).mean()),
        "recall": {NAMES[k]: (float((pred[truth == k] == k).mean()), int((truth == k).sum()))
                   for k in range(len(NAMES)) if (truth == k).any()},
        "labelled_steps": int(labelled.sum()),
        "steps": len(truth),
        "train_seconds": train_seconds,
        "stream_seconds": stream_seconds,
        "seconds": time.perf_counter() - t0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--chunk", type=int, default=128, help="TBPTT window (steps)")
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    r = run(args.data, epochs=args.epochs, hidden=args.hidden, chunk=args.chunk, lr=args.lr,
            seed=args.seed)
    print()
    print(f"| held-out users {list(TEST_USERS)}, per-timestep (50 Hz) | accuracy, 12 classes "
          f"| accuracy, 6 basic activities |")
    print("|---|---:|---:|")
    print(f"| streamrnn 2-layer LSTM {args.hidden}, streamed causally | {r['accuracy']:.3f} | "
          f"{r['accuracy_basic']:.3f} |")
    print(f"| majority class ({NAMES[r['majority']]}) | {r['majority_accuracy']:.3f} | "
          f"{r['majority_accuracy_basic']:.3f} |")
    print()
    print(f"{r['labelled_steps']:,} labelled test steps of {r['steps']:,}; training "
          f"{r['train_seconds']:.0f} s ({args.epochs} epochs), streaming the held-out sessions "
          f"{r['stream_seconds']:.1f} s ({r['steps'] / r['stream_seconds']:,.0f} steps/s "
          f"through adapter + model); total {r['seconds']:.0f} s")
    for name, (recall, n) in r["recall"].items():
        print(f"  {name:<20} recall {recall:.3f} ({n:,} steps)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
