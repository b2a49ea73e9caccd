"""Records as they arrive, until they are final: the adapter's order buffer (private).

:class:`Arrivals` takes each parsed record of :meth:`SensorAdapter.push
<streamrnn.adapters.sensor.SensorAdapter.push>` in the order it came: it judges and
counts its values (``missing``, ``non_finite``, ``invalid``), drops a record with no grid
(``out_of_range``) or one too late (``late``), and keeps the rest by timestamp, merging
records of one timestamp (``reordered``, ``duplicate``). Once the watermark (the newest
timestamp minus ``lateness``) has passed a timestamp, no later record can precede it:
its values go to the :class:`~._engine.Resampler` as a final event, in time order.
"""

from __future__ import annotations

import heapq
import math

from ._parse import Invalid

__all__ = ["Arrivals"]


class Arrivals:
    """The records not yet final, by timestamp, and the newest timestamp seen.

    Parameters
    ----------
    engine : Resampler
        Where final events go.
    counts : dict
        The adapter's counters.
    lateness : float
        Seconds a record may be older than the newest timestamp and still be placed.
    span : float
        Largest ``|timestamp|`` with a grid (``2**52`` periods).
    drop_invalid : bool
        Whether a non-numeric value is dropped (``invalid_policy="mask"``) rather than
        kept as missing (``None``) for ``nan_policy`` to repair.
    pending, max_seen, closed
        A checkpoint's records not yet final, newest timestamp and last flush.

    Attributes
    ----------
    pending : dict
        ``{timestamp: {channel index: value}}`` of the records not yet final.
    max_seen : float or None
        The newest timestamp accepted.
    closed : float or None
        The newest timestamp at the last flush: records at or before it are late.
    """

    def __init__(self, engine, counts: dict, *, lateness: float, span: float,
                 drop_invalid: bool, pending: dict | None = None,
                 max_seen: float | None = None, closed: float | None = None) -> None:
        self.engine, self.counts = engine, counts
        self.lateness, self.span, self.drop_invalid = lateness, span, drop_invalid
        self.pending: dict = {} if pending is None else pending
        self.heap: list = sorted(self.pending)  # their timestamps (a sorted list is a heap)
        self.max_seen, self.closed = max_seen, closed

    def add(self, ts: float, values: dict, unknown: int) -> None:
        """One parsed record: ``values`` ``{channel index: float, None or Invalid}`` and
        the number of ``unknown`` channels it named."""
        counts = self.counts
        counts["records"] += 1
        counts["unknown_channel"] += unknown
        clean = {}
        for i, v in values.items():
            if v is None:
                counts["missing"] += 1
            elif type(v) is Invalid:
                counts["invalid"] += 1
                if self.drop_invalid:  # masked: as if not reported
                    continue
                v = None
            elif not math.isfinite(v):
                counts["non_finite"] += 1
                v = None
            clean[i] = v
        if not abs(ts) <= self.span:  # no grid there: dropped, counted
            counts["out_of_range"] += 1
            return
        newest = self.max_seen
        if (newest is not None and ts < newest - self.lateness) or (
            self.closed is not None and ts <= self.closed
        ):
            counts["late"] += 1
            return
        if newest is not None and ts < newest:
            counts["reordered"] += 1
        slot = self.pending.get(ts)
        if slot is None:
            self.pending[ts] = clean
            heapq.heappush(self.heap, ts)
        else:
            for i, v in clean.items():
                if i in slot:
                    counts["duplicate"] += 1
                else:
                    slot[i] = v
        if newest is None or ts > newest:
            self.max_seen = ts
        watermark = self.max_seen - self.lateness
        while self.heap and self.heap[0] < watermark:
            t = heapq.heappop(self.heap)
            self.engine.add_final(t, self.pending.pop(t))

    def close(self) -> float | None:
        """End of data for now: every record is final (later ones at or before the
        newest timestamp will be late). Returns the newest timestamp, or None."""
        while self.heap:
            ts = heapq.heappop(self.heap)
            self.engine.add_final(ts, self.pending.pop(ts))
        if self.max_seen is not None:
            self.closed = self.max_seen
        return self.max_seen

    def state(self, names: tuple) -> dict:
        """``max_seen``, ``closed`` and ``pending`` (by channel name) for a checkpoint."""
        return {
            "max_seen": self.max_seen,
            "closed": self.closed,
            "pending": [
                [ts, {names[i]: v for i, v in self.pending[ts].items()}]
                for ts in sorted(self.pending)
            ],
        }
