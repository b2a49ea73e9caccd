"""Benchmark the core hot paths against raw torch calls (a script, not a test).

(a) ``Stream.push`` one-step latency (LSTM and GRU, input 40, hidden 128, a ``(40,)``
    tensor per push) against ``nn.LSTMCell`` / ``nn.GRUCell`` called by hand with the state
    carried in local variables under ``torch.inference_mode``.
    ratio = stream time / raw time (target <= 0.5). The engine that ran is printed.
(b) ``StreamBank`` stream-steps per second, N streams one step each (LSTM 40 -> 128), via
    ``bank.push({key: (40,) tensor})`` and ``bank.push_many(keys, x (N, 1, 40))``, against
    one raw batched step on preallocated state (the faster of ``nn.LSTM``'s fused call on
    ``(N, 1, 40)`` and ``torch._VF.lstm_cell`` on ``(N, 40)``).
    ratio = bank throughput / raw throughput (target >= 1.0 at N = 1 and 100, >= 0.9 at
    N >= 1000). All N streams exist in the bank before timing (steady state).

One process, one thread (torch's, and BLAS's: ``OPENBLAS_NUM_THREADS=1`` is set before
numpy loads, for the BLAS the compiled engine calls), medians of ``--repeats`` repeats;
each repeat runs each call
enough times to last about ``--min-time`` seconds. The calls compared are interleaved
within each repeat and ratios are medians of per-repeat ratios, so that background load
on a shared machine hits both sides of a ratio alike.

Usage::

    python benchmarks/bench_core.py            # full run
    python benchmarks/bench_core.py --quick    # a fast smoke run
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads: 1 BLAS thread

import argparse  # noqa: E402
import gc  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

import streamrnn  # noqa: E402

F_IN, HIDDEN = 40, 128
STREAM_TARGET = 0.5
BANK_TARGET = {1: 1.0, 100: 1.0, 1000: 0.9, 10000: 0.9}


def calibrate(fn: Callable[[], object], min_time: float) -> int:
    """How many calls of ``fn`` last about ``min_time`` seconds (after a warm-up)."""
    for _ in range(3):
        fn()  # warm up: allocator, oneDNN primitives, lazy init
    number = 1
    while True:  # double until a loop lasts a quarter of min_time
        start = time.perf_counter()
        for _ in range(number):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= min_time / 4 or number >= 1 << 20:
            return max(1, round(min_time * number / elapsed))
        number *= 2


def paired_times(
    fns: dict[str, Callable[[], object]], repeats: int, min_time: float
) -> dict[str, list[float]]:
    """Seconds per call of each function, ``repeats`` times, interleaved.

    Each repeat times every function once, in rotating order, so that all of them see the
    same background load; ratios are then taken repeat by repeat (see ``median_ratio``).
    """
    numbers = {name: calibrate(fn, min_time) for name, fn in fns.items()}
    names = list(fns)
    times: dict[str, list[float]] = {name: [] for name in names}
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        for r in range(repeats):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                fn, number = fns[name], numbers[name]
                start = time.perf_counter()
                for _ in range(number):
                    fn()
                times[name].append((time.perf_counter() - start) / number)
    finally:
        if gc_was_on:
            gc.enable()
    return times


def median_ratio(num: list[float], den: list[float]) -> float:
    """Median over repeats of num[r] / den[r] (paired: same repeat, same load)."""
    return statistics.median(a / b for a, b in zip(num, den, strict=True))


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# -- (a) one stream, one step ----------------------------------------------------------------
def bench_stream(kind: str, repeats: int, min_time: float) -> dict:
    model_cls = {"LSTM": streamrnn.LSTM, "GRU": streamrnn.GRU}[kind]
    stream = streamrnn.Stream(model_cls(F_IN, HIDDEN, seed=0))
    x = torch.randn(F_IN, generator=gen(1))

    def ours() -> None:
        stream.push(x)

    cell = (nn.LSTMCell if kind == "LSTM" else nn.GRUCell)(F_IN, HIDDEN)
    xb = x.unsqueeze(0)  # (1, 40): the cell's batched form, shaped once outside the loop
    h = torch.zeros(1, HIDDEN)
    c = torch.zeros(1, HIDDEN)

    def raw_lstm() -> None:
        nonlocal h, c
        with torch.inference_mode():
            h, c = cell(xb, (h, c))

    def raw_gru() -> None:
        nonlocal h
        with torch.inference_mode():
            h = cell(xb, h)

    times = paired_times(
        {"ours": ours, "raw": raw_lstm if kind == "LSTM" else raw_gru}, repeats, min_time
    )
    return {
        "kind": kind,
        "engine": stream.engine,
        "ours": statistics.median(times["ours"]),
        "raw": statistics.median(times["raw"]),
        "ratio": median_ratio(times["ours"], times["raw"]),  # time ratio: lower is better
    }


# -- (b) many streams, one step each -----------------------------------------------------------
def bench_bank(n: int, repeats: int, min_time: float) -> dict:
    model = streamrnn.LSTM(F_IN, HIDDEN, seed=0)
    keys = [f"stream-{i}" for i in range(n)]
    x3 = torch.randn(n, 1, F_IN, generator=gen(3))
    chunks = dict(zip(keys, x3[:, 0].unbind(0), strict=True))  # {key: (40,) tensor}

    bank_push = streamrnn.StreamBank(model, max_streams=n)
    bank_push.push_many(keys, torch.zeros(n, 1, F_IN))  # every stream exists: steady state
    bank_many = streamrnn.StreamBank(model, max_streams=n)
    bank_many.push_many(keys, torch.zeros(n, 1, F_IN))

    # raw references: one batched step on preallocated state, carried in local variables
    lstm = nn.LSTM(F_IN, HIDDEN, batch_first=True)
    x2 = x3[:, 0].contiguous()
    h3, c3 = torch.zeros(1, n, HIDDEN), torch.zeros(1, n, HIDDEN)
    h2, c2 = torch.zeros(n, HIDDEN), torch.zeros(n, HIDDEN)
    w_ih, w_hh, b_ih, b_hh = (p.detach() for p in lstm._flat_weights)

    def fused() -> None:
        nonlocal h3, c3
        with torch.inference_mode():
            _, (h3, c3) = lstm(x3, (h3, c3))

    def cell() -> None:
        nonlocal h2, c2
        with torch.inference_mode():
            h2, c2 = torch._VF.lstm_cell(x2, (h2, c2), w_ih, w_hh, b_ih, b_hh)

    times = paired_times(
        {
            "push": lambda: bank_push.push(chunks),
            "push_many": lambda: bank_many.push_many(keys, x3),
            "nn.LSTM fused": fused,
            "_VF.lstm_cell": cell,
        },
        repeats,
        min_time,
    )
    evicted = bank_push.counts["evicted"], bank_many.counts["evicted"]
    if evicted != (0, 0):  # an eviction would time a reopen, not one step
        raise SystemExit(f"streams were evicted while timing N = {n}: {evicted}")
    raws = {name: statistics.median(times[name]) for name in ("nn.LSTM fused", "_VF.lstm_cell")}
    raw_name = min(raws, key=raws.get)
    return {
        "n": n,
        "push": statistics.median(times["push"]),
        "push_many": statistics.median(times["push_many"]),
        "raw": raws[raw_name],
        "raw_name": raw_name,
        "raws": raws,
        # throughput ratio = (n / t_bank) / (n / t_raw) = t_raw / t_bank, paired per repeat
        "ratio_push": median_ratio(times[raw_name], times["push"]),
        "ratio_many": median_ratio(times[raw_name], times["push_many"]),
    }


# -- report ------------------------------------------------------------------------------------
def mark(ok: bool) -> str:
    return "ok" if ok else "MISS"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed repeats (median)")
    parser.add_argument("--quick", action="store_true", help="short run: 3 repeats, short loops")
    parser.add_argument(
        "--min-time", type=float, default=0.2, help="seconds per repeat (default 0.2)"
    )
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else args.repeats
    min_time = 0.03 if args.quick else args.min_time
    if repeats < 1 or min_time <= 0:
        parser.error("--repeats must be >= 1 and --min-time > 0")

    torch.set_num_threads(1)
    print(
        f"streamrnn {streamrnn.__version__} | torch {torch.__version__} | "
        f"python {platform.python_version()} | threads {torch.get_num_threads()} | "
        f"mkldnn {torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled} | "
        f"repeats {repeats} | min-time {min_time}s"
    )

    print(f"\n(a) Stream.push, one (40,) step, hidden {HIDDEN}: latency (median)")
    print(
        f"{'cell':<6}{'Stream.push':>14}{'raw nn.*Cell':>14}{'ratio':>8}  target <= "
        f"{STREAM_TARGET}  engine"
    )
    for kind in ("LSTM", "GRU"):
        r = bench_stream(kind, repeats, min_time)
        print(
            f"{kind:<6}{r['ours'] * 1e6:>11.1f} us{r['raw'] * 1e6:>11.1f} us"
            f"{r['ratio']:>8.2f}  {mark(r['ratio'] <= STREAM_TARGET):<13}  {r['engine']}"
        )

    print(
        f"\n(b) StreamBank, N streams one step each, LSTM {F_IN}->{HIDDEN}: "
        "stream-steps per second (median)"
    )
    header = (
        f"{'N':>6}{'push(dict)':>13}{'push_many':>13}{'raw':>13}  {'raw used':<14}"
        f"{'ratio push':>11}{'ratio many':>11}  target (N = 1, 100: >= 1.0; more: >= 0.9)"
    )
    print(header)
    rows = []
    for n in (1, 100, 1000, 10000):
        r = bench_bank(n, repeats, min_time)
        rows.append(r)
        target = BANK_TARGET[n]
        verdict = f"{mark(r['ratio_push'] >= target)}/{mark(r['ratio_many'] >= target)}"
        print(
            f"{n:>6}{n / r['push']:>13,.0f}{n / r['push_many']:>13,.0f}{n / r['raw']:>13,.0f}"
            f"  {r['raw_name']:<14}{r['ratio_push']:>11.2f}{r['ratio_many']:>11.2f}  {verdict}"
        )
    print("\nraw references, microseconds per batched step (the faster one is used above):")
    for r in rows:
        parts = ", ".join(f"{k} {v * 1e6:,.1f} us" for k, v in r["raws"].items())
        print(f"  N = {r['n']:>5}: {parts}")


if __name__ == "__main__":
    main()
