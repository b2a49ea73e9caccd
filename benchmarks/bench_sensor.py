"""Sensor records per second through the adapter and a model: 1 stream and 1,000 streams.

Each stream is a sensor sending one record per second with 3 channels
(``{"temp", "hum", "power"}``, random-walk values). Every stream has its own
:class:`~streamrnn.adapters.sensor.SensorAdapter` (period 1 s, running normalisation,
mask and age columns: 9 features per row); the model is an LSTM with 32 units and a
1-value readout (the forecasting model's size).

Rows, one per scenario:

- 1 stream, learning off: ``adapter.push(records)`` then ``Stream.push(rows)``, with
  ``B`` records per push (1: a live record at a time; 60: a minute of backlog).
- 1 stream, learning on: the same into an ``OnlineLearner`` forecasting the next ``temp``
  (``horizon=1``, TBPTT(4, 16), Adam).
- 1,000 streams, learning off: every tick, each stream's adapter gets its next ``B``
  records (one Python call per stream: an adapter is per stream), and the rows of all
  streams go through one ``StreamBank.push_many`` call ``(1000, B, 9)``.
- 1,000 streams, learning on: the same rows through ``OnlineLearner.push_many`` over the
  1,000 keys (TBPTT(4, 16), horizon 1).

Records/s = records pushed / wall time of the whole path (adapter + model), also split
into the adapter's and the model's share. One thread, all streams warmed up first
(steady state), medians of ``--repeats`` repeats. A script, not a test.

Run::

    python benchmarks/bench_sensor.py             # full run (about 1-2 minutes)
    python benchmarks/bench_sensor.py --quick     # a smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import torch

import streamrnn
from streamrnn.adapters.sensor import SensorAdapter
from streamrnn.heads import Readout, RecurrentModel
from streamrnn.learn import OnlineLearner

CHANNELS = ("temp", "hum", "power")
HIDDEN = 32


def make_model(features: int) -> RecurrentModel:
    return RecurrentModel(streamrnn.LSTM(features, HIDDEN, seed=0), Readout(HIDDEN, 1, seed=1))


class Sensors:
    """Records of ``n`` sensors: one record per second each, random walks."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n = n
        self.rng = np.random.default_rng(seed)
        self.level = self.rng.normal(0, 1, (n, len(CHANNELS)))
        self.t = 0

    def tick(self, per_stream: int) -> list[list]:
        """The next ``per_stream`` records of every stream (a list per stream)."""
        steps = self.rng.normal(0, 0.1, (per_stream, self.n, len(CHANNELS)))
        values = self.level + np.cumsum(steps, axis=0)
        self.level = values[-1]
        out = [[] for _ in range(self.n)]
        for j in range(per_stream):
            ts = float(self.t + j)
            rows = values[j].tolist()
            for i in range(self.n):
                out[i].append((ts, dict(zip(CHANNELS, rows[i], strict=True))))
        self.t += per_stream
        return out


def adapters(n: int) -> list[SensorAdapter]:
    return [SensorAdapter(list(CHANNELS), 1.0) for _ in range(n)]


def run_one(block: int, learn: bool, ticks: int) -> tuple:
    """Seconds of (total, adapter, model, CPU) for ``ticks`` pushes of ``block`` records."""
    src = Sensors(1)
    ad = adapters(1)[0]
    model = make_model(ad.num_features)
    if learn:
        learner = OnlineLearner(model, lr=1e-3, k1=4, k2=16, horizon=1, horizon_column=0)
        step = learner.push
    else:
        step = streamrnn.Stream(model).push
    for _ in range(20):  # warm up: statistics, caches, learner buffers
        step(ad.push(src.tick(block)[0]))
    batches = [src.tick(block)[0] for _ in range(ticks)]
    t_ad = t_model = 0.0
    cpu = time.process_time()
    for records in batches:
        t0 = time.perf_counter()
        rows = ad.push(records)
        t1 = time.perf_counter()
        step(rows)
        t2 = time.perf_counter()
        t_ad += t1 - t0
        t_model += t2 - t1
    return t_ad + t_model, t_ad, t_model, time.process_time() - cpu


