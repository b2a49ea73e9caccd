"""MinGRU / MinLSTM (parallel scan) and DecayGRU next to the fused LSTM / GRU, same process.

Parts (``--parts``, all by default):

- ``scan``: the recurrence ``h_t = a_t h_{t-1} + b_t`` alone, forward + backward, by the
  plain loop, the paper's log-space scan (Heinsen: cumsum + logcumsumexp), torch's
  ``associative_scan`` (generic mode, eager) and streamrnn's scan; and each one's float32
  error against the float64 loop. Medians of interleaved repeats, 1 thread.
- ``throughput``: training tokens per second on bench_tbptt's char-LM task
  (tiny-shakespeare, embedding 200, 2 layers, batch 20, TBPTT windows of 35, clip 0.25)
  through ``OnlineLearner(k1=35)``, cells at equal recurrent parameter count (the LSTM's
  643,200: GRU 235, MinGRU 475, MinLSTM 373 hidden units); Adam lr 2e-3 for every cell
  (bench_tbptt's SGD lr 20 is the LSTM example's tuning). Windows interleaved across the
  models, medians, at 1 and 2 torch threads.
- ``loss``: validation loss (nats / char) on the last 10% of tiny-shakespeare after
  ``--budget`` seconds of training each (1 thread, the same models and optimizer), with
  the windows each model got through; validation time is not counted in the budget.
  ``--clock cpu`` counts the budget in the training thread's CPU time (what the README's
  10-minute rows use: ``--budget 600 --clock cpu``), so a busy machine does not shorten it.
- ``forecast``: online one-step-ahead MAE, prequential, through ``OnlineLearner``
  (hidden 32, 1 layer, TBPTT(4, 16), Adam lr 1e-2, clip 1: RNNForecaster's defaults) on
  bench_river's series (AirlinePassengers, TrumpApproval with its 6 exogenous columns,
  weekly co2) and ETTh1 (all 7 columns -> next OT), inputs standardised by expanding
  (Welford) statistics known at each step; the model outputs the change from the last
  value (``--forecast-target change``, default) or the standardised next value
  (``level``); mean over ``--seeds`` seeds, next to the last-value forecast.
- ``latency``: one-step ``Stream.push`` latency (input 40, hidden 128, 1 layer, one
  ``(40,)`` tensor per push), medians of interleaved repeats, 1 thread.

Run::

    python benchmarks/bench_cells.py --text ../shared/data/text/tinyshakespeare.txt \\
        --ett ../shared/data/sensors/ett/ETTh1.csv [--parts scan latency] [--budget 180]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import streamrnn
from streamrnn import OnlineLearner, Readout, RecurrentModel
from streamrnn.cells._scan import linear_scan

ROOT = Path(__file__).resolve().parents[1]
TEXT = ROOT.parent / "shared" / "data" / "text" / "tinyshakespeare.txt"
ETT = ROOT.parent / "shared" / "data" / "sensors" / "ett" / "ETTh1.csv"
EMB, LAYERS, BATCH, BPTT, CLIP, LR = 200, 2, 20, 35, 0.25, 2e-3
# Hidden sizes at the 2-layer LSTM 200's recurrent parameter count (643,200).
LM_CELLS = {"LSTM": (streamrnn.LSTM, 200), "GRU": (streamrnn.GRU, 235),
            "MinGRU": (streamrnn.MinGRU, 475), "MinLSTM": (streamrnn.MinLSTM, 373)}


def interleaved(fns: dict, repeats: int) -> dict:
    """Median seconds of each call, the calls interleaved (rotating order)."""
    times, names = {n: [] for n in fns}, list(fns)
    for n in names:
        fns[n]()  # warm-up
    for i in range(repeats):
        for n in names[i % len(names):] + names[: i % len(names)]:
            start = time.perf_counter()
            fns[n]()
            times[n].append(time.perf_counter() - start)
    return {n: statistics.median(t) for n, t in times.items()}


# -- scan ----------------------------------------------------------------------------------
def scan_loop(a, b, h0):
    h, out = h0, []
    for t in range(a.shape[1]):
        h = a[:, t] * h + b[:, t]
        out.append(h)
    return torch.stack(out, 1)


def scan_log(a, b, h0):
    """The paper's log-space scan (b > 0), with the entering state added outside the logs."""
    a_star = a.log().cumsum(1)
    return a_star.exp() * h0[:, None] + (a_star + (b.log() - a_star).logcumsumexp(1)).exp()


