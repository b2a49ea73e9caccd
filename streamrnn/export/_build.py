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

__all__ = ["add_model", "if_steps", "model_graph", "parts_of"]


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


def _form_of(cell):
    form = export_form(cell)
    if form is None:
        from .forms import registered_exports

        raise ValueError(
            f"cell {type(cell).__name__} (registered name {cell_name(cell)!r}) has no export "
            f"form; cells with one: {list(registered_exports())} (add one with "
            "streamrnn.export.register_export)"
        )
    return form


def add_model(g: Graph, model, xt: str, state: dict,
              lengths: str | None = None) -> tuple[str, dict]:
    """Add ``model``'s nodes for one chunk (T >= 1) to ``g``: embedding, the cell's export
    form, readout. ``lengths``: ``None``, or an int64 ``(B,)`` value in ``[1, T]``; stream
    ``b``'s steps from ``lengths[b]`` on then leave its state alone (their outputs are
    not defined).

    Shape
    -----
    xt: ``(T, B, F)`` (ids ``(T, B)``) -> y ``(T, B, O)``; state ``{part: (L, B, ...)}``.
    """
    cell, head, embedding = parts_of(model)
    form = _form_of(cell)
    if embedding is not None:
        xt = g.op("Gather", g.const(embedding.weight.detach().cpu().numpy()), xt, axis=0)
    y, new = form(g, cell, xt, dict(state), lengths)
    if head is not None:
        w, b = _linear_weights(head)
        y = g.op("MatMul", y, g.const(np.ascontiguousarray(w.T)))
        if b is not None:
            y = g.op("Add", y, g.const(b))
    return y, new


def if_steps(g: Graph, steps: str, empty, chunk, dtypes: list) -> tuple[str, ...]:
    """``chunk(body)`` when the int64 scalar ``steps`` is > 0, else ``empty(then)``: an ONNX
    ``If`` whose branches each return a list of values of ``dtypes`` (onnxruntime's fused
    recurrent kernels refuse an empty sequence)."""
    then, body = g.subgraph("no_steps"), g.subgraph("steps")
    for branch, build in ((then, empty), (body, chunk)):
        for value, dtype in zip(build(branch), dtypes, strict=True):
            branch.output(branch.fresh("out"), value, dtype, None)
    is_empty = g.op("Equal", steps, g.const(np.array(0, np.int64)))
    outs = g.op("If", is_empty, n_out=len(dtypes), then_branch=then, else_branch=body)
    return outs if isinstance(outs, tuple) else (outs,)


def model_graph(model) -> tuple[Graph, dict]:
    """The graph of ``model`` and the facts its metadata records.

    Raises ``ValueError`` for a cell with no export form (naming it), or a head or
    embedding the graph cannot hold.
    """
    cell, head, embedding = parts_of(model)
    _form_of(cell)
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

    def empty(then):
        batch = then.op("Slice", then.op("Shape", x), then.ints(0), then.ints(1), then.ints(0))
        y = then.op("ConstantOfShape", then.op("Concat", batch, then.ints(0, out_size), axis=0),
                    value=_tensor_attr(np.zeros(1, dtype)))
        return [y, *state.values()]

    def chunk(body):
        if tokens:
            xt = body.op("Transpose", x, perm=[1, 0])  # (T, B) ids
        else:
            xt = body.op("Transpose", x, perm=[1, 0, 2])  # (T, B, F)
        y, new = add_model(body, model, xt, state)
        return [body.op("Transpose", y, perm=[1, 0, 2]), *new.values()]  # y (B, T, O)

    steps = g.op("Gather", g.op("Shape", x), g.const(np.array(1, np.int64)), axis=0)
    outs = if_steps(g, steps, empty, chunk, [dtype] * (1 + len(shapes)))
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
