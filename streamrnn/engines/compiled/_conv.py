"""The compiled form of :class:`streamrnn.ConvGRU` (private; inference only): the GRU's
kernels after a :class:`~.forms.Front` that runs the cell's front (standardise, filters,
ReLU, feature pool) over the chunk in one compiled loop. Parity with the cell:
``tests/apps/test_speech_conv.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import _cells
from ._jit import kernel
from .forms import CompiledForm, classic_weights, register_compiled

if TYPE_CHECKING:
    from ...cells.convgru import ConvGRU

__all__ = ["CONVGRU_FORM", "ConvFront"]


@kernel
def _front(x, past, mean, std, w, bias, pool):
    """The conv front of B streams' chunks: each step's window of standardised frames (the
    carried ones first, zeros beyond the edge features), the filters, a ReLU, the feature
    pool; returns z ``(B, T, C F / pool)`` and the last ``K - 1`` standardised frames.
    The sums run filter tap by filter tap over a row of F features (the loop the
    vectoriser takes)."""
    n, t_len, f = x.shape
    c_len, k_len, kb = w.shape
    pad, lead, fo = kb // 2, k_len - 1, f // pool
    z = np.empty((n, t_len, c_len * fo), x.dtype)
    new = np.empty((n, lead * f), x.dtype)
    full = np.zeros((lead + t_len, f + 2 * pad), x.dtype)
    acc = np.empty(f, x.dtype)
    for b in range(n):
        for j in range(lead):
            for i in range(f):
                full[j, pad + i] = past[b, j * f + i]
        for t in range(t_len):
            for i in range(f):
                full[lead + t, pad + i] = (x[b, t, i] - mean[i]) / std[i]
        for t in range(t_len):
            for c in range(c_len):
                for i in range(f):
                    acc[i] = bias[c]
                for k in range(k_len):
                    row = full[t + k]
                    for d in range(kb):
                        tap = w[c, k, d]
                        for i in range(f):
                            acc[i] += tap * row[i + d]
                for o in range(fo):
                    best = max(acc[o * pool], 0.0)  # the ReLU: the pool's maximum and 0
                    for j in range(1, pool):
                        best = max(best, acc[o * pool + j])
                    z[b, t, c * fo + o] = best
        for j in range(lead):
            for i in range(f):
                new[b, j * f + i] = full[t_len + j, pad + i]
    return z, new


class ConvFront:
    """The compiled engine's :class:`~streamrnn.engines.compiled.forms.Front` of a
    :class:`ConvGRU`: the cell's front (standardise, filters, ReLU, band pool) in one
    compiled loop over the chunk; the carried frames are its state part ``frames``.

    Shape
    -----
    x ``(B, T, F)``, past ``((B, (kernel_time - 1) F),)`` -> z ``(B, T, C F / pool)``,
    ``((B, (kernel_time - 1) F),)``.

    Examples
    --------
    >>> import torch, streamrnn
    >>> cell = streamrnn.ConvGRU(8, 5, channels=3, seed=0)
    >>> front = ConvFront(cell)
    >>> x = np.random.default_rng(0).standard_normal((2, 4, 8)).astype(np.float32)
    >>> z, (frames,) = front(x, (np.zeros((2, 16), np.float32),))
    >>> z.shape, frames.shape
    ((2, 4, 12), (2, 16))
    >>> with torch.no_grad():  # the cell's own front (a Conv2d): the same values
    ...     ref = cell.conv(torch.cat([torch.zeros(2, 2, 8), torch.from_numpy(x)], 1)[:, None])
    >>> ref = torch.relu(ref).reshape(2, 3, 4, 4, 2).amax(-1).permute(0, 2, 1, 3)
    >>> bool(np.allclose(z, ref.reshape(2, 4, 12).numpy(), atol=1e-6))
    True
    """

    def __init__(self, cell: ConvGRU) -> None:
        self.tensors = [cell.conv.weight, cell.conv.bias, cell.mean, cell.std]
        w, b, m, s = (t.detach().numpy() for t in self.tensors)
        self.weights = np.ascontiguousarray(w[:, 0])  # (C, K, kb)
        self.bias, self.mean, self.std = b, m, s
        self.pool = cell.pool

    def __call__(self, x: np.ndarray, past: tuple) -> tuple[np.ndarray, tuple]:
        z, new = _front(x, past[0], self.mean, self.std, self.weights, self.bias, self.pool)
        return z, (new,)


#: The GRU's step (its kernels are shared with the GRU's form), after the front.
CONVGRU_FORM = CompiledForm(3, 4, ("h",), _cells.gru_step, None,
                            lambda cell: classic_weights(cell.gru), front=ConvFront,
                            front_parts=("frames",))
register_compiled("convgru", CONVGRU_FORM)
