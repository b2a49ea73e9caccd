"""Online scaling for the river estimators (private): running mean and variance.

``(value - mean) / std`` by running statistics, where ``std`` is the sample standard
deviation (1 while fewer than two values were seen, or when they are all equal).
:class:`RunningScaler` scales one value on :class:`~streamrnn.utils.RunningMoments` (the
one running mean / variance); :class:`ColumnScaler` puts a feature dict's values in
their columns and scales them in one compiled call (absent columns give 0, their running
mean after scaling): its Welford loop is the one compiled copy of the same statistics,
tested against :class:`~streamrnn.utils.RunningMoments` (``tests/river``).
"""

from __future__ import annotations

import math

import numpy as np

from .._moments import RunningMoments

try:
    from numba import njit
except ImportError:  # numba is a dependency; without it this runs as plain Python

    def njit(*args, **kwargs):
        return lambda f: f

__all__ = ["ColumnScaler", "RunningScaler"]


class RunningScaler:
    """Scaling one value by the running statistics of the values seen (the target scaler).

    The statistics are a :class:`~streamrnn.utils.RunningMoments` of one channel; the
    scale is its sample standard deviation, 1 while fewer than two values were seen or
    when they are all equal.

    Examples
    --------
    >>> s = RunningScaler()
    >>> [round(s.update_scale(v), 3) for v in (1.0, 3.0, 5.0)]
    [0.0, 0.707, 1.0]
    >>> s.mean, s.std, s.unscale(s.scale_value(4.0))
    (3.0, 2.0, 4.0)
    """

    def __init__(self) -> None:
        self.moments = RunningMoments(1)
        self.mean = 0.0
        self.std = 1.0  # kept current by update

    def update(self, value: float) -> None:
        """Fold ``value`` into the statistics."""
        moments = self.moments
        moments.add(0, value)
        self.mean = moments.mean[0]
        std = moments.std(0, ddof=1)
        self.std = std if std > 0 else 1.0

    def scale_value(self, value: float) -> float:
        """``(value - mean) / std`` with the current statistics."""
        return (value - self.mean) / self.std

    def update_scale(self, value: float) -> float:
        """Update with ``value``, then scale it."""
        self.update(value)
        return (value - self.mean) / self.std

    def unscale(self, value: float) -> float:
        """Inverse of :meth:`scale_value`."""
        return value * self.std + self.mean


@njit(cache=True, error_model="numpy")
def _gather_scale(n, mean, m2, cols, vals, learn, scale, out):
    # out[cols[i]] = vals[i] scaled by the statistics of column cols[i] % C (cols[i] < 0:
    # skipped; out may hold several rows of C columns, flat); returns the index of the
    # first non-finite value used (nothing changed), or -1.
    size = n.shape[0]
    for i in range(vals.shape[0]):
        if cols[i] >= 0 and not math.isfinite(vals[i]):
            return i
    for i in range(vals.shape[0]):
        at = cols[i]
        if at < 0:
            continue
        v = vals[i]
        if not scale:
            out[at] = v
            continue
        j = at % size
        if learn:
            n[j] += 1.0
            delta = v - mean[j]
            mean[j] += delta / n[j]
            m2[j] += delta * (v - mean[j])
        std = math.sqrt(m2[j] / (n[j] - 1.0)) if n[j] > 1.0 else 1.0
        out[at] = (v - mean[j]) / (std if std > 0 else 1.0)
    return -1


class ColumnScaler:
    """Per-column :class:`RunningScaler` of feature rows whose columns may be absent.

    Parameters
    ----------
    size : int
        Columns.

    Shape
    -----
    ``gather_scale``: columns and values ``(K,)`` -> row ``(C,)``.

    Examples
    --------
    >>> import numpy as np
    >>> s, row = ColumnScaler(3), np.zeros(3)
    >>> for v in (1.0, 3.0):
    ...     s.gather_scale(np.array([2, -1]), np.array([v, 7.0]), learn=True, scale=True,
    ...                    out=row)
    -1
    -1
    >>> row.round(3).tolist()
    [0.0, 0.0, 0.707]
    """

    def __init__(self, size: int) -> None:
        self.n = np.zeros(size)
        self.mean = np.zeros(size)
        self.m2 = np.zeros(size)

    def gather_scale(self, cols: np.ndarray, vals: np.ndarray, *, learn: bool, scale: bool,
                     out: np.ndarray) -> int:
        """Write ``vals[i]`` to ``out[cols[i]]`` (``cols[i] < 0``: skipped), scaled by the
        statistics of column ``cols[i] % C`` when ``scale`` (folded in first with
        ``learn``). ``out`` is one row of C columns, or several rows flattened; the
        other entries are left as they are.

        Returns -1, or the index of the first non-finite value used (then nothing
        changed).
        """
        return _gather_scale(self.n, self.mean, self.m2, cols, vals, learn, scale, out)
