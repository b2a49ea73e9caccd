"""Connections, streams and the tick: the part of the server every application shares (private).

One :class:`Hub` serves one application (a "service": speech or forecast) at one
WebSocket path. Each connection is one keyed stream of the service. The receive loop of a
connection only checks and accepts its frames (a bad one gets an error message there and
then); the tick steps every stream with new data in one batched call
(``service.step()``) and hands each reply to its connection's bounded send queue, which a
writer task per connection drains. The tick never waits for a socket: a connection whose
queue is full is a slow reader, dropped and counted.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import socket
import time
from collections import deque

import orjson
from aiohttp import WSMsgType, web

from ._config import ServeConfig
from ._guard import RateLimit, allowed_origins, origin_ok, token_ok

__all__ = ["Hub", "Session", "error_text"]

_STREAM_ID = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
def _DUMPS(obj) -> str:  # noqa: N802  compact JSON, numpy arrays as lists
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY).decode()
CLOSE_NORMAL, CLOSE_AWAY, CLOSE_POLICY, CLOSE_TOO_BIG, CLOSE_AGAIN = 1000, 1001, 1008, 1009, 1013
CLOSE_TAKEN_OVER = 4001

_COUNTS = (
    "opened", "resumed", "taken_over", "closed", "expired", "dropped_slow", "dropped_idle",
    "evicted_grace", "refused_full", "refused_token", "refused_origin", "refused_open",
    "rate_limited", "too_big", "bad_frames", "messages_in", "messages_out", "ticks",
    "stepped",
)  # fmt: skip


def error_text(message: str, **fields) -> str:
    """The JSON text of an error message: ``{"type": "error", "error": ..., **fields}``.

    Examples
    --------
    >>> error_text("bad JSON", chunk=3)
    '{"type":"error","error":"bad JSON","chunk":3}'
    """
    return _DUMPS({"type": "error", "error": message, **fields})


async def _close(ws, transport, code: int, reason: bytes, last: str | None = None) -> None:
    """Send ``last`` (if any) and a close frame; abort the connection if that hangs."""
    try:
        if last is not None:
            await asyncio.wait_for(ws.send_str(last), 1.0)
        await asyncio.wait_for(ws.close(code=code, message=reason), 1.0)
    except (asyncio.TimeoutError, ConnectionError, RuntimeError):
        if transport is not None:
            transport.abort()


class Session:
    """One stream of a service and its connection (``ws`` is ``None`` while in grace)."""

    __slots__ = ("key", "ws", "queue", "wake", "writer", "messages", "audio", "last_seen",
                 "detached_at", "dropped", "kicked", "transport")  # fmt: skip

    def __init__(self, key: str, config: ServeConfig, now: float) -> None:
        self.key = key
        self.ws: web.WebSocketResponse | None = None
        self.queue: deque = deque()
        self.wake = asyncio.Event()
        self.writer: asyncio.Task | None = None
        self.messages = RateLimit(config.max_messages_per_s, burst_s=config.burst_s, now=now)
        self.audio = RateLimit(config.max_audio_rate, burst_s=config.burst_s, now=now)
        self.last_seen = now
        self.detached_at: float | None = None
        self.dropped = False  # forget the stream when the connection ends
        self.kicked = False  # the server closed it (its close code is not the client's)
        self.transport = None


class Hub:
    """Serve one service's streams over WebSockets with a batched tick.

    Parameters
    ----------
    service
        The application: ``check(query)``, ``open(key, query) -> dict``,
        ``resume(key, query) -> dict``,
        ``cost(key, data) -> float`` (audio seconds of a binary frame), ``binary(key,
        data)``, ``text(key, data) -> list[str]``, ``step() -> {key: [str]}``,
        ``close(key)``; a bad frame or query raises ``ValueError``.
    config : ServeConfig
    """

    def __init__(self, service, config: ServeConfig) -> None:
        self.service = service
        self.config = config
        self.sessions: dict[str, Session] = {}
        self.counts = dict.fromkeys(_COUNTS, 0)
        self.tick_ms_total = 0.0
        self._ready = asyncio.Event()
        self._origins = allowed_origins(config.host, config.port, config.allow_origins)
        self._tasks: list[asyncio.Task] = []

    # ------------------------------------------------------------------ lifecycle

    def start(self, port: int) -> None:
        """Start the tick and the sweeper (``port``: the port actually bound)."""
        cfg = self.config
        self._origins = allowed_origins(cfg.host, port, cfg.allow_origins)
        self._tasks = [asyncio.create_task(self._tick_loop()),
                       asyncio.create_task(self._sweep_loop())]

    async def stop(self) -> None:
        """Stop the loops and close every connection (code 1001; aborted after 1 s)."""
        for task in self._tasks:
            task.cancel()
        live = [s for s in self.sessions.values() if s.ws is not None]
        for s in live:
            s.kicked = True
            if s.writer is not None:
                s.writer.cancel()
        await asyncio.gather(*(_close(s.ws, s.transport, CLOSE_AWAY, b"server shutting down")
                               for s in live))

    def stats(self) -> dict:
        """Counters and gauges (JSON-ready)."""
        live = sum(s.ws is not None for s in self.sessions.values())
        ticks = max(self.counts["ticks"], 1)
        return {**self.counts, "connections": live, "streams": len(self.sessions),
                "in_grace": len(self.sessions) - live,
                "tick_ms_mean": round(self.tick_ms_total / ticks, 3),
                "batch_mean": round(self.counts["stepped"] / ticks, 2)}

    # ------------------------------------------------------------------ a connection

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """The WebSocket endpoint: check, attach a stream, receive until closed."""
        cfg, q = self.config, request.query
        if not token_ok(cfg.token, q.get("token"), request.headers.get("Authorization")):
            self.counts["refused_token"] += 1
            raise web.HTTPUnauthorized(text="a valid token is required (?token=...)")
        if not origin_ok(request.headers.get("Origin"), self._origins):
            self.counts["refused_origin"] += 1
            raise web.HTTPForbidden(text="Origin not allowed")
        ws = web.WebSocketResponse(max_msg_size=cfg.max_frame_bytes, compress=False,
                                   autoping=True, heartbeat=None,
                                   writer_limit=cfg.send_buffer_bytes or 65536)
        await ws.prepare(request)
        transport = request.transport
        if cfg.send_buffer_bytes is not None and transport is not None:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, cfg.send_buffer_bytes)
        try:
            session, hello = self._attach(ws, q)
        except ValueError as exc:
            self.counts["refused_open"] += 1
            await ws.send_str(error_text(str(exc)))
            await ws.close(code=CLOSE_POLICY, message=b"refused")
            return ws
        except OverflowError as exc:
            self.counts["refused_full"] += 1
            await ws.send_str(error_text(str(exc)))
            await ws.close(code=CLOSE_AGAIN, message=b"server full")
            return ws
        session.transport = transport
        session.writer = asyncio.create_task(self._write(session, ws))
        self.push(session, _DUMPS(hello))
        try:
            await self._receive(session, ws)
        finally:
            self._detach(session, ws)
        return ws

    def _attach(self, ws, q) -> tuple[Session, dict]:
        """Open a new stream, resume one in grace, or take over a connected one."""
        key = q.get("stream")
        if key is not None and not _STREAM_ID.fullmatch(key):
            raise ValueError(f"stream must match [A-Za-z0-9_.-]{{1,64}}, got {key[:80]!r}")
        now = time.monotonic()
        session = self.sessions.get(key) if key is not None else None
        if session is not None:
            info = self.service.resume(key, q)
            if session.ws is not None:  # the old connection may be half-open: replace it
                self.counts["taken_over"] += 1
                self._kick(session, CLOSE_TAKEN_OVER, b"taken over by a new connection")
            self.counts["resumed"] += 1
            resumed = True
        else:
            key = key or secrets.token_urlsafe(12)
            if len(self.sessions) >= self.config.max_streams:
                self.service.check(q)  # a bad query evicts nobody
                self._evict_one_in_grace()
            info = self.service.open(key, q)
            session = self.sessions[key] = Session(key, self.config, now)
            self.counts["opened"] += 1
            resumed = False
        session.ws, session.detached_at, session.last_seen = ws, None, now
        session.dropped = session.kicked = False
        session.queue.clear()
        return session, {"type": "hello", "stream": key, "resumed": resumed, **info}

    def _evict_one_in_grace(self) -> None:
        waiting = [s for s in self.sessions.values() if s.ws is None]
        if not waiting:
            raise OverflowError(f"the server is full ({self.config.max_streams} streams)")
        oldest = min(waiting, key=lambda s: s.detached_at)
        self._forget(oldest)
        self.counts["evicted_grace"] += 1

    async def _receive(self, session: Session, ws: web.WebSocketResponse) -> None:
        service, key, counts = self.service, session.key, self.counts
        async for msg in ws:
            if session.ws is not ws:  # taken over or dropped
                break
            now = time.monotonic()
            session.last_seen = now
            counts["messages_in"] += 1
            if not session.messages.take(1.0, now=now):
                await self._limit(session, "max_messages_per_s")
                break
            if msg.type == WSMsgType.BINARY:
                try:
                    cost = service.cost(key, msg.data)
                    if not session.audio.take(cost, now=now):
                        await self._limit(session, "max_audio_rate")
                        break
                    service.binary(key, msg.data)
                except ValueError as exc:
                    counts["bad_frames"] += 1
                    self.push(session, error_text(str(exc), **service.where(key)))
                    continue
                self._ready.set()
            elif msg.type == WSMsgType.TEXT:
                try:
                    replies = service.text(key, msg.data)
                except ValueError as exc:
                    counts["bad_frames"] += 1
                    self.push(session, error_text(str(exc)))
                    continue
                for reply in replies:
                    self.push(session, reply)
                self._ready.set()
            elif msg.type == WSMsgType.ERROR:
                counts["too_big"] += 1
                break

    async def _limit(self, session: Session, rule: str) -> None:
        self.counts["rate_limited"] += 1
        session.dropped = True  # an abusive client does not get a grace period
        ws = session.ws
        if session.writer is not None:
            session.writer.cancel()
            session.writer = None
        await _close(ws, session.transport, CLOSE_POLICY, b"rate limit",
                     error_text(f"{rule} exceeded ({getattr(self.config, rule)})"))

    def _detach(self, session: Session, ws) -> None:
        """The connection ``ws`` ended: keep its stream for ``grace_s``, or forget it."""
        if session.ws is not ws:  # taken over by a newer connection
            return
        if session.writer is not None:
            session.writer.cancel()
        session.ws, session.writer = None, None
        session.queue.clear()
        ended = ws.close_code == CLOSE_NORMAL and not session.kicked  # the client's end
        if session.dropped or ended or self.config.grace_s == 0:
            self._forget(session)
            self.counts["closed"] += 1
        else:
            session.detached_at = time.monotonic()

    def _forget(self, session: Session) -> None:
        if self.sessions.get(session.key) is session:
            del self.sessions[session.key]
            self.service.close(session.key)

    def _kick(self, session: Session, code: int, reason: bytes) -> None:
        """Close a session's connection without waiting for it (abort if it hangs)."""
        session.kicked = True
        if session.writer is not None:
            session.writer.cancel()
            session.writer = None
        if session.ws is not None:
            asyncio.get_running_loop().create_task(
                _close(session.ws, session.transport, code, reason))

    # ------------------------------------------------------------------ replies

    def push(self, session: Session | None, text: str) -> None:
        """Queue one reply; a full queue means a slow reader: drop it (never wait)."""
        if session is None or session.ws is None or session.dropped:
            return
        if len(session.queue) >= self.config.queue_size:
            self.counts["dropped_slow"] += 1
            session.dropped = True
            self._kick(session, CLOSE_AGAIN, b"slow reader: replies were not read")
            return
        session.queue.append(text)
        session.wake.set()

    async def _write(self, session: Session, ws: web.WebSocketResponse) -> None:
        queue, wake = session.queue, session.wake
        try:
            while True:
                await wake.wait()
                wake.clear()
                while queue:
                    await ws.send_str(queue[0])
                    queue.popleft()
                    self.counts["messages_out"] += 1
        except (ConnectionError, RuntimeError):
            pass

    # ------------------------------------------------------------------ the loops

    async def _tick_loop(self) -> None:
        loop = asyncio.get_running_loop()
        period = self.config.tick_ms / 1000.0
        last = -1e9
        while True:
            await self._ready.wait()
            wait = last + period - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self._ready.clear()
            last = loop.time()
            t0 = time.perf_counter()
            replies = self.service.step()
            sessions = self.sessions
            for key, texts in replies.items():
                session = sessions.get(key)
                for text in texts:
                    self.push(session, text)
            self.counts["ticks"] += 1
            self.counts["stepped"] += len(replies)
            self.tick_ms_total += (time.perf_counter() - t0) * 1000.0

    async def _sweep_loop(self) -> None:
        cfg = self.config
        while True:
            await asyncio.sleep(min(0.25, cfg.idle_s / 4, max(cfg.grace_s, 0.05) / 4))
            now = time.monotonic()
            for s in list(self.sessions.values()):
                if s.ws is not None and now - s.last_seen > cfg.idle_s:
                    self.counts["dropped_idle"] += 1
                    self._kick(s, CLOSE_AWAY, b"idle")
                elif s.ws is None and now - s.detached_at > cfg.grace_s:
                    self._forget(s)
                    self.counts["expired"] += 1
