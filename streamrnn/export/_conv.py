"""Export form of :class:`streamrnn.ConvGRU`: the front as ONNX nodes, then the GRU's form.

onnxruntime has no float64 ``Conv`` kernel, so the filters are one matrix on each step's
window (:func:`conv_matrix`), whose columns are grouped so that the feature pool is an
elementwise ``Max`` of ``pool`` blocks: no ``ReduceMax`` (its axes moved from an attribute
to an input at opset 18).
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

from ..cells.convgru import ConvGRU
from ._graph import Graph
from .forms import export_form, register_export

__all__ = ["conv_form", "conv_matrix"]


def _np(t: Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def conv_matrix(cell: ConvGRU) -> tuple[np.ndarray, np.ndarray]:
    """The filters as one matrix on a window of ``kernel_time`` frames, and its bias.

    Column ``j * C * F / pool + c * F / pool + o`` is filter ``c`` at feature
    ``o * pool + j`` (zero where the filter overhangs the edge features), so the max-pool is
    an elementwise maximum of ``pool`` contiguous column blocks.

    Shape
    -----
    ``(kernel_time * F, C * F)`` and ``(C * F,)``, in the cell's dtype.

    Examples
    --------
    >>> import torch
    >>> cell = ConvGRU(4, 2, channels=1, kernel_time=1, kernel_bands=3, pool=2, seed=0)
    >>> with torch.no_grad():
    ...     _ = cell.conv.weight.copy_(torch.tensor([[[[1.0, 2.0, 3.0]]]]))
    >>> conv_matrix(cell)[0]  # rows: input features; columns: outputs 0, 2 then 1, 3
    array([[2., 0., 1., 0.],
           [3., 1., 2., 0.],
           [0., 2., 3., 1.],
           [0., 3., 0., 2.]], dtype=float32)
    """
    w = _np(cell.conv.weight)[:, 0]  # (C, K, kernel_bands)
    c, k, kb = w.shape
    f, p = cell.input_size, cell.pool
    fo = f // p
    out = np.zeros((k, f, p, c, fo), w.dtype)
    for j in range(p):
        for o in range(fo):
            band = o * p + j
            for d in range(kb):
                src = band + d - kb // 2
                if 0 <= src < f:
                    out[:, src, j, :, o] = w[:, :, d].T
    bias = np.tile(np.repeat(_np(cell.conv.bias), fo), p)
    return out.reshape(k * f, p * c * fo), bias


def conv_form(g: Graph, cell: ConvGRU, x: str, state: dict, lengths: str | None):
    """The export form of :class:`ConvGRU`: standardise, prepend the carried frames, gather
    each step's window, one ``MatMul`` by :func:`conv_matrix`, ``Relu``, the ``Max`` of the
    pooled bands, then the GRU's own export form (``Conv`` is not used: onnxruntime has no
    float64 kernel for it). With ``lengths``, stream ``b`` carries the frames before its
    step ``lengths[b]`` (``GatherElements``).

    Shape
    -----
    x: ``(T, B, F)`` -> y ``(T, B, H)``; state ``h`` ``(1, B, H)``, ``frames``
    ``(1, B, (kernel_time - 1) F)``.
    """
    f, k = cell.input_size, cell.kernel_time
    lead = k - 1
    full = g.op("Div", g.op("Sub", x, g.const(_np(cell.mean))), g.const(_np(cell.std)))
    if lead:  # (K - 1 + T, B, F)
        past = g.op("Reshape", state["frames"], g.ints(-1, lead, f))  # (B, K - 1, F)
        full = g.op("Concat", g.op("Transpose", past, perm=[1, 0, 2]), full, axis=0)
    steps = g.op("Range", g.const(np.array(0, np.int64)),
                 g.op("Squeeze", g.op("Shape", x, start=0, end=1), g.ints(0)),
                 g.const(np.array(1, np.int64)))
    at = g.op("Add", g.op("Unsqueeze", steps, g.ints(1)),
              g.const(np.arange(k, dtype=np.int64)[None]))  # (T, K): step t's frames
    window = g.op("Transpose", g.op("Gather", full, at, axis=0), perm=[0, 2, 1, 3])
    w, b = conv_matrix(cell)
    z = g.op("Relu", g.op("Add", g.op("MatMul", g.op("Reshape", window, g.ints(0, 0, -1)),
                                      g.const(w)), g.const(b)))  # (T, B, pool * C * F / p)
    if cell.pool > 1:
        width = w.shape[1] // cell.pool
        z = g.op("Max", *g.op("Split", z, g.ints(*[width] * cell.pool), axis=2,
                              n_out=cell.pool))
    y, new = export_form(cell.gru)(g, cell.gru, z, {"h": state["h"]}, lengths)
    if not lead:
        return y, {"h": new["h"], "frames": state["frames"]}
    if lengths is None:
        frames = g.op("Transpose", g.op("Slice", full, g.ints(-lead), g.ints(2**62), g.ints(0)),
                      perm=[1, 0, 2])  # (B, K - 1, F)
    else:  # stream b's last frames: full[lengths[b] : lengths[b] + K - 1, b]
        rows = g.op("Transpose", full, perm=[1, 0, 2])  # (B, K - 1 + T, F)
        at = g.op("Add", g.op("Unsqueeze", lengths, g.ints(1)),
                  g.const(np.arange(lead, dtype=np.int64)[None]))  # (B, K - 1)
        at = g.op("Expand", g.op("Unsqueeze", at, g.ints(2)),
                  g.op("Shape", g.op("Slice", rows, g.ints(0), g.ints(lead), g.ints(1))))
        frames = g.op("GatherElements", rows, at, axis=1)
    return y, {"h": new["h"], "frames": g.op("Reshape", frames, g.ints(1, -1, lead * f))}


register_export("convgru", conv_form)
