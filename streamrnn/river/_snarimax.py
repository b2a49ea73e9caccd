"""river's SNARIMAX with a standard scaler and an SGD linear regression, compiled (private).

:class:`CompiledSNARIMAX` gives the numbers of :func:`~streamrnn.river.baselines.make_snarimax`
(``river.time_series.SNARIMAX`` over ``preprocessing.StandardScaler() |
linear_model.LinearRegression``) to the bit, in one compiled call per ``learn_one`` and
per ``forecast``; ``tests/river/test_snarimax_compiled.py`` holds it to river's.

River's arithmetic, kept as it is: features ``y-1..y-p`` then ``e-1..e-q``, each present
once its lag exists (so each has its own scaler count, and the dot product sums in that
order, from 0); scaling ``(x - mean) / var ** 0.5`` by the population variance, 0 while
the variance is 0; the loss gradient ``2 * (raw - target)`` clamped, the intercept and
the present weights moved by plain SGD (``w -= (x * g) * lr``); forecasts roll copies of
the lags with 0 for the errors. ``var ** 0.5`` is libm's ``pow``, which differs from
``sqrt`` in the last bit now and then: the exponent is an argument of the kernel (LLVM
turns a constant ``** 0.5`` into ``sqrt``). The kernels are compiled without the
compiled engine's ``fastmath={"contract"}``: fused multiply-adds would change the last
bits of the weights at every step.
"""

from __future__ import annotations

import math

import numpy as np
from river.time_series.base import Forecaster

from .._numba import lock_cache
from .._validate import check_nonneg_int, check_number, check_positive_float, check_positive_int

try:
    from numba import njit
except ImportError:  # numba is a dependency; without it this runs as plain Python

    def njit(*args, **kwargs):
        return lambda f: f

__all__ = ["CompiledSNARIMAX"]


def _parts(s, p, d, q):
    # The views of state s: past values (newest first), lags of the differenced series,
    # past errors; per feature (the p lags, then the q errors): scaler count, mean,
    # variance, var ** 0.5, weight; [values kept, lags kept, errors kept, intercept]; the
    # d differencing coefficients of lags 1..d; then a work area (forecast copies, x, xs).
    f = p + q
    a, b, c = d, d + p, d + p + q
    e = c + 5 * f
    return (s[:a], s[a:b], s[b:c], s[c:c + f], s[c + f:c + 2 * f], s[c + 2 * f:c + 3 * f],
            s[c + 3 * f:c + 4 * f], s[c + 4 * f:e], s[e:e + 4], s[e + 4:e + 4 + d],
            s[e + 4 + d:])


_parts_jit = njit(error_model="numpy")(_parts)


@njit(error_model="numpy")
def _push(buf, kept, value):
    # buf.appendleft(value) on a deque of maxlen len(buf) holding `kept` values; returns
    # the new count.
    for i in range(min(kept, buf.shape[0] - 1), 0, -1):
        buf[i] = buf[i - 1]
    if buf.shape[0]:
        buf[0] = value
    return min(kept + 1, buf.shape[0])


@njit(error_model="numpy")
def _predict(x, xs, ny, ne, p, mean, var, std, w, intercept):
    # StandardScaler.transform_one of the present features into xs, then
    # LinearRegression's dot product (in feature order, from 0) plus the intercept.
    acc = 0.0
    for k in range(ny + ne):
        j = k if k < ny else p + k - ny
        xs[j] = (x[j] - mean[j]) / std[j] if var[j] != 0.0 else 0.0
        acc += w[j] * xs[j]
    return acc + intercept


@lock_cache
@njit(cache=True, nogil=True, error_model="numpy")
def _learn(s, p, d, q, y, lr, intercept_lr, clip, half):
    hist, lags, errs, n, mean, var, std, w, misc, coef, work = _parts_jit(s, p, d, q)
    x, xs = work[d + p + q:d + 2 * (p + q)], work[d + 2 * (p + q):]
    kept = int(misc[0])
    if kept >= d:  # enough past values to difference
        ny, ne = int(misc[1]), int(misc[2])
        for k in range(ny):
            x[k] = lags[k]
        for k in range(ne):
            x[p + k] = errs[k]
        target = 0.0 + y
        for t in range(d):
            target += coef[t] * hist[t]
        misc[1] = _push(lags, ny, target)
        pred = _predict(x, xs, ny, ne, p, mean, var, std, w, misc[3])
        misc[2] = _push(errs, ne, target - pred)
        for k in range(ny + ne):  # the scaler learns x
            j = k if k < ny else p + k - ny
            n[j] += 1.0
            old = mean[j]
            mean[j] += (x[j] - old) / n[j]
            var[j] += ((x[j] - old) * (x[j] - mean[j]) - var[j]) / n[j]
            std[j] = var[j] ** half
        g = 2.0 * (_predict(x, xs, ny, ne, p, mean, var, std, w, misc[3]) - target)
        if clip < g:  # river's max(min(g, clip), -clip): NaN stays NaN
            g = clip
        if -clip > g:
            g = -clip
        misc[3] -= intercept_lr * g
        for k in range(ny + ne):
            j = k if k < ny else p + k - ny
            w[j] -= (xs[j] * g) * lr
    misc[0] = _push(hist, kept, y)


