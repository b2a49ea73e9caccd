"""The ForecastBank as it was written first, one stream at a time in Python loops: the
reference the vectorised :class:`streamrnn.apps.forecast.ForecastBank` is tested
against (tests only)."""

from __future__ import annotations

import numpy as np
import torch

from streamrnn.apps.forecast import OnlineForecaster
from streamrnn.apps.forecast._parts import FLOOR, MeanAbs, floored_std
from streamrnn.utils import RunningMoments

__all__ = ["LoopForecastBank"]


class _Track:
    """One stream's running scales, moving averages and recent rows (as the forecaster's)."""

    __slots__ = ("scaler", "step_change", "change", "last_y", "ema", "recent", "index",
                 "step")  # fmt: skip

    def __init__(self) -> None:
        self.scaler = RunningMoments(1)
        self.step_change = MeanAbs(FLOOR)  # |y[t] - y[t - 1]|
        self.change = MeanAbs(FLOOR)  # |y[t] - y[t - h]|: the target's scale
        self.last_y: float | None = None
        self.ema: np.ndarray | None = None
        self.recent: dict = {}  # grid index -> (step, y, scale)
        self.index = 0  # grid index of the next row
        self.step = 0  # learner steps of this stream


class LoopForecastBank:
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
        self._tracks: dict = {}
        self.counts = {"steps": 0, "targets": 0, "unmatched": 0, "resets": 0}

    # ------------------------------------------------------------------ streams
    def open(self, key) -> None:
        """Start stream ``key``; ``ValueError`` if it is open or the bank is full."""
        if key in self._tracks:
            raise ValueError(f"key {key!r} is open already")
        if len(self._tracks) >= self.max_streams:
            raise ValueError(f"max_streams = {self.max_streams} streams are open")
        self._tracks[key] = _Track()

    def close(self, key) -> None:
        """Forget stream ``key`` (its features and its state in the learner)."""
        del self._tracks[key]
        if key in self.learner.keys():
            self.learner.drop(key=key)

    def __contains__(self, key) -> bool:
        return key in self._tracks

    def __len__(self) -> int:
        return len(self._tracks)

    def keys(self) -> list:
        """Open streams."""
        return list(self._tracks)

    # ------------------------------------------------------------------ rows
    def push(self, values: dict) -> dict:
        """One new grid value per stream: forecast ``y[t + h]`` for each (one batched
        call), then learn from the targets they complete.

        ``ValueError`` (nothing changed) for an unknown key or a value that is not a
        finite number.
        """
        keys = list(values)
        ys = []
        for key in keys:
            if key not in self._tracks:
                raise ValueError(f"values must be for open streams; {key!r} is not open")
            v = values[key]
            if isinstance(v, bool) or not isinstance(v, int | float | np.floating) or not (
                    np.isfinite(v)):
                raise ValueError(f"value for key {key!r} must be a finite number, got {v!r}")
            ys.append(float(v))
        if not keys:
            return {}
        feats = np.empty((len(keys), 1, 7))
        scales = np.empty(len(keys))
        for i, (key, y) in enumerate(zip(keys, ys, strict=True)):
            scales[i] = self._features(self._tracks[key], y, feats[i, 0])
        np.clip(feats, -self.z_clip, self.z_clip, out=feats)
        x = torch.from_numpy(feats).to(torch.float32)
        delta = self.learner.push_many(keys, x)[:, 0, 0].double().numpy()
        reset = set(self.learner.last_reset)
        out = {}
        for i, (key, y) in enumerate(zip(keys, ys, strict=True)):
            out[key] = float(y + scales[i] * delta[i])
            self._learn(key, self._tracks[key], y, reset)
        self.counts["steps"] += len(keys)
        return out

    def _features(self, tr: _Track, y: float, row: np.ndarray) -> float:
        """The forecaster's features of one observed value (into ``row``); its scale."""
        h = self.horizon
        k = tr.index
        tr.scaler.update(np.array([y]), np.array([True]))
        prev = tr.recent.get(k - 1)
        if prev is not None:
            tr.step_change.update(abs(y - prev[1]))
        back = tr.recent.get(k - h)
        if back is not None:
            tr.change.update(abs(y - back[1]))
        mean = tr.scaler.mean[0]
        s = tr.change.scale(mean)
        last = y if tr.last_y is None else tr.last_y
        row[0] = (y - mean) / floored_std(tr.scaler)[0]
        row[1] = (y - last) / tr.step_change.scale(mean)
        row[2] = 0.0 if back is None else (y - back[1]) / s
        tr.ema = y + self._decay * (tr.ema - y) if tr.ema is not None else np.full(3, y)
        row[3:6] = (y - tr.ema) / s
        row[6] = 1.0
        tr.recent[k] = (tr.step, y, s)
        tr.last_y = y
        return s

    def _learn(self, key, tr: _Track, y: float, reset: set) -> None:
        h, k = self.horizon, tr.index
        step = tr.step
        tr.index += 1
        tr.step += 1
        if key in reset:  # the state went non-finite: step numbers restart at 0
            self.counts["resets"] += 1
            tr.recent.clear()
            tr.step = 0
            return
        base = tr.recent.get(k - h)
        if base is None:
            if step >= h:
                self.counts["unmatched"] += 1
        else:
            z = self.z_clip
            change = min(max((y - base[1]) / base[2], -z), z)
            if self.learner.learn(base[0], torch.tensor([change], dtype=torch.float32),
                                  key=key):
                self.counts["targets"] += 1
        keep = self.forecaster.k2 + h
        if len(tr.recent) > 2 * keep:
            for old in [j for j in tr.recent if j < k - keep]:
                del tr.recent[old]
