"""Irregular samples -> rows with the elapsed time Δt appended, instead of a fixed grid.

A time-aware cell (:class:`streamrnn.DecayGRU`) takes each sample as it came, with the
time since the stream's previous sample as its last input column; nothing is resampled,
held or interpolated. :class:`TimeDeltas` makes those rows from timestamped samples,
chunk-invariantly: pushing the same samples in any grouping gives the same rows, bit for
bit (Δt is computed in float64 from the timestamps, then cast).

Rules
-----
Order
    A sample at the same timestamp as the last accepted one is dropped (``duplicate``,
    first wins); an older one is dropped (``out_of_order``). There is no reordering
    window here: put a lateness buffer in front (as :class:`SensorAdapter` has) if
    samples can arrive out of order.
Δt
    ``(t - t_previous) / unit``; a stream's first sample gets ``first``. With
    ``max_delta``, a longer gap is capped at it and counted (``gaps``).
Bad input
    Non-finite timestamps or values, or wrong shapes: ``ValueError`` before anything
    changes.

This is the Δt emission of the sensor adapter's issue (the adapter itself is being
reworked): :class:`SensorAdapter` can offer it as ``period=None`` (one row per record
time after its lateness buffer, the last observed value of every channel, Δt last),
using this class for the Δt column and its counts.

Examples
--------
>>> from streamrnn.adapters.sensor.deltas import TimeDeltas
>>> td = TimeDeltas(features=1, unit=0.02)         # Δt in 20 ms periods
>>> td.push([0.00, 0.02, 0.10], [[1.0], [2.0], [3.0]])
tensor([[1., 0.],
        [2., 1.],
        [3., 4.]])
>>> td.push([0.10, 0.08, 0.16], [[9.0], [9.0], [4.0]])  # a duplicate, an old sample
tensor([[4., 3.]])
>>> td.counts
{'samples': 6, 'rows': 4, 'duplicate': 1, 'out_of_order': 1, 'gaps': 0}
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

__all__ = ["TimeDeltas"]

_COUNTS = ("samples", "rows", "duplicate", "out_of_order", "gaps")


class TimeDeltas:
    """Timestamped samples -> ``(T, F + 1)`` rows: the values, then Δt since the last row.

    Parameters
    ----------
    features : int
        Values per sample (F).
    unit : float
        Seconds per unit of Δt; pick the sensor's nominal period so that a regular step
        is Δt = 1.
    first : float
        Δt of the stream's first sample (its predecessor is unknown), in units.
    max_delta : float or None
        Cap on Δt, in units; a longer gap is capped and counted in ``counts["gaps"]``.
    dtype : torch.dtype
        Floating dtype of the rows.

    Attributes
    ----------
    counts : dict
        ``samples`` pushed, ``rows`` emitted, ``duplicate`` and ``out_of_order``
        (dropped samples), ``gaps`` (capped Δt).
    last_time : float or None
        Timestamp (seconds) of the last row emitted.

    Shape
    -----
    push: times ``(T,)``, values ``(T, F)`` -> ``(T', F + 1)``, ``T' <= T``.

    Threads
    -------
    Not safe under concurrent calls, and not locked (a lock per call would cost more
    than the call): use it from one thread at a time, or hold your own lock around each
    call.

    Examples
    --------
    >>> td = TimeDeltas(features=2, unit=1.0, max_delta=10.0)
    >>> td.push([5.0, 5.5, 60.0], [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    tensor([[ 1.0000,  2.0000,  0.0000],
            [ 3.0000,  4.0000,  0.5000],
            [ 5.0000,  6.0000, 10.0000]])
    >>> td.counts["gaps"], td.last_time
    (1, 60.0)
    >>> td.push([61.0], [[float("nan"), 0.0]])
    Traceback (most recent call last):
    ...
    ValueError: values must be finite, got nan in row 0
    """

    def __init__(
        self,
        features: int,
        *,
        unit: float = 1.0,
        first: float = 0.0,
        max_delta: float | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        if isinstance(features, bool) or not isinstance(features, int) or features < 1:
            raise ValueError(f"features must be a positive int, got {features!r}")
        self.features = features
        self.unit = _positive("unit", unit)
        if isinstance(first, bool) or not isinstance(first, int | float) or not (
            math.isfinite(first) and first >= 0
        ):
            raise ValueError(f"first must be a finite number >= 0, got {first!r}")
        self.first = float(first)
        self.max_delta = None if max_delta is None else _positive("max_delta", max_delta)
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise ValueError(f"dtype must be a floating torch.dtype, got {dtype!r}")
        self.dtype = dtype
        self.last_time: float | None = None
        self.counts = dict.fromkeys(_COUNTS, 0)

    def push(self, times, values) -> Tensor:
        """Rows of the accepted samples among ``times`` / ``values``, Δt last.

        Shape
        -----
        times ``(T,)`` (seconds), values ``(T, F)`` -> ``(T', F + 1)``.
        """
        t = np.asarray(times.cpu() if isinstance(times, Tensor) else times, dtype=np.float64)
        v = np.asarray(values.cpu() if isinstance(values, Tensor) else values,
                       dtype=np.float64)
        if t.ndim != 1:
            raise ValueError(f"times must have shape (T,), got {t.shape}")
        if v.shape != (len(t), self.features):
            raise ValueError(
                f"values must have shape (T, F) = ({len(t)}, {self.features}), got {v.shape}"
            )
        for name, arr in (("times", t), ("values", v)):
            bad = ~np.isfinite(arr)
            if bad.any():
                row = int(np.argwhere(bad)[0][0])
                raise ValueError(f"{name} must be finite, got {arr[bad][0]} in row {row}")
        start = -np.inf if self.last_time is None else self.last_time
        before = np.maximum.accumulate(np.concatenate([[start], t]))[:-1]
        keep = t > before  # strictly after everything accepted so far
        kept = t[keep]
        dt = np.diff(kept, prepend=start if self.last_time is not None else np.nan) / self.unit
        if len(kept) and self.last_time is None:
            dt[0] = self.first
        capped = 0
        if self.max_delta is not None:
            capped = int((dt > self.max_delta).sum())
            dt = np.minimum(dt, self.max_delta)
        rows = np.concatenate([v[keep], dt[:, None]], axis=1)
        # Commit only now: everything above may raise, nothing below does.
        self.counts["samples"] += len(t)
        self.counts["rows"] += len(kept)
        self.counts["duplicate"] += int((t == before).sum())
        self.counts["out_of_order"] += int((t < before).sum())
        self.counts["gaps"] += capped
        if len(kept):
            self.last_time = float(kept[-1])
        return torch.from_numpy(rows).to(self.dtype)

    def reset(self) -> None:
        """Forget the last timestamp: the next sample is a stream's first."""
        self.last_time = None

    def state_dict(self) -> dict:
        """Plain JSON: the last timestamp and the counts."""
        return {"last_time": self.last_time, "counts": dict(self.counts)}

    def load_state_dict(self, state: dict) -> None:
        """Resume from :meth:`state_dict`; ``ValueError`` if it does not fit."""
        last = state.get("last_time") if isinstance(state, dict) else None
        counts = state.get("counts") if isinstance(state, dict) else None
        if not isinstance(counts, dict) or set(counts) != set(_COUNTS) or not (
            last is None or (isinstance(last, float) and math.isfinite(last))
        ):
            raise ValueError(f"state must come from TimeDeltas.state_dict(), got {state!r}")
        self.last_time = last
        self.counts = {k: int(counts[k]) for k in _COUNTS}


def _positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
        math.isfinite(value) and value > 0
    ):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)
