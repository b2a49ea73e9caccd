"""streamrnn serve under load, on 127.0.0.1 only: the server in its own process, the
clients in this one.

Audio: K concurrent WebSocket clients, each streaming the demo recording (looped) in real
time in 20 ms int16 chunks at 8 kHz for ``--seconds``; latency is from a chunk sent to
the first reply that covers it (``"chunk" >= its index``), p50 / p99 over all chunks;
"late" is a latency above 100 ms; "dropped" a chunk never answered (or a connection the
server dropped). Server CPU is its process's CPU seconds over the run / wall seconds (and
per chunk: the CPU a chunk costs the server, receive to reply, which tells the capacity of
a free core when the machine is too busy to show it in latency).

Sensors: S streams (connections), each sending one JSON record per second; latency from a
record sent to its forecast received.

Cycles: N connect / send one chunk / close(1000) cycles, 64 at a time; the server's
resident memory (``/stats``) after every tenth of them.

    python benchmarks/bench_serve.py --audio 10 100 300 --sensors 10000 --cycles 100000

The machine is shared: run it when quiet, and read the CPU column next to latency.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time

import aiohttp
import numpy as np

from streamrnn.adapters.audio import WavSource
from streamrnn.apps.speech import demo_path

_SERVER = ("import sys; from streamrnn.apps.serve import serve_main; "
           "sys.exit(serve_main(sys.argv[1:]))")


def start_server(port: int) -> subprocess.Popen:
    args = [sys.executable, "-c", _SERVER, "--app", "all", "--port",
            str(port), "--idle-s", "inf", "--max-streams", "20000", "--grace-s", "1"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if "http://" not in line:
        proc.kill()
        raise RuntimeError(f"the server did not start: {line!r}")
    return proc


async def stats(http, url: str) -> dict:
    async with http.get(url + "/stats") as r:
        return await r.json()


def pct(lat: list, q: float) -> float:
    return float(np.percentile(lat, q)) if lat else float("nan")


async def audio_load(url: str, k: int, seconds: float) -> dict:
    pcm = np.round(WavSource(demo_path()).read() * 32767).astype("<i2").tobytes()
    chunk = 320  # 20 ms at 8 kHz, int16
    n_chunks = int(seconds * 50)
    lat: list[float] = []
    unanswered = [0]
    dropped_conn = [0]

    async def client(http, idx: int):
        sent: dict[int, float] = {}
        answered = 0
        async with http.ws_connect(url + "/ws/speech?rate=8000") as ws:
            await ws.receive_json()

            async def reader():
                nonlocal answered
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    text = msg.data
                    if text.startswith('{"type":"frames","chunk":'):  # no JSON parse: cheap
                        now = time.perf_counter()
                        n = int(text[25 : text.index(",", 25)])
                        for i in range(answered + 1, n + 1):
                            lat.append(now - sent.pop(i))
                        answered = max(answered, n)
                        if answered >= n_chunks:
                            return

            task = asyncio.create_task(reader())
            await asyncio.sleep(idx * 0.02 / k)  # spread the clients over one chunk
            t0 = time.perf_counter()
            for i in range(1, n_chunks + 1):
                delay = t0 + (i - 1) * 0.02 - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                off = ((i - 1) * chunk) % (len(pcm) - chunk)
                sent[i] = time.perf_counter()
                await ws.send_bytes(pcm[off : off + chunk])
            try:
                await asyncio.wait_for(task, 2.0)
            except asyncio.TimeoutError:
                task.cancel()
            if ws.closed and ws.close_code not in (None, 1000):
                dropped_conn[0] += 1
        unanswered[0] += len(sent)

    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as http:
        before = await stats(http, url)
        t0, c0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(client(http, i) for i in range(k)))
        wall, client_cpu = time.perf_counter() - t0, time.process_time() - c0
        after = await stats(http, url)
    lat_ms = [x * 1000 for x in lat]
    cpu = after["process"]["cpu_s"] - before["process"]["cpu_s"]
    sp = after["speech"]
    return {"clients": k, "chunks": len(lat_ms) + unanswered[0],
            "p50_ms": round(pct(lat_ms, 50), 1), "p99_ms": round(pct(lat_ms, 99), 1),
            "late_gt100ms": sum(x > 100 for x in lat_ms), "dropped": unanswered[0],
            "conn_dropped": dropped_conn[0] + sp["dropped_slow"] - before["speech"][
                "dropped_slow"],
            "server_cpu": round(cpu / wall, 2), "client_cpu": round(client_cpu / wall, 2),
            "server_us_per_chunk": round(1e6 * cpu / max(len(lat_ms) + unanswered[0], 1), 1),
            "batch_mean": sp["batch_mean"],
            "gc_ms": round(after["process"]["gc_ms"] - before["process"]["gc_ms"], 1),
            "gc_max_ms": after["process"]["gc_max_ms"],
            "tick_ms_mean": sp["tick_ms_mean"]}


async def sensor_load(url: str, n: int, seconds: float) -> dict:
    values = np.loadtxt(__import__("streamrnn.apps.forecast", fromlist=["demo_path"])
                        .demo_path(), delimiter=",", skiprows=1, usecols=1)
    lat: list[float] = []
    missing = [0]
    n_rec = int(seconds)

    async def client(http, idx: int):
        async with http.ws_connect(url + "/ws/forecast?period=1") as ws:
            await ws.receive_json()
            await asyncio.sleep(idx / n)  # spread over one second
            t0 = time.perf_counter()
            got = 0
            for i in range(n_rec):
                delay = t0 + i - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent = time.perf_counter()
                await ws.send_str(json.dumps({"y": float(values[(idx + i) % len(values)])}))
                try:
                    msg = await asyncio.wait_for(ws.receive(), 5.0)
                except asyncio.TimeoutError:
                    break
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                lat.append(time.perf_counter() - sent)
                got += 1
            missing[0] += n_rec - got

    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as http:
        before = await stats(http, url)
        sem = asyncio.Semaphore(200)

        async def gated(i):
            async with sem:  # connect at most 200 at a time, then stream
                pass
            await client(http, i)

        t0, c0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(gated(i) for i in range(n)))
        wall, client_cpu = time.perf_counter() - t0, time.process_time() - c0
        after = await stats(http, url)
    lat_ms = [x * 1000 for x in lat]
    cpu = after["process"]["cpu_s"] - before["process"]["cpu_s"]
    return {"streams": n, "records": len(lat_ms) + missing[0],
            "p50_ms": round(pct(lat_ms, 50), 1), "p99_ms": round(pct(lat_ms, 99), 1),
            "missing": missing[0], "server_cpu": round(cpu / wall, 2),
            "client_cpu": round(client_cpu / wall, 2),
            "server_us_per_record": round(1e6 * cpu / max(len(lat_ms) + missing[0], 1), 1),
            "batch_mean": after["forecast"]["batch_mean"]}


async def cycles(url: str, n: int) -> dict:
    conn = aiohttp.TCPConnector(limit=0)
    rss = []
    async with aiohttp.ClientSession(connector=conn) as http:
        rss.append((0, (await stats(http, url))["process"]["rss_bytes"]))
        sem = asyncio.Semaphore(64)

        async def one():
            async with sem:
                async with http.ws_connect(url + "/ws/speech?rate=8000") as ws:
                    await ws.receive_json()
                    await ws.send_bytes(bytes(320))
                    await ws.receive_json()
                    await ws.close()

        step = max(n // 10, 1)
        t0 = time.perf_counter()
        for done in range(0, n, step):
            await asyncio.gather(*(one() for _ in range(min(step, n - done))))
            rss.append((done + step, (await stats(http, url))["process"]["rss_bytes"]))
        wall = time.perf_counter() - t0
        final = await stats(http, url)
    mb = [round(r / 2**20, 1) for _, r in rss]
    return {"cycles": n, "per_s": round(n / wall), "rss_mb": mb,
            "streams_left": final["speech"]["streams"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--audio", type=int, nargs="*", default=[10, 100, 300])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--sensors", type=int, nargs="*", default=[10000])
    p.add_argument("--sensor-seconds", type=float, default=10.0)
    p.add_argument("--cycles", type=int, default=100_000)
    p.add_argument("--port", type=int, default=8765)
    args = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    proc = start_server(args.port)
    url = f"http://127.0.0.1:{args.port}"
    print(f"# bench_serve: server pid {proc.pid}, {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.2f} at start", flush=True)
    try:
        for k in args.audio:
            print(json.dumps({"audio": asyncio.run(audio_load(url, k, args.seconds))}),
                  flush=True)
        for n in args.sensors:
            print(json.dumps({"sensors": asyncio.run(sensor_load(url, n,
                                                                 args.sensor_seconds))}),
                  flush=True)
        if args.cycles:
            print(json.dumps({"cycles": asyncio.run(cycles(url, args.cycles))}), flush=True)
    finally:
        proc.terminate()
        proc.wait(10)
    print(f"# load {os.getloadavg()[0]:.2f} at end", flush=True)


if __name__ == "__main__":
    main()
