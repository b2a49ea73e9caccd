"""The online learner's validated configuration and construction (private)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .._checkpoint import model_config
from .._checks import model_device, model_dtype
from ..stream import check_model
from ._checks import Spec
from ._store import StreamRows

__all__ = ["LearnerConfig"]

_KINDS = ("values", "classes")
_CLASS_LOSSES = (nn.CrossEntropyLoss, nn.NLLLoss)
_COUNTS = ("steps", "updates", "learned", "late_dropped", "duplicate_dropped",
           "skipped_nonfinite", "nonfinite_resets", "evicted", "lost_pending")


def _pos_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _pos_float(name: str, value, *, none_ok: bool = True):
    if value is None and none_ok:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
        math.isfinite(value) and value > 0
    ):
        raise ValueError(f"{name} must be a positive finite number{' or None' * none_ok}, "
                         f"got {value!r}")
    return float(value)


class LearnerConfig:
    """Construction of :class:`~streamrnn.learn.OnlineLearner`: validation and parts."""

    def __init__(
        self,
        model,
        *,
        loss=None,
        optimizer=None,
        lr: float | None = None,
        k1: int = 10,
        k2: int | None = None,
        clip: float | None = 1.0,
        horizon: int | None = None,
        horizon_column: int | list[int] | None = None,
        horizon_path: bool = False,
        target_kind: str | None = None,
        max_streams: int = 10_000,
    ) -> None:
        check_model(model)
        self.k1 = _pos_int("k1", k1)
        self.k2 = _pos_int("k2", k1 if k2 is None else k2)
        if self.k2 < self.k1:
            raise ValueError(f"k2 must be >= k1 = {k1}, got {k2}")
        self.clip = _pos_float("clip", clip)
        self.lr = _pos_float("lr", lr)
        self.horizon = None if horizon is None else _pos_int("horizon", horizon)
        if not isinstance(horizon_path, bool):
            raise ValueError(f"horizon_path must be a bool, got {horizon_path!r}")
        if self.horizon is None and (horizon_column is not None or horizon_path):
            raise ValueError("horizon_column and horizon_path need horizon (an int >= 1)")
        self.horizon_column = horizon_column
        self.horizon_path = horizon_path
        if target_kind not in (None, *_KINDS):
            raise ValueError(f"target_kind must be None or one of {_KINDS}, got {target_kind!r}")
        self.max_streams = _pos_int("max_streams", max_streams)
        if loss is not None and not callable(loss):
            raise ValueError(f"loss must be callable (loss(pred, target)), got {loss!r}")
        self.model = model
        self._dtype, self._device = model_dtype(model), model_device(model)
        self.num_tokens = getattr(model, "num_tokens", None)
        self._out_shape = tuple(getattr(model, "output_shape", None) or (model.output_size,))
        self.target_kind = target_kind or self._infer_kind(loss)
        classes = self._out_shape[-1] if self.target_kind == "classes" else None
        target_shape = self._out_shape[:-1] if classes else self._out_shape
        self._columns = self._check_horizon(target_shape)
        self.loss = loss if loss is not None else (
            nn.CrossEntropyLoss() if classes else nn.MSELoss()
        )
        self._params = [p for p in model.parameters() if p.requires_grad]
        if not self._params:
            raise ValueError(f"model {type(model).__name__} has no trainable parameters")
        self.optimizer = self._make_optimizer(optimizer)
        self._spec = Spec(
            features=model.input_size, num_tokens=self.num_tokens, dtype=self._dtype,
            device=self._device, target_shape=target_shape, classes=classes,
        )
        self.counts = dict.fromkeys(_COUNTS, 0)
        self.rows = StreamRows(
            model, k1=self.k1, k2=self.k2, max_streams=self.max_streams,
            in_shape=self._spec.in_shape,
            in_dtype=torch.int64 if self.num_tokens is not None else self._dtype,
            target_shape=target_shape,
            target_dtype=torch.int64 if classes else self._dtype,
            device=self._device, dtype=self._dtype, counts=self.counts,
        )
        self._version = 0      # optimizer steps taken: a graph is valid for one version
        self._graph = None     # (version, slots, outputs) of a fused k1 == k2 window
        self._plain = None     # parameters plain, one dtype and device (_clip_grads)
        self.last_loss: float | None = None
        self.last_reset: list = []

    def _infer_kind(self, loss) -> str:
        if self.num_tokens is not None and loss is None:
            return "classes"
        if isinstance(loss, _CLASS_LOSSES) or loss in (F.cross_entropy, F.nll_loss):
            return "classes"
        return "values"

    def _check_horizon(self, target_shape: tuple):
        if self.horizon is None:
            return None
        h, cols = self.horizon, self.horizon_column
        if self.num_tokens is not None:
            if cols is not None or self.target_kind != "classes":
                raise ValueError("a token model's horizon targets are the next ids: use "
                                 "target_kind='classes' and no horizon_column")
            derived = (h,) if self.horizon_path else ()
        else:
            if self.target_kind != "values":
                raise ValueError("horizon targets of value inputs are values: "
                                 "use target_kind='values'")
            features = self.model.input_size
            if cols is not None:
                cols = [cols] if isinstance(cols, int) and not isinstance(cols, bool) else cols
                if not isinstance(cols, list | tuple) or not cols or not all(
                    isinstance(c, int) and not isinstance(c, bool) and 0 <= c < features
                    for c in cols
                ):
                    raise ValueError(f"horizon_column must be an int or a list of ints in "
                                     f"[0, {features}), got {self.horizon_column!r}")
                cols = list(cols)
            width = features if cols is None else len(cols)
            derived = (h, width) if self.horizon_path else (width,)
        if derived != tuple(target_shape):
            raise ValueError(
                f"horizon targets have shape {derived} per step but the model's output per "
                f"step is {self._out_shape} (targets {tuple(target_shape)}); pick "
                f"horizon_column / horizon_path to match"
            )
        if cols is None:
            return None
        if cols == list(range(cols[0], cols[-1] + 1)):  # a slice: a view, no gather
            return slice(cols[0], cols[-1] + 1)
        return torch.tensor(cols, device=self._device)

    def _make_optimizer(self, optimizer):
        opt_cls = torch.optim.Optimizer
        if optimizer is None or (isinstance(optimizer, type) and issubclass(optimizer, opt_cls)):
            cls = torch.optim.Adam if optimizer is None else optimizer
            return cls(self._params, lr=1e-3 if self.lr is None else self.lr)
        if self.lr is not None:
            raise ValueError("lr applies only when optimizer is None or an Optimizer class; "
                             f"got lr={self.lr!r} with {type(optimizer).__name__}")
        if isinstance(optimizer, opt_cls):
            opt = optimizer
        elif callable(optimizer):
            opt = optimizer(self._params)
            if not isinstance(opt, opt_cls):
                raise ValueError(f"optimizer factory must return a torch.optim.Optimizer, "
                                 f"got {type(opt).__name__}")
        else:
            raise ValueError(f"optimizer must be None, an Optimizer class or instance, or a "
                             f"factory, got {optimizer!r}")
        held = {id(p) for g in opt.param_groups for p in g["params"]}
        if not all(id(p) in held for p in self._params):
            raise ValueError("optimizer must hold every trainable parameter of the model")
        return opt

    def config(self) -> dict:
        """The learner's configuration; checkpoints refuse a learner it does not match."""
        return {
            "model": model_config(self.model),
            "k1": self.k1,
            "k2": self.k2,
            "horizon": self.horizon,
            "horizon_column": (list(self.horizon_column)
                               if isinstance(self.horizon_column, tuple) else self.horizon_column),
            "horizon_path": self.horizon_path,
            "target_kind": self.target_kind,
            "optimizer": type(self.optimizer).__name__,
        }
