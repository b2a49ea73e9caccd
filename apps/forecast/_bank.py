"""ForecastBank: many sensor streams forecast h steps ahead by one model learning online
(private; public through :mod:`streamrnn.apps.forecast`)."""

from __future__ import annotations

import numpy as np
import torch

from ._model import OnlineForecaster
from ._parts import FLOOR

__all__ = ["ForecastBank"]


_NONE = np.iinfo(np.int64).min  # an empty ring place: no grid index is this


class _Rows:
    """Every open stream's features state, one row per slot (what one
    :class:`OnlineForecaster` keeps for its series): the running mean and variance of the
    values, the running mean absolute 1-step and ``h``-step changes, the last value, the
    moving averages, the grid index and learner step, and a ring of the last ``h + 1``
    rows (grid index, step, value, scale)."""

    def __init__(self, capacity: int, horizon: int, emas: int) -> None:
        self.ring = horizon + 1  # rows k - h .. k: all a step reads (k - 1, k - h)
        f8, i8 = np.float64, np.int64
        self.n, self.mean, self.m2 = (np.zeros(capacity, f8) for _ in range(3))
        self.step_n, self.step_mean = np.zeros(capacity, f8), np.zeros(capacity, f8)
        self.change_n, self.change_mean = np.zeros(capacity, f8), np.zeros(capacity, f8)
        self.last = np.zeros(capacity, f8)
        self.ema = np.zeros((capacity, emas), f8)
        self.seen = np.zeros(capacity, bool)  # a value arrived: last and ema are set
        self.index, self.step = np.zeros(capacity, i8), np.zeros(capacity, i8)
        self.r_index = np.full((capacity, self.ring), _NONE, i8)
        self.r_step = np.zeros((capacity, self.ring), i8)
        self.r_y = np.zeros((capacity, self.ring), f8)
        self.r_s = np.zeros((capacity, self.ring), f8)

    def clear(self, slot: int) -> None:
        """A new stream at ``slot``."""
        for name in ("n", "mean", "m2", "step_n", "step_mean", "change_n", "change_mean",
                     "last", "ema", "seen", "index", "step", "r_step", "r_y", "r_s"):
            getattr(self, name)[slot] = 0
        self.r_index[slot] = _NONE

    def row(self, slots: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Where grid row ``k`` of each stream lives in the ring, and whether it is there."""
        pos = k % self.ring
        return pos, self.r_index[slots, pos] == k


def _add(n: np.ndarray, mean: np.ndarray, slots: np.ndarray, x: np.ndarray,
         m2: np.ndarray | None = None) -> None:
    """Fold ``x[i]`` into the running mean (and ``m2``) of ``slots[i]``: exactly
    :meth:`RunningMoments.add`, one value per stream."""
    count = n[slots] + 1.0
    n[slots] = count
    old = mean[slots]
    d = x - old
    new = np.where(count == 1.0, x, old + d / count)
    mean[slots] = new
    if m2 is not None:
        m2[slots] = np.where(count == 1.0, 0.0, m2[slots] + d * (x - new))


class ForecastBank:
    """Forecast ``y[t + h]`` for many keyed series at once, learning online from all.

    Every stream has its own features, exactly those of :class:`OnlineForecaster` (running
    z-score, scaled last and ``h``-step changes, distances to three moving averages, the
    observed flag); one shared network (an :class:`OnlineForecaster`'s model and keyed
    :class:`~streamrnn.OnlineLearner`, TBPTT per stream) steps every stream with a new
    row in **one** batched call per :meth:`push` and learns from all streams' targets as
    they arrive (predict, then learn). With one stream it computes exactly what an
    :class:`OnlineForecaster` computes on that series alone.

    Parameters
    ----------
    horizon : int
        Forecast this many grid steps ahead.
    hidden_size, k1, k2, lr, clip, loss, z_clip, seed
        As in :class:`OnlineForecaster` (no extra inputs: the target series only).
    max_streams : int
        Most open streams (at most the learner's 10,000); :meth:`open` refuses one more.

    Shape
    -----
    push: ``{key: y}`` (one new grid value per stream) -> ``{key: forecast}``.

    Threads
    -------
    Not safe under concurrent calls, and not locked (a lock per call would cost more
    than the call): use it from one thread at a time, or hold your own lock around each
    call.

    Examples
    --------
    >>> import numpy as np
    >>> bank = ForecastBank(2, k1=4, lr=0.01, seed=0)
    >>> bank.open("a"); bank.open("b")
    >>> y = 20 + 5 * np.sin(2 * np.pi * np.arange(200) / 8)
    >>> out = [bank.push({"a": v, "b": -v}) for v in y]
    >>> out[0]  # untrained: the naive forecast
    {'a': 20.0, 'b': -20.0}
    >>> late = np.abs([o["a"] for o in out[150:-2]] - y[152:]).mean()
    >>> naive = np.abs(y[150:-2] - y[152:]).mean()
    >>> bool(late < 0.5 * naive), bank.counts["targets"]
    (True, 396)
    """

    def __init__(
        self,
        horizon: int,
        *,
        hidden_size: int = 32,
        k1: int = 2,
        k2: int | None = None,
        lr: float = 1e-3,
        clip: float = 1.0,
        loss: str = "l1",
        z_clip: float = 5.0,
        seed: int = 0,
        max_streams: int = 10_000,
    ) -> None:
        self.forecaster = OnlineForecaster(horizon, hidden_size=hidden_size, k1=k1, k2=k2,
                                           lr=lr, clip=clip, loss=loss, z_clip=z_clip,
                                           seed=seed)
        self.learner = self.forecaster.learner
        limit = self.learner.max_streams
        if isinstance(max_streams, bool) or not isinstance(max_streams, int) or not (
                1 <= max_streams <= limit):
            raise ValueError(f"max_streams must be an integer in [1, {limit}], got "
                             f"{max_streams!r}")
        self.max_streams = max_streams
        self.horizon = self.forecaster.horizon
        self.z_clip = self.forecaster.z_clip
        self._decay = self.forecaster._decay  # the moving averages' decays
        self._slot_of: dict = {}  # open key -> its row
        self._free = list(range(max_streams - 1, -1, -1))
        self._rows = _Rows(max_streams, self.horizon, len(self._decay))
        self.counts = {"steps": 0, "targets": 0, "unmatched": 0, "resets": 0}

    # ------------------------------------------------------------------ streams
    def open(self, key) -> None:
        """Start stream ``key``; ``ValueError`` if it is open or the bank is full."""
        if key in self._slot_of:
            raise ValueError(f"key {key!r} is open already")
        if not self._free:
            raise ValueError(f"max_streams = {self.max_streams} streams are open")
        slot = self._slot_of[key] = self._free.pop()
        self._rows.clear(slot)

    def close(self, key) -> None:
        """Forget stream ``key`` (its features and its state in the learner)."""
        self._free.append(self._slot_of.pop(key))
        if key in self.learner.keys():
            self.learner.drop(key=key)

    def __contains__(self, key) -> bool:
        return key in self._slot_of

    def __len__(self) -> int:
        return len(self._slot_of)

    def keys(self) -> list:
        """Open streams."""
        return list(self._slot_of)

    # ------------------------------------------------------------------ rows
    def push(self, values: dict) -> dict:
        """One new grid value per stream: forecast ``y[t + h]`` for each (one batched
        call), then learn from the targets they complete (one call for all streams).

        ``ValueError`` (nothing changed) for an unknown key or a value that is not a
        finite number.
        """
        keys = list(values)
        if not keys:
            return {}
        slot_of = self._slot_of
        for key, v in values.items():
            if key not in slot_of:
                raise ValueError(f"values must be for open streams; {key!r} is not open")
            if isinstance(v, bool) or not isinstance(v, int | float | np.floating):
                raise ValueError(f"value for key {key!r} must be a finite number, got {v!r}")
        y = np.array(list(values.values()), dtype=np.float64)
        if not np.isfinite(y).all():
            key = keys[int(np.flatnonzero(~np.isfinite(y))[0])]
            raise ValueError(f"value for key {key!r} must be a finite number, got "
                             f"{values[key]!r}")
        slots = np.array([slot_of[k] for k in keys], dtype=np.int64)
        feats, scale = self._features(slots, y)
        x = torch.from_numpy(feats).to(torch.float32)
        delta = self.learner.push_many(keys, x)[:, 0, 0].double().numpy()
        self._learn(keys, slots, y, set(self.learner.last_reset))
        self.counts["steps"] += len(keys)
        return dict(zip(keys, (y + scale * delta).tolist(), strict=True))

    def _features(self, slots: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The forecaster's features of one observed value per stream, ``(N, 1, 7)``
        (clipped), and each stream's scale ``(N,)``; records the rows."""
        rows, h = self._rows, self.horizon
        k = rows.index[slots]
        _add(rows.n, rows.mean, slots, y, rows.m2)
        pos, has_prev = rows.row(slots, k - 1)
        if has_prev.any():
            _add(rows.step_n, rows.step_mean, slots[has_prev],
                 np.abs(y[has_prev] - rows.r_y[slots[has_prev], pos[has_prev]]))
        back_pos, has_back = rows.row(slots, k - h)
        back = rows.r_y[slots, back_pos]
        if has_back.any():
            _add(rows.change_n, rows.change_mean, slots[has_back],
                 np.abs(y[has_back] - back[has_back]))
        mean = rows.mean[slots]
        floor = FLOOR * (np.abs(mean) + 1.0)
        s = np.maximum(rows.change_mean[slots], floor)
        seen = rows.seen[slots]
        last = np.where(seen, rows.last[slots], y)
        std = np.maximum(np.sqrt(rows.m2[slots] / rows.n[slots]), floor)
        ema = np.where(seen[:, None], y[:, None] + self._decay * (rows.ema[slots] - y[:, None]),
                       y[:, None])
        feats = np.empty((len(slots), 1, 7))
        feats[:, 0, 0] = (y - mean) / std
        feats[:, 0, 1] = (y - last) / np.maximum(rows.step_mean[slots], floor)
        feats[:, 0, 2] = np.where(has_back, (y - back) / s, 0.0)
        feats[:, 0, 3:6] = (y[:, None] - ema) / s[:, None]
        feats[:, 0, 6] = 1.0
        np.clip(feats, -self.z_clip, self.z_clip, out=feats)
        here = k % rows.ring
        rows.r_index[slots, here], rows.r_step[slots, here] = k, rows.step[slots]
        rows.r_y[slots, here], rows.r_s[slots, here] = y, s
        rows.ema[slots], rows.last[slots], rows.seen[slots] = ema, y, True
        return feats, s

    def _learn(self, keys: list, slots: np.ndarray, y: np.ndarray, reset: set) -> None:
        """The targets the new values complete: ``y[t]`` against the row ``h`` back, as a
        change in that row's scale (clipped), given to the learner for that row's step."""
        rows, h = self._rows, self.horizon
        k, step = rows.index[slots], rows.step[slots]
        rows.index[slots] = k + 1
        rows.step[slots] = step + 1
        fresh = np.ones(len(keys), dtype=bool)
        if reset:  # a state went non-finite: those streams' steps restart at 0
            fresh = np.array([key not in reset for key in keys])
            gone = slots[~fresh]
            self.counts["resets"] += len(gone)
            rows.r_index[gone] = _NONE
            rows.step[gone] = 0
        pos, has_base = rows.row(slots, k - h)
        self.counts["unmatched"] += int((fresh & ~has_base & (step >= h)).sum())
        take = np.flatnonzero(fresh & has_base)
        if not len(take):
            return
        at, where = slots[take], pos[take]
        z = self.z_clip
        change = np.clip((y[take] - rows.r_y[at, where]) / rows.r_s[at, where], -z, z)
        taken = self.learner.learn_many([keys[i] for i in take], rows.r_step[at, where],
                                        torch.from_numpy(change).to(torch.float32))
        self.counts["targets"] += int(taken.sum())
