"""Stream a real sensor series through a stateful LSTM, chunk by chunk.

The series is river's bundled WaterFlow (1,268 hourly water-flow readings in l/s from a
real pipeline, 2022-03-20 to 2022-05-16), so nothing is downloaded. It is pushed into a
:class:`streamrnn.Stream` in chunks of random sizes (including one-step and empty
chunks), the hidden state carried between them, and the outputs are compared with one
offline pass of the same LSTM over the whole series.

Run::

    python examples/stream_series.py
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from river import datasets

import streamrnn


def load_waterflow() -> np.ndarray:
    """The WaterFlow series as float64 values (l/s), in time order."""
    return np.array([y for _, y in datasets.WaterFlow()], dtype=np.float64)


def run(seed: int = 0, hidden: int = 32, max_chunk: int = 48) -> dict:
    """Push the series in random chunks and compare with one offline pass."""
    series = load_waterflow()
    z = (series - series.mean()) / series.std()  # scale for the LSTM's input range
    x = torch.from_numpy(z).unsqueeze(1)  # (T, 1)
    model = streamrnn.LSTM(1, hidden, num_layers=2, seed=seed, dtype=torch.float64)
    stream = streamrnn.Stream(model)
    rng = np.random.default_rng(seed)

    outputs, sizes, start = [], [], 0
    t0 = time.perf_counter()
    while start < len(x):
        size = int(rng.integers(0, max_chunk + 1))
        outputs.append(stream.push(x[start : start + size]))
        sizes.append(size)
        start += size
    streamed = torch.cat(outputs)
    seconds = time.perf_counter() - t0

    with torch.inference_mode():
        offline, final = model(x.unsqueeze(0))
    return {
        "steps": len(x),
        "chunks": len(sizes),
        "empty_chunks": sizes.count(0),
        "one_step_chunks": sizes.count(1),
        "max_abs_diff": float((streamed - offline[0]).abs().max()),
        "state_diff": float((stream.state.h - final.h).abs().max()),
        "stream_seconds": seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hidden", type=int, default=32)
    args = parser.parse_args(argv)
    r = run(seed=args.seed, hidden=args.hidden)
    print("WaterFlow (river, 1,268 hourly readings) through a 2-layer LSTM, float64")
    print(f"  chunks pushed        {r['chunks']} ({r['empty_chunks']} empty, "
          f"{r['one_step_chunks']} one-step)")
    print(f"  streamed in          {r['stream_seconds'] * 1e3:.1f} ms")
    print(f"  max |stream - offline| over {r['steps']} outputs: {r['max_abs_diff']:.2e}")
    print(f"  max |state difference|: {r['state_diff']:.2e}")
    ok = r["max_abs_diff"] <= 1e-10 and r["state_diff"] <= 1e-10
    print("  streaming == offline: " + ("yes (within 1e-10)" if ok else "NO"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