@lock_cache
@njit(cache=True, nogil=True, error_model="numpy")
def _forecast(s, p, d, q, out):
    hist, lags, errs, n, mean, var, std, w, misc, coef, work = _parts_jit(s, p, d, q)
    h, lg, er = work[:d], work[d:d + p], work[d + p:d + p + q]
    x, xs = work[d + p + q:d + 2 * (p + q)], work[d + 2 * (p + q):]
    for i in range(d + p + q):  # the copies river's forecast rolls: h, lg, er
        work[i] = s[i]
    kept, ny, ne = int(misc[0]), int(misc[1]), int(misc[2])
    for t in range(out.shape[0]):
        for k in range(ny):
            x[k] = lg[k]
        for k in range(ne):
            x[p + k] = er[k]
        pred = _predict(x, xs, ny, ne, p, mean, var, std, w, misc[3])
        ny = _push(lg, ny, pred)
        value = pred  # Differencer.undiff: as many lags as there are past values
        for i in range(min(d, kept)):
            value -= coef[i] * h[i]
        out[t] = value
        kept = _push(h, kept, value)
        ne = _push(er, ne, 0.0)


class CompiledSNARIMAX(Forecaster):
    """SNARIMAX(p, d, q) learned online: river's numbers, compiled.

    The model of :func:`~streamrnn.river.baselines.make_snarimax`:
    ``river.time_series.SNARIMAX(p, d, q, regressor=preprocessing.StandardScaler() |
    linear_model.LinearRegression(optimizer=optim.SGD(lr), intercept_lr=intercept_lr,
    clip_gradient=clip))``, forecasting the same values to the bit. No seasonal part
    (river's ``m=1, sp=sd=sq=0``) and no exogenous features. A non-finite ``y`` is
    refused (``ValueError``, nothing changes), where river learns it and forecasts NaN
    from then on; finite values so large that river's sums overflow overflow here the
    same way (NaN forecasts from then on).

    Parameters
    ----------
    p, d, q : int
        Lags of the differenced series, differencing order (river's ``Differencer``),
        lags of the errors.
    lr, intercept_lr : float
        SGD learning rates of the weights and of the intercept (0: not learned).
    clip : float
        The loss gradient is clipped to ``[-clip, clip]``.

    Shape
    -----
    ``learn_one``: one value ``y``; ``forecast(H)``: H values. The state is one float64
    array (``state``) of ``3 * d + 9 * (p + q) + 4`` values.

    Examples
    --------
    >>> model = CompiledSNARIMAX()
    >>> for y in [10.0, 12.0, 11.0, 13.0, 12.5, 14.0, 13.0, 15.5]:
    ...     model.learn_one(y)
    >>> [round(v, 6) for v in model.forecast(3)]
    [15.477038, 15.495119, 15.488509]
    >>> round(model.intercept, 6), round(model.weights["y-1"], 6)
    (0.001001, -0.004169)
    """

    def __init__(self, p: int = 3, d: int = 1, q: int = 3, lr: float = 1e-3,
                 intercept_lr: float = 1e-3, clip: float = 1.0) -> None:
        self.p = check_nonneg_int("p", p)
        self.d = check_nonneg_int("d", d)
        self.q = check_nonneg_int("q", q)
        self.lr = check_positive_float("lr", lr)
        self.intercept_lr = check_number("intercept_lr", intercept_lr, low=0.0)
        self.clip = check_positive_float("clip", clip)
        f = self.p + self.q
        self.state = np.zeros(3 * self.d + 9 * f + 4)
        coef = _parts(self.state, self.p, self.d, self.q)[9]
        coef[:] = [(-1) ** t * math.comb(self.d, t) for t in range(1, self.d + 1)]
        self._out = np.empty(0)

    def learn_one(self, y, x=None) -> None:
        if x:
            raise ValueError(f"x must be None or empty (no exogenous features), got {x!r}")
        if type(y) is not float or y - y != 0.0:  # not a float, or not finite
            y = check_number("y", y)
        _learn(self.state, self.p, self.d, self.q, y, self.lr, self.intercept_lr, self.clip,
               0.5)

    def forecast(self, horizon, xs=None) -> list:
        if type(horizon) is not int or horizon < 1:
            horizon = check_positive_int("horizon", horizon)
        if xs is not None and (len(xs) != horizon or any(xs)):
            raise ValueError(f"xs must be None or {horizon} empty dicts (no exogenous "
                             f"features), got {xs!r}")
        out = self._out
        if out.shape[0] != horizon:  # kept for the next call of the same horizon
            out = self._out = np.empty(horizon)
        _forecast(self.state, self.p, self.d, self.q, out)
        return out.tolist()

    def forecast_into(self, out: np.ndarray) -> None:
        """``forecast(len(out))`` written into ``out`` (float64, one contiguous row)."""
        if not (type(out) is np.ndarray and out.dtype == np.float64 and out.ndim == 1
                and out.flags.c_contiguous):
            raise ValueError(f"out must be a contiguous 1-d float64 array, got "
                             f"{getattr(out, 'dtype', type(out).__name__)} "
                             f"{getattr(out, 'shape', '')}")
        _forecast(self.state, self.p, self.d, self.q, out)

    @property
    def intercept(self) -> float:
        """The regression's intercept (river's ``LinearRegression.intercept``)."""
        return float(_parts(self.state, self.p, self.d, self.q)[8][3])

    @property
    def weights(self) -> dict:
        """The weights of the features seen so far, by river's names, in feature order."""
        parts = _parts(self.state, self.p, self.d, self.q)
        names = [f"y-{k + 1}" for k in range(self.p)] + [f"e-{k + 1}" for k in range(self.q)]
        return {name: float(w) for name, n, w in zip(names, parts[3], parts[7], strict=True)
                if n > 0}
