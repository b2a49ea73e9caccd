"""The online learner's configuration: validation and the parts built from it (private).

:func:`build` checks every constructor argument (``ValueError`` naming the parameter, the
rule and the value) and returns the validated settings with the parts made from them:
the window rule, the input / target spec, the loss and the optimizer, the counters, the
stream rows and the updater.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .._checkpoint import model_config
from .._checks import model_device, model_dtype
from .._validate import check_positive_float, check_positive_int
from ..stream import check_model
from ._checks import Spec
from ._store import StreamRows
from ._update import Updater
from ._windows import Windows

__all__ = ["COUNTS", "build", "learner_config"]

_KINDS = ("values", "classes")
_CLASS_LOSSES = (nn.CrossEntropyLoss, nn.NLLLoss)
COUNTS = ("steps", "updates", "learned", "late_dropped", "duplicate_dropped",
           "skipped_nonfinite", "nonfinite_resets", "evicted", "lost_pending")


def build(model, *, loss, optimizer, lr, k1, k2, clip, horizon, horizon_column, horizon_path,
          target_kind, max_streams) -> dict:
    """The validated settings of an :class:`~streamrnn.learn.OnlineLearner` and the parts
    made from them: ``windows``, ``spec``, ``loss``, ``params``, ``optimizer``, ``columns``
    (the horizon target's input columns: None, a slice or an index tensor), ``out_shape``,
    ``dtype``, ``device``, ``num_tokens``, ``target_kind``; ``counts`` (every counter at
    0), and the :class:`~._store.StreamRows` ``rows`` and :class:`~._update.Updater`
    ``updater`` that share them."""
    check_model(model)
    k1 = check_positive_int("k1", k1)
    k2 = check_positive_int("k2", k1 if k2 is None else k2)
    if k2 < k1:
        raise ValueError(f"k2 must be >= k1 = {k1}, got {k2}")
    clip = check_positive_float("clip", clip, none_ok=True)
    lr = check_positive_float("lr", lr, none_ok=True)
    horizon = None if horizon is None else check_positive_int("horizon", horizon)
    if not isinstance(horizon_path, bool):
        raise ValueError(f"horizon_path must be a bool, got {horizon_path!r}")
    if horizon is None and (horizon_column is not None or horizon_path):
        raise ValueError("horizon_column and horizon_path need horizon (an int >= 1)")
    if target_kind not in (None, *_KINDS):
        raise ValueError(f"target_kind must be None or one of {_KINDS}, got {target_kind!r}")
    max_streams = check_positive_int("max_streams", max_streams)
    if loss is not None and not callable(loss):
        raise ValueError(f"loss must be callable (loss(pred, target)), got {loss!r}")
    dtype, device = model_dtype(model), model_device(model)
    num_tokens = getattr(model, "num_tokens", None)
    out_shape = tuple(getattr(model, "output_shape", None) or (model.output_size,))
    target_kind = target_kind or _infer_kind(loss, num_tokens)
    classes = out_shape[-1] if target_kind == "classes" else None
    target_shape = out_shape[:-1] if classes else out_shape
    columns = _horizon_columns(model, horizon, horizon_column, horizon_path, target_kind,
                               target_shape, out_shape, device)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError(f"model {type(model).__name__} has no trainable parameters")
    c = {
        "windows": Windows(k1, k2), "clip": clip, "lr": lr, "horizon": horizon,
        "horizon_column": horizon_column, "horizon_path": horizon_path,
        "max_streams": max_streams, "dtype": dtype, "device": device,
        "num_tokens": num_tokens, "out_shape": out_shape, "target_kind": target_kind,
        "columns": columns, "params": params,
        "loss": loss if loss is not None else (
            nn.CrossEntropyLoss() if classes else nn.MSELoss()),
        "optimizer": _make_optimizer(optimizer, params, lr),
        "spec": Spec(features=model.input_size, num_tokens=num_tokens, dtype=dtype,
                     device=device, target_shape=target_shape, classes=classes),
        "counts": dict.fromkeys(COUNTS, 0),
    }
    c["rows"] = StreamRows(
        model, c["windows"], max_streams=max_streams, in_shape=c["spec"].in_shape,
        in_dtype=torch.int64 if num_tokens is not None else dtype,
        target_shape=target_shape, target_dtype=torch.int64 if classes else dtype,
        device=device, dtype=dtype, counts=c["counts"],
    )
    c["updater"] = Updater(params, c["optimizer"], c["loss"], clip, device, c["counts"])
    return c


def _infer_kind(loss, num_tokens) -> str:
    if num_tokens is not None and loss is None:
        return "classes"
    if isinstance(loss, _CLASS_LOSSES) or loss in (F.cross_entropy, F.nll_loss):
        return "classes"
    return "values"


def _horizon_columns(model, h, cols, path, kind, target_shape, out_shape, device):
    if h is None:
        return None
    given = cols
    if getattr(model, "num_tokens", None) is not None:
        if cols is not None or kind != "classes":
            raise ValueError("a token model's horizon targets are the next ids: use "
                             "target_kind='classes' and no horizon_column")
        derived = (h,) if path else ()
    else:
        if kind != "values":
            raise ValueError("horizon targets of value inputs are values: "
                             "use target_kind='values'")
        features = model.input_size
        if cols is not None:
            cols = [cols] if isinstance(cols, int) and not isinstance(cols, bool) else cols
            if not isinstance(cols, list | tuple) or not cols or not all(
                isinstance(c, int) and not isinstance(c, bool) and 0 <= c < features
                for c in cols
            ):
                raise ValueError(f"horizon_column must be an int or a list of ints in "
                                 f"[0, {features}), got {given!r}")
            cols = list(cols)
        width = features if cols is None else len(cols)
        derived = (h, width) if path else (width,)
    if derived != tuple(target_shape):
        raise ValueError(
            f"horizon targets have shape {derived} per step but the model's output per "
            f"step is {out_shape} (targets {tuple(target_shape)}); pick "
            f"horizon_column / horizon_path to match"
        )
    if cols is None:
        return None
    if cols == list(range(cols[0], cols[-1] + 1)):  # a slice: a view, no gather
        return slice(cols[0], cols[-1] + 1)
    return torch.tensor(cols, device=device)


def _make_optimizer(optimizer, params: list, lr):
    opt_cls = torch.optim.Optimizer
    if optimizer is None or (isinstance(optimizer, type) and issubclass(optimizer, opt_cls)):
        cls = torch.optim.Adam if optimizer is None else optimizer
        return cls(params, lr=1e-3 if lr is None else lr)
    if lr is not None:
        raise ValueError("lr applies only when optimizer is None or an Optimizer class; "
                         f"got lr={lr!r} with {type(optimizer).__name__}")
    if isinstance(optimizer, opt_cls):
        opt = optimizer
    elif callable(optimizer):
        opt = optimizer(params)
        if not isinstance(opt, opt_cls):
            raise ValueError(f"optimizer factory must return a torch.optim.Optimizer, "
                             f"got {type(opt).__name__}")
    else:
        raise ValueError(f"optimizer must be None, an Optimizer class or instance, or a "
                         f"factory, got {optimizer!r}")
    held = {id(p) for g in opt.param_groups for p in g["params"]}
    if not all(id(p) in held for p in params):
        raise ValueError("optimizer must hold every trainable parameter of the model")
    return opt


def learner_config(learner) -> dict:
    """What a checkpoint records of a learner, to refuse one it does not fit."""
    column = learner.horizon_column
    return {
        "model": model_config(learner.model),
        "k1": learner.k1,
        "k2": learner.k2,
        "horizon": learner.horizon,
        "horizon_column": list(column) if isinstance(column, tuple) else column,
        "horizon_path": learner.horizon_path,
        "target_kind": learner.target_kind,
        "optimizer": type(learner.optimizer).__name__,
    }
