"""Irregular sensor samples: a time-aware cell on Δt against resample-then-GRU (HAPT).

Data: HAPT (UCI dataset 341, Reyes-Ortiz et al.), 50 Hz smartphone accelerometer and
gyroscope, 12 activity / transition classes per time step; research use only, read from
``../shared/data/sensors/hapt`` (``--data``) and never copied. Users 26-30 are held out,
the other 16 train (as in ``examples/hapt_activity.py``).

Irregularity, simulated on the real signals (seeded): the phone delivers each 50 Hz
sample with probability ``--keep`` (0.3: ~15 Hz on average, geometric gaps) and drops out
entirely for U(0.5, 3) s at random moments (on average every 20 s), as a wireless sensor
with a busy radio would. The samples that remain keep their true timestamps.

Models (1 layer, ``--hidden`` units each, the same number of updates):

- ``grid GRU``: resample-then-GRU, :class:`~streamrnn.adapters.sensor.SensorAdapter` onto
  a 12.5 Hz grid (hold the last value), values only;
- ``grid GRU + mask/age``: the same with the adapter's per-channel mask and age columns
  (age as log1p(periods)): the gap is visible to the GRU;
- ``DecayGRU on Δt``: no grid; every sample as it came, with Δt since the previous one
  (:class:`~streamrnn.adapters.sensor.deltas.TimeDeltas`, unit 20 ms) as the last column
  of :class:`streamrnn.DecayGRU` (GRU-D's hidden decay, Che et al. 2018);
- ``GRU on events + Δt``: the same rows into a plain GRU, log1p(Δt) as a feature
  (Δt seen, no decay): what the decay adds.

Training: each model by :class:`streamrnn.OnlineLearner` on 32 keyed lanes that play
random clips of the training sessions, 64 rows per ``push_many`` (TBPTT(64, 64)),
unlabelled rows masked, Adam lr 2e-3 decaying linearly to 2e-4, clip 1, inputs z-scored
with the training users' statistics.

Test: each held-out session is replayed live, 1 s of samples per push, through its
adapter into a :class:`streamrnn.Stream`. Every model is scored at the same instants,
the 12.5 Hz grid times: the prediction in force at time τ is the output of the model's
latest row at or before τ (causal for all), the truth is the label of the 50 Hz sample
at τ; unlabelled instants are skipped. Reported: accuracy (12 classes and the 6 basic
activities), training time and streaming rate.

Run::

    python examples/irregular_hapt.py --data ../shared/data/sensors/hapt [--updates 1500]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

# run as a script, this folder is on sys.path: the HAPT reader is hapt_activity's
from hapt_activity import CHANNELS, load

import streamrnn
from streamrnn import OnlineLearner, Readout, RecurrentModel
from streamrnn.adapters.sensor import SensorAdapter
from streamrnn.adapters.sensor.deltas import TimeDeltas

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "sensors" / "hapt"
TEST_USERS = (26, 27, 28, 29, 30)
BASE, GRID, CLASSES = 0.02, 0.08, 12  # 50 Hz samples, 12.5 Hz grid
MODELS = ("grid GRU", "grid GRU + mask/age", "DecayGRU on Δt", "GRU on events + Δt")


def irregular(session: dict, keep: float, seed: int) -> np.ndarray:
    """Indices of the samples delivered: kept with probability ``keep``, minus dropouts."""
    rng = np.random.default_rng([seed, session["exp"], session["user"]])
    n = len(session["x"])
    kept = rng.random(n) < keep
    for _ in range(rng.poisson(n * BASE / 20.0)):
        start = int(rng.integers(n))
        kept[start:start + int(rng.uniform(0.5, 3.0) / BASE)] = False
    return np.flatnonzero(kept)


class Representation:
    """One model's input rows from delivered samples, replayed in pushes of any size."""

    def __init__(self, model: str, mean: np.ndarray, std: np.ndarray) -> None:
        self.model, self.mean, self.std = model, mean, std
        if model.startswith("grid"):
            extra = model.endswith("mask/age")
            self.adapter = SensorAdapter(CHANNELS, GRID, normalize=False, mask_features=extra,
                                         age_features=extra, dtype=torch.float64)
        else:
            self.adapter = TimeDeltas(6, unit=BASE, dtype=torch.float64)

    @property
    def features(self) -> int:
        return {"grid GRU": 6, "grid GRU + mask/age": 18}.get(self.model, 7)

    def push(self, t: np.ndarray, x: np.ndarray, final: bool = False):
        """Rows ``(R, features)`` float32 and their times ``(R,)`` for these samples."""
        if isinstance(self.adapter, SensorAdapter):
            records = [(float(ti), dict(zip(CHANNELS, row, strict=True)))
                       for ti, row in zip(t, x.tolist(), strict=True)]
            rows = self.adapter.push(records)
            times = self.adapter.last_times
            if final:
                tail = self.adapter.flush()
                rows, times = torch.cat([rows, tail]), torch.cat([times, self.adapter.last_times])
            rows, times = rows.numpy(), times.numpy()
            rows[:, :6] = (rows[:, :6] - self.mean) / self.std
            rows[:, 12:] = np.log1p(rows[:, 12:])  # age, in periods
        else:
            rows, times = self.adapter.push(t, x).numpy(), t  # increasing: every sample kept
            rows[:, :6] = (rows[:, :6] - self.mean) / self.std
            if self.model == "GRU on events + Δt":
                rows[:, 6] = np.log1p(rows[:, 6])
        return rows.astype(np.float32), times


