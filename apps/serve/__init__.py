"""``streamrnn serve``: live streams over WebSockets, many at once, with pages to watch them.

An asyncio server (aiohttp) runs one or both applications; each WebSocket connection is
one keyed stream, and every tick (``tick_ms``, 20 ms by default) all streams with new
data are stepped in **one** batched call: the speech streams in a
:class:`~streamrnn.apps.speech.DigitBank` (one model, a :class:`~streamrnn.StreamBank`
of states), the sensor streams in a :class:`~streamrnn.apps.forecast.ForecastBank` (one
model learning online with a keyed :class:`~streamrnn.OnlineLearner`). Pages served by
the same process (no build step, nothing from a CDN) show them live: ``/speech`` (the
microphone through an AudioWorklet, the log-mel spectrogram, the posteriors, the digits
with their latency) and ``/forecast`` (the demo series replayed, its forecasts and the
running MAE next to the naive forecast's).

Speech protocol: ``/ws/speech``
-------------------------------
Query: ``rate`` (Hz of the PCM, default the model's 8000; resampled with soxr when it
differs), ``format`` (``int16``, default, or ``float32``; little-endian mono),
``spectrogram=1`` (send the log-mel frames too), ``stream=ID`` (resume), ``token``.

- Binary messages: PCM chunks of any length (20 ms is typical).
- Text messages: ``{"type": "flush"}`` (end of utterance: the last word is decoded, the
  stream starts over; answered by its frames and digits, then ``{"type": "flushed"}``),
  ``{"type": "ping", "t": ...}`` (answered by ``{"type": "pong", "t": ...}``).
- Replies (JSON text): ``{"type": "hello", "stream": ID, "rate", "model_rate",
  "labels", "resumed", "chunk", "frame", ...}`` first; then per tick in which the
  stream sent audio ``{"type": "frames", "chunk": N, "frame": K, "post": [[11 floats],
  ...], "mel": [[40 floats], ...]}`` (``chunk``: binary messages received so far, so a
  client knows which chunks the reply covers; ``frame``: the index of the first frame);
  one ``{"type": "digit", "digit": 7, "time_s": 1.23, "latency_ms": 110.0, "chunk": N}``
  per recognised digit; ``{"type": "error", "error": "...", "chunk": N}`` for a frame
  that was refused (odd byte count, NaN, bad JSON): the stream goes on unchanged.

Forecast protocol: ``/ws/forecast``
-----------------------------------
Query: ``period`` (seconds per grid row, default 1), ``horizon`` (optional: must be the
server's, 6 rows), ``stream=ID``, ``token``. Text messages: one record ``{"t": seconds,
"y": value}`` or a list of them; each record is the stream's next grid row (``t`` must
increase; without ``t`` it is the last one plus ``period``). Replies: ``{"type":
"forecast", "row", "t", "y", "forecast", "target_t", "naive", "mae", "naive_mae",
"scored"}`` per row (``forecast`` is the value predicted for ``target_t = t + horizon *
period``; ``mae`` and ``naive_mae`` are running means over the same scored rows). One
model learns online from every stream's targets (see ``ForecastBank``).

Streams, limits and security
----------------------------
Binds 127.0.0.1 unless told otherwise. Optional token; browsers' ``Origin`` must be the
server's own (or listed). Every message is bounded (``max_frame_bytes``), each connection
is rate-limited (messages and audio seconds per second), each reply queue is bounded (a
reader that falls ``queue_size`` replies behind is dropped and counted; the tick never
waits for a socket). A connection closed with code 1000 ends its stream; one that drops
otherwise or idles out keeps its stream for ``grace_s`` seconds, and a client that
reconnects with ``?stream=ID`` continues where it was. ``GET /stats`` returns the
counters, the process's CPU seconds and resident memory.

Examples
--------
>>> import asyncio, json
>>> import aiohttp
>>> from streamrnn.adapters.audio import WavSource
>>> from streamrnn.apps.speech import demo_path
>>> async def client(url):
...     digits = []
...     async with aiohttp.ClientSession() as http:
...         async with http.ws_connect(url + "/ws/speech?rate=8000") as ws:
...             for chunk in WavSource(demo_path(), chunk_ms=20):
...                 await ws.send_bytes((chunk * 32767).astype("<i2").tobytes())
...             await ws.send_str('{"type": "flush"}')
...             async for msg in ws:
...                 reply = json.loads(msg.data)
...                 if reply["type"] == "digit":
...                     digits.append(reply["digit"])
...                 if reply["type"] == "flushed":
...                     return digits
>>> with BackgroundServer(ServeConfig(apps=("speech",), port=0)) as server:
...     digits = asyncio.run(client(server.url))
>>> digits
[2, 7, 5, 0, 9]
"""

from __future__ import annotations

from ._app import BackgroundServer, build_app, make_services, run_server
from ._cli import register_serve, serve_main
from ._config import APPS, ServeConfig
from ._forecast import ForecastService
from ._speech import SpeechService

__all__ = [
    "APPS",
    "BackgroundServer",
    "ForecastService",
    "ServeConfig",
    "SpeechService",
    "build_app",
    "make_services",
    "register_serve",
    "run_server",
    "serve_main",
]
