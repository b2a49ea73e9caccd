"""Shared machinery of the river estimators (private): columns, scaling, the learner.

The learner is the compiled engine's
(:class:`~streamrnn.engines.compiled.learner.CompiledLearner`) or
:class:`~streamrnn.learn.OnlineLearner` (torch), chosen by ``engine``; both compute in
float64 and give the same results (to ~1e-10); the compiled one is 30-40x faster per
sample end to end.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from .._validate import (
    check_bool,
    check_choice,
    check_int,
    check_positive_float,
    check_positive_int,
)
from ..cells import cell_class, registered
from ..engines.compiled import HAVE_NUMBA, has_compiled_form
from ..heads import Readout, RecurrentModel
from ..learn.learner import OnlineLearner
from ._scale import ColumnScaler, RunningScaler

__all__ = ["ENGINES", "RNNEstimator", "RunningScaler"]

ENGINES = ("auto", "numba", "torch")
_PLAIN = {float, int}


def _numeric(value) -> bool:
    t = type(value)
    if t is float or t is int:
        return True
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


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
        engine: str,
        seed: int | None,
    ) -> None:
        for name, value in (("hidden_size", hidden_size), ("num_layers", num_layers),
                            ("k1", k1), ("k2", k2), ("max_features", max_features)):
            check_positive_int(name, value)
        if k2 < k1:
            raise ValueError(f"k2 must be >= k1 = {k1}, got {k2}")
        cls = cell_class(cell) if cell in registered() else None
        if cls is None or cls.takes_elapsed_time:
            names = [n for n in registered() if not cell_class(n).takes_elapsed_time]
            raise ValueError(f"cell must be one of {names} (registered cells whose inputs are "
                             f"features only), got {cell!r}")
        for name, value in (("lr", lr), ("clip", clip)):
            check_positive_float(name, value)
        check_bool("scale", scale)
        check_choice("engine", engine, ENGINES)
        if engine == "numba" and num_layers != 1:
            raise ValueError(f"engine='numba' runs num_layers=1 only, got num_layers={num_layers}")
        if engine == "numba" and not HAVE_NUMBA:
            raise ValueError("engine='numba' needs the numba package (pip install numba)")
        if engine == "numba" and not has_compiled_form(cell, learning=True):
            raise ValueError(f"engine='numba' runs cells with a compiled learning form; {cell!r} "
                             f"has none (use engine='torch' or 'auto')")
        check_int("seed", seed, none_ok=True)
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.cell = cell
        self.k1 = k1
        self.k2 = k2
        self.lr = lr
        self.clip = clip
        self.max_features = max_features
        self.scale = scale
        self.engine = engine
        self.seed = seed
        self._learner = None
        self._compiled = False
        self._columns: dict = {}
        self._plans: dict = {}  # tuple of feature keys -> (their columns, any unknown)
        self._tiled: tuple | None = None  # _tiled_plan's last answer
        self._n_in = self._extra_inputs() + max_features
        self._x_scaler = ColumnScaler(self._n_in)
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
    def _uses_compiled(self) -> bool:
        """Whether the learner is the compiled engine's (``engine`` "numba", or "auto"
        when numba is installed and the model has one layer)."""
        if self.engine == "auto":
            return (HAVE_NUMBA and self.num_layers == 1
                    and has_compiled_form(self.cell, learning=True))
        return self.engine == "numba"

    def _build(self) -> None:
        seed = self.seed
        # weights drawn in float32 (the same draw whatever the engine), learned in float64
        layer = cell_class(self.cell)(self._n_in, self.hidden_size, self.num_layers, seed=seed)
        head = Readout(self.hidden_size, self._outputs(), seed=None if seed is None else seed + 1)
        model = RecurrentModel(layer, head).double()
        horizon = self._horizon()
        k2 = max(self.k2, self.k1 + (horizon or 0))
        if self._uses_compiled():
            from ..engines.compiled.learner import CompiledLearner

            self._compiled = True
            self._learner = CompiledLearner(
                model, k1=self.k1, k2=k2, lr=self.lr, clip=self.clip, horizon=horizon,
                horizon_column=0, target_kind=self._target_kind(),
            )
            return
        self._learner = OnlineLearner(
            model,
            k1=self.k1,
            k2=k2,
            # fused Adam: ~2.5x cheaper per step on CPU than the default (not bitwise equal
            # to it, which only the canonical-loop tests need)
            optimizer=lambda params: torch.optim.Adam(params, lr=self.lr, fused=True),
            clip=self.clip,
            horizon=horizon,
            horizon_column=0 if horizon else None,
            target_kind=self._target_kind(),
        )

    def _push(self, v: np.ndarray, target=None) -> np.ndarray:
        """One learner step on input ``v`` (float64); the prediction made before learning."""
        if self._compiled:
            return self._learner.push(v, target)
        tg = None
        if target is not None:
            kind = torch.long if self._target_kind() == "classes" else torch.float64
            tg = torch.tensor(target, dtype=kind)
        return self._learner.push(torch.from_numpy(v), tg).numpy()

    def _peek(self, v: np.ndarray) -> np.ndarray:
        """The model's output for input ``v`` from the live state; nothing changes."""
        if self._compiled:
            return self._learner.peek(v)
        with torch.no_grad():
            y, _ = self._learner.model(torch.from_numpy(v).view(1, 1, -1), self._learner.state())
        return y[0, -1].numpy()

    def _weights(self) -> dict:
        """Copies of the weights (numpy, float64) under the torch model's names."""
        if self._compiled:
            return self._learner.weights()
        return {k: v.detach().numpy().copy() for k, v in self._learner.model.state_dict().items()}

    def _live_state(self) -> np.ndarray:
        """A copy of the live state, ``h`` then ``c`` (zeros without a cell state)."""
        if self._compiled:
            parts = self._learner.state()
            h = parts[0]
            c = parts[1] if len(parts) > 1 else np.zeros_like(h)
        else:
            state = self._learner.state()
            h = state.h.numpy().ravel()
            c = np.zeros_like(h) if state.c is None else state.c.numpy().ravel()
        return np.concatenate([h, c])

    @staticmethod
    def _check_number(name: str, value) -> float:
        t = type(value)
        if t is not float and (t is bool or not isinstance(value, numbers.Real)):
            raise ValueError(f"{name} must be a real number, got {t.__name__} {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value}")
        return value

    def _features_in(self, x: dict, *, learn: bool, out: np.ndarray | None = None
                     ) -> np.ndarray:
        """The input vector for feature dict ``x`` (scaled; extra leading columns zero).

        With ``learn``, features seen for the first time take new columns and the
        running statistics are updated; without, unknown features are skipped and
        nothing changes. Written into ``out`` when given.

        Shape
        -----
        ``(I,)``, I = extra inputs + ``max_features``.
        """
        if type(x) is not dict and not isinstance(x, dict):
            raise ValueError(f"x must be a dict of features, got {type(x).__name__}")
        if learn and self._learner is None:
            self._build()
        if out is None:
            out = np.zeros(self._n_in)
        else:
            out[:] = 0.0
        if not x:
            return out
        # fast path: a cached key -> column plan for this tuple of keys, plain numbers
        keys = tuple(x)
        plan = self._plans.get(keys)
        if plan is None or (learn and plan[1]):
            if learn:
                self._new_columns(x)
            plan = self._plan(keys)
        vals = list(x.values())
        if not set(map(type, vals)) <= _PLAIN:
            return self._features_slow(x, learn, out)
        bad = self._x_scaler.gather_scale(plan[0], np.array(vals, dtype=np.float64),
                                          learn=learn, scale=self.scale, out=out)
        if bad >= 0:
            raise ValueError(f"feature {keys[bad]!r} must be finite, got {vals[bad]}")
        return out

    def _feature_rows(self, xs, rows: np.ndarray) -> None:
        """The scaled features of the first N dicts of the sequence ``xs`` (a list, or the
        deque river's evaluation passes) into the N zero rows ``rows`` (as
        :meth:`_features_in` without ``learn``, row by row). Dicts with one tuple of keys
        already planned and plain values (a forecast's future features) take one gather
        for all rows.

        Shape
        -----
        N dicts -> ``rows`` ``(N, I)``.
        """
        xs = [xs[i] for i in range(rows.shape[0])]
        first = xs[0] if xs else None
        plan = self._plans.get(tuple(first)) if type(first) is dict and first else None
        if plan is not None and len(xs) > 1:
            keys, vals = tuple(first), []
            for x in xs:
                if type(x) is not dict or tuple(x) != keys:
                    break
                vals += x.values()
            else:
                if set(map(type, vals)) <= _PLAIN:
                    cols = self._tiled_plan(plan[0], len(xs))
                    bad = self._x_scaler.gather_scale(
                        cols, np.array(vals, dtype=np.float64), learn=False, scale=self.scale,
                        out=rows.reshape(-1))
                    if bad >= 0:
                        raise ValueError(f"feature {keys[bad % len(keys)]!r} must be finite, "
                                         f"got {vals[bad]}")
                    return
        for x, row in zip(xs, rows, strict=True):
            if x:
                self._features_in(x, learn=False, out=row)

    def _tiled_plan(self, cols: np.ndarray, n: int) -> np.ndarray:
        # The columns of one planned key tuple in each of n rows, flat (-1 stays -1);
        # the last one kept (held by the plan's array: no id is reused while it is).
        kept = self._tiled
        if kept is None or kept[0] is not cols or kept[1] != n:
            width = self._n_in
            tiled = np.concatenate([np.where(cols < 0, -1, cols + i * width)
                                    for i in range(n)])
            kept = self._tiled = (cols, n, tiled)
        return kept[2]

    def _plan(self, keys: tuple) -> tuple:
        # (columns of the keys, -1 for unknown ones; whether any is unknown), cached.
        cols = [self._columns.get(k, -1) for k in keys]
        if len(self._plans) >= 256:  # many key sets: keep the cache bounded
            self._plans.clear()
        plan = self._plans[keys] = (np.array(cols, dtype=np.int64), min(cols) < 0)
        return plan

    def _features_slow(self, x: dict, learn: bool, out: np.ndarray) -> np.ndarray:
        # Any value types: non-numeric values are skipped (and counted when learning).
        keys, vals = [], []
        for k, val in x.items():
            if not _numeric(val):
                if learn:
                    self.counts["non_numeric"] += 1
                continue  # encode it upstream (e.g. river's one-hot) to use it
            keys.append(k)
            vals.append(float(val))
        cols = np.array([self._columns.get(k, -1) for k in keys], dtype=np.int64)
        bad = self._x_scaler.gather_scale(cols, np.array(vals, dtype=np.float64),
                                          learn=learn, scale=self.scale, out=out)
        if bad >= 0:
            raise ValueError(f"feature {keys[bad]!r} must be finite, got {vals[bad]}")
        return out

    def _new_columns(self, x: dict) -> None:
        # Features seen for the first time take the next free columns, in sorted order.
        offset = self._extra_inputs()
        fresh = [k for k, v in x.items() if k not in self._columns and _numeric(v)]
        for k in sorted(fresh, key=repr):
            if len(self._columns) < self.max_features:
                self._columns[k] = offset + len(self._columns)
            else:
                self.counts["ignored_features"] += 1
