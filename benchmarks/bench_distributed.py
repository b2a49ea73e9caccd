"""ShardedBank throughput on Ray next to one in-process StreamBank, router overhead,
checkpoint cost and recovery time.

LSTM 40 -> 128 (float32), N streams, one step each per push (``push_many``, the
zero-copy path). Peers are timed round-robin in one process (one push of each in turn,
the median of ``--repeats``), so a change in the machine's load hits them alike:

- ``in-process``: one StreamBank, one thread (torch's and BLAS's), in this process;
- ``1 shard`` / ``2 shards``: a ShardedBank with that many actors, one CPU (one torch
  thread) each, checkpoints off (``checkpoint_every=None``: pure throughput) and on
  (every 100 pushes, the default; at most 1 in 100 pushes pays a checkpoint).

Router overhead per push = 1 shard minus in-process (the same work in one thread, plus
splitting, moving inputs and outputs through the object store and reassembling).
Checkpoint: seconds for every shard to write its streams (sizes in MB). Recovery: a
shard is killed (``ray.kill``) after 50 pushes at N = 10k with checkpoints every 20
pushes; seconds from the next push to its outputs (restart, restore, replay) and the
shard's share of ``recoveries``.

    python benchmarks/bench_distributed.py --n 10000 100000 --repeats 7

``--learner-kills K`` measures only ShardedLearner's recovery (GRU 40 -> 128 with a
readout, N streams x 8 steps per push with targets, k1 = 8, 2 shards, checkpoints every
20 pushes): the time of one push, of a checkpoint of every shard, of fresh shards
(start, restore, join; no replay), and ``recoveries`` of K kills, each 10 pushes after a
checkpoint (10 to replay), every second one in flight.

    python benchmarks/bench_distributed.py --learner-kills 10 --n 1000 10000

Prints the load average before and after: on a shared 2-core machine, two shards can
only be faster than one when the other core is free.

Measured on the project's 2-core machine, quiet (load 1-2), after the packed LSTM step
and with shards lending their result (four runs of N = 100k; README's Ray section has
them all): in-process 242-250 ms per push of 100k streams, 1 shard 261-270 ms
(0.90-0.93x in-process), 2 shards 155-166 ms (1.59-1.74x one shard, median 1.67);
router overhead 18-27 ms per push. Loaded runs (load 4.7-12) gave 2 shards / 1 shard
1.11x-1.62x: two shards can only be faster than one when the other core is free.
Checkpoint of 2 shards: 10 MB in 0.02 s, 100 MB in 0.17-0.19 s.
"""

from __future__ import annotations

import os

# One BLAS thread for every peer, set before numpy loads: the compiled engine's matrix
# products run in SciPy's OpenBLAS, which otherwise takes every core in this process
# (the shards' actors get OMP_NUM_THREADS=1 from Ray, which OpenBLAS also reads).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import ray  # noqa: E402
import torch  # noqa: E402

import streamrnn  # noqa: E402
from streamrnn.cells import GRU  # noqa: E402
from streamrnn.distributed import ShardedBank, ShardedLearner  # noqa: E402
from streamrnn.heads import Readout, RecurrentModel  # noqa: E402


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def throughput(n: int, repeats: int) -> None:
    model = streamrnn.LSTM(40, 128, seed=0)
    keys = [f"sensor-{i}" for i in range(n)]
    x = torch.randn(n, 1, 40, generator=torch.Generator().manual_seed(0))
    peers = {"in-process": streamrnn.StreamBank(model, max_streams=n)}
    banks = []
    for shards in (1, 2):
        for every in (None, 100):
            bank = ShardedBank(model, num_shards=shards, max_streams_per_shard=n,
                               checkpoint_every=every, max_replay_bytes=2**31 - 1,
                               cpus_per_shard=0.25)  # one torch thread each; 6 banks fit
            banks.append(bank)
            peers[f"{shards} shard{'s' if shards > 1 else ''}"
                  f"{'' if every is None else ', ckpt/100'}"] = bank
    for bank in peers.values():  # warm up: allocate every stream, load kernels
        bank.push_many(keys, x)
        bank.push_many(keys, x)
    times: dict[str, list[float]] = {name: [] for name in peers}
    for _ in range(repeats):
        for name, bank in peers.items():
            times[name].append(_timed(lambda b=bank: b.push_many(keys, x)))
    med = {name: statistics.median(t) for name, t in times.items()}
    base = med["in-process"]
    print(f"\nN = {n:,} streams, one step each per push (median of {repeats})")
    print(f"{'peer':<22}{'ms/push':>10}{'stream-steps/s':>16}{'vs in-process':>15}")
    for name, t in med.items():
        print(f"{name:<22}{t * 1e3:>10.1f}{n / t:>16,.0f}{base / t:>15.2f}")
    print(f"2 shards / 1 shard: {med['1 shard'] / med['2 shards']:.2f}x; router overhead "
          f"per push (1 shard - in-process): {(med['1 shard'] - base) * 1e3:.1f} ms")
    ckpt = peers["2 shards, ckpt/100"]
    seconds = _timed(lambda: ckpt._calls.checkpoint(list(range(ckpt.num_shards))))
    size = sum(os.path.getsize(ckpt._path(s)) for s in range(ckpt.num_shards)) / 2**20
    print(f"checkpoint of 2 shards: {seconds:.2f} s for {size:.0f} MB")
    for bank in banks:
        bank.close()


