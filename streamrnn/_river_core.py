"""Shared machinery of the river estimators (private): columns, scaling, the learner."""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from streamrnn.cells import GRU, LSTM, RNN
from streamrnn.heads import Readout, RecurrentModel
from streamrnn.learn import OnlineLearner

__all__ = ["RNNEstimator", "RunningScaler"]

_CELLS = {"lstm": LSTM, "gru": GRU, "rnn": RNN}


def _numeric(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


class RunningScaler:
    """Running mean and variance of a stream of values (Welford), and scaling by them.

    Works on floats or on numpy arrays of per-column values with a mask of which
    columns are present.

    Examples
    --------
    >>> s = RunningScaler()
    >>> [round(float(s.update_scale(v)), 3) for v in (1.0, 3.0, 5.0)]
    [0.0, 0.707, 1.0]
    >>> float(s.unscale(s.scale_value(4.0)))
    4.0
    """

    def __init__(self, size: int | None = None) -> None:
        shape = () if size is None else (size,)
        self.n = np.zeros(shape)
        self.mean = np.zeros(shape)
        self.m2 = np.zeros(shape)
        self._std = None  # cached until the next update

    def update(self, value, present=None) -> None:
        """Fold ``value`` (where ``present``) into the statistics."""
        value = np.asarray(value, dtype=np.float64)
        w = 1.0 if present is None else present.astype(np.float64)
        n = self.n + w
        delta = value - self.mean
        mean = self.mean + np.where(n > 0, w * delta / np.maximum(n, 1), 0.0)
        self.m2 = self.m2 + w * delta * (value - mean)
        self.mean, self.n = mean, n
        self._std = None

    def std(self):
        """Sample standard deviation; 1 where fewer than two values or zero spread."""
        if self._std is None:
            var = np.where(self.n > 1, self.m2 / np.maximum(self.n - 1, 1), 1.0)
            std = np.sqrt(var)
            self._std = np.where(std > 0, std, 1.0)
        return self._std

    def scale_value(self, value):
        """``(value - mean) / std`` with the current statistics."""
        return (value - self.mean) / self.std()

    def update_scale(self, value, present=None):
        """Update with ``value``, then scale it."""
        self.update(value, present)
        return self.scale_value(value)

    def unscale(self, value):
        """Inverse of :meth:`scale_value`."""
        return value * self.std() + self.mean


class RNNEstimator:
    """Base of the river estimators: validation, lazy model, feature columns, scalers."""

    def __init__(
        self,
        *,
        hidden_size: int,
        num_layers: int,
        cell: str,
        k1: int,
        k2: int,
        lr: float,
        clip: float,
        max_features: int,
        scale: bool,
        seed: int | None,
    ) -> None:
        for name, value in (("hidden_size", hidden_size), ("num_layers", num_layers),
                            ("k1", k1), ("k2", k2), ("max_features", max_features)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if k2 < k1:
            raise ValueError(f"k2 must be >= k1 = {k1}, got {k2}")
        if cell not in _CELLS:
            raise ValueError(f"cell must be one of {sorted(_CELLS)}, got {cell!r}")
        for name, value in (("lr", lr), ("clip", clip)):
            if not isinstance(value, int | float) or not value > 0 or not math.isfinite(value):
                raise ValueError(f"{name} must be a positive finite number, got {value!r}")
        if not isinstance(scale, bool):
            raise ValueError(f"scale must be a bool, got {scale!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an int or None, got {seed!r}")
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.cell = cell
        self.k1 = k1
        self.k2 = k2
        self.lr = lr
        self.clip = clip
        self.max_features = max_features
        self.scale = scale
        self.seed = seed
        self._dtype = torch.float32
        self._learner: OnlineLearner | None = None
        self._columns: dict = {}
        offset = self._extra_inputs()
        self._x_scaler = RunningScaler(offset + max_features)
        self._y_scaler = RunningScaler()
        self._dy_scaler = RunningScaler()
        self.counts = {"ignored_features": 0, "ignored_classes": 0, "non_numeric": 0}

    # -- what subclasses vary -------------------------------------------------------
    def _outputs(self) -> int:
        raise NotImplementedError

    def _extra_inputs(self) -> int:
        return 0

    def _target_kind(self) -> str:
        return "values"

    def _horizon(self) -> int | None:
        return None

    # -- the model --------------------------------------------------------------------
    def _build(self) -> None:
        n_in = self._extra_inputs() + self.max_features
        seed = self.seed
        layer = _CELLS[self.cell](n_in, self.hidden_size, self.num_layers, seed=seed)
        head = Readout(self.hidden_size, self._outputs(), seed=None if seed is None else seed + 1)
        horizon = self._horizon()
        self._learner = OnlineLearner(
            RecurrentModel(layer, head),
            k1=self.k1,
            k2=max(self.k2, self.k1 + (horizon or 0)),
            # fused Adam: ~2.5x cheaper per step on CPU than the default (not bitwise equal
            # to it, which only the canonical-loop tests need)
            optimizer=lambda params: torch.optim.Adam(params, lr=self.lr, fused=True),
            clip=self.clip,
            horizon=horizon,
            horizon_column=0 if horizon else None,
            target_kind=self._target_kind(),
        )

    def _peek(self, v: np.ndarray) -> np.ndarray:
        """The model's output for input ``v`` from the live state; nothing changes."""
        with torch.no_grad():
            y, _ = self._learner.model(torch.from_numpy(v).view(1, 1, -1), self._learner.state())
        return y[0, -1].double().numpy()

    @staticmethod
    def _check_number(name: str, value) -> float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value}")
        return value

    def _features_in(self, x: dict, *, learn: bool) -> np.ndarray:
        """The input vector for feature dict ``x`` (scaled; extra leading columns zero).

        With ``learn``, features seen for the first time take new columns and the
        running statistics are updated; without, unknown features are skipped and
        nothing changes.
        """
        if not isinstance(x, dict):
            raise ValueError(f"x must be a dict of features, got {type(x).__name__}")
        if learn and self._learner is None:
            self._build()
        offset = self._extra_inputs()
        size = offset + self.max_features
        if not x:
            return np.zeros(size, dtype=np.float32)
        if learn:
            fresh = [k for k, v in x.items() if k not in self._columns and _numeric(v)]
            for k in sorted(fresh, key=repr):
                if len(self._columns) < self.max_features:
                    self._columns[k] = offset + len(self._columns)
                else:
                    self.counts["ignored_features"] += 1
        values = np.zeros(size)
        present = np.zeros(size, dtype=bool)
        for k, val in x.items():
            if not _numeric(val):
                if learn:
                    self.counts["non_numeric"] += 1
                continue  # encode it upstream (e.g. river's one-hot) to use it
            col = self._columns.get(k)
            if col is None:
                continue
            val = float(val)
            if not math.isfinite(val):
                raise ValueError(f"feature {k!r} must be finite, got {val}")
            values[col] = val
            present[col] = True
        if self.scale:
            if learn:
                self._x_scaler.update(values, present)
            values = np.where(present, self._x_scaler.scale_value(values), 0.0)
        return values.astype(np.float32)
