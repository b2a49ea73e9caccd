"""Who may connect and how much they may send: token, Origin, token buckets (private)."""

from __future__ import annotations

import hmac
import time

__all__ = ["RateLimit", "allowed_origins", "origin_ok", "token_ok"]

_LOOPBACK = ("127.0.0.1", "localhost", "[::1]")


def allowed_origins(host: str, port: int, extra: tuple = ()) -> frozenset:
    """The origins a browser page may open WebSockets from: the server's own pages
    (loopback names, and ``host`` when it binds another address) plus ``extra``.

    Examples
    --------
    >>> sorted(allowed_origins("127.0.0.1", 8000))[:2]
    ['http://127.0.0.1:8000', 'http://[::1]:8000']
    """
    names = {*_LOOPBACK, host if ":" not in host else f"[{host}]"}
    if host in ("0.0.0.0", "::"):
        names -= {host, f"[{host}]"}
    own = {f"{scheme}://{name}:{port}" for name in names for scheme in ("http", "https")}
    return frozenset(own | {o.rstrip("/") for o in extra})


def origin_ok(origin: str | None, allowed: frozenset) -> bool:
    """A request without ``Origin`` is not from a browser page: allowed. Else it must be
    one of ``allowed`` (cross-site WebSocket hijacking is refused).

    Examples
    --------
    >>> ok = allowed_origins("127.0.0.1", 8000)
    >>> origin_ok(None, ok), origin_ok("http://localhost:8000", ok)
    (True, True)
    >>> origin_ok("http://evil.example", ok), origin_ok("http://localhost:9999", ok)
    (False, False)
    """
    return origin is None or origin.rstrip("/") in allowed


def token_ok(expected: str | None, query_token: str | None, authorization: str | None) -> bool:
    """Whether the request carries the token (``?token=`` or ``Bearer``), compared in
    constant time; always true when no token is set.

    Examples
    --------
    >>> token_ok(None, None, None), token_ok("s3", "s3", None), token_ok("s3", None, "Bearer s3")
    (True, True, True)
    >>> token_ok("s3", "s4", None), token_ok("s3", None, None)
    (False, False)
    """
    if expected is None:
        return True
    given = query_token
    if given is None and authorization and authorization.startswith("Bearer "):
        given = authorization[7:]
    if given is None:
        return False
    return hmac.compare_digest(given.encode(), expected.encode())


class RateLimit:
    """A token bucket: ``rate`` units per second, holding at most ``rate * burst_s``.

    Examples
    --------
    >>> bucket = RateLimit(10.0, burst_s=1.0, now=0.0)
    >>> [bucket.take(4.0, now=0.0) for _ in range(3)]
    [True, True, False]
    >>> bucket.take(4.0, now=0.5)  # 5 units came back
    True
    """

    __slots__ = ("rate", "capacity", "level", "stamp")

    def __init__(self, rate: float, *, burst_s: float, now: float | None = None) -> None:
        self.rate = float(rate)
        self.capacity = self.rate * burst_s
        self.level = self.capacity
        self.stamp = time.monotonic() if now is None else now

    def take(self, amount: float, *, now: float | None = None) -> bool:
        """Spend ``amount`` if the bucket holds it; ``False`` (nothing spent) if not."""
        now = time.monotonic() if now is None else now
        level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now
        if level < amount:
            self.level = level
            return False
        self.level = level - amount
        return True