def run_many(n: int, block: int, learn: bool, ticks: int) -> tuple:
    """Seconds of (total, adapter, model, CPU) for ``ticks`` ticks of ``n`` streams."""
    src = Sensors(n)
    ads = adapters(n)
    model = make_model(ads[0].num_features)
    keys = [f"sensor-{i}" for i in range(n)]
    if learn:
        learner = OnlineLearner(model, lr=1e-3, k1=4, k2=16, horizon=1, horizon_column=0,
                                max_streams=n)
        step = learner.push_many
    else:
        bank = streamrnn.StreamBank(model, max_streams=n)
        step = bank.push_many

    def tick(records) -> tuple[float, float]:
        t0 = time.perf_counter()
        rows = torch.stack([ad.push(r) for ad, r in zip(ads, records, strict=True)])
        t1 = time.perf_counter()
        step(keys, rows.to(torch.float32))
        return t1 - t0, time.perf_counter() - t1

    tick(src.tick(block + 1))  # every stream exists and has emitted rows: steady state
    for _ in range(4):
        tick(src.tick(block))
    ticks_data = [src.tick(block) for _ in range(ticks)]
    t_ad = t_model = 0.0
    cpu = time.process_time()
    for records in ticks_data:
        a, m = tick(records)
        t_ad += a
        t_model += m
    return t_ad + t_model, t_ad, t_model, time.process_time() - cpu


def measure(fn, records: int, repeats: int) -> dict:
    runs = [fn() for _ in range(repeats)]
    total = statistics.median(r[0] for r in runs)
    return {
        "records": records,
        "rate": records / total,
        "adapter": records / statistics.median(r[1] for r in runs),
        "model": records / statistics.median(r[2] for r in runs),
        "cpu": records / statistics.median(r[3] for r in runs),
        "spread": (max(r[0] for r in runs) - min(r[0] for r in runs)) / total,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="fewer ticks and repeats")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    repeats = 2 if args.quick else args.repeats
    scale = 0.2 if args.quick else 1.0
    n = args.streams
    rows = []
    for learn in (False, True):
        for block in (1, 60):
            ticks = max(5, int((2000 if block == 1 else 60) * scale))
            r = measure(lambda b=block, lt=learn, k=ticks: run_one(b, lt, k),
                        ticks * block, repeats)
            rows.append(("1 stream", "on" if learn else "off", block, r))
    for learn in (False, True):
        for block in (1, 10):
            ticks = max(3, int((30 if block == 1 else 6) * scale))
            r = measure(lambda b=block, lt=learn, k=ticks: run_many(n, b, lt, k),
                        ticks * block * n, repeats)
            rows.append((f"{n:,} streams", "on" if learn else "off", block, r))
    print(f"streamrnn sensor path: SensorAdapter (3 channels -> 9 features) + LSTM {HIDDEN} "
          f"+ readout; 1 thread, median of {repeats}; torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}")
    print()
    print("| streams | learning | records per push per stream | records/s (adapter + model) "
          "| adapter alone | model alone | records per CPU-second | spread |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for streams, learn, block, r in rows:
        print(f"| {streams} | {learn} | {block} | {r['rate']:,.0f} | {r['adapter']:,.0f} | "
              f"{r['model']:,.0f} | {r['cpu']:,.0f} | {r['spread']:.0%} |")
    print()
    print("records/s counts sensor records in, over wall time; 'alone' rates are the same "
          "records over only that part's time; records per CPU-second uses this process's "
          "CPU time (closer to an idle machine's wall rate when the host is shared). "
          "spread = (max - min) / median of the repeats' total time.")
    print(f"load average at the end: {' '.join(f'{v:.1f}' for v in os.getloadavg())} on "
          f"{os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