def scan_torch(a, b, h0):
    from torch._higher_order_ops.associative_scan import associative_scan

    big_a, big_b = associative_scan(lambda x, y: (x[0] * y[0], y[0] * x[1] + y[1]), (a, b),
                                    dim=1, combine_mode="generic")
    return big_a * h0[:, None] + big_b


SCANS = {"loop (autograd)": scan_loop, "log-space": scan_log, "associative_scan": scan_torch,
         "streamrnn scan": lambda a, b, h0: linear_scan(a, b, h0, "scan"),
         "streamrnn steps": lambda a, b, h0: linear_scan(a, b, h0, "steps")}


def part_scan(args) -> None:
    torch.set_num_threads(1)
    print("\n## scan alone: forward + backward, ms (median); float32 max error vs float64 loop")
    print("| B, T, H | " + " | ".join(SCANS) + " |")
    print("|---|" + "---:|" * len(SCANS))
    gen = torch.Generator().manual_seed(0)
    for shape in [(20, 35, 475), (20, 256, 475), (64, 16, 128), (32, 64, 64), (1, 35, 475),
                  (1, 256, 64), (1, 1024, 128)]:
        a = torch.rand(shape, generator=gen) * 0.9 + 0.05
        b = torch.rand(shape, generator=gen) + 0.1
        h0 = torch.randn(shape[0], shape[2], generator=gen)

        def run(fn, a=a, b=b, h0=h0):
            xs = [v.clone().requires_grad_(True) for v in (a, b, h0)]
            fn(*xs).sum().backward()

        ms = interleaved({n: (lambda fn=fn: run(fn)) for n, fn in SCANS.items()}, args.repeats)
        print(f"| {shape} | " + " | ".join(f"{ms[n] * 1e3:.2f}" for n in SCANS) + " |")
    print("\n| T (float32 max abs error, h ~ 1) | " + " | ".join(SCANS) + " |")
    print("|---|" + "---:|" * len(SCANS))
    for steps in (35, 256, 1024, 4096):
        a = torch.rand(4, steps, 64, generator=gen, dtype=torch.float64) * 0.9 + 0.05
        b = torch.rand(4, steps, 64, generator=gen, dtype=torch.float64) + 0.1
        h0 = torch.randn(4, 64, generator=gen, dtype=torch.float64)
        ref = scan_loop(a, b, h0)
        errs = {n: (fn(a.float(), b.float(), h0.float()).double() - ref).abs().max().item()
                for n, fn in SCANS.items()}
        print(f"| {steps} | " + " | ".join(f"{errs[n]:.1e}" for n in SCANS) + " |")


# -- char LM -------------------------------------------------------------------------------
def load_text(path: Path):
    text = path.read_text()
    vocab = {ch: i for i, ch in enumerate(sorted(set(text)))}
    ids = torch.tensor([vocab[ch] for ch in text])
    cut = int(len(ids) * 0.9)
    train, val = ids[:cut], ids[cut:]
    n, m = len(train) // BATCH, len(val) // BATCH
    return train[: n * BATCH].reshape(BATCH, n), val[: m * BATCH].reshape(BATCH, m), len(vocab)


def lm_model(name: str, ntoken: int) -> RecurrentModel:
    cls, hidden = LM_CELLS[name]
    return RecurrentModel(cls(EMB, hidden, LAYERS, seed=0), Readout(hidden, ntoken, seed=1),
                          num_tokens=ntoken, seed=2)


class LMRunner:
    def __init__(self, name: str, data: torch.Tensor, ntoken: int) -> None:
        self.model = lm_model(name, ntoken)
        self.learner = OnlineLearner(self.model, optimizer=torch.optim.Adam, lr=LR, k1=BPTT,
                                     clip=CLIP)
        self.data, self.keys, self.i = data, list(range(BATCH)), 0

    def window(self) -> None:
        windows = (self.data.shape[1] - 1) // BPTT
        i, self.i = self.i % windows, self.i + 1
        if i == 0 and self.i > 1:
            for key in self.keys:  # a new epoch starts from zero states
                self.learner.reset(key=key)
        a = i * BPTT
        self.learner.push_many(self.keys, self.data[:, a:a + BPTT],
                               self.data[:, a + 1:a + BPTT + 1])


def validation_loss(model, val: torch.Tensor) -> float:
    with torch.inference_mode():
        state, total = model.initial_state(val.shape[0]), 0.0
        for a in range(0, val.shape[1] - 1, 512):
            x, y = val[:, a:a + 512], val[:, a + 1:a + 513]
            x = x[:, : y.shape[1]]
            out, state = model(x, state)
            total += F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1),
                                     reduction="sum").item()
    return total / (val.shape[0] * (val.shape[1] - 1))