def make_model(name: str, features: int, hidden: int, seed: int) -> RecurrentModel:
    cell = (streamrnn.DecayGRU(features, hidden, seed=seed) if name == "DecayGRU on Δt"
            else streamrnn.GRU(features, hidden, seed=seed))
    return RecurrentModel(cell, Readout(hidden, CLASSES, seed=seed + 1))


def labels_at(session: dict, times: np.ndarray) -> np.ndarray:
    idx = np.clip(np.rint(times / BASE).astype(np.int64), 0, len(session["y"]) - 1)
    return session["y"][idx]


def train(name: str, data: list, hidden: int, updates: int, seed: int, lanes: int = 32,
          chunk: int = 64, lr: float = 2e-3) -> RecurrentModel:
    """Lanes of random clips of the training rows, one TBPTT(chunk) update per push."""
    rng = np.random.default_rng(seed)
    model = make_model(name, data[0][0].shape[1], hidden, seed)
    learner = OnlineLearner(model, loss=torch.nn.CrossEntropyLoss(), lr=lr, k1=chunk,
                            clip=1.0, max_streams=lanes)
    keys, clips = [f"lane-{i}" for i in range(lanes)], [None] * lanes

    def new_clip(i: int) -> None:
        k = int(rng.integers(len(data)))
        start = int(rng.integers(0, len(data[k][0]) - chunk + 1))
        clips[i] = [k, start, min(len(data[k][0]), start + int(rng.integers(chunk, 800)))]

    for i in range(lanes):
        new_clip(i)
    for n in range(updates):
        x = np.empty((lanes, chunk, data[0][0].shape[1]), dtype=np.float32)
        y = np.empty((lanes, chunk), dtype=np.int64)
        for i, key in enumerate(keys):
            if clips[i][1] + chunk > clips[i][2]:
                new_clip(i)
                if key in learner:
                    learner.reset(key=key)
            k, pos, _ = clips[i]
            x[i], y[i] = data[k][0][pos:pos + chunk], data[k][1][pos:pos + chunk]
            clips[i][1] = pos + chunk
        for group in learner.optimizer.param_groups:
            group["lr"] = lr * (1.0 - 0.9 * n / updates)
        yt = torch.from_numpy(y)
        learner.push_many(keys, torch.from_numpy(x), yt.clamp(min=0), mask=yt >= 0)
    learner.flush()
    return model


