"""Exact single-stream TBPTT on the compiled engine: what the river estimators learn with.

:class:`CompiledLearner` is one stream of :class:`~streamrnn.learn.OnlineLearner`: the
same predictions, TBPTT(k1, k2) updates, clipping and Adam steps (equal to the torch
learner's to 1e-10 after many steps: ``tests/river/test_river_engine.py``), at tens of
µs per step, updates included, instead of about a millisecond. The arithmetic is in
:mod:`._learn`, around the cell's compiled form (:mod:`.forms`); this class holds the
arrays (plain numpy, so it pickles and deep-copies) and speaks numpy.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import torch

from . import _learn as lk
from ._pack import plan_for

__all__ = ["CompiledLearner", "learner_eligible"]


@cache
def _kernels(form):
    return lk.build(form)


def learner_eligible(model) -> bool:
    """Whether :class:`CompiledLearner` can run ``model``: a :class:`RecurrentModel` of one
    layer of a cell with a compiled form that has a backward pass (LSTM, GRU, RNN), with
    biases, and a linear readout with a bias; no embedding."""
    plan = plan_for(model)
    if plan is None or plan.form.backward is None or plan.embedding is not None or \
            plan.front is not None:
        return False
    return (len(plan.layers) == 1 and all(t is not None for t in plan.layers[0])
            and plan.head is not None and plan.head[1] is not None)


class CompiledLearner:
    """One stream of :class:`~streamrnn.learn.OnlineLearner`, compiled (float64, CPU).

    Parameters
    ----------
    model : RecurrentModel
        Its weights are copied (as float64); the model itself is not kept.
    k1, k2 : int
        TBPTT: learn every ``k1`` steps through the last ``k2 >= k1`` steps.
    lr, clip : float
        Adam's learning rate; gradient-norm clipping (``None``: none).
    horizon : int or None
        The target of step t is column ``horizon_column`` of the input of step t + h
        (one output).
    horizon_column : int
        See ``horizon``.
    target_kind : {"values", "classes"}
        Mean squared error on value targets, or cross-entropy on class indices.

    Shape
    -----
    push / peek: ``(I,)`` -> ``(O,)``; targets ``(O,)`` values or a class index.

    Examples
    --------
    >>> import numpy as np
    >>> from streamrnn.cells import GRU
    >>> from streamrnn.heads import Readout, RecurrentModel
    >>> model = RecurrentModel(GRU(2, 8, seed=0), Readout(8, 1, seed=1))
    >>> learner = CompiledLearner(model, k1=2, k2=8, lr=1e-2, horizon=1)
    >>> for t in range(20):
    ...     y = learner.push(np.array([np.sin(t / 3), 0.0]))  # predicts the next sine value
    >>> learner.counts["updates"], learner.state()[0].shape, y.shape
    (9, (8,), (1,))
    """

    def __init__(self, model, *, k1: int, k2: int, lr: float, clip: float | None = 1.0,
                 horizon: int | None = None, horizon_column: int = 0,
                 target_kind: str = "values") -> None:
        if not learner_eligible(model):
            raise ValueError("model is not one the compiled learner runs (see learner_eligible)")
        if target_kind not in ("values", "classes"):
            raise ValueError(f"target_kind must be 'values' or 'classes', got {target_kind!r}")
        plan = plan_for(model)
        w_ih, w_hh, b_ih, b_hh = plan.layers[0]
        head_w, head_b = plan.head
        n_out, (n_gh, hidden), n_in = head_w.shape[0], w_hh.shape, w_ih.shape[1]
        if horizon is not None and (n_out != 1 or target_kind != "values"):
            raise ValueError("horizon needs one value output")
        names = {id(p): n for n, p in model.named_parameters()}
        params = (w_ih, w_hh, b_ih, b_hh, head_w, head_b)
        self.names = [names[id(p)] for p in params]
        self.shapes = [tuple(p.shape[::-1]) if i < 2 else tuple(p.shape)
                       for i, p in enumerate(params)]  # weight_ih / weight_hh transposed
        with torch.no_grad():
            flat = np.concatenate([(p.t() if i < 2 else p).detach().double().cpu().numpy()
                                   .ravel() for i, p in enumerate(params)])
        self.parts = plan.form.parts
        self._form = plan.form
        self._push, self._peek, self._roll, refresh = _kernels(plan.form)
        self.ints = lk.new_ints(n_in, hidden, n_out, k1, k2, -1 if horizon is None else horizon,
                                horizon_column, int(target_kind == "classes"))
        self.fl = np.array([lr, 0.0 if clip is None else clip, 0.9, 0.999, 1e-8, np.nan])
        self.theta = np.concatenate([flat, np.zeros(n_gh * hidden)])
        refresh(self.ints, self.theta)
        self.ints[lk.I_NLIVE] = 0  # input columns that have seen a nonzero value: none yet
        self.adam = np.zeros((2, flat.size))
        self.states = np.zeros((int(self.ints[lk.I_RING]) + 1, len(self.parts), hidden))
        self.xbuf = np.zeros((k2, n_in))
        self.ybuf = np.zeros((k2, n_out))
        self.out = np.zeros(n_out)
        self._x_shape = (n_in,)
        self._no_target = np.zeros(n_out)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for name in ("_push", "_peek", "_roll"):  # compiled functions: rebuilt on load
            state.pop(name)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._push, self._peek, self._roll, _ = _kernels(self._form)

    def push(self, x: np.ndarray, target=None) -> np.ndarray:
        """Predict one step from input ``x`` (float64 ``(I,)``), then learn as windows end.

        Returns the output (a view reused by the next call: copy it to keep it).
        """
        self._check_x(x)
        if target is None:
            code = self._push(self.ints, self.fl, self.theta, self.adam, self.states,
                              self.xbuf, self.ybuf, x, self._no_target, False, self.out)
        else:
            target = self._check_target(target)
            code = self._push(self.ints, self.fl, self.theta, self.adam, self.states,
                              self.xbuf, self.ybuf, x, target, True, self.out)
        if code < 0:
            raise ValueError("inputs and targets must be finite")
        return self.out

    def _check_x(self, x) -> None:
        # The kernels index without bounds checks: the shape and dtype are checked here.
        if type(x) is not np.ndarray or x.dtype != np.float64 or x.shape != self._x_shape \
                or not x.flags.c_contiguous:
            raise ValueError(f"x must be a contiguous float64 array of shape {self._x_shape}, "
                             f"got {getattr(x, 'dtype', type(x).__name__)} "
                             f"{getattr(x, 'shape', '')}")

    def _check_target(self, target) -> np.ndarray:
        n_out = self.out.size
        if self.ints[lk.I_LOSS] == 1:
            if isinstance(target, bool) or not isinstance(target, int | np.integer) or not (
                    0 <= target < n_out):
                raise ValueError(f"target must be a class index in [0, {n_out}), got {target!r}")
            return np.array([float(target)])
        out = np.asarray(target, dtype=np.float64).reshape(-1)
        if out.size != n_out:
            raise ValueError(f"target must hold {n_out} values, got {out.size}")
        return out

    def peek(self, x: np.ndarray) -> np.ndarray:
        """The output for input ``x`` from the live state; nothing changes."""
        self._check_x(x)
        out = np.empty(self.out.size)
        self._peek(self.ints, self.theta, self.states, x, out)
        return out

    def forecast(self, rows: np.ndarray, pred: float, level: float, dy_mean: float,
                 dy_std: float, y_mean: float, y_std: float, scale: bool,
                 horizon: int) -> np.ndarray:
        """The forecaster's rollout: ``out[i]`` is the level after ``i + 1`` predicted steps.

        Each predicted (scaled) difference is unscaled, added to the level, and fed back
        with the level as columns 0 and 1 of the next input (``rows[i]``, whose other
        columns hold the scaled features); the live state is copied, never written.
        """
        if rows.dtype != np.float64 or rows.shape != (horizon - 1, *self._x_shape) \
                or not rows.flags.c_contiguous or self.ints[lk.I_HORIZON] != 1:
            raise ValueError(f"rows must be float64 of shape ({horizon - 1}, "
                             f"{self._x_shape[0]}) and the learner in horizon-1 mode")
        out = np.empty(horizon)
        self._roll(self.ints, self.theta, self.states, rows, pred, level, dy_mean, dy_std,
                   y_mean, y_std, scale, out)
        return out

    @property
    def counts(self) -> dict:
        """The learner's counters, as :attr:`OnlineLearner.counts` names them."""
        return {name: int(self.ints[i]) for name, i in lk.COUNTERS.items()}

    @property
    def last_loss(self) -> float | None:
        value = float(self.fl[lk.F_LAST_LOSS])
        return None if np.isnan(value) else value

    def weights(self) -> dict:
        """Copies of the parameters, under the torch model's ``state_dict`` names."""
        out, lo = {}, 0
        for i, (name, shape) in enumerate(zip(self.names, self.shapes, strict=True)):
            size = int(np.prod(shape))
            value = self.theta[lo:lo + size].reshape(shape)
            out[name] = (value.T if i < 2 else value).copy()
            lo += size
        return out

    def state(self) -> tuple[np.ndarray, ...]:
        """Copies of the live state's parts (``h`` first), ``(H,)`` each."""
        return tuple(part.copy() for part in self.states[-1])
