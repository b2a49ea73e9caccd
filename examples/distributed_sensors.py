"""10k simulated sensors -> a real mosquitto broker -> a forecaster sharded over Ray, one
shard killed mid-run.

1. A small forecaster (GRU 1 -> 16 + linear readout, next value) learns online, in this
   process, from a few simulated sensors (:class:`streamrnn.OnlineLearner`, horizon 1).
2. mosquitto starts on 127.0.0.1 (a free port); a publisher thread sends one JSON record
   per sensor per tick (``sensors/<i>``, QoS 1): a sine of its own period and phase plus
   noise.
3. :class:`streamrnn.adapters.sensor.MQTTSource` (QoS 1, persistent session) receives
   them; each complete tick is pushed through a :class:`streamrnn.distributed.ShardedBank`
   of 2 shards (checkpoints every 5 pushes); at ``--kill-at`` one shard is killed
   (``ray.kill``) and the next push restarts it, restores its checkpoint and replays.
4. Summary: records published / received, forecasts out, nothing lost (every sensor's
   offset equals the ticks it sent), the recovery time, and the forecast's MAE next to
   the naive forecast (the last value).

    python examples/distributed_sensors.py --sensors 10000 --ticks 12 --kill-at 6

Needs the ``mosquitto`` binary (apt-get install mosquitto) and ``streamrnn[ray,mqtt]``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import math
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import ray
import torch

import streamrnn
from streamrnn.adapters.sensor import MQTTSource
from streamrnn.cells import GRU
from streamrnn.distributed import ShardedBank
from streamrnn.heads import Readout, RecurrentModel


def signal(sensor: np.ndarray, tick: int, rng: np.random.Generator) -> np.ndarray:
    """Sensor values at ``tick``: a sine of a per-sensor period (8..24 ticks) and phase."""
    period = 8 + (sensor * 7919) % 17
    phase = (sensor * 104729) % 97 / 97 * 2 * math.pi
    return np.sin(2 * math.pi * tick / period + phase) + 0.05 * rng.standard_normal(len(sensor))


def train_forecaster(seed: int = 0) -> RecurrentModel:
    model = RecurrentModel(GRU(1, 16, seed=seed), Readout(16, 1, seed=seed + 1))
    learner = streamrnn.OnlineLearner(model, k1=8, k2=16, lr=1e-2, horizon=1)
    rng = np.random.default_rng(seed)
    sensors = np.arange(64)
    series = np.stack([signal(sensors, t, rng) for t in range(600)], axis=1)  # (S, T)
    x = torch.tensor(series, dtype=torch.float32)[..., None]  # (S, T, 1)
    learner.push_many([int(s) for s in sensors], x)
    learner.flush()
    return model


def start_broker(folder: Path) -> tuple[subprocess.Popen, int]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = folder / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n"
                    f"max_queued_messages 0\nuser {getpass.getuser()}\n")
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("mosquitto did not start")


def publish(port: int, sensors: int, ticks: int, sent: list, seed: int) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="publisher")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)  # unbounded: the tick-by-tick wait bounds it
    client.connect("127.0.0.1", port)
    client.loop_start()
    rng = np.random.default_rng(seed)
    ids = np.arange(sensors)
    for t in range(ticks):
        values = signal(ids, t, rng)
        for i in range(sensors):
            payload = json.dumps({"timestamp": t, "value": float(values[i])})
            while True:  # the client's queue is full: wait, never drop
                info = client.publish(f"sensors/{i}", payload, qos=1)
                if info.rc != mqtt.MQTT_ERR_QUEUE_SIZE:
                    break
                time.sleep(0.01)
            sent[0] += 1
        info.wait_for_publish(120)  # one tick in flight at a time
    client.loop_stop()
    client.disconnect()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=10_000)
    parser.add_argument("--ticks", type=int, default=12)
    parser.add_argument("--kill-at", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    model = train_forecaster()
    print(f"forecaster trained in {time.perf_counter() - t0:.1f} s")
    ray.init(num_cpus=2, object_store_memory=256 * 2**20, include_dashboard=False,
             log_to_driver=False)
    folder = Path(tempfile.mkdtemp(prefix="streamrnn-sensors-"))
    broker, port = start_broker(folder)
    keys = [f"sensors/{i}" for i in range(args.sensors)]
    bank = ShardedBank(model, num_shards=2, max_streams_per_shard=args.sensors,
                       checkpoint_every=5, cpus_per_shard=0.5)
    source = MQTTSource("127.0.0.1", port, ["sensors/#"], qos=1, client_id="forecaster",
                        persistent=True, timeout=10.0, max_queue=100_000)
    sent = [0]
    ticks: dict[int, dict] = {}
    done, previous, recovery = 0, None, None
    abs_model, abs_naive, forecasts = 0.0, 0.0, 0
    start = time.perf_counter()
    with source:
        publisher = threading.Thread(target=publish, args=(port, args.sensors, args.ticks,
                                                           sent, 1))
        publisher.start()
        for topic, t, values in source:
            ticks.setdefault(int(t), {})[topic] = values["value"]
            while len(ticks.get(done, ())) == args.sensors:  # a complete tick: push it
                row = ticks.pop(done)
                x = torch.tensor([row[k] for k in keys], dtype=torch.float32)
                if done == args.kill_at:
                    ray.kill(bank._shards[0], no_restart=False)
                    time.sleep(0.5)  # the kill lands; the next push finds the shard dead
                    began = time.perf_counter()
                y = bank.push_many(keys, x.view(-1, 1, 1))[:, 0, 0]
                if done == args.kill_at:
                    recovery = time.perf_counter() - began
                if previous is not None:  # score the forecasts made at the last tick
                    abs_model += float((previous[0] - x).abs().sum())
                    abs_naive += float((previous[1] - x).abs().sum())
                    forecasts += len(keys)
                previous = (y, x)
                done += 1
            if done == args.ticks:
                break
        publisher.join()
    offsets = bank.offsets()
    wall = time.perf_counter() - start
    lost = [k for k in keys if offsets.get(k) != args.ticks]
    print(f"records published {sent[0]:,}, received {source.counts['records']:,} "
          f"(duplicates dropped {source.counts['duplicate']}), ticks pushed {done}")
    print(f"forecasts out {done * len(keys):,} (scored {forecasts:,}); streams whose "
          f"offset != {args.ticks}: {len(lost)} -> {'nothing lost' if not lost else lost[:5]}")
    if recovery is not None:
        print(f"shard 0 killed at tick {args.kill_at}: that push took {recovery:.2f} s "
              f"(restart + restore + replay {bank.recoveries[-1]:.2f} s)")
    print(f"MAE of the next value: forecaster {abs_model / forecasts:.4f}, naive (last "
          f"value) {abs_naive / forecasts:.4f}; wall {wall:.1f} s "
          f"({sent[0] / wall:,.0f} records/s)")
    bank.close()
    broker.terminate()
    broker.wait(10)
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