def stream_session(name: str, model, session: dict, idx: np.ndarray, mean, std):
    """Replay the delivered samples live, 1 s per push; outputs' classes and row times."""
    rep, stream = Representation(name, mean, std), streamrnn.Stream(model)
    t, x = idx * BASE, session["x"][idx]
    preds, times = [], []
    bounds = np.searchsorted(t, np.arange(0.0, t[-1] + 1.0, 1.0))
    for a, b in zip(bounds, [*bounds[1:], len(t)], strict=True):
        rows, rt = rep.push(t[a:b], x[a:b], final=b == len(t))
        if len(rows):
            preds.append(stream.push(torch.from_numpy(rows)).argmax(-1).numpy())
            times.append(rt)
    return np.concatenate(preds), np.concatenate(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--keep", type=float, default=0.3)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--updates", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    sessions = load(args.data)
    for s in sessions:
        s["idx"] = irregular(s, args.keep, args.seed)
    train_s = [s for s in sessions if s["user"] not in TEST_USERS]
    test_s = [s for s in sessions if s["user"] in TEST_USERS]
    stacked = np.concatenate([s["x"][s["idx"]] for s in train_s])
    mean, std = stacked.mean(0), stacked.std(0)
    delivered = sum(len(s["idx"]) for s in sessions) / sum(len(s["x"]) for s in sessions)
    dts = np.concatenate([np.diff(s["idx"]) * BASE for s in sessions])
    print(f"HAPT, {len(train_s)} training / {len(test_s)} held-out sessions; delivered "
          f"{delivered:.1%} of the 50 Hz samples; gaps between samples: median "
          f"{np.median(dts) * 1e3:.0f} ms, 99th percentile {np.quantile(dts, 0.99):.2f} s, "
          f"max {dts.max():.1f} s")
    grid_times = {}  # the scoring instants of each held-out session: the grid's row times
    results = {}
    for name in args.models:
        data = []
        for s in train_s:
            rows, times = Representation(name, mean, std).push(
                s["idx"] * BASE, s["x"][s["idx"]], final=True)
            data.append((rows, labels_at(s, times)))
        t0 = time.perf_counter()
        model = train(name, data, args.hidden, args.updates, args.seed)
        trained = time.perf_counter() - t0
        model.eval()
        t1, hits, basic_hits, n, n_basic, rows_streamed = time.perf_counter(), 0, 0, 0, 0, 0
        for s in test_s:
            pred, times = stream_session(name, model, s, s["idx"], mean, std)
            rows_streamed += len(pred)
            key = (s["exp"], s["user"])
            if key not in grid_times:
                g = Representation("grid GRU", mean, std)
                grid_times[key] = g.push(s["idx"] * BASE, s["x"][s["idx"]], final=True)[1]
            tau = grid_times[key]
            last = np.searchsorted(times, tau + 1e-9, side="right") - 1
            truth = labels_at(s, tau)
            ok = (last >= 0) & (truth >= 0)
            correct = pred[last[ok]] == truth[ok]
            hits, n = hits + int(correct.sum()), n + int(ok.sum())
            basic = truth[ok] < 6
            basic_hits, n_basic = basic_hits + int(correct[basic].sum()), n_basic + int(basic.sum())
        streamed = time.perf_counter() - t1
        results[name] = (hits / n, basic_hits / n_basic, trained, rows_streamed / streamed, n)
        print(f"{name}: accuracy {hits / n:.3f} (basic {basic_hits / n_basic:.3f}), trained "
              f"{trained:.0f} s, streamed {rows_streamed / streamed:,.0f} rows/s", flush=True)
    print(f"\n| held-out users {list(TEST_USERS)}, keep {args.keep}, hidden {args.hidden}, "
          f"{args.updates} updates | accuracy, 12 classes | accuracy, 6 basic | training s | "
          f"rows/s streamed |")
    print("|---|---:|---:|---:|---:|")
    for name, (acc, basic, trained, rate, _) in results.items():
        print(f"| {name} | {acc:.3f} | {basic:.3f} | {trained:.0f} | {rate:,.0f} |")
    print(f"(scored at {n:,} labelled grid instants)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
