"""The forecast service: JSON records in, forecasts h steps ahead out, all streams in one
ForecastBank (private; the protocol is documented in :mod:`streamrnn.apps.serve`)."""

from __future__ import annotations

import json
import math
from collections import deque

import numpy as np
import orjson
from aiohttp import web

from ..forecast import ForecastBank, demo_path

__all__ = ["ForecastService"]

def _DUMPS(obj) -> str:  # noqa: N802  compact JSON, numpy arrays as lists
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY).decode()
MAX_RECORDS = 1000  # per message, and waiting per stream


class _Stream:
    __slots__ = ("period", "pending", "last_t", "rows", "due", "err", "naive_err", "scored")

    def __init__(self, period: float) -> None:
        self.period = period
        self.pending: deque = deque()  # accepted records (t, y) waiting for the tick
        self.last_t = -math.inf
        self.rows = 0
        self.due: deque = deque()  # (row index of the target, forecast, naive)
        self.err = self.naive_err = 0.0
        self.scored = 0


def _number(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


class ForecastService:
    """Online forecasts for many WebSocket sensor streams, one :class:`ForecastBank`.

    Each record is the next row of its stream's grid (``t`` must increase). Replies carry
    the forecast of the value ``horizon`` rows later and the stream's running MAE next to
    the naive (last value) forecast's, scored on the same rows.

    Threads
    -------
    Not safe under concurrent calls, and not locked (a lock per call would cost more
    than the call): use it from one thread at a time, or hold your own lock around each
    call.

    Examples
    --------
    >>> svc = ForecastService(horizon=2, max_streams=4)
    >>> svc.open("a", {"period": "60"})["horizon"]
    2
    >>> svc.text("a", '[{"t": 0, "y": 1.0}, {"t": 60, "y": 2.0}, {"t": 120, "y": 3.0}]')
    []
    >>> [json.loads(m)["naive_mae"] for m in svc.step()["a"]]
    [0.0, 0.0, 2.0]
    >>> svc.text("a", '{"t": 60, "y": 1}')
    Traceback (most recent call last):
    ...
    ValueError: record 1: t must increase (after 120.0), got 60
    """

    path = "/ws/forecast"

    def __init__(self, *, horizon: int = 6, max_streams: int = 10_000, seed: int = 0) -> None:
        self.bank = ForecastBank(horizon, seed=seed, max_streams=min(max_streams, 10_000))
        self.horizon = horizon
        self._streams: dict[str, _Stream] = {}
        self._fresh: set = set()

    def routes(self) -> dict:
        """Extra routes: ``/forecast/demo.json``, the demo series for the page's replay."""
        values = np.loadtxt(demo_path(), delimiter=",", skiprows=1, usecols=1)
        body = _DUMPS({"name": "river WaterFlow", "unit": "l/s", "period_s": 3600,
                       "values": np.round(values, 3).tolist()})

        async def demo(request: web.Request) -> web.Response:
            return web.Response(text=body, content_type="application/json")

        return {"/forecast/demo.json": demo}

    def _period(self, query) -> float:
        raw = query.get("period", "1")
        try:
            period = float(raw)
        except ValueError:
            period = math.nan
        if not (math.isfinite(period) and period > 0):
            raise ValueError(f"period must be a positive number of seconds, got {raw[:20]!r}")
        h = query.get("horizon")
        if h is not None and h != str(self.horizon):
            raise ValueError(f"horizon must be {self.horizon} on this server, got {h[:20]!r}")
        return period

    def check(self, query) -> None:
        """Validate a connection's query (``ValueError`` names the bad setting)."""
        self._period(query)

    def open(self, key: str, query) -> dict:
        """Start a stream (``period``: seconds per row; ``horizon`` if given must match)."""
        period = self._period(query)
        self.bank.open(key)
        self._streams[key] = _Stream(period)
        return {"horizon": self.horizon, "period": period, "rows": 0}

    def resume(self, key: str, query) -> dict:
        """Continue a stream."""
        st = self._streams[key]
        self._period(query)
        return {"horizon": self.horizon, "period": st.period, "rows": st.rows}

    def close(self, key: str) -> None:
        """Forget a stream."""
        del self._streams[key]
        self.bank.close(key)
        self._fresh.discard(key)

    def where(self, key: str) -> dict:
        """Fields naming the stream's position (for an error message)."""
        return {"rows": self._streams[key].rows}

    def cost(self, key: str, data: bytes) -> float:
        """No audio here."""
        return 0.0

    def binary(self, key: str, data: bytes) -> None:
        """Refused: records are JSON text."""
        raise ValueError('forecast streams take JSON text records {"t": ..., "y": ...}')

    def text(self, key: str, data: str) -> list[str]:
        """Accept one record or a list of them; all or none (``ValueError`` names it)."""
        try:
            msg = json.loads(data)
        except json.JSONDecodeError as exc:
            raise ValueError(f"text messages must be JSON: {exc}") from None
        records = msg if isinstance(msg, list) else [msg]
        st = self._streams[key]
        if len(records) + len(st.pending) > MAX_RECORDS:
            raise ValueError(f"at most {MAX_RECORDS} records may wait per stream")
        last, rows = st.last_t, []
        for i, rec in enumerate(records, 1):
            if not isinstance(rec, dict) or "y" not in rec:
                raise ValueError(f'record {i}: must be an object {{"t": ..., "y": ...}}, got '
                                 f"{str(rec)[:40]!r}")
            y = _number(rec["y"], f"record {i}: y")
            t = _number(rec.get("t", last + st.period if last > -math.inf else 0.0),
                        f"record {i}: t")
            if t <= last:
                raise ValueError(f"record {i}: t must increase (after {last}), got {rec['t']}")
            rows.append((t, y))
            last = t
        st.pending.extend(rows)
        st.last_t = last
        if rows:
            self._fresh.add(key)
        return []

    def step(self) -> dict:
        """Every stream's waiting records, one row per stream per batched call."""
        out: dict = {}
        while self._fresh:
            batch = {}
            for key in self._fresh:
                batch[key] = self._streams[key].pending.popleft()
            forecasts = self.bank.push({k: y for k, (t, y) in batch.items()})
            for key, (t, y) in batch.items():
                out.setdefault(key, []).append(self._reply(self._streams[key], t, y,
                                                           forecasts[key]))
            self._fresh = {k for k in self._fresh if self._streams[k].pending}
        return out

    def _reply(self, st: _Stream, t: float, y: float, forecast: float) -> str:
        k = st.rows
        while st.due and st.due[0][0] <= k:
            target, f, naive = st.due.popleft()
            if target == k:
                st.err += abs(f - y)
                st.naive_err += abs(naive - y)
                st.scored += 1
        st.due.append((k + self.horizon, forecast, y))
        st.rows += 1
        n = max(st.scored, 1)
        return _DUMPS({"type": "forecast", "row": k, "t": t, "y": y,
                       "forecast": round(forecast, 6),
                       "target_t": t + self.horizon * st.period, "naive": y,
                       "mae": round(st.err / n, 6), "naive_mae": round(st.naive_err / n, 6),
                       "scored": st.scored})
