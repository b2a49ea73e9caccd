"""The graph of a model: input, embedding, the cell's export form, readout, outputs.

The graph's interface (what :class:`~streamrnn.export.OnnxModel`, onnxruntime in any
language and the metadata describe):

- inputs ``x`` ``(B, T, F)`` (token ids: int64 ``(B, T)``) and ``state_<part>`` per state
  part, ``(L, B, ...)``;
- outputs ``y`` ``(B, T, O)`` and ``new_state_<part>``;
- B and T dynamic in every input and output; ``T = 0`` is allowed: an ``If`` node then
  returns an empty ``y`` and the entering state (onnxruntime's fused recurrent kernels
  refuse an empty sequence).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..cells.base import cell_name
from ._graph import Graph
from .forms import export_form

__all__ = ["model_graph", "parts_of"]


def parts_of(model) -> tuple[object, nn.Module | None, nn.Module | None]:
    """``(cell, head, embedding)`` of a bare cell or a :class:`~streamrnn.RecurrentModel`."""
    if hasattr(model, "cell") and hasattr(model, "head") and hasattr(model, "embedding"):
        return model.cell, model.head, model.embedding
    return model, None, None


def _linear_weights(head: nn.Module) -> tuple[np.ndarray, np.ndarray | None]:
    linear = getattr(head, "linear", head)
    if not isinstance(linear, nn.Linear) or type(head).forward not in (
            nn.Linear.forward, _readout_forward()):
        raise ValueError(
            f"model.head must be a streamrnn.Readout or an nn.Linear to be exported, got "
            f"{type(head).__name__}"
        )
    w = linear.weight.detach().cpu().numpy()
    b = None if linear.bias is None else linear.bias.detach().cpu().numpy()
    return w, b


def _readout_forward():
    from ..heads import Readout

    return Readout.forward


def _dtype(cell) -> np.dtype:
    return np.dtype(str(cell.initial_state(0, device="cpu").dtype).replace("torch.", ""))


def model_graph(model) -> tuple[Graph, dict]:
    """The graph of ``model`` and the facts its metadata records.

    Raises ``ValueError`` for a cell with no export form (naming it), or a head or
    embedding the graph cannot hold.
    """
    cell, head, embedding = parts_of(model)
    form = export_form(cell)
    if form is None:
        from .forms import registered_exports

        raise ValueError(
            f"cell {type(cell).__name__} (registered name {cell_name(cell)!r}) has no export "
            f"form; cells with one: {list(registered_exports())} (add one with "
            "streamrnn.export.register_export)"
        )
    dtype = _dtype(cell)
    if any(p.dtype != torch.from_numpy(np.zeros(0, dtype)).dtype for p in model.parameters()):
        raise ValueError("model must have all its parameters in one dtype to be exported")
    shapes = cell.state_shapes()
    layers = cell.num_layers
    g = Graph("streamrnn")
    tokens = embedding is not None
    features = 1 if tokens else cell.input_size
    out_size = getattr(model, "output_size", cell.output_size)
    if tokens:
        x = g.input("x", np.int64, ["B", "T"])
    else:
        x = g.input("x", dtype, ["B", "T", features])
    state = {k: g.input(f"state_{k}", dtype, [layers, "B", *shapes[k]]) for k in shapes}

    # T == 0: an empty y and the entering state; else the chunk (an If on T).
    shape = g.op("Shape", x)
    steps = g.op("Gather", shape, g.const(np.array(1, np.int64)), axis=0)
    empty = g.op("Equal", steps, g.const(np.array(0, np.int64)))
    then = g.subgraph("no_steps")
    batch = then.op("Slice", shape, then.ints(0), then.ints(1), then.ints(0))
    y_shape = then.op("Concat", batch, then.ints(0, out_size), axis=0)
    then_y = then.op("ConstantOfShape", y_shape,
                     value=_tensor_attr(np.zeros(1, dtype)))
    then.output(then.fresh("y"), then_y, dtype, None)
    for k in shapes:
        then.output(then.fresh(f"s_{k}"), state[k], dtype, None)

    body = g.subgraph("steps")
    if tokens:
        table = body.const(embedding.weight.detach().cpu().numpy())
        xt = body.op("Gather", table, body.op("Transpose", x, perm=[1, 0]), axis=0)
    else:
        xt = body.op("Transpose", x, perm=[1, 0, 2])  # (T, B, F)
    y, new = form(body, cell, xt, dict(state), None)
    if head is not None:
        w, b = _linear_weights(head)
        y = body.op("MatMul", y, body.const(np.ascontiguousarray(w.T)))
        if b is not None:
            y = body.op("Add", y, body.const(b))
    y = body.op("Transpose", y, perm=[1, 0, 2])  # (B, T, O)
    body.output(body.fresh("y"), y, dtype, None)
    for k in shapes:
        body.output(body.fresh(f"s_{k}"), new[k], dtype, None)

    outs = g.op("If", empty, n_out=1 + len(shapes), then_branch=then, else_branch=body)
    g.output("y", outs[0], dtype, ["B", "T", out_size])
    for k, v in zip(shapes, outs[1:], strict=True):
        g.output(f"new_state_{k}", v, dtype, [layers, "B", *shapes[k]])
    facts = {
        "cell": cell_name(cell),
        "input": "ids" if tokens else "values",
        "input_size": features,
        "output_size": out_size,
        "num_tokens": None if not tokens else int(embedding.num_embeddings),
        "num_layers": layers,
        "state": {k: [layers, "B", *shapes[k]] for k in shapes},
        "dtype": str(dtype),
        "input_dtype": "int64" if tokens else str(dtype),
    }
    return g, facts


def _tensor_attr(value: np.ndarray):
    from onnx import numpy_helper

    return numpy_helper.from_array(value)
