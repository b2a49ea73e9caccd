"""river-protocol estimators with a stateful recurrent network inside.

The hidden state is carried from one call to the next, so each sample costs one
recurrent step (O(1)), not a re-run of a window; learning is TBPTT(k1, k2) with
gradient clipping and Adam, in float64. Inputs and targets are scaled online (running
mean and variance) by default.

Two engines run the same learning (``engine=``; they agree to ~1e-10, tested):
"numba", compiled kernels for one stream of a one-layer model (tens of µs per sample,
used by "auto" when numba is installed and ``num_layers == 1``), and "torch",
:class:`~streamrnn.learn.OnlineLearner` (about a millisecond per sample, any depth).
The model's initial weights are drawn the same way for both (float32 draws from the
``seed``, widened to float64).

Feature dicts map to a stable column order: a feature takes the next free input column
when first seen (features new in the same call are taken in sorted order, so the order
of keys in a dict never matters). The input layer has ``max_features`` columns; a
column whose feature is absent from a call gets 0 (its running mean, after scaling).
Features beyond ``max_features`` are ignored and counted in ``counts["ignored_features"]``;
non-numeric values (strings, datetimes) are skipped and counted in ``counts["non_numeric"]``
(encode them upstream, e.g. with river's ``preprocessing.OneHotEncoder``).
A column not yet used multiplies zeros, so its weights get no gradient until its feature
appears: a feature first seen later starts learning then, and nothing before changes.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from river import base
from river.time_series.base import Forecaster

from .._validate import check_bool, check_positive_int
from ._core import RNNEstimator
from .baselines import Combination

__all__ = ["RNNClassifier", "RNNForecaster", "RNNRegressor"]


class RNNRegressor(RNNEstimator, base.Regressor):
    """A stateful recurrent regressor: one stream, one step per ``learn_one``.

    Parameters
    ----------
    hidden_size : int
        Hidden units of the recurrent layer.
    num_layers : int
        Stacked recurrent layers.
    cell : str
        A registered cell whose inputs are features only: "lstm", "gru", "rnn",
        "mingru", "minlstm" (:func:`streamrnn.cells.registered`). Cells with a compiled
        form (the first three) learn on the compiled engine; the others on
        :class:`~streamrnn.OnlineLearner`.
    k1, k2 : int
        TBPTT: learn every ``k1`` samples through the last ``k2`` samples.
    lr : float
        Adam's learning rate.
    clip : float
        Gradient-norm clipping.
    max_features : int
        Input columns; features are assigned columns as first seen.
    scale : bool
        Scale features and target online (running mean / variance).
    engine : str
        "numba": the compiled single-stream engine (one layer; 30-40x faster);
        "torch": :class:`~streamrnn.learn.OnlineLearner`; "auto": numba when installed
        and ``num_layers == 1``. Both learn in float64 and agree to ~1e-10.
    seed : int or None
        Seed of the weights.

    Threads
    -------
    Not safe under concurrent calls, and not locked (a lock per call would cost more
    than the call): use it from one thread at a time, or hold your own lock around each
    call.

    Examples
    --------
    >>> from river import datasets, evaluate, metrics
    >>> from streamrnn.river import RNNRegressor
    >>> data = [({"x": float(i % 7)}, float((i + 1) % 7)) for i in range(300)]
    >>> model = RNNRegressor(seed=0)
    >>> evaluate.progressive_val_score(data, model, metrics.MAE())
    MAE: 0.767161

    (Predicting the current ``x`` scores an MAE of 1.7; the running mean of the
    targets, 1.73.)
    """

    def __init__(
        self,
        hidden_size: int = 32,
        num_layers: int = 1,
        cell: str = "lstm",
        k1: int = 4,
        k2: int = 16,
        lr: float = 1e-2,
        clip: float = 1.0,
        max_features: int = 16,
        scale: bool = True,
        engine: str = "auto",
        seed: int | None = None,
    ) -> None:
        super().__init__(
            hidden_size=hidden_size, num_layers=num_layers, cell=cell, k1=k1, k2=k2, lr=lr,
            clip=clip, max_features=max_features, scale=scale, engine=engine, seed=seed,
        )

    def _outputs(self) -> int:
        return 1

    def learn_one(self, x: dict, y: float) -> None:
        y = self._check_number("y", y)
        v = self._features_in(x, learn=True)
        target = self._y_scaler.update_scale(y) if self.scale else y
        self._push(v, [target])

    def predict_one(self, x: dict) -> float:
        if self._learner is None:
            return 0.0
        out = self._peek(self._features_in(x, learn=False))[0]
        return self._y_scaler.unscale(float(out)) if self.scale else float(out)


class RNNClassifier(RNNEstimator, base.Classifier):
    """A stateful recurrent classifier; classes are discovered online.

    Parameters are those of :class:`RNNRegressor`, plus ``max_classes``: the output
    layer has this many logits, assigned to classes as first seen. A class beyond it is
    not learned and is counted in ``counts["ignored_classes"]``. Probabilities are a
    softmax over the classes seen so far.

    Threads
    -------
    Not safe under concurrent calls, and not locked (a lock per call would cost more
    than the call): use it from one thread at a time, or hold your own lock around each
    call.

    Examples
    --------
    >>> from river import evaluate, metrics
    >>> from streamrnn.river import RNNClassifier
    >>> data = [({"x": float(i % 3)}, "abc"[(i + 1) % 3]) for i in range(300)]
    >>> model = RNNClassifier(seed=0)
    >>> evaluate.progressive_val_score(data, model, metrics.Accuracy())
    Accuracy: 81.94%
    >>> sorted(model.predict_proba_one({"x": 0.0}))
    ['a', 'b', 'c']
    """

    def __init__(
        self,
        hidden_size: int = 32,
        num_layers: int = 1,
        cell: str = "lstm",
        k1: int = 4,
        k2: int = 16,
        lr: float = 1e-2,
        clip: float = 1.0,
        max_features: int = 16,
        max_classes: int = 16,
        scale: bool = True,
        engine: str = "auto",
        seed: int | None = None,
    ) -> None:
        if isinstance(max_classes, bool) or not isinstance(max_classes, int) or max_classes < 2:
            raise ValueError(f"max_classes must be an int >= 2, got {max_classes!r}")
        self.max_classes = max_classes
        super().__init__(
            hidden_size=hidden_size, num_layers=num_layers, cell=cell, k1=k1, k2=k2, lr=lr,
            clip=clip, max_features=max_features, scale=scale, engine=engine, seed=seed,
        )
        self._classes: list = []

    @property
    def _multiclass(self) -> bool:
        return True

    def _outputs(self) -> int:
        return self.max_classes

    def _target_kind(self) -> str:
        return "classes"

    def learn_one(self, x: dict, y) -> None:
        v = self._features_in(x, learn=True)
        if y not in self._classes:
            if len(self._classes) >= self.max_classes:
                self.counts["ignored_classes"] += 1
                self._push(v)  # the state still moves on
                return
            self._classes.append(y)
        self._push(v, self._classes.index(y))

    def predict_proba_one(self, x: dict) -> dict:
        if not self._classes:
            return {}
        logits = self._peek(self._features_in(x, learn=False))[: len(self._classes)]
        p = np.exp(logits - logits.max())
        p /= p.sum()
        return {c: float(q) for c, q in zip(self._classes, p, strict=True)}

    def predict_one(self, x: dict):
        proba = self.predict_proba_one(x)
        return max(proba, key=proba.get) if proba else None


class RNNForecaster(RNNEstimator, Forecaster):
    """A stateful recurrent forecaster for river's time-series protocol, combined online
    with the simple forecasters so that it is not worse than them where it is weak.

    Each ``learn_one(y, x)`` is one step of the series. The network reads the scaled
    value, its scaled first difference and the scaled exogenous features, and predicts
    the next difference (so an untrained model forecasts the last value, the naive
    forecast, and learning improves on it). ``forecast(horizon, xs)`` rolls a copy of
    the live state forward, feeding each forecast back as the next input; it changes
    neither weights nor state.

    With ``combine`` (the default), the forecast is the online combination
    (:class:`~streamrnn.river.baselines.Combination`: prediction with expert advice,
    NormalHedge weights per horizon on linearised absolute errors, see
    :mod:`streamrnn.river.experts`) of the network's rollout, the last value, river's
    SNARIMAX(3, 1, 3) and, given ``season``, the seasonal last value. A forecast of the
    ``h``-th next value is scored when that value is learned, and only then moves the
    weights of horizon ``h``.

    Parameters are those of :class:`RNNRegressor`, plus ``combine`` (bool) and ``season``
    (steps in a season, or ``None``); the defaults differ (``k1=2``, ``lr=2e-2``): a
    series gives one sample per step, so it learns from more frequent, larger updates
    (chosen on AirlinePassengers, TrumpApproval and co2; see ``benchmarks/bench_river.py``).

    Threads
    -------
    Not safe under concurrent calls, and not locked (a lock per call would cost more
    than the call): use it from one thread at a time, or hold your own lock around each
    call.

    Examples
    --------
    >>> from river import datasets, evaluate, metrics
    >>> from streamrnn.river import RNNForecaster
    >>> model = RNNForecaster(seed=0)
    >>> evaluate.evaluate(datasets.AirlinePassengers(), model, metrics.MAE(), horizon=3)
    +1 MAE: 32.00593
    +2 MAE: 32.238656
    +3 MAE: 33.290209

    (river's evaluation scores ``forecast(3)[0]`` against the value two steps after the
    last one learned; the last value as the forecast scores 40.9 at +1 and 59.3 at +3 there,
    SNARIMAX(3, 1, 3) 40.9 and 59.3; the network alone does a little better on this short
    series, where the weights have few errors to learn from:)

    >>> alone = RNNForecaster(seed=0, combine=False)
    >>> evaluate.evaluate(datasets.AirlinePassengers(), alone, metrics.MAE(), horizon=3)
    +1 MAE: 31.427326
    +2 MAE: 31.912612
    +3 MAE: 32.588006
    >>> len(model.forecast(horizon=5))
    5
    """

    def __init__(
        self,
        hidden_size: int = 32,
        num_layers: int = 1,
        cell: str = "lstm",
        k1: int = 2,
        k2: int = 16,
        lr: float = 2e-2,
        clip: float = 1.0,
        max_features: int = 16,
        scale: bool = True,
        engine: str = "auto",
        seed: int | None = None,
        combine: bool = True,
        season: int | None = None,
    ) -> None:
        super().__init__(
            hidden_size=hidden_size, num_layers=num_layers, cell=cell, k1=k1, k2=k2, lr=lr,
            clip=clip, max_features=max_features, scale=scale, engine=engine, seed=seed,
        )
        self.combine = check_bool("combine", combine)
        self.season = check_positive_int("season", season, none_ok=True)
        self._combo = Combination(season=season) if combine else None
        self._last_y: float | None = None
        self._last_pred = 0.0

    def _outputs(self) -> int:
        return 1

    def _extra_inputs(self) -> int:
        return 2  # scaled difference (column 0, the horizon target) and scaled level

    def _horizon(self) -> int | None:
        return 1

    def learn_one(self, y: float, x: dict | None = None) -> None:
        y = self._check_number("y", y)
        if self._combo is not None:  # score the forecasts of y, before the network learns it
            self._combo.learn_one(y, self._own_forecast)
        if self._learner is None:
            self._build()
        dy = 0.0 if self._last_y is None else y - self._last_y
        v = self._features_in(x, learn=True) if x else np.zeros(self._n_in)
        if self.scale:
            v[0], v[1] = self._dy_scaler.update_scale(dy), self._y_scaler.update_scale(y)
        else:
            v[0], v[1] = dy, y
        # the prediction of the next difference, made now; updates run lazily before the
        # next step, so it is what the current weights and state give (forecast reuses it)
        self._last_pred = float(self._push(v)[0])
        self._last_y = y

    def forecast(self, horizon: int, xs: list[dict] | None = None) -> list:
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
            raise ValueError(f"horizon must be a positive int, got {horizon!r}")
        if xs is not None and len(xs) != horizon:
            raise ValueError(f"xs must hold horizon = {horizon} dicts, got {len(xs)}")
        if self._combo is None:
            return self._own_forecast(horizon, xs)
        try:
            own = self._own_forecast(horizon, xs)
        except ValueError:  # the network diverged (counted): it sits this forecast out
            own = [math.nan] * horizon
        return self._combo.forecast(own)

    @property
    def combination(self) -> Combination | None:
        """The :class:`~streamrnn.river.baselines.Combination` (``None`` without
        ``combine``): its ``mix`` holds the weights, its ``table`` the last forecasts."""
        return self._combo

    def _own_forecast(self, horizon: int, xs: list[dict] | None = None) -> list:
        # The network's forecasts alone (the rollout below).
        if self._learner is None or self._last_y is None:
            return [0.0] * horizon
        # inputs of the rolled steps: scaled features now, columns 0 and 1 filled in by
        # the rollout from each forecast
        rows = np.zeros((horizon - 1, self._n_in))
        if xs:
            self._feature_rows(xs, rows)
        dys, ys = self._dy_scaler, self._y_scaler
        if self._compiled:
            out = self._learner.forecast(rows, self._last_pred, self._last_y, dys.mean, dys.std,
                                         ys.mean, ys.std, self.scale, horizon).tolist()
        else:
            out = self._forecast_torch(rows, horizon)
        if not all(math.isfinite(v) for v in out):
            self.counts["nonfinite_forecasts"] = self.counts.get("nonfinite_forecasts", 0) + 1
            raise ValueError("the forecast is not finite; the model diverged (counted)")
        return out

    def _forecast_torch(self, rows: np.ndarray, horizon: int) -> list:
        # The rollout of CompiledLearner.forecast, in torch (the reference it is tested against).
        model, level, out = self._learner.model, self._last_y, []
        pred, state = self._last_pred, None
        dys, ys = self._dy_scaler, self._y_scaler
        with torch.no_grad():
            for i in range(horizon):
                dy = dys.unscale(pred) if self.scale else pred
                level += dy
                out.append(level)
                if i + 1 == horizon:
                    break
                v = rows[i]
                v[0], v[1] = (dys.scale_value(dy), ys.scale_value(level)) if self.scale else (
                    dy, level)
                if state is None:
                    state = self._learner.state()
                y, state = model(torch.from_numpy(v).view(1, 1, -1), state)
                pred = float(y[0, -1, 0])
        return out