def part_throughput(args) -> None:
    train, _, ntoken = load_text(args.text)
    print(f"\n## char-LM training tokens/s (batch {BATCH}, bptt {BPTT}, 2 layers, emb {EMB})")
    for name in LM_CELLS:
        m = lm_model(name, ntoken)
        n_cell = sum(p.numel() for p in m.cell.parameters())
        print(f"{name}: hidden {LM_CELLS[name][1]}, recurrent parameters {n_cell:,}, "
              f"total {sum(p.numel() for p in m.parameters()):,}")
    print("| threads | " + " | ".join(LM_CELLS) + " | " +
          " | ".join(f"{n} / LSTM" for n in LM_CELLS if n != "LSTM") + " |")
    print("|---|" + "---:|" * (2 * len(LM_CELLS) - 1))
    for threads in args.threads:
        torch.set_num_threads(threads)
        runners = {n: LMRunner(n, train, ntoken) for n in LM_CELLS}
        sec = interleaved({n: r.window for n, r in runners.items()}, args.windows)
        rate = {n: BATCH * BPTT / s for n, s in sec.items()}
        skipped = {n: r.learner.counts["skipped_nonfinite"] for n, r in runners.items()}
        if any(skipped.values()):  # a skipped window is not a window's work
            raise SystemExit(f"windows skipped for a non-finite loss: {skipped}")
        print(f"| {threads} | " + " | ".join(f"{rate[n]:,.0f}" for n in LM_CELLS) + " | " +
              " | ".join(f"{rate[n] / rate['LSTM']:.2f}x" for n in LM_CELLS if n != "LSTM") +
              " |")


def part_loss(args) -> None:
    torch.set_num_threads(1)
    train, val, ntoken = load_text(args.text)
    checkpoints = [args.budget * k / 3 for k in (1, 2, 3)]
    # cpu: the training thread's CPU time (torch runs on this one thread), so a busy
    # machine does not shorten a model's budget; wall: elapsed time
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    print(f"\n## char-LM validation loss (nats/char, last 10% of the text) after "
          f"{', '.join(f'{c:.0f}' for c in checkpoints)} s of training ({args.clock} "
          f"time), 1 thread")
    print("| cell | " + " | ".join(f"{c:.0f} s" for c in checkpoints) + " | windows | "
          "train loss (last 20 windows) |")
    print("|---|" + "---:|" * (len(checkpoints) + 2))
    for name in LM_CELLS:
        runner, spent, losses, row = LMRunner(name, train, ntoken), 0.0, [], []
        for c in checkpoints:
            while spent < c:
                start = clock()
                runner.window()
                spent += clock() - start
                if runner.learner.last_loss is not None:
                    losses.append(runner.learner.last_loss)
            row.append(validation_loss(runner.model, val))
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in row) +
              f" | {runner.i} | {np.mean(losses[-20:]):.3f} |")


# -- forecasting -----------------------------------------------------------------------------
def load_forecast_series(ett: Path) -> dict:
    """name -> (T, C) float64 array, the target in column 0."""
    import statsmodels.api as sm
    from river import datasets

    out = {"AirlinePassengers": np.array([[y] for _, y in datasets.AirlinePassengers()])}
    trump = [(y, *[v for v in x.values() if isinstance(v, int | float)])
             for x, y in datasets.TrumpApproval()]
    out["TrumpApproval"] = np.array(trump, dtype=np.float64)
    out["co2 (weekly)"] = sm.datasets.co2.load_pandas().data["co2"].dropna().to_numpy()[:, None]
    data = np.loadtxt(ett, delimiter=",", skiprows=1, usecols=range(1, 8))
    out["ETTh1 (OT)"] = data[:, [6, 0, 1, 2, 3, 4, 5]]
    return out


def expanding_scale(series: np.ndarray):
    """Welford mean / std through each step (std 1 until two values)."""
    n = np.arange(1, len(series) + 1)[:, None]
    mean = np.cumsum(series, 0) / n
    var = np.maximum(np.cumsum(series ** 2, 0) / n - mean ** 2, 0.0)
    std = np.where(n > 1, np.sqrt(var), 1.0)
    return mean, np.where(std > 1e-8, std, 1.0)


FORECAST_CELLS = {"LSTM": streamrnn.LSTM, "GRU": streamrnn.GRU, "MinGRU": streamrnn.MinGRU,
                  "MinLSTM": streamrnn.MinLSTM}


