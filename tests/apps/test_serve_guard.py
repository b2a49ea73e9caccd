"""streamrnn serve, bad input and security: one test per rule. Every test runs a second,
well-behaved stream beside the bad one and checks it got exactly what a stream alone gets
(its posteriors equal a twin's), so nothing a bad client does leaks into another stream.
"""

from __future__ import annotations

import asyncio
import json
import socket

import aiohttp
import numpy as np
import pytest
from _data import demo_digits

from streamrnn.adapters.audio import WavSource
from streamrnn.apps.serve import BackgroundServer, ServeConfig, SpeechService
from streamrnn.apps.speech import DigitBank, demo_path

TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def demo_pcm() -> bytes:
    x = WavSource(demo_path()).read()
    return np.round(x * 32767).astype("<i2").tobytes()


@pytest.fixture(scope="module")
def server():
    config = ServeConfig(apps=("speech",), port=0, token=TOKEN, max_frame_bytes=8192,
                         max_messages_per_s=1000.0, burst_s=1.0, max_audio_rate=20.0,
                         queue_size=8, grace_s=3.0, idle_s=30.0, send_buffer_bytes=4096)
    services = {"speech": SpeechService(DigitBank.load(max_streams=64))}
    with BackgroundServer(config, services) as srv:
        yield srv


def ws_url(server, **query) -> str:
    q = {"rate": "8000", "token": TOKEN, **query}
    q = {k: v for k, v in q.items() if v is not None}
    return server.url + "/ws/speech?" + "&".join(f"{k}={v}" for k, v in q.items())


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


async def stream_pcm(ws, pcm: bytes, chunk_bytes: int = 320, pace_s: float = 0.0):
    for i in range(0, len(pcm), chunk_bytes):
        await ws.send_bytes(pcm[i : i + chunk_bytes])
        if pace_s:
            await asyncio.sleep(pace_s)


async def collect(ws, until: str = "flushed", limit: int = 100_000) -> list[dict]:
    """Replies until one of type ``until`` (inclusive) or the connection ends."""
    out = []
    async for msg in ws:
        if msg.type != aiohttp.WSMsgType.TEXT:
            break
        out.append(json.loads(msg.data))
        if out[-1]["type"] == until or len(out) >= limit:
            break
    return out


def posteriors(replies: list[dict]) -> np.ndarray:
    rows = [p for r in replies if r["type"] == "frames" for p in r["post"]]
    return np.array(rows)


async def converse(ws, sending) -> list[dict]:
    """The replies until ``flushed``, read while ``sending`` (a coroutine) runs, as a
    live client reads them: one that reads only at the end may be a slow reader."""
    reader = asyncio.ensure_future(collect(ws))
    try:
        await sending
    except BaseException:
        reader.cancel()
        raise
    return await reader


async def good_client(http, server, pcm: bytes) -> list[dict]:
    """A well-behaved stream: the whole signal in 20 ms chunks, then flush."""
    async with http.ws_connect(ws_url(server)) as ws:
        async def send():
            await stream_pcm(ws, pcm, pace_s=0.002)
            await ws.send_str('{"type": "flush"}')

        return await converse(ws, send())


def digits(replies) -> list[int]:
    return [r["digit"] for r in replies if r["type"] == "digit"]


def test_binds_loopback_by_default(server):
    assert ServeConfig().host == "127.0.0.1"
    assert server.url.startswith("http://127.0.0.1:")
    with pytest.raises(OSError):  # not reachable on another address of this machine
        other = socket.gethostbyname(socket.gethostname())
        if other.startswith("127."):
            raise OSError("no other address to try")
        socket.create_connection((other, server.port), timeout=1).close()


def test_token_is_required_when_set(server, demo_pcm):
    async def main():
        async with aiohttp.ClientSession() as http:
            for bad in (None, "wrong"):
                with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                    await http.ws_connect(ws_url(server, token=bad))
                assert err.value.status == 401
            async with http.get(server.url + "/stats") as r:
                assert r.status == 401
            headers = {"Authorization": f"Bearer {TOKEN}"}
            async with http.ws_connect(ws_url(server, token=None), headers=headers) as ws:
                assert (await ws.receive_json())["type"] == "hello"

    run(main())


def test_origin_check(server):
    async def main():
        async with aiohttp.ClientSession() as http:
            with pytest.raises(aiohttp.WSServerHandshakeError) as err:
                await http.ws_connect(ws_url(server), origin="http://evil.example")
            assert err.value.status == 403
            own = f"http://localhost:{server.port}"
            async with http.ws_connect(ws_url(server), origin=own) as ws:
                assert (await ws.receive_json())["type"] == "hello"

    run(main())


