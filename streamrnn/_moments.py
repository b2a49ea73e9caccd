"""Running mean and variance per channel: the one implementation (private).

Public through :mod:`streamrnn.utils` as :class:`RunningMoments`; the sensor adapter's
normalisation, the audio front end's running normalisation, the forecaster's scaler and
the river estimators' target scalers are built on it (the river feature scaler's numba
loop is the one compiled copy, tested against it).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["RunningMoments"]


class RunningMoments:
    """Running count, mean and variance of each of ``size`` channels, in float64.

    ``ema=None``: Welford's algorithm over every value (one at a time with :meth:`add`,
    a step of all channels with :meth:`update`), Chan et al.'s merge for a block of steps
    (:meth:`extend`); ``m2`` is the sum of squared deviations. ``ema=alpha``: the
    exponentially weighted mean and variance (West 1979 / Finch 2009; ``m2`` is then the
    variance itself)::

        d = x - mean;  mean += alpha * d;  m2 = (1 - alpha) * (m2 + alpha * d * d)

    The state is three lists of Python floats (``n``, ``mean``, ``m2``): fast to update
    one value at a time, and exact in JSON (:meth:`state`). While :attr:`frozen`, updates
    are ignored.

    Shape
    -----
    :meth:`update`: ``(C,)``; :meth:`extend`: ``(T, C)`` -> means and variances ``(T, C)``.

    Threads
    -------
    Not safe under concurrent calls, and not locked (a lock per call would cost more
    than the call): use it from one thread at a time, or hold your own lock around each
    call.

    Examples
    --------
    >>> m = RunningMoments(2)
    >>> for row in ([1.0, 10.0], [3.0, 10.0], [5.0, 13.0]):
    ...     m.update(row)
    >>> m.n, m.mean, m.var().tolist(), m.var(ddof=1).tolist()
    ([3.0, 3.0], [3.0, 11.0], [2.6666666666666665, 2.0], [4.0, 3.0])
    >>> block = RunningMoments(2)
    >>> means, variances = block.extend([[1.0, 10.0], [3.0, 10.0], [5.0, 13.0]])
    >>> means.tolist(), variances[-1].tolist()  # after each step; the last as above
    ([[1.0, 10.0], [2.0, 10.0], [3.0, 11.0]], [2.6666666666666665, 2.0])
    """

    def __init__(self, size: int = 1, *, ema: float | None = None) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive int, got {size!r}")
        if ema is not None and (isinstance(ema, bool) or not 0.0 < ema <= 1.0):
            raise ValueError(f"ema must be None or a number in (0, 1], got {ema!r}")
        self.size, self.ema = size, ema
        self.n = [0.0] * size
        self.mean = [0.0] * size
        self.m2 = [0.0] * size
        self.frozen = False

    def add(self, i: int, x: float) -> None:
        """Fold value ``x`` into channel ``i``.

        Examples
        --------
        >>> m = RunningMoments()
        >>> for v in (1.0, 3.0, 5.0):
        ...     m.add(0, v)
        >>> m.mean[0], m.std(0, ddof=1)
        (3.0, 2.0)
        """
        if self.frozen:
            return
        n = self.n[i] + 1.0
        self.n[i] = n
        if n == 1.0:
            self.mean[i] = x
            self.m2[i] = 0.0
            return
        d = x - self.mean[i]
        if self.ema is None:
            mean = self.mean[i] + d / n
            self.mean[i] = mean
            self.m2[i] += d * (x - mean)
        else:
            a = self.ema
            self.mean[i] += a * d
            self.m2[i] = (1.0 - a) * (self.m2[i] + a * d * d)

    def update(self, values, observed=None) -> None:
        """Fold one step of every channel in (only those where ``observed`` is true).

        Examples
        --------
        >>> m = RunningMoments(2)
        >>> m.update([1.0, 7.0], observed=[True, False])
        >>> m.n, m.mean
        ([1.0, 0.0], [1.0, 0.0])
        """
        values = np.asarray(values, dtype=np.float64).reshape(self.size)
        take = range(self.size) if observed is None else np.flatnonzero(observed).tolist()
        for i in take:
            self.add(i, float(values[i]))

    def extend(self, block) -> tuple[np.ndarray, np.ndarray]:
        """Fold ``T`` steps of every channel in; the mean and (population) variance after each.

        Chan's merge of the statistics so far with each prefix of the block, the block's
        sums taken about the running mean (the first value for a fresh channel), so long
        streams stay accurate. Welford only (``ema=None``); ignores :attr:`frozen`.

        Shape
        -----
        ``(T, C)`` -> ``(T, C)``, ``(T, C)``.
        """
        if self.ema is not None:
            raise ValueError("extend needs ema=None (cumulative statistics)")
        x = np.asarray(block, dtype=np.float64).reshape(-1, self.size)
        if len(x) == 0:
            empty = np.zeros((0, self.size))
            return empty, empty
        n0 = np.asarray(self.n)
        mean0 = np.where(n0 > 0, np.asarray(self.mean), x[0])  # (C,)
        m2_0 = np.asarray(self.m2)
        d = x - mean0  # (T, C)
        s1 = np.cumsum(d, 0)
        s2 = np.cumsum(d * d, 0)
        k = np.arange(1, len(x) + 1, dtype=np.float64)[:, None]  # (T, 1)
        n = n0 + k
        mean = mean0 + s1 / n  # the merge of (n0, mean0) with (k, mean0 + s1 / k)
        m2 = m2_0 + s2 - s1 * s1 / n  # = m2_0 + M2_block + delta^2 n0 k / n
        var = np.maximum(m2, 0.0) / n  # rounding can dip just below 0
        self.n, self.mean, self.m2 = n[-1].tolist(), mean[-1].tolist(), m2[-1].tolist()
        return mean, var

    def var(self, ddof: int = 0) -> np.ndarray:
        """Variance of each channel (0 where fewer than ``ddof + 1`` values), ``(C,)``."""
        m2 = np.asarray(self.m2, dtype=np.float64)
        if self.ema is not None:
            return m2
        n = np.asarray(self.n, dtype=np.float64) - ddof
        return np.where(n > 0, m2 / np.maximum(n, 1.0), 0.0)

    def std(self, i: int, ddof: int = 0) -> float:
        """Standard deviation of channel ``i`` (0 where fewer than ``ddof + 1`` values)."""
        if self.ema is not None:
            return math.sqrt(self.m2[i])
        n = self.n[i] - ddof
        return math.sqrt(self.m2[i] / n) if n > 0 else 0.0

    def state(self) -> dict:
        """The statistics as plain JSON values (exact floats)."""
        return {"n": list(self.n), "mean": list(self.mean), "m2": list(self.m2),
                "frozen": self.frozen}

    def load(self, state: dict) -> None:
        """Restore a :meth:`state` of the same size (``ValueError`` otherwise)."""
        for key in ("n", "mean", "m2"):
            if len(state[key]) != self.size:
                raise ValueError(f"state_dict stats[{key!r}] must have {self.size} entries, "
                                 f"got {len(state[key])}")
        self.n = [float(v) for v in state["n"]]
        self.mean = [float(v) for v in state["mean"]]
        self.m2 = [float(v) for v in state["m2"]]
        self.frozen = bool(state["frozen"])
