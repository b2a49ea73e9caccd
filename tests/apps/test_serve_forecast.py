"""ForecastBank and the forecast service: one stream in the bank computes what an
OnlineForecaster computes alone; many streams are one batched call; the WebSocket service
answers every record with a forecast and refuses bad records on their stream only."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import numpy as np
import pytest

from streamrnn.apps.forecast import ForecastBank, OnlineForecaster, demo_path
from streamrnn.apps.serve import BackgroundServer, ServeConfig


@pytest.fixture(scope="module")
def series() -> np.ndarray:
    return np.loadtxt(demo_path(), delimiter=",", skiprows=1, usecols=1, max_rows=300)


def test_one_stream_equals_the_forecaster_alone(series):
    ref_fc = OnlineForecaster(6, seed=3)
    ref = np.array([ref_fc.push(np.array([[v]]))[0] for v in series])
    bank = ForecastBank(6, seed=3)
    bank.open("x")
    got = np.array([bank.push({"x": v})["x"] for v in series])
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)
    assert bank.counts["targets"] == ref_fc.counts["targets"] == len(series) - 6


def test_many_streams_one_batched_call_each_row(series, monkeypatch):
    bank = ForecastBank(3, seed=0)
    keys = [f"s{i}" for i in range(50)]
    for k in keys:
        bank.open(k)
    calls = []
    push_many = bank.learner.push_many
    monkeypatch.setattr(bank.learner, "push_many",
                        lambda ks, x: calls.append(len(ks)) or push_many(ks, x))
    for v in series[:20]:
        out = bank.push({k: v * (1 + i / 10) for i, k in enumerate(keys)})
    assert calls == [50] * 20
    assert out["s0"] != out["s1"]  # each stream its own features and state
    with pytest.raises(ValueError, match="finite"):
        bank.push({"s0": 1.0, "s1": float("nan")})
    assert bank.counts["steps"] == 20 * 50  # the refused push changed nothing
    bank.close("s0")
    with pytest.raises(ValueError, match="not open"):
        bank.push({"s0": 1.0})


def test_websocket_forecasts_and_bad_records(series):
    config = ServeConfig(apps=("forecast",), port=0)

    async def client(url, records, bad=()):
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(url + "/ws/forecast?period=3600") as ws:
                hello = await ws.receive_json()
                replies = []
                for i, v in enumerate(records):
                    if i in bad:
                        await ws.send_str(bad[i])
                    await ws.send_str(json.dumps({"t": 3600.0 * i, "y": v}))
                while len([r for r in replies if r["type"] == "forecast"]) < len(records):
                    replies.append(await ws.receive_json())
                return hello, replies

    async def main(url):
        bad = {5: "{oops", 9: '{"t": 0, "y": 1}', 12: '{"y": NaN}', 15: '[1, 2]'}
        return await asyncio.gather(client(url, series[:40]),
                                    client(url, series[:40], bad))

    with BackgroundServer(config) as server:
        (hello, good), (_, noisy) = asyncio.run(asyncio.wait_for(main(server.url), 60))
    assert hello["horizon"] == 6
    errors = [r["error"] for r in noisy if r["type"] == "error"]
    assert len(errors) == 4
    assert "JSON" in errors[0] and "t must increase" in errors[1]
    assert "finite" in errors[2] and "object" in errors[3]
    f_good = [r for r in good if r["type"] == "forecast"]
    f_noisy = [r for r in noisy if r["type"] == "forecast"]
    assert [r["row"] for r in f_good] == list(range(40))
    assert [r["y"] for r in f_noisy] == [r["y"] for r in f_good] == list(series[:40])
    last = f_good[-1]
    assert last["scored"] == 40 - 6 and last["naive_mae"] == pytest.approx(
        np.abs(series[6:40] - series[:34]).mean(), rel=1e-6)