def recovery(n: int) -> None:
    model = streamrnn.LSTM(40, 128, seed=0)
    keys = [f"sensor-{i}" for i in range(n)]
    x = torch.randn(n, 1, 40, generator=torch.Generator().manual_seed(0))
    with ShardedBank(model, num_shards=2, max_streams_per_shard=n, checkpoint_every=20,
                     checkpoint_dir=tempfile.mkdtemp()) as bank:
        for _ in range(50):
            bank.push_many(keys, x)
        ray.kill(bank._shards[0], no_restart=False)
        time.sleep(1.0)  # let the kill land: the next push finds the shard dead
        seconds = _timed(lambda: bank.push_many(keys, x))
        print(f"\nrecovery at N = {n:,}, 2 shards, checkpoints every 20 pushes: next push "
              f"{seconds:.2f} s (restart + restore + replay: {bank.recoveries[-1]:.2f} s, "
              f"{len(bank._log.entries[0])} operations in the log)")


def learner_recovery(n: int, kills: int) -> None:
    """ShardedLearner: seconds to recover from a killed shard, and what they are made of."""
    model = RecurrentModel(GRU(40, 128, seed=0), Readout(128, 1, seed=1))
    keys = [f"sensor-{i}" for i in range(n)]
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(n, 8, 40, generator=g), torch.randn(n, 8, 1, generator=g)
    with ShardedLearner(model, num_shards=2, k1=8, lr=1e-3, checkpoint_every=20,
                        cpus_per_shard=0.5) as learner:
        push = statistics.median(_timed(lambda: learner.push_many(keys, x, t))
                                 for _ in range(30))
        calls = learner._calls
        save = _timed(calls.checkpoint)
        size = sum(os.path.getsize(os.path.join(learner.checkpoint_dir, f))
                   for f in os.listdir(learner.checkpoint_dir)) / 2**20
        start = _timed(lambda: calls.start(time.monotonic() + 120))  # at the log's end
        for i in range(kills):  # 10 pushes after a checkpoint every 20 (10 to replay)
            while len(calls.log.entries[0]) != 10:
                learner.push_many(keys, x, t)
            shard = calls.shards[i % 2]
            if i % 2:  # in flight
                timer = threading.Timer(push / 2, ray.kill, (shard,))
                timer.start()
            else:
                ray.kill(shard)
                time.sleep(1.0)  # let the kill land: the next push finds the shard dead
            learner.push_many(keys, x, t)
            if i % 2:
                timer.join()
        rec = learner.recoveries
        print(f"\nShardedLearner recovery, {n:,} streams x 8 steps per push (GRU 40->128), "
              f"2 shards, checkpoints every 20 pushes: one push {push * 1e3:.0f} ms; "
              f"checkpoint {save:.2f} s ({size:.1f} MB); fresh shards (start, restore, "
              f"join) {start:.2f} s; recoveries ({len(rec)} kills, before and in flight, "
              f"10 pushes to replay): min {min(rec):.2f} s, median "
              f"{statistics.median(rec):.2f} s, max {max(rec):.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--no-recovery", action="store_true")
    parser.add_argument("--learner-kills", type=int, default=0,
                        help="only the ShardedLearner's recovery, this many kills")
    args = parser.parse_args()
    torch.set_num_threads(1)
    ray.init(num_cpus=2, object_store_memory=1024 * 2**20, include_dashboard=False,
             log_to_driver=False)
    print(f"cores: {os.cpu_count()}, load average before: {os.getloadavg()}")
    if args.learner_kills:
        for n in args.n:
            learner_recovery(n, args.learner_kills)
        print(f"\nload average after: {os.getloadavg()}")
        return
    for n in args.n:
        throughput(n, args.repeats)
    if not args.no_recovery:
        recovery(10_000)
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