def test_malformed_frames_get_errors_on_their_stream_only(server, demo_pcm):
    nan = np.zeros(160, dtype="<f4")
    nan[3] = np.nan

    async def bad_client(http):
        async with http.ws_connect(ws_url(server)) as ws:
            hello = await ws.receive_json()
            half = len(demo_pcm) // 2 // 320 * 320

            async def send():
                await stream_pcm(ws, demo_pcm[:half], pace_s=0.002)
                await ws.send_bytes(b"\x01\x02\x03")  # odd byte count
                await ws.send_str("{not json")
                await ws.send_str('{"type": "explode"}')
                await stream_pcm(ws, demo_pcm[half:], pace_s=0.002)
                await ws.send_str('{"type": "flush"}')

            replies = await converse(ws, send())
            return hello, replies, ws.close_code

    async def float_client(http):  # declares float32, sends a NaN
        async with http.ws_connect(ws_url(server, format="float32")) as ws:
            await ws.receive_json()
            await ws.send_bytes(nan.tobytes())
            await ws.send_bytes(nan.tobytes()[:-2])  # not a multiple of 4
            return await collect(ws, until="error", limit=2) + await collect(
                ws, until="error", limit=1)

    async def main():
        async with aiohttp.ClientSession() as http:
            (hello, bad, closed), good, floats = await asyncio.gather(
                bad_client(http), good_client(http, server, demo_pcm), float_client(http))
            for rate in ("abc", "0", "10000000"):  # a wrong rate refuses that stream
                async with http.ws_connect(ws_url(server, rate=rate)) as ws:
                    msg = await ws.receive_json()
                    assert msg["type"] == "error" and "rate must be" in msg["error"]
                    assert (await ws.receive()).type == aiohttp.WSMsgType.CLOSE
            return hello, bad, closed, good, floats

    hello, bad, closed, good, floats = run(main())
    errors = [r for r in bad if r["type"] == "error"]
    stats = json.loads(_get(server.url + f"/stats?token={TOKEN}"))["speech"]
    assert len(errors) == 3, (closed, [r["type"] for r in bad], stats)
    assert "3 bytes" in errors[0]["error"] and "multiple of 2" in errors[0]["error"]
    assert "JSON" in errors[1]["error"] and "flush" in errors[2]["error"]
    assert hello["rate"] == 8000 and hello["model_rate"] == 8000
    # the bad stream went on as if the bad frames were never sent, and equals the good one
    assert digits(bad) == digits(good) == demo_digits()
    np.testing.assert_array_equal(posteriors(bad), posteriors(good))
    kinds = [r["type"] for r in floats]
    assert kinds.count("error") == 2, floats
    assert "non-finite" in floats[0]["error"] or "NaN" in floats[0]["error"]


def test_oversized_frame_closes_that_connection_only(server, demo_pcm):
    async def main():
        async with aiohttp.ClientSession() as http:
            async def big():
                async with http.ws_connect(ws_url(server)) as ws:
                    await ws.receive_json()
                    await ws.send_bytes(bytes(9000))  # > max_frame_bytes = 8192
                    while (await ws.receive()).type == aiohttp.WSMsgType.TEXT:
                        pass
                    return ws.close_code

            return await asyncio.gather(big(), good_client(http, server, demo_pcm))

    code, good = run(main())
    assert code == 1009
    assert digits(good) == demo_digits()


def test_message_rate_limit_closes_the_flooder_only(server, demo_pcm):
    async def main():
        async with aiohttp.ClientSession() as http:
            async def flood():
                async with http.ws_connect(ws_url(server)) as ws:
                    await ws.receive_json()
                    for _ in range(3000):  # 1000 messages/s with a 1 s burst allowed
                        await ws.send_bytes(bytes(2))
                    replies = []
                    while (msg := await ws.receive()).type == aiohttp.WSMsgType.TEXT:
                        replies.append(json.loads(msg.data))
                    return ws.close_code, replies

            return await asyncio.gather(flood(), good_client(http, server, demo_pcm))

    (code, replies), good = run(main())
    assert code == 1008
    assert replies[-1]["type"] == "error" and "max_messages_per_s" in replies[-1]["error"]
    assert digits(good) == demo_digits()


def test_audio_rate_limit(server):
    async def main():
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(ws_url(server)) as ws:
                await ws.receive_json()
                for _ in range(60):  # 60 x 0.5 s of audio at once: 20 s/s, 1 s burst
                    await ws.send_bytes(bytes(8000))
                replies = await collect(ws, until="error")
                return replies[-1]

    last = run(main())
    assert last["type"] == "error" and "max_audio_rate" in last["error"]