def forecast_mae(cls, series: np.ndarray, seed: int, target: str) -> float:
    """Prequential MAE of y_{t+1} forecast at t; ``target`` "level" (the model outputs
    y_{t+1} standardised as at t) or "change" (it outputs (y_{t+1} - y_t) / std_t, the
    correction to the last value)."""
    mean, std = expanding_scale(series)
    x = (series - mean) / std  # step t scaled by what is known at t
    base = mean[:-1, :1] if target == "level" else series[:-1, :1]
    goal = (series[1:, :1] - base) / std[:-1, :1]
    model = RecurrentModel(cls(series.shape[1], 32, seed=seed), Readout(32, 1, seed=seed + 1))
    learner = OnlineLearner(model, k1=4, k2=16, lr=1e-2, clip=1.0)
    pred = learner.push(torch.tensor(x[:-1], dtype=torch.float32),
                        torch.tensor(goal, dtype=torch.float32)).double().numpy()
    forecast = base + std[:-1, :1] * pred
    return float(np.abs(forecast - series[1:, :1]).mean())


def part_forecast(args) -> None:
    torch.set_num_threads(1)
    series = load_forecast_series(args.ett)
    print(f"\n## online one-step MAE (prequential), mean over seeds {list(range(args.seeds))} "
          f"(min-max); target: {args.forecast_target}")
    print("| series | steps | last value | " + " | ".join(FORECAST_CELLS) + " |")
    print("|---|---:|---:|" + "---:|" * len(FORECAST_CELLS))
    for name, s in series.items():
        naive = float(np.abs(s[1:, 0] - s[:-1, 0]).mean())
        cells = []
        for cls in FORECAST_CELLS.values():
            maes = [forecast_mae(cls, s, seed, args.forecast_target)
                    for seed in range(args.seeds)]
            cells.append(f"{np.mean(maes):.3f} ({min(maes):.3f}-{max(maes):.3f})")
        print(f"| {name} | {len(s)} | {naive:.3f} | " + " | ".join(cells) + " |", flush=True)


# -- latency -------------------------------------------------------------------------------
def part_latency(args) -> None:
    torch.set_num_threads(1)
    cells = {"LSTM": streamrnn.LSTM(40, 128, seed=0), "GRU": streamrnn.GRU(40, 128, seed=0),
             "MinGRU": streamrnn.MinGRU(40, 128, seed=0),
             "MinLSTM": streamrnn.MinLSTM(40, 128, seed=0),
             "DecayGRU": streamrnn.DecayGRU(41, 128, seed=0),
             "GRU, generic path": RecurrentModel(streamrnn.GRU(40, 128, seed=0))}
    # Stream serves a bare built-in layer by a special-cased kernel path; any other model
    # (a new cell, or a GRU inside a RecurrentModel) goes through cell.forward.
    streams = {n: streamrnn.Stream(c) for n, c in cells.items()}
    xs = {n: torch.rand(c.input_size) for n, c in cells.items()}
    per = 200

    def pushes(n):
        s, x = streams[n], xs[n]
        for _ in range(per):
            s.push(x)

    sec = interleaved({n: (lambda n=n: pushes(n)) for n in cells}, args.repeats)
    print("\n## one-step Stream.push latency, input 40, hidden 128, 1 layer, 1 thread (µs)")
    print("| " + " | ".join(cells) + " |")
    print("|" + "---:|" * len(cells))
    print("| " + " | ".join(f"{sec[n] / per * 1e6:.1f}" for n in cells) + " |")


PARTS = {"scan": part_scan, "latency": part_latency, "throughput": part_throughput,
         "forecast": part_forecast, "loss": part_loss}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    parser.add_argument("--text", type=Path, default=TEXT)
    parser.add_argument("--ett", type=Path, default=ETT)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--windows", type=int, default=40, help="timed windows per model")
    parser.add_argument("--repeats", type=int, default=15, help="repeats of timed calls")
    parser.add_argument("--budget", type=float, default=180.0, help="seconds per model (loss)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="what --budget counts: elapsed time, or the training thread's "
                             "CPU time (fair on a busy machine)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--forecast-target", choices=["change", "level"], default="change",
                        help="forecast: the model outputs the change from the last value, "
                        "or the standardised level")
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads available; "
          f"parts {args.parts}")
    for part in args.parts:
        start = time.perf_counter()
        PARTS[part](args)
        print(f"({part}: {time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
