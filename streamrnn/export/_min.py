"""Export forms of MinGRU and MinLSTM (Feng et al. 2024).

Their gates see the input alone, so each layer projects the whole chunk with one
``MatMul``, computes the recurrence's coefficients ``a = sigmoid(-d)``,
``b = sigmoid(d) g(v)`` for every step at once, and loops only ``h = a h + b`` in an ONNX
``Scan`` (the cells' equations: :mod:`streamrnn.cells._scan`).
"""

from __future__ import annotations

import numpy as np

from ._graph import Graph
from .forms import register_export

__all__ = ["min_form"]


def _softplus(g: Graph, v: str) -> str:
    # log(1 + exp(v)), stable: max(v, 0) + log(1 + exp(-|v|)).
    e = g.op("Exp", g.op("Neg", g.op("Abs", v)))
    one = g.op("CastLike", g.const(np.array(1.0)), e)
    return g.op("Add", g.op("Relu", v), g.op("Log", g.op("Add", one, e)))


def min_form(g: Graph, cell, x: str, state: dict, lengths: str | None):
    """The export form of :class:`~streamrnn.MinGRU` and :class:`~streamrnn.MinLSTM`."""
    gates, hidden = cell._gates, cell.hidden_size
    np_dtype = np.dtype(str(cell.layers[0].weight.dtype).replace("torch.", ""))
    half = g.const(np.array(0.5, np_dtype))
    hs = []
    valid = None
    if lengths is not None:
        steps = g.op("Range", g.const(np.array(0, np.int64)),
                     g.op("Squeeze", g.op("Shape", x, start=0, end=1), g.ints(0)),
                     g.const(np.array(1, np.int64)))
        valid = g.op("Less", g.op("Unsqueeze", steps, g.ints(1)),
                     g.op("Unsqueeze", lengths, g.ints(0)))  # (T, B)
    for layer_index, layer in enumerate(cell.layers):
        z = g.op("MatMul", x, g.const(np.ascontiguousarray(
            layer.weight.detach().cpu().numpy().T)))
        if layer.bias is not None:
            z = g.op("Add", z, g.const(layer.bias.detach().cpu().numpy()))
        if gates == 2:  # MinGRU: d = k
            d, v = g.op("Split", z, g.ints(hidden, hidden), axis=2, n_out=2)
        else:  # MinLSTM: d = softplus(-kf) - softplus(-ki)
            kf, ki, v = g.op("Split", z, g.ints(hidden, hidden, hidden), axis=2, n_out=3)
            d = g.op("Sub", _softplus(g, g.op("Neg", kf)), _softplus(g, g.op("Neg", ki)))
        cand = g.op("Max", g.op("Add", v, half), g.op("Sigmoid", v))
        a = g.op("Sigmoid", g.op("Neg", d))
        b = g.op("Mul", g.op("Sigmoid", d), cand)  # a, b: (T, B, H)
        h0 = g.op("Squeeze", g.op("Slice", state["h"], g.ints(layer_index),
                                  g.ints(layer_index + 1), g.ints(0)), g.ints(0))
        body = g.subgraph(g.fresh("min_body"))
        h = body.input(body.fresh("h"), np_dtype, None)
        a_t = body.input(body.fresh("a"), np_dtype, None)
        b_t = body.input(body.fresh("b"), np_dtype, None)
        new = body.op("Add", body.op("Mul", a_t, h), b_t)
        scanned = [a, b]
        if valid is not None:
            keep = body.input(body.fresh("valid"), np.bool_, None)
            new = body.op("Where", body.op("Unsqueeze", keep, body.ints(1)), new, h)
            scanned.append(valid)
        body.output(body.fresh("h_out"), new, np_dtype, None)
        body.output(body.fresh("y"), new, np_dtype, None)
        last, x = g.op("Scan", h0, *scanned, n_out=2, body=body,
                       num_scan_inputs=len(scanned))
        hs.append(g.op("Unsqueeze", last, g.ints(0)))
    return x, {"h": hs[0] if len(hs) == 1 else g.op("Concat", *hs, axis=0)}


for _name in ("mingru", "minlstm"):
    register_export(_name, min_form)
