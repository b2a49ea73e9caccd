"""Per-step cost of OnlineLearner for one stream pushing one step at a time.

The river-estimator and sensor use case: ``learner.push(x (F,))`` once per sample. The
model is ``RecurrentModel(LSTM(18, 32), Readout(32, 1))``; every figure is also given as
a ratio to the raw model's one-step forward (``model(x (1, 1, F), state)`` under
``no_grad``) measured in the same loop, which makes them comparable on a noisy machine.

- (a) ``push(x)``: one step, no update due (median of single pushes; k1 = k2 = 1024,
  no targets); (a2) ``push(x, target)``, the regressor case; (a3) ``push_many`` of 2
  streams, one step each;
- (b) amortized per-step cost of horizon mode, ``k1=4, k2=16, horizon=1,
  horizon_column=0``, over 2,000 steps (an Adam update every 4 steps); (b0) the same
  work written by hand with no bookkeeping (a no-grad step per sample; every 4 samples a
  16-step forward from the stored entering state, MSE of the pending terms, backward,
  clip, Adam), the floor for (b);
- (c) ``streamrnn.river.RNNForecaster(seed=0)`` end to end on river's AirlinePassengers
  repeated 10x: ``learn_one(y); forecast(3)`` per sample, in samples per second.

All in one thread; each repeat runs every case once, interleaved, and medians over
repeats are reported. Times are the process's CPU time by default (on a shared, busy
machine wall-clock time mostly measures the other processes); ``--clock wall`` for
wall-clock time. Run ``python benchmarks/bench_learn_step.py`` (``--quick`` for a
short run). To compare two versions of the package run it under each, e.g. with
``PYTHONPATH=/path/to/other/checkout``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import streamrnn
from streamrnn.cells import LSTM
from streamrnn.heads import Readout, RecurrentModel
from streamrnn.learn import OnlineLearner

F = 18
CLOCK = time.process_time  # CPU time of this process: robust to other load (--clock wall)


def make_model() -> RecurrentModel:
    return RecurrentModel(LSTM(F, 32, seed=0), Readout(32, 1, seed=1))


def inputs(steps: int, streams: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(streams, steps, F, generator=gen)


def each(fn, xs) -> list[float]:
    """Seconds of each call ``fn(x)`` for x in ``xs``."""
    clock, out = CLOCK, []
    for x in xs:
        t0 = clock()
        fn(x)
        out.append(clock() - t0)
    return out


def raw_forward(steps: int) -> float:
    """Median seconds of the model's own one-step forward."""
    model, x = make_model(), inputs(steps)[0]
    state = model.initial_state(1)

    def step(v):
        nonlocal state
        with torch.no_grad():
            _, state = model(v.view(1, 1, F), state)

    return statistics.median(each(step, x))


def push_one(steps: int, with_target: bool) -> float:
    learner = OnlineLearner(make_model(), k1=1024, k2=1024, lr=1e-2)
    x, y = inputs(steps)[0], torch.zeros(1)
    if with_target:
        return statistics.median(each(lambda v: learner.push(v, y), x))
    return statistics.median(each(learner.push, x))


def push_two(steps: int) -> float:
    learner = OnlineLearner(make_model(), k1=1024, k2=1024, lr=1e-2)
    x, keys = inputs(steps, 2), ["a", "b"]
    return statistics.median(each(lambda t: learner.push_many(keys, x[:, t:t + 1]),
                                  range(steps)))


def horizon_amortized(steps: int) -> float:
    learner = OnlineLearner(make_model(), k1=4, k2=16, lr=1e-2, horizon=1, horizon_column=0)
    x = inputs(steps)[0]
    t0 = CLOCK()
    for v in x:
        learner.push(v)
    learner.flush()
    return (CLOCK() - t0) / steps


def hand_written(steps: int) -> float:
    """(b0): the work of (b) as a plain loop."""
    model, x = make_model(), inputs(steps)[0]
    params = list(model.parameters())
    opt = torch.optim.Adam(params, lr=1e-2)
    state, enter = model.initial_state(1), {}
    t0 = CLOCK()
    for t in range(steps):
        if t and t % 4 == 0:  # window end t: steps t-16 .. t-1, targets of t-5 .. t-2 known
            lo, first = max(0, t - 16), max(0, t - 5)
            out, _ = model(x[lo:t].unsqueeze(0), enter.pop(lo) if lo else None)
            loss = nn.functional.mse_loss(out[0, first - lo:t - 1 - lo], x[first + 1:t, :1])
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
        if t % 4 == 0:
            enter[t] = state
        with torch.no_grad():
            _, state = model(x[t].view(1, 1, F), state)
    return (CLOCK() - t0) / steps


def river_forecaster(times: int) -> float:
    """Seconds per sample of learn_one + forecast(3)."""
    from river import datasets

    from streamrnn.river import RNNForecaster

    ys = [y for _, y in datasets.AirlinePassengers()] * times
    model = RNNForecaster(seed=0)
    t0 = CLOCK()
    for y in ys:
        model.learn_one(y)
        model.forecast(3)
    return (CLOCK() - t0) / len(ys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and steps")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu")
    args = parser.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(1)
    repeats = args.repeats or (3 if args.quick else 9)
    steps = 300 if args.quick else 1000
    horizon_steps = 500 if args.quick else 2000
    river_times = 2 if args.quick else 10
    cases = {
        "raw model one-step forward": lambda: raw_forward(steps),
        "(a)  push(x), no update due": lambda: push_one(steps, False),
        "(a2) push(x, target), no update due": lambda: push_one(steps, True),
        "(a3) push_many 2 streams x 1 step": lambda: push_two(steps),
        "(b)  horizon k1=4 k2=16, amortized": lambda: horizon_amortized(horizon_steps),
        "(b0) the same work written by hand": lambda: hand_written(horizon_steps),
        "(c)  RNNForecaster learn_one+forecast(3)": lambda: river_forecaster(river_times),
    }
    for fn in cases.values():  # warm up
        fn()
    got: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            got[name].append(fn())
    med = {name: statistics.median(v) for name, v in got.items()}
    raw = med["raw model one-step forward"]
    print(f"streamrnn from {streamrnn.__file__}; torch {torch.__version__}, 1 thread, "
          f"{args.clock} time, median of {repeats} interleaved repeats")
    print(f"{'case':44s} {'µs/step':>9s} {'x raw fwd':>10s}")
    for name, sec in med.items():
        print(f"{name:44s} {sec * 1e6:9.1f} {sec / raw:10.1f}")
    print(f"(c) RNNForecaster: {1 / med['(c)  RNNForecaster learn_one+forecast(3)']:.0f} "
          f"samples/s")


if __name__ == "__main__":
    main()
