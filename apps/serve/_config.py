"""The server's settings, validated in one place (private; public in ``serve``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["APPS", "ServeConfig"]

#: The applications a server can run.
APPS = ("speech", "forecast")


def _number(name: str, value, *, lo: float, integer: bool = False, inf: bool = False):
    bad = isinstance(value, bool) or not isinstance(value, int | float)
    if integer and not isinstance(value, int):
        bad = True
    if bad or math.isnan(value) or value < lo or (math.isinf(value) and not inf):
        kind = "an integer" if integer else "a number"
        raise ValueError(f"{name} must be {kind} >= {lo}, got {value!r}")
    return value


@dataclass(frozen=True)
class ServeConfig:
    """Settings of ``streamrnn serve`` (flat, validated on construction).

    Parameters
    ----------
    apps : tuple of str
        Applications served: ``"speech"``, ``"forecast"`` or both. The first one's page
        is served at ``/``.
    host, port : str, int
        Address to bind; ``127.0.0.1`` unless told otherwise (``port=0``: any free port).
    token : str or None
        If set, every WebSocket and ``/stats`` request must carry it (``?token=...`` or
        ``Authorization: Bearer ...``); pages and their scripts are public.
    allow_origins : tuple of str
        Origins (``scheme://host:port``) allowed besides the server's own loopback ones.
        A request without an ``Origin`` header (not from a browser) is allowed.
    max_frame_bytes : int
        Largest WebSocket message; a bigger one closes the connection (code 1009).
    max_messages_per_s, max_audio_rate : float
        Per connection: messages per second, and audio seconds per second of wall time
        (``2.0``: twice real time), each as a token bucket holding ``burst_s`` seconds'
        worth. A connection over either gets an error message and is closed (1008).
    burst_s : float
        Seconds of allowance each bucket holds.
    queue_size : int
        Replies a connection may have waiting to be sent; a slower reader is dropped
        (closed with 1013, its stream forgotten, counted in ``dropped_slow``).
    idle_s : float
        A connection that sends nothing for this long is closed (1001) and its stream
        kept for ``grace_s`` (``inf``: never).
    grace_s : float
        A stream whose connection closed abnormally or idled out is kept this long; a
        client reconnecting with ``?stream=ID`` within it continues where it was. A close
        with code 1000 (the client's end of stream) forgets it at once.
    max_streams : int
        Most streams (connected and in grace). When full, a stream in grace is forgotten
        to make room (oldest first); with none in grace a new connection is refused.
    tick_ms : float
        Least time between two batched steps; new data waits at most this long.
    send_buffer_bytes : int or None
        ``SO_SNDBUF`` of each connection's socket and the bytes its writer buffers before
        it waits for the socket (``None``: the system's, and 64 KiB); bounds the memory a
        slow reader holds.

    Threads
    -------
    Not changed after it is built: safe to read from several threads at once.

    Examples
    --------
    >>> ServeConfig(apps=("speech",), port=0).host
    '127.0.0.1'
    >>> ServeConfig(apps=("radio",))
    Traceback (most recent call last):
    ...
    ValueError: apps must be a non-empty tuple of ('speech', 'forecast'), got ('radio',)
    """

    apps: tuple = ("speech",)
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    allow_origins: tuple = ()
    max_frame_bytes: int = 1 << 16
    max_messages_per_s: float = 200.0
    max_audio_rate: float = 4.0
    burst_s: float = 2.0
    queue_size: int = 64
    idle_s: float = 30.0
    grace_s: float = 10.0
    max_streams: int = 20_000
    tick_ms: float = 20.0
    send_buffer_bytes: int | None = None

    def __post_init__(self) -> None:
        apps = self.apps
        if not isinstance(apps, tuple) or not apps or not set(apps) <= set(APPS) or len(
                set(apps)) != len(apps):
            raise ValueError(f"apps must be a non-empty tuple of {APPS}, got {apps!r}")
        if not isinstance(self.host, str) or not self.host:
            raise ValueError(f"host must be a non-empty str, got {self.host!r}")
        _number("port", self.port, lo=0, integer=True)
        if self.port > 65535:
            raise ValueError(f"port must be an integer in [0, 65535], got {self.port!r}")
        if self.token is not None and (not isinstance(self.token, str) or not self.token):
            raise ValueError("token must be None or a non-empty str")
        origins = self.allow_origins
        if not isinstance(origins, tuple) or not all(isinstance(o, str) for o in origins):
            raise ValueError(f"allow_origins must be a tuple of str, got {origins!r}")
        _number("max_frame_bytes", self.max_frame_bytes, lo=64, integer=True)
        _number("max_messages_per_s", self.max_messages_per_s, lo=1e-9)
        _number("max_audio_rate", self.max_audio_rate, lo=1e-9)
        _number("burst_s", self.burst_s, lo=1e-3)
        _number("queue_size", self.queue_size, lo=1, integer=True)
        _number("idle_s", self.idle_s, lo=1e-3, inf=True)
        _number("grace_s", self.grace_s, lo=0)
        _number("max_streams", self.max_streams, lo=1, integer=True)
        _number("tick_ms", self.tick_ms, lo=0)
        if self.send_buffer_bytes is not None:
            _number("send_buffer_bytes", self.send_buffer_bytes, lo=1024, integer=True)
