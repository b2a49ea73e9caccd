"""``streamrnn serve`` as outside checks use it: the real command in its own process, a
page at ``/`` and ``/ws/speech?rate=8000`` taking int16 PCM, one JSON message per digit.

The expected digits come from the demo's clip list (FSDD file names), not from the model.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys

import aiohttp
import numpy as np
from _data import demo_digits

from streamrnn.adapters.audio import WavSource
from streamrnn.apps.speech import demo_path

# Ctrl-C at a terminal is what this stands for; a child inherits an ignored SIGINT (a shell
# that starts the test run in the background ignores it), so the child restores Python's own
_MAIN = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from streamrnn.cli import main; sys.exit(main())"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_command_serves_the_page_and_the_speech_socket():
    expected = demo_digits()
    pcm = np.round(WavSource(demo_path()).read() * 32767).astype("<i2").tobytes()
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-c", _MAIN, "serve", "--app", "speech",
                             "--port", str(port)], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert f"http://127.0.0.1:{port}/" in line, line

        async def client():
            url = f"http://127.0.0.1:{port}"
            async with aiohttp.ClientSession() as http:
                async with http.get(url + "/") as r:
                    page = await r.text()
                async with http.ws_connect(url + "/ws/speech?rate=8000") as ws:
                    for i in range(0, len(pcm), 320):  # 20 ms chunks
                        await ws.send_bytes(pcm[i : i + 320])
                    await ws.send_str('{"type": "flush"}')
                    digits = []
                    async for msg in ws:
                        reply = json.loads(msg.data)
                        if "digit" in reply:
                            digits.append(reply)
                        if reply["type"] == "flushed":
                            return page, digits

        page, digits = asyncio.run(asyncio.wait_for(client(), 60))
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()  # never leave the server running
            raise
    assert "<canvas" in page and "/static/speech.js" in page
    assert [d["digit"] for d in digits] == expected
    assert all(d["latency_ms"] >= 0 and d["time_s"] > 0 for d in digits)
    assert code == 0
