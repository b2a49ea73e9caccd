"""Input validation shared by Stream, StreamBank and the learner (private).

Every check raises ``ValueError`` naming the parameter, the rule and the value seen.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

__all__ = ["all_finite", "as_chunk", "as_id_chunk", "as_ids", "first_nonfinite", "model_device",
           "model_dtype", "num_tokens"]

_INT_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def model_dtype(model: torch.nn.Module) -> torch.dtype:
    """Floating dtype of the model's parameters (float32 if it has none)."""
    for p in model.parameters():
        return p.dtype
    return torch.get_default_dtype()


def model_device(model: torch.nn.Module) -> torch.device:
    """Device of the model's parameters (CPU if it has none)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def all_finite(x: Tensor) -> bool:
    """Whether every value of ``x`` is finite.

    A sum is one cheap reduction; a non-finite sum is confirmed element-wise, so a
    finite chunk whose sum overflows is never rejected.
    """
    if x.numel() == 0:
        return True
    x = x.detach()
    if math.isfinite(float(x.sum())):
        return True
    return bool(torch.isfinite(x).all())


def first_nonfinite(x: Tensor) -> tuple[int, ...]:
    """Index of the first non-finite value of ``x``."""
    bad = (~torch.isfinite(x)).nonzero()
    return tuple(int(i) for i in bad[0])


def shares_memory(y: Tensor, state) -> bool:
    """Whether ``y`` lies in the memory of a part of ``state`` (one step of a bare
    layer returns its new ``h`` as the output: kept as state, it must not be handed out).
    """
    ptr = y.untyped_storage().data_ptr()
    return any(t.untyped_storage().data_ptr() == ptr for t in state.values())


def plain_tensor(x: Tensor, name: str) -> Tensor:
    """``x`` as a plain value: a dense tensor with data, outside any autograd graph.

    A sparse (or other non-strided) or a ``meta`` tensor is refused with a ``ValueError``
    naming ``name``; a tensor that requires grad is detached (its values are what a stream
    consumes; its graph would otherwise be kept alive and break later learning).

    Examples
    --------
    >>> import torch
    >>> plain_tensor(torch.ones(2, requires_grad=True), "chunk").requires_grad
    False
    >>> plain_tensor(torch.ones(2).to_sparse(), "chunk")
    Traceback (most recent call last):
    ...
    ValueError: chunk must be a dense tensor, got layout torch.sparse_coo
    """
    if x.layout != torch.strided:
        raise ValueError(f"{name} must be a dense tensor, got layout {x.layout}")
    if x.is_meta:
        raise ValueError(f"{name} must hold data, got a tensor on the meta device")
    return x.detach() if x.requires_grad else x


def as_chunk(
    chunk,
    *,
    features: int,
    dtype: torch.dtype,
    device: torch.device,
    name: str = "chunk",
) -> tuple[Tensor, bool]:
    """Validate one stream's chunk and return it as ``(T, F)`` plus whether it was one step.

    Accepts a torch tensor, a numpy array or a (nested) list of floats. A tensor or array
    must already have the model's floating dtype: nothing is cast silently. A list is
    read in the model's dtype.

    Shape
    -----
    ``(T, F)`` or one step ``(F,)`` -> ``(T, F)``.
    """
    if isinstance(chunk, Tensor):
        x = plain_tensor(chunk, name)
    elif isinstance(chunk, np.ndarray):
        if chunk.dtype.kind != "f":
            raise ValueError(f"{name} must hold floats of dtype {dtype}, got numpy {chunk.dtype}")
        x = torch.from_numpy(np.ascontiguousarray(chunk))
    elif isinstance(chunk, list | tuple):
        if len(chunk) == 0:  # an empty list is an empty chunk
            return torch.zeros(0, features, dtype=dtype, device=device), False
        try:
            x = torch.tensor(chunk, dtype=dtype)
        except (TypeError, ValueError, RuntimeError) as err:
            raise ValueError(f"{name} must be a rectangular list of numbers: {err}") from None
    else:
        raise ValueError(
            f"{name} must be a torch.Tensor, numpy array or list, got {type(chunk).__name__}"
        )
    if x.dtype != dtype:
        raise ValueError(
            f"{name} must have dtype {dtype} (the model's), got {x.dtype}; cast it explicitly"
        )
    one_step = x.dim() == 1
    if one_step:
        x = x.unsqueeze(0)
    if x.dim() != 2:
        raise ValueError(
            f"{name} must have shape (T, F) or (F,) with F = {features}, got {tuple(x.shape)}"
        )
    if x.shape[1] != features:
        raise ValueError(
            f"{name} must have {features} features per step, got {x.shape[1]} "
            f"(shape {tuple(x.shape)})"
        )
    if x.device != device:
        x = x.to(device)
    if not all_finite(x):
        raise ValueError(f"{name} has a non-finite value (NaN or inf) at {first_nonfinite(x)}")
    return x, one_step


def as_ids(value, *, name: str, high: int, device) -> Tensor:
    """Integers in ``[0, high)`` as int64 (tensor, numpy array or integer, list or int)."""
    if isinstance(value, Tensor):
        value = plain_tensor(value, name)
        if value.dtype not in _INT_DTYPES:
            raise ValueError(f"{name} must hold integer ids, got dtype {value.dtype}")
        x = value if value.dtype == torch.int64 else value.to(torch.int64)
    elif isinstance(value, np.ndarray):
        if value.dtype.kind not in "iu":
            raise ValueError(f"{name} must hold integer ids, got numpy {value.dtype}")
        x = torch.from_numpy(value.astype(np.int64))
    elif isinstance(value, np.integer):  # one id read from a numpy array
        x = torch.tensor(int(value))
    elif isinstance(value, int | list | tuple) and not isinstance(value, bool):
        x = torch.tensor(value)
        if x.dtype != torch.int64:
            raise ValueError(f"{name} must hold integer ids, got {x.dtype} values")
    else:
        raise ValueError(
            f"{name} must be a torch.Tensor, numpy array, list or int of ids, got "
            f"{type(value).__name__}"
        )
    if x.device != device:
        x = x.to(device)
    if x.numel():
        low, top = (int(v) for v in torch.aminmax(x))
        if low < 0 or top >= high:
            raise ValueError(f"{name} must hold ids in [0, {high}), got {low if low < 0 else top}")
    return x


def as_id_chunk(chunk, *, high: int, device, name: str = "chunk") -> tuple[Tensor, bool]:
    """Validate one stream's chunk of token ids; return it as ``(T,)`` plus whether it was
    one id.

    Shape
    -----
    ``(T,)`` ids or one id -> ``(T,)``.
    """
    if isinstance(chunk, list | tuple) and len(chunk) == 0:  # an empty list: no steps
        return torch.zeros(0, dtype=torch.int64, device=device), False
    x = as_ids(chunk, name=name, high=high, device=device)
    if x.dim() > 1:
        raise ValueError(f"{name} must be token ids of shape (T,) or one id, got {tuple(x.shape)}")
    return (x.reshape(1), True) if x.dim() == 0 else (x, False)


def check_id_rows(x: Tensor, keys: list, *, high: int) -> None:
    """Refuse ids ``x`` ``(N, T)`` or ``(N,)`` outside ``[0, high)``, naming the key of the
    first bad row (``keys[i]`` owns row i)."""
    if x.numel():
        x = x.reshape(x.shape[0], -1)
        bad = (x < 0) | (x >= high)
        if bool(bad.any()):
            row, col = (int(i) for i in bad.nonzero()[0])
            raise ValueError(f"chunk for key {keys[row]!r} must hold ids in [0, {high}), "
                             f"got {int(x[row, col])}")


def num_tokens(model) -> int | None:
    """The vocabulary size of a token model (ids in, through an embedding), else None."""
    n = getattr(model, "num_tokens", None)
    return n if isinstance(n, int) and not isinstance(n, bool) else None
