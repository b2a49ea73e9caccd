"""ForecastBank and the forecast service: one stream in the bank computes what an
OnlineForecaster computes alone; many streams are one batched call, and the vectorised
bank computes bit for bit what the first, stream-by-stream bank computed (kept as the
reference in ``_forecast_bank_loop.py``) for any schedule of pushes, opens and closes;
the WebSocket service answers every record with a forecast and refuses bad records on
their stream only."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import numpy as np
import pytest
import torch
from _forecast_bank_loop import LoopForecastBank
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), horizon=st.sampled_from([1, 3, 6]))
def test_the_vectorised_bank_equals_the_stream_by_stream_bank(data, horizon):
    """Streams out of phase: each round pushes a random subset (values from the demo
    series, shifted per key), streams close and reopen (a fresh stream on a reused row),
    and a stream's state overflows (the learner resets it and reports it). Forecasts,
    counts and the learned weights are bitwise equal."""
    values = np.loadtxt(demo_path(), delimiter=",", skiprows=1, usecols=1, max_rows=400)
    keys = ["a", "b", "c", "d", "e"]
    new, old = ForecastBank(horizon, seed=1, k1=2, max_streams=4), LoopForecastBank(
        horizon, seed=1, k1=2, max_streams=4)
    pos, poisoned = {}, []

    def overflowing(learner):  # the learner resets a stream whose state went non-finite
        push_many = learner.push_many

        def push(ks, x):
            y = push_many(ks, x)
            if poisoned and poisoned[0] in ks:
                learner.reset(key=poisoned[0])
                learner.stepper.last_reset = [poisoned[0]]
            return y
        learner.push_many = push

    overflowing(new.learner)
    overflowing(old.learner)
    for _ in range(data.draw(st.integers(10, 60), label="rounds")):
        event = data.draw(st.sampled_from(["push"] * 6 + ["open", "close", "overflow"]),
                          label="event")
        poisoned.clear()
        if event == "overflow" and pos:
            poisoned.append(data.draw(st.sampled_from(sorted(pos)), label="overflow"))
            event = "push"
        if event == "open" and len(pos) < 4:
            key = data.draw(st.sampled_from([k for k in keys if k not in pos]), label="open")
            new.open(key)
            old.open(key)
            pos[key] = keys.index(key) * 37
        elif event == "close" and pos:
            key = data.draw(st.sampled_from(sorted(pos)), label="close")
            new.close(key)
            old.close(key)
            del pos[key]
        elif pos:
            push = data.draw(st.lists(st.sampled_from(sorted(pos)), min_size=1, unique=True),
                             label="push")
            chunk = {k: float(values[pos[k] % 400] * (1 + 0.1 * keys.index(k))) for k in push}
            assert new.push(chunk) == old.push(chunk)
            for k in push:
                pos[k] += 1
    assert new.counts == old.counts and new.keys() == old.keys()
    for a, b in zip(new.learner.model.parameters(), old.learner.model.parameters(),
                    strict=True):
        assert torch.equal(a, b)


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