def test_slow_reader_is_dropped_and_never_stalls_the_tick(server, demo_pcm):
    port = server.port

    def raw_client_never_reading() -> socket.socket:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        s.connect(("127.0.0.1", port))
        query = f"rate=8000&spectrogram=1&stream=slow-1&token={TOKEN}"
        s.sendall((f"GET /ws/speech?{query} HTTP/1.1\r\n"
                   f"Host: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        return s

    def frame(payload: bytes) -> bytes:  # a masked binary frame (zero mask)
        n = len(payload)
        head = bytes([0x82, 0x80 | n]) if n < 126 else bytes([0x82, 0xFE]) + n.to_bytes(2, "big")
        return head + b"\0\0\0\0" + payload

    async def main():
        slow = raw_client_never_reading()
        try:
            async with aiohttp.ClientSession() as http:
                async def flood_slow():
                    twice = demo_pcm * 2  # ~300 kB of replies with spectrograms
                    for i in range(0, len(twice), 320):
                        slow.sendall(frame(twice[i : i + 320]))
                        await asyncio.sleep(0.002)

                flooded = flood_slow()
                return (await asyncio.gather(flooded, good_client(http, server, demo_pcm)))[1]
        finally:
            await asyncio.sleep(0.3)
            slow.close()

    before = json.loads(_get(server.url + f"/stats?token={TOKEN}"))["speech"]
    good = run(main())
    assert digits(good) == demo_digits()
    stats = json.loads(_get(server.url + f"/stats?token={TOKEN}"))["speech"]
    assert stats["dropped_slow"] == before["dropped_slow"] + 1

    async def reconnect():  # forgotten at once, not kept in grace: the id starts afresh
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(ws_url(server, stream="slow-1")) as ws:
                return await ws.receive_json()

    assert run(reconnect())["resumed"] is False


def _get(url: str) -> str:
    import urllib.request

    return urllib.request.urlopen(url, timeout=10).read().decode()


def test_reconnect_within_grace_continues_and_a_normal_close_forgets(server, demo_pcm):
    async def main():
        async with aiohttp.ClientSession() as http:
            half = len(demo_pcm) // 2 // 320 * 320
            ws = await http.ws_connect(ws_url(server))
            hello = await ws.receive_json()
            sid = hello["stream"]
            await stream_pcm(ws, demo_pcm[:half], pace_s=0.002)
            first = []
            while not first or first[-1].get("chunk") != half // 320 or first[-1][
                    "type"] != "frames":
                first.append(await ws.receive_json())
            await ws.close(code=1001)  # going away: the stream waits in grace
            async with http.ws_connect(ws_url(server, stream=sid)) as ws2:
                again = await ws2.receive_json()
                await stream_pcm(ws2, demo_pcm[half:], pace_s=0.002)
                await ws2.send_str('{"type": "flush"}')
                rest = await collect(ws2)
            # closed with 1000 after the flush: forgotten; the id starts a new stream
            await asyncio.sleep(0.2)
            async with http.ws_connect(ws_url(server, stream=sid)) as ws3:
                fresh = await ws3.receive_json()
                await ws3.close()
            return hello, first, again, rest, fresh

    hello, first, again, rest, fresh = run(main())
    assert not hello["resumed"] and again["resumed"] and again["stream"] == hello["stream"]
    assert again["chunk"] == len(demo_pcm) // 2 // 320
    assert again["frame"] > 0
    # before and after the break together: the whole demo's digits, each once
    assert digits(first) + digits(rest) == demo_digits()
    assert digits(first) == [2, 7]
    assert not fresh["resumed"] and fresh["frame"] == 0


def test_idle_connection_is_closed_then_forgotten_and_capacity_is_bounded():
    config = ServeConfig(apps=("speech",), port=0, idle_s=0.3, grace_s=0.5, max_streams=2)
    services = {"speech": SpeechService(DigitBank.load(max_streams=2))}

    async def main(url):
        async with aiohttp.ClientSession() as http:
            q = url + "/ws/speech?rate=8000&stream="
            async with http.ws_connect(q + "a") as a, http.ws_connect(q + "b") as b:
                await a.receive_json()
                await b.receive_json()
                async with http.ws_connect(q + "c") as c:  # full, none in grace: refused
                    full = await c.receive_json()
                    await c.receive()
                    full_code = c.close_code
            async with http.ws_connect(q + "idle") as ws:
                await ws.receive_json()
                await ws.send_bytes(bytes(320))
                while (await ws.receive()).type == aiohttp.WSMsgType.TEXT:
                    pass  # until the server closes the silent connection
                idle_code = ws.close_code
            async with http.ws_connect(q + "idle") as ws:  # within grace: resumes
                resumed = (await ws.receive_json())["resumed"]
                await ws.close(code=1001)  # going away: kept in grace, then expires
            await asyncio.sleep(1.0)  # "idle" expires
            async with http.ws_connect(q + "idle") as ws:
                fresh = (await ws.receive_json())["resumed"]
            return idle_code, resumed, full, full_code, fresh

    with BackgroundServer(config, services) as srv:
        idle_code, resumed, full, full_code, fresh = run(main(srv.url))
        stats = json.loads(_get(srv.url + "/stats"))["speech"]
    assert idle_code == 1001 and resumed is True
    assert full["type"] == "error" and "full" in full["error"] and full_code == 1013
    assert fresh is False
    assert stats["dropped_idle"] >= 1 and stats["refused_full"] == 1 and stats["expired"] >= 1
