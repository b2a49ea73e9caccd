"""Per-channel running mean / variance for the sensor adapter (private).

Plain Welford (or an exponentially weighted variant) on Python floats rather than
``river.stats.Var``: one update per observation in a fixed order makes the statistics
independent of how records are chunked, and the state is three lists of floats that
serialise to JSON exactly.
"""

from __future__ import annotations

import numpy as np

__all__ = ["RunningStats"]


class RunningStats:
    """Running mean and (population) variance of each channel.

    ``ema=None`` is Welford's algorithm over every observation seen. ``ema=alpha`` is the
    exponentially weighted mean and variance (West 1979 / Finch 2009)::

        d = x - mean;  mean += alpha * d;  var = (1 - alpha) * (var + alpha * d * d)

    which equals the weighted variance with weights ``(1 - alpha) ** (n - 1)`` for the
    first observation and ``alpha * (1 - alpha) ** (n - i)`` for the others.
    """

    def __init__(self, size: int, ema: float | None) -> None:
        self.ema = ema
        self.n = [0] * size
        self.mean = [0.0] * size
        self.m2 = [0.0] * size  # Welford: sum of squared deviations; EMA: the variance.
        self.frozen = False

    def update(self, i: int, x: float) -> None:
        """Add observation ``x`` of channel ``i`` (ignored while frozen)."""
        if self.frozen:
            return
        n = self.n[i] + 1
        self.n[i] = n
        if n == 1:
            self.mean[i] = x
            self.m2[i] = 0.0
            return
        d = x - self.mean[i]
        if self.ema is None:
            self.mean[i] += d / n
            self.m2[i] += d * (x - self.mean[i])
        else:
            a = self.ema
            self.mean[i] += a * d
            self.m2[i] = (1.0 - a) * (self.m2[i] + a * d * d)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """``(mean, var)`` as float64 arrays of shape ``(C,)``; zero for unseen channels."""
        mean = np.asarray(self.mean, dtype=np.float64)
        m2 = np.asarray(self.m2, dtype=np.float64)
        if self.ema is not None:
            return mean, m2
        n = np.maximum(np.asarray(self.n, dtype=np.float64), 1.0)
        return mean, m2 / n

    def state(self) -> dict:
        return {
            "n": list(self.n),
            "mean": list(self.mean),
            "m2": list(self.m2),
            "frozen": self.frozen,
        }

    def load(self, state: dict, size: int) -> None:
        for key in ("n", "mean", "m2"):
            if len(state[key]) != size:
                raise ValueError(
                    f"state_dict stats[{key!r}] must have {size} entries, got {len(state[key])}"
                )
        self.n = [int(v) for v in state["n"]]
        self.mean = [float(v) for v in state["mean"]]
        self.m2 = [float(v) for v in state["m2"]]
        self.frozen = bool(state["frozen"])
