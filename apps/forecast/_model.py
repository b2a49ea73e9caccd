"""OnlineForecaster: h-step-ahead forecasts of one series, learned while forecasting (private).

Public through :mod:`streamrnn.apps.forecast`, whose docstring describes the protocol.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from streamrnn.cells import GRU, LSTM, RNN
from streamrnn.heads import Readout, RecurrentModel
from streamrnn.learn import OnlineLearner
from streamrnn.utils import (
    RunningMoments,
    check_bool,
    check_choice,
    check_int,
    check_nonneg_int,
    check_positive_float,
    check_positive_int,
)

from ._parts import FLOOR, MeanAbs, SkipModel, floored_std

__all__ = ["OnlineForecaster"]

_CELLS = {"lstm": LSTM, "gru": GRU, "rnn": RNN}
_LOSSES = {"mse": nn.MSELoss, "huber": nn.HuberLoss, "l1": nn.L1Loss}
_COUNTS = ("steps", "forecasts", "targets", "unmatched", "resets")


class OnlineForecaster:
    """Forecast ``y[t + h]`` at every step ``t`` of a live series and learn as targets arrive.

    A stateful recurrent network (one stream of an
    :class:`~streamrnn.learn.OnlineLearner`) predicts at every step the *scaled change*
    ``(y[t + h] - y[t]) / s[t]``, where ``s[t]`` is the running mean of ``|y[u] - y[u - h]|``
    over the observed ``u <= t``; the forecast is ``y[t] + s[t] * output``. The readout
    (and the linear skip map) start at zero, so an untrained forecaster is exactly the
    naive last-value forecast. When ``y[t + h]`` arrives (``h`` grid steps later), the
    scaled change becomes the target of step ``t`` and is learned by TBPTT(k1, k2) at the
    learner's next window end: predict first, learn after.

    Features of step ``t``, all from values at or before ``t`` and clipped to
    ``[-z_clip, z_clip]``: every channel z-scored by its running mean and std; the target's
    last change ``y[t] - y[t - 1]`` over its running mean absolute change; the target's
    ``h``-step change ``y[t] - y[t - h]`` and its distance to three exponential moving
    averages (spans ``h / 2``, ``2h``, ``8h``), over ``s[t]``; the observed flag of every
    channel; and the ``extra`` columns as given.

    Parameters
    ----------
    horizon : int
        ``h``: forecast this many grid steps ahead.
    num_inputs : int
        Input channels besides the target (their values come after the target's).
    num_extra : int
        Extra feature columns used as given (e.g. calendar phases in [-1, 1]).
    hidden_size, num_layers : int
        Size of the recurrent layer.
    cell : {"lstm", "gru", "rnn"}
        The recurrent layer.
    k1 : int
        Learn every ``k1`` steps.
    k2 : int or None
        Backpropagate through the last ``k2`` steps; ``k2 >= k1 + horizon`` so that every
        target arrives inside the window that learns it. ``None``: ``k1 + horizon + 16``.
    lr : float
        Adam's learning rate.
    clip : float
        Gradient-norm clipping.
    loss : {"huber", "mse", "l1"}
        Loss on the scaled change.
    z_clip : float
        Scaled inputs and targets are clipped to ``[-z_clip, z_clip]`` (an early, tiny
        running standard deviation cannot blow up the network).
    seed : int
        Seed of the weights (local generators; the global RNG is not touched).
    skip : bool
        Add a linear map of the step's features to the readout (a linear autoregression
        learned beside the network).
    skip_lr : float
        The skip map's learning rate, as a multiple of ``lr``.

    Attributes
    ----------
    counts : dict
        ``steps`` pushed, ``forecasts`` made, ``targets`` given to the learner,
        ``unmatched`` (observed values whose step ``h`` earlier does not exist, e.g. after
        skipped rows), ``resets`` (the network's state went non-finite and was reset).
    learner : OnlineLearner
        The learner inside (its ``counts`` hold updates and dropped targets).

    Shape
    -----
    push: values ``(T, 1 + num_inputs)``, observed ``(T, 1 + num_inputs)``, extra
    ``(T, num_extra)``, index ``(T,)`` -> forecasts ``(T,)``.

    Threads
    -------
    Not safe under concurrent calls, and not locked (a lock per call would cost more
    than the call): use it from one thread at a time, or hold your own lock around each
    call.

    Examples
    --------
    >>> import numpy as np
    >>> y = 20 + 5 * np.sin(2 * np.pi * np.arange(200) / 8)  # a cycle of 8 steps
    >>> fc = OnlineForecaster(2, k1=4, lr=0.01, seed=0)
    >>> f = fc.push(y[:, None])                 # f[t] forecasts y[t + 2]
    >>> f.shape, fc.counts["targets"]
    ((200,), 198)
    >>> bool(f[0] == y[0])                      # untrained: the naive forecast
    True
    >>> late = np.abs(f[150:-2] - y[152:]).mean()
    >>> naive = np.abs(y[150:-2] - y[152:]).mean()
    >>> bool(late < 0.5 * naive)
    True
    >>> OnlineForecaster(3, k1=2, k2=4)
    Traceback (most recent call last):
    ...
    ValueError: k2 must be >= k1 + horizon = 5 (every target must arrive inside its window), got 4
    """

    def __init__(
        self,
        horizon: int,
        *,
        num_inputs: int = 0,
        num_extra: int = 0,
        hidden_size: int = 32,
        num_layers: int = 1,
        cell: str = "lstm",
        k1: int = 2,
        k2: int | None = None,
        lr: float = 1e-3,
        clip: float = 1.0,
        loss: str = "l1",
        z_clip: float = 5.0,
        seed: int = 0,
        skip: bool = True,
        skip_lr: float = 0.1,
    ) -> None:
        self.skip = check_bool("skip", skip)
        self.skip_lr = check_positive_float("skip_lr", skip_lr)
        self.horizon = check_positive_int("horizon", horizon)
        self.num_inputs = check_nonneg_int("num_inputs", num_inputs)
        self.num_extra = check_nonneg_int("num_extra", num_extra)
        self.hidden_size = check_positive_int("hidden_size", hidden_size)
        self.num_layers = check_positive_int("num_layers", num_layers)
        self.cell = check_choice("cell", cell, sorted(_CELLS))
        self.k1 = check_positive_int("k1", k1)
        self.k2 = self.k1 + self.horizon + 16 if k2 is None else check_positive_int("k2", k2)
        if self.k2 < self.k1 + self.horizon:
            raise ValueError(
                f"k2 must be >= k1 + horizon = {self.k1 + self.horizon} (every target must "
                f"arrive inside its window), got {k2}"
            )
        self.lr = check_positive_float("lr", lr)
        self.clip = check_positive_float("clip", clip)
        self.loss = check_choice("loss", loss, sorted(_LOSSES))
        self.z_clip = check_positive_float("z_clip", z_clip)
        self.seed = check_int("seed", seed)
        self.channels = 1 + self.num_inputs
        self.input_size = 2 * self.channels + 5 + self.num_extra
        layer = _CELLS[cell](self.input_size, hidden_size, num_layers, seed=seed)
        head = Readout(hidden_size, 1, seed=seed + 1)
        with torch.no_grad():  # start at the naive forecast: the change predicted is 0
            head.linear.weight.zero_()
            head.linear.bias.zero_()
        self.model = SkipModel(RecurrentModel(layer, head)) if self.skip else RecurrentModel(
            layer, head)
        self.learner = OnlineLearner(self.model, loss=_LOSSES[loss](), optimizer=self._adam,
                                     k1=self.k1, k2=self.k2, clip=self.clip)
        self.scaler = RunningMoments(self.channels)
        self.counts = dict.fromkeys(_COUNTS, 0)
        self._last_y: float | None = None  # target value of the previous step
        self._next_index = 0
        self._step_change = MeanAbs(FLOOR)  # |y[t] - y[t - 1]|
        self._change = MeanAbs(FLOOR)  # |y[t] - y[t - h]|: the target's scale
        self._recent: dict = {}  # grid index -> (step, y, scale, observed), last k2 + h
        spans = np.array([max(2, self.horizon // 2), 2 * self.horizon, 8 * self.horizon])
        self._decay = 1.0 - 2.0 / (spans + 1.0)  # EMAs of the target over these spans
        self._ema: np.ndarray | None = None

    def _adam(self, params) -> torch.optim.Adam:
        if not self.skip:
            return torch.optim.Adam(params, lr=self.lr)
        linear = list(self.model.skip.parameters())
        rest = [p for p in params if all(p is not q for q in linear)]
        return torch.optim.Adam([{"params": rest}, {"params": linear,
                                 "lr": self.lr * self.skip_lr}], lr=self.lr)

    # -- streaming -----------------------------------------------------------------
    def push(self, values, observed=None, extra=None, index=None) -> np.ndarray:
        """Forecast ``y[t + h]`` for every row, then learn from the targets they complete.

        Parameters
        ----------
        values : array_like
            ``(T, 1 + num_inputs)`` channel values, the target first (held values where a
            channel was not observed; any finite number).
        observed : array_like of bool or None
            Which values are real observations (``None``: all). Unobserved values do not
            update the running statistics and are not learned from as targets.
        extra : array_like or None
            ``(T, num_extra)`` extra features.
        index : array_like of int or None
            Grid index of each row (strictly increasing; ``None``: consecutive). The target
            of the row at index ``k`` is the target value at index ``k + horizon``.

        Returns
        -------
        numpy.ndarray
            float64 forecasts of the target ``horizon`` grid steps after each row, made
            before any value after the row was seen.

        Shape
        -----
        ``(T, C)`` -> ``(T,)``.
        """
        v, obs, ext, idx = self._check(values, observed, extra, index)
        out = np.empty(len(v))
        pos = 0
        while pos < len(v):  # pieces never cross a learning-window end
            steps = self.learner.steps_seen() if None in self.learner else 0
            size = min(len(v) - pos, self.k1 - steps % self.k1)
            cut = slice(pos, pos + size)
            out[cut] = self._piece(v[cut], obs[cut], ext[cut], idx[cut], steps)
            pos += size
        return out

    def _check(self, values, observed, extra, index):
        v = np.asarray(values, dtype=np.float64)
        if v.ndim != 2 or v.shape[1] != self.channels:
            raise ValueError(f"values must have shape (T, {self.channels}) (target first, then "
                             f"{self.num_inputs} inputs), got {v.shape}")
        if not np.isfinite(v).all():
            raise ValueError("values must be finite (hold the last value where a channel is "
                             "missing and mark it unobserved)")
        t = len(v)
        obs = np.ones(v.shape, bool) if observed is None else np.asarray(observed)
        if obs.shape != v.shape or obs.dtype != bool:
            raise ValueError(f"observed must be a bool array of shape {v.shape}, got "
                             f"{obs.dtype} of shape {obs.shape}")
        ext = np.zeros((t, 0)) if extra is None else np.asarray(extra, dtype=np.float64)
        if ext.shape != (t, self.num_extra) or not np.isfinite(ext).all():
            raise ValueError(f"extra must be finite with shape ({t}, {self.num_extra}), "
                             f"got shape {ext.shape}")
        if index is None:
            idx = self._next_index + np.arange(t, dtype=np.int64)
        else:
            idx = np.asarray(index)
            if idx.shape != (t,) or idx.dtype.kind not in "iu":
                raise ValueError(f"index must be an int array of shape ({t},), got "
                                 f"{idx.dtype} of shape {idx.shape}")
            idx = idx.astype(np.int64)
            if t and (idx[0] < self._next_index or (np.diff(idx) <= 0).any()):
                raise ValueError(f"index must be strictly increasing and >= {self._next_index} "
                                 f"(after the last row pushed), got {idx.tolist()[:8]}...")
        if t:
            self._next_index = int(idx[-1]) + 1
        return v, obs, ext, idx

    def _piece(self, v, obs, ext, idx, first_step) -> np.ndarray:
        z_clip, c, h = self.z_clip, self.channels, self.horizon
        feats = np.empty((len(v), self.input_size))
        ys, ss = v[:, 0].copy(), np.empty(len(v))
        recent = self._recent
        for r in range(len(v)):
            self.scaler.update(v[r], obs[r])
            y, k, seen = ys[r], int(idx[r]), bool(obs[r, 0])
            prev = recent.get(k - 1)
            if seen and prev is not None and prev[3]:
                self._step_change.update(abs(y - prev[1]))
            back = recent.get(k - h)
            if seen and back is not None and back[3]:
                self._change.update(abs(y - back[1]))
            ss[r] = self._change.scale(self.scaler.mean[0])
            last = y if self._last_y is None else self._last_y
            feats[r, :c] = (v[r] - self.scaler.mean) / floored_std(self.scaler)
            feats[r, c] = (y - last) / self._step_change.scale(self.scaler.mean[0])
            feats[r, c + 1] = 0.0 if back is None else (y - back[1]) / ss[r]
            if seen:
                ema = self._ema = y + self._decay * (self._ema - y) if self._ema is not None \
                    else np.full(len(self._decay), y)
            else:
                ema = self._ema if self._ema is not None else np.full(len(self._decay), y)
            feats[r, c + 2 : c + 5] = (y - ema) / ss[r]
            feats[r, c + 5 : 2 * c + 5] = obs[r]
            feats[r, 2 * c + 5 :] = ext[r]
            recent[k] = (first_step + r, y, ss[r], seen)
            self._last_y = y
        np.clip(feats, -z_clip, z_clip, out=feats)
        delta = self.learner.push(torch.from_numpy(feats).to(torch.float32))[:, 0]
        delta = delta.double().numpy()
        self.counts["steps"] += len(v)
        self.counts["forecasts"] += len(v)
        if self.learner.last_reset:  # the state went non-finite: step numbers restart at 0
            self.counts["resets"] += 1
            recent.clear()
            return ys + ss * delta
        for r in range(len(v)):
            if not obs[r, 0]:
                continue
            base = recent.get(int(idx[r]) - h)
            if base is None:
                if first_step + r >= h:
                    self.counts["unmatched"] += 1
                continue
            change = min(max((ys[r] - base[1]) / base[2], -z_clip), z_clip)
            if self.learner.learn(base[0], torch.tensor([change], dtype=torch.float32)):
                self.counts["targets"] += 1
        self._trim()
        return ys + ss * delta

    def _trim(self) -> None:
        keep = self.k2 + self.horizon
        if len(self._recent) > 2 * keep:
            newest = max(self._recent)
            for k in [k for k in self._recent if k < newest - keep]:
                del self._recent[k]
