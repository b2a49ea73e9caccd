"""The resampling timeline behind :class:`SensorAdapter` (private).

The engine sees only *final* events — ``(timestamp, {channel index: value})`` that no
later record can precede — in time order, and turns them into rows on the grid
``origin + k * period``. Everything here is a function of the final events and of how
far the caller says time is known (the watermark), never of how records were chunked.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from streamrnn.utils import RunningMoments

__all__ = ["MAX_GAP_ROWS", "Resampler"]

#: Most rows emitted after the last record before a silence counts as a gap, whatever
#: ``max_gap`` (even ``math.inf``): one record far ahead costs bounded memory and time.
MAX_GAP_ROWS = 2**20

_TWO_PI = 2.0 * math.pi
_DAY = 86400.0
_EPOCH_WEEKDAY = 3.0  # 1970-01-01 was a Thursday; Monday is 0.


class Resampler:
    """Grid, held / interpolated values, mask, age, normalisation and calendar columns.

    Emission walks the final events once in Python, recording for each stretch of rows
    between two events a snapshot of the per-channel state (last value and time, the
    next value for ``"linear"``, the statistics); the rows of all stretches are then
    built in one vectorised pass.
    """

    def __init__(self, cfg, counts: dict) -> None:
        self.cfg = cfg
        self.counts = counts
        size = len(cfg.channels)
        self.events: deque = deque()  # (ts, {i: value}, frozenset(repaired i))
        self.ahead = [deque() for _ in range(size)]  # linear: unconsumed (ts, value)
        self.good = [None] * size  # last good value finalised (for nan_policy="hold")
        self.k: int | None = None  # next grid index to emit
        self.first_ts: float | None = None
        self.last_event: float | None = None
        self.last_val = [math.nan] * size
        self.last_ts = [math.nan] * size
        self.stats = RunningMoments(size, ema=cfg.ema)

    # -- grid ----------------------------------------------------------------------
    def grid(self, k: int) -> float:
        return self.cfg.origin + k * self.cfg.period

    def first_at_or_after(self, t: float) -> int:
        """Smallest k with ``grid(k) >= t`` (exact on the float grid, not just ceil).

        O(1): within ``MAX_PERIODS`` of the origin (the adapter drops records beyond) the
        grid's spacing exceeds the rounding of ``ceil``, so a step or two corrects it.
        """
        origin, period = self.cfg.origin, self.cfg.period
        k = math.ceil((t - origin) / period)
        steps = 0  # a step or two at most; the bound keeps a degenerate grid from looping
        while origin + (k - 1) * period >= t and steps < 4:
            k -= 1
            steps += 1
        while origin + k * period < t and steps < 8:
            k += 1
            steps += 1
        return k

    def first_after(self, t: float) -> int:
        """Smallest k with ``grid(k) > t``."""
        k = self.first_at_or_after(t)
        return k + 1 if self.grid(k) == t else k

    # -- input -----------------------------------------------------------------------
    def add_final(self, ts: float, values: dict) -> None:
        """Append a final event; ``values`` maps channel index -> float or None (bad)."""
        hold = self.cfg.nan_policy == "hold"
        linear = self.cfg.method == "linear"
        clean, repaired = {}, ()
        for i, v in values.items():
            if v is None:
                if not hold or self.good[i] is None:
                    continue
                v = self.good[i]
                repaired += (i,)
                self.counts["held"] += 1
            else:
                self.good[i] = v
            clean[i] = v
            if linear:
                self.ahead[i].append((ts, v))
        self.events.append((ts, clean, frozenset(repaired)))

    def _consume(self) -> None:
        ts, values, repaired = self.events.popleft()
        if self.first_ts is None:
            self.first_ts = ts
        linear = self.cfg.method == "linear"
        for i, v in values.items():
            self.last_val[i] = v
            self.last_ts[i] = ts
            if i not in repaired:
                self.stats.add(i, v)
            if linear:
                self.ahead[i].popleft()
        self.last_event = ts

    # -- output ----------------------------------------------------------------------
    def emit(self, limit: float, final: bool) -> tuple[np.ndarray, np.ndarray] | None:
        """Rows whose inputs are all known: ``grid < limit`` (``<=`` when ``final``).

        Returns ``(times (T,), rows (T, F))`` float64, or None when no row is ready.
        """
        cfg, spans = self.cfg, []
        while True:
            if self.k is None:
                if not self.events:
                    break
                self.k = self.first_at_or_after(self.events[0][0])
                self._consume()
                continue
            te = self.events[0][0] if self.events else None
            if te is not None:
                k_end = self.first_at_or_after(te)
            else:
                k_end = self.first_after(limit) if final else self.first_at_or_after(limit)
            # rows past the last event: at most max_gap, and never more than MAX_GAP_ROWS
            reach = min(cfg.max_gap, MAX_GAP_ROWS * cfg.period)
            k_stop = min(k_end, self.first_after(self.last_event + reach))
            if k_stop > self.k:
                if cfg.method == "linear" and not self._resolved(limit, final):
                    break
                spans.append(self._snapshot(self.k, k_stop))
                self.k = k_stop
            if te is None:
                break
            if k_end > self.k:  # a gap longer than max_gap: these rows are skipped
                self.counts["gaps"] += 1
                self.counts["skipped_rows"] += k_end - self.k
                self.k = k_end
            self._consume()
        return self._build(spans) if spans else None

    def _resolved(self, limit: float, final: bool) -> bool:
        """Linear: every channel's next observation is known or can no longer matter."""
        if final:
            return True
        reach = self.cfg.interp_limit
        for queue, last in zip(self.ahead, self.last_ts, strict=True):
            if not queue and not math.isnan(last) and not (limit > last + reach):
                return False
        return True

    def _snapshot(self, k0: int, k1: int) -> tuple:
        """The state that rows ``k0 <= k < k1`` are built from."""
        after = None
        if self.cfg.method == "linear":
            reach, after = self.cfg.interp_limit, []
            for queue, ta in zip(self.ahead, self.last_ts, strict=True):
                ok = queue and queue[0][0] - ta <= reach
                after.append(queue[0] if ok else (math.nan, math.nan))
        stats = self.stats
        moments = (list(stats.n), list(stats.mean), list(stats.m2)) if self.cfg.normalize else None
        return k0, k1, list(self.last_val), list(self.last_ts), after, moments

    def _build(self, spans: list) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.cfg
        lengths = np.array([k1 - k0 for k0, k1, *_ in spans])
        starts = np.array([k0 for k0, *_ in spans], dtype=np.float64)
        offsets = np.cumsum(lengths) - lengths
        k = np.arange(lengths.sum(), dtype=np.float64) + np.repeat(starts - offsets, lengths)
        g = cfg.origin + k * cfg.period  # (T,)
        gc = g[:, None]

        def per_row(j):  # (T, C) from one per-span field
            return np.repeat(np.array([span[j] for span in spans], dtype=np.float64), lengths, 0)

        va, ta = per_row(2), per_row(3)
        values = va
        if cfg.method == "linear":
            nxt = np.repeat(np.array([s[4] for s in spans], dtype=np.float64), lengths, 0)
            tb, vb = nxt[..., 0], nxt[..., 1]
            values = np.where(np.isnan(tb), va, (vb - va) / (tb - ta) * (gc - ta) + va)
        if cfg.normalize:
            n, mean, m2 = (
                np.repeat(np.array([s[5][j] for s in spans], dtype=np.float64), lengths, 0)
                for j in range(3)
            )
            var = m2 if cfg.ema is not None else m2 / np.maximum(n, 1.0)
            values = (values - mean) / np.sqrt(var + cfg.eps)
        seen = ~np.isnan(ta)
        values = np.where(seen, values, 0.0)
        overflow = ~np.isfinite(values)  # only from extreme values overflowing float64
        if overflow.any():
            self.counts["overflow"] += int(overflow.sum())
            values[overflow] = 0.0
        columns = [values]
        age = (gc - np.where(seen, ta, self.first_ts)) / cfg.period  # (T, C), in periods
        if cfg.mask_features:
            columns.append(((age < 1.0) & seen).astype(np.float64))
        if cfg.age_features:
            columns.append(age)
        if cfg.calendar:
            local = g + cfg.utc_offset
            day = np.mod(local, _DAY) / _DAY * _TWO_PI
            week = np.mod(local / _DAY + _EPOCH_WEEKDAY, 7.0) / 7.0 * _TWO_PI
            columns.append(np.stack([np.sin(day), np.cos(day), np.sin(week), np.cos(week)], 1))
        return g, np.concatenate(columns, axis=1)

    # -- state -----------------------------------------------------------------------
    def state(self, names: tuple) -> dict:
        def opt(x):
            return None if math.isnan(x) else x

        return {
            "events": [
                [ts, {names[i]: v for i, v in vals.items()}, sorted(names[i] for i in rep)]
                for ts, vals, rep in self.events
            ],
            "ahead": [[list(p) for p in q] for q in self.ahead],
            "good": list(self.good),
            "k": self.k,
            "first_ts": self.first_ts,
            "last_event": self.last_event,
            "last_val": [opt(x) for x in self.last_val],
            "last_ts": [opt(x) for x in self.last_ts],
            "stats": self.stats.state(),
        }

    def load(self, state: dict, index: dict) -> None:
        size = len(index)
        for key in ("ahead", "good", "last_val", "last_ts"):
            if len(state[key]) != size:
                raise ValueError(
                    f"state_dict engine[{key!r}] must have {size} entries, got {len(state[key])}"
                )
        self.events = deque(
            (
                float(ts),
                {index[c]: float(v) for c, v in vals.items()},
                frozenset(index[c] for c in rep),
            )
            for ts, vals, rep in state["events"]
        )
        self.ahead = [deque((float(t), float(v)) for t, v in q) for q in state["ahead"]]
        self.good = [None if v is None else float(v) for v in state["good"]]
        self.k = None if state["k"] is None else int(state["k"])
        self.first_ts = state["first_ts"]
        self.last_event = state["last_event"]
        self.last_val = [math.nan if v is None else float(v) for v in state["last_val"]]
        self.last_ts = [math.nan if v is None else float(v) for v in state["last_ts"]]
        self.stats.load(state["stats"])
