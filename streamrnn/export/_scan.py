"""A cell's step looped over a chunk in an ONNX ``Scan``, with padding steps masked."""

from __future__ import annotations

import numpy as np

from ._graph import Graph

__all__ = ["scan_chunk", "where_rows"]


def where_rows(g: Graph, keep: str, new: str, old: str, trailing: int) -> str:
    """``new`` where the stream's flag ``keep`` ``(B,)`` is true, else ``old``; both
    ``(L, B, ...)`` with ``trailing`` dimensions after B."""
    cond = g.op("Reshape", keep, g.ints(1, -1, *([1] * trailing)))
    return g.op("Where", cond, new, old)


def scan_chunk(g: Graph, cell, step, x: str, state: dict, lengths: str | None):
    """Run ``step`` over the steps of ``x`` ``(T, B, F)`` from ``state``; see
    :func:`streamrnn.export.scan_form`."""
    np_dtype = np.dtype(str(cell.initial_state(0, device="cpu").dtype).replace("torch.", ""))
    trailing = {k: len(v) for k, v in cell.state_shapes().items()}
    body = g.subgraph(f"{g.fresh('scan_body')}")
    carried = {k: body.input(body.fresh(f"in_{k}"), np_dtype, None) for k in state}
    x_t = body.input(body.fresh("x_t"), np_dtype, None)
    scanned = [x]
    if lengths is not None:
        valid_t = body.input(body.fresh("valid_t"), np.bool_, None)
        steps = g.op("Range", g.const(np.array(0, np.int64)),
                     g.op("Squeeze", g.op("Shape", x, start=0, end=1), g.ints(0)),
                     g.const(np.array(1, np.int64)))
        valid = g.op("Less", g.op("Unsqueeze", steps, g.ints(1)),
                     g.op("Unsqueeze", lengths, g.ints(0)))  # (T, B)
        scanned.append(valid)
    y_t, new = step(body, cell, x_t, dict(carried))
    for k in state:
        out = new[k]
        if lengths is not None:
            out = where_rows(body, valid_t, out, carried[k], trailing[k])
        body.output(body.fresh(f"out_{k}"), out, np_dtype, None)
    body.output(body.fresh("y_t"), y_t, np_dtype, None)
    outs = g.op("Scan", *[state[k] for k in state], *scanned, n_out=len(state) + 1,
                body=body, num_scan_inputs=len(scanned))
    return outs[-1], dict(zip(state, outs[:-1], strict=True))
