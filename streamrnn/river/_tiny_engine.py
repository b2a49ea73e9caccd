"""The tiny engine: one small recurrent model learning one stream, in compiled kernels.

:class:`TinyLearner` is what the river estimators use instead of
:class:`~streamrnn.learn.OnlineLearner` when the model fits it (CPU, float64, one
recurrent layer; see :func:`tiny_eligible`): the same predictions, TBPTT(k1, k2)
updates, clipping and Adam steps (equal to the torch learner's to ~1e-10 after many
steps: ``tests/test_river_engine.py``), at tens of µs per step, updates included,
instead of about a millisecond.
The arithmetic is in :mod:`streamrnn.river._tiny_kernels` (learning) and
:mod:`streamrnn.river._tiny_cells` (the cell step); this class holds their arrays
(plain numpy, so it pickles and deep-copies) and speaks numpy.
"""

from __future__ import annotations

import numpy as np
import torch

from . import _tiny_cells as tc
from . import _tiny_kernels as k

__all__ = ["TinyLearner", "tiny_eligible"]


def tiny_eligible(model) -> bool:
    """Whether the tiny engine can run ``model`` (a :class:`RecurrentModel`).

    One layer of LSTM, GRU or tanh RNN with biases, unidirectional, no dropout, and a
    linear readout with bias; the engine computes in float64 on the CPU.
    """
    cell = getattr(model, "cell", None)
    rnn = getattr(cell, "rnn", None)
    head = getattr(getattr(model, "head", None), "linear", None)
    if rnn is None or head is None or getattr(model, "embedding", None) is not None:
        return False
    kind = type(rnn).__name__.lower()
    return (
        kind in tc.KINDS
        and rnn.num_layers == 1
        and rnn.bias
        and not rnn.bidirectional
        and not rnn.dropout
        and getattr(rnn, "nonlinearity", "tanh") == "tanh"
        and getattr(rnn, "proj_size", 0) == 0
        and head.bias is not None
    )


class TinyLearner:
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
    >>> tiny = TinyLearner(model, k1=2, k2=8, lr=1e-2, horizon=1)
    >>> for t in range(20):
    ...     y = tiny.push(np.array([np.sin(t / 3), 0.0]))  # predicts the next sine value
    >>> tiny.counts["updates"], tiny.state()[0].shape, y.shape
    (9, (8,), (1,))
    """

    def __init__(self, model, *, k1: int, k2: int, lr: float, clip: float | None = 1.0,
                 horizon: int | None = None, horizon_column: int = 0,
                 target_kind: str = "values") -> None:
        if not tiny_eligible(model):
            raise ValueError("model is not one the tiny engine runs (see tiny_eligible)")
        if target_kind not in ("values", "classes"):
            raise ValueError(f"target_kind must be 'values' or 'classes', got {target_kind!r}")
        rnn, head = model.cell.rnn, model.head.linear
        n_out, hidden, n_in = head.out_features, rnn.hidden_size, rnn.input_size
        if horizon is not None and (n_out != 1 or target_kind != "values"):
            raise ValueError("horizon needs one value output")
        self.names = [f"cell.rnn.{n}" for n in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0",
                                                 "bias_hh_l0")] + ["head.linear.weight",
                                                                   "head.linear.bias"]
        params = (rnn.weight_ih_l0.T, rnn.weight_hh_l0.T, rnn.bias_ih_l0, rnn.bias_hh_l0,
                  head.weight, head.bias)  # the kernels keep weight_ih / weight_hh transposed
        self.shapes = [tuple(p.shape) for p in params]
        with torch.no_grad():
            flat = np.concatenate([p.detach().double().cpu().numpy().ravel() for p in params])
        n_gh = rnn.weight_ih_l0.shape[0]
        self.ints = tc.new_ints(tc.KINDS[type(rnn).__name__.lower()], n_in, hidden, n_out, k1,
                               k2, -1 if horizon is None else horizon, horizon_column,
                               int(target_kind == "classes"))
        self.fl = np.array([lr, 0.0 if clip is None else clip, 0.9, 0.999, 1e-8, np.nan])
        self.theta = np.concatenate([flat, np.zeros(n_gh * hidden)])
        tc.refresh_transposed(self.ints, self.theta)
        self.ints[tc.I_NLIVE] = 0  # input columns that have seen a nonzero value: none yet
        self.adam = np.zeros((2, flat.size))
        self.states = np.zeros((int(self.ints[tc.I_RING]) + 1, 2, hidden))
        self.xbuf = np.zeros((k2, n_in))
        self.ybuf = np.zeros((k2, n_out))
        self.out = np.zeros(n_out)
        self._x_shape = (n_in,)
        self._no_target = np.zeros(n_out)

    def push(self, x: np.ndarray, target=None) -> np.ndarray:
        """Predict one step from input ``x`` (float64 ``(I,)``), then learn as windows end.

        Returns the output (a view reused by the next call: copy it to keep it).
        """
        self._check_x(x)
        if target is None:
            code = k.push(self.ints, self.fl, self.theta, self.adam, self.states, self.xbuf,
                          self.ybuf, x, self._no_target, False, self.out)
        else:
            target = self._check_target(target)
            code = k.push(self.ints, self.fl, self.theta, self.adam, self.states, self.xbuf,
                          self.ybuf, x, target, True, self.out)
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
        if self.ints[tc.I_LOSS] == 1:
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
        k.peek(self.ints, self.theta, self.states, x, out)
        return out

    def forecast(self, rows: np.ndarray, pred: float, level: float, dy_mean: float,
                 dy_std: float, y_mean: float, y_std: float, scale: bool,
                 horizon: int) -> np.ndarray:
        """The forecaster's rollout (see :func:`streamrnn.river._tiny_kernels.forecast_roll`)."""
        if rows.dtype != np.float64 or rows.shape != (horizon - 1, *self._x_shape) \
                or not rows.flags.c_contiguous or self.ints[tc.I_HORIZON] != 1:
            raise ValueError(f"rows must be float64 of shape ({horizon - 1}, "
                             f"{self._x_shape[0]}) and the learner in horizon-1 mode")
        out = np.empty(horizon)
        k.forecast_roll(self.ints, self.theta, self.states, rows, pred, level, dy_mean,
                        dy_std, y_mean, y_std, scale, out)
        return out

    @property
    def counts(self) -> dict:
        """The learner's counters, as :attr:`OnlineLearner.counts` names them."""
        return {name: int(self.ints[i]) for name, i in tc.COUNTERS.items()}

    @property
    def last_loss(self) -> float | None:
        value = float(self.fl[tc.F_LAST_LOSS])
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

    def state(self) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the live ``h`` and ``c`` (zeros for GRU / RNN), ``(H,)`` each."""
        live = self.states[-1]
        return live[0].copy(), live[1].copy()
