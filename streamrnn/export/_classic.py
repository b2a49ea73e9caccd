"""Export forms of the built-in cells: RNN, LSTM and GRU, 1..N layers.

float32: one ONNX ``RNN`` / ``LSTM`` / ``GRU`` node per layer (onnxruntime's fused
kernels), with torch's gate blocks reordered to ONNX's (LSTM ``i f g o`` -> ``i o f c``,
GRU ``r z n`` -> ``z r h`` with ``linear_before_reset=1``, which is torch's GRU).
float64: the same equations step by step in a ``Scan`` (:func:`.forms.scan_form`),
because onnxruntime's fused kernels run float32 only ("LSTM operator does not support
double yet"; no double RNN kernel at all).
"""

from __future__ import annotations

import numpy as np

from ..cells.classic import GRU, LSTM, RNN
from ..engines.compiled.forms import classic_weights
from ._graph import Graph
from .forms import register_export, scan_form

__all__ = ["classic_form", "classic_step"]

_ORDER = {"LSTM": [0, 3, 1, 2], "GRU": [1, 0, 2], "RNN": [0]}  # torch blocks in ONNX order


def _kind(cell) -> str:
    for cls, kind in ((LSTM, "LSTM"), (GRU, "GRU"), (RNN, "RNN")):
        if isinstance(cell, cls):
            return kind
    raise ValueError(f"cell must be a streamrnn RNN, LSTM or GRU, got {type(cell).__name__}")


def _weights(cell) -> list[tuple[np.ndarray, ...]]:
    """Per layer ``(w_ih, w_hh, b_ih, b_hh)`` as numpy (zero biases for ``bias=False``)."""
    layers = classic_weights(cell)
    if layers is None:
        raise ValueError(
            f"{type(cell).__name__} cannot be exported as a built-in cell: it overrides "
            "the forward of streamrnn's RNN / LSTM / GRU, or wraps a bidirectional or "
            "projected torch module"
        )
    out = []
    for w_ih, w_hh, b_ih, b_hh in layers:
        w_ih, w_hh = (w.detach().cpu().numpy() for w in (w_ih, w_hh))
        zeros = np.zeros(w_hh.shape[0], dtype=w_hh.dtype)
        b_ih, b_hh = (zeros if b is None else b.detach().cpu().numpy() for b in (b_ih, b_hh))
        out.append((w_ih, w_hh, b_ih, b_hh))
    return out


def _blocks(w: np.ndarray, order: list[int]) -> np.ndarray:
    return np.concatenate([np.split(w, len(order))[i] for i in order])


def _layer_state(g: Graph, part: str, layer: int, layers: int) -> str:
    """Layer ``layer``'s ``(1, B, H)`` slice of a state part ``(L, B, H)`` (the part
    itself when ``L`` is 1: its input is declared with that length)."""
    if layers == 1:
        return part
    return g.op("Slice", part, g.ints(layer), g.ints(layer + 1), g.ints(0))


def classic_form(g: Graph, cell, x: str, state: dict, lengths: str | None):
    """The export form of the built-in cells (see the module docstring)."""
    dtype = cell.rnn.weight_hh_l0.dtype
    if dtype == _float64:
        return _scan(g, cell, x, state, lengths)
    kind, hidden = _kind(cell), cell.hidden_size
    order = _ORDER[kind]
    seq = "" if lengths is None else g.op("Cast", lengths, to=6)  # int32, as ONNX wants
    attrs = {"hidden_size": hidden}
    if kind == "GRU":
        attrs["linear_before_reset"] = 1
    if kind == "RNN":
        attrs["activations"] = ["Tanh" if cell.nonlinearity == "tanh" else "Relu"]
    hs, cs, layers = [], [], cell.num_layers
    for layer, (w_ih, w_hh, b_ih, b_hh) in enumerate(_weights(cell)):
        w = g.const(_blocks(w_ih, order)[None])
        r = g.const(_blocks(w_hh, order)[None])
        b = g.const(np.concatenate([_blocks(b_ih, order), _blocks(b_hh, order)])[None])
        ins = [x, w, r, b, seq, _layer_state(g, state["h"], layer, layers)]
        if kind == "LSTM":
            ins.append(_layer_state(g, state["c"], layer, layers))
            y, h, c = g.op("LSTM", *ins, n_out=3, **attrs)
            cs.append(c)
        else:
            y, h = g.op(kind, *ins, n_out=2, **attrs)
        hs.append(h)
        x = g.op("Squeeze", y, g.ints(1))  # (T, 1, B, H) -> (T, B, H)
    new = {"h": hs[0] if len(hs) == 1 else g.op("Concat", *hs, axis=0)}
    if kind == "LSTM":
        new["c"] = cs[0] if len(cs) == 1 else g.op("Concat", *cs, axis=0)
    return x, new


def classic_step(g: Graph, cell, x: str, state: dict):
    """One step of the built-in cells' equations (torch's documentation), all layers.

    Shape
    -----
    x ``(B, F)`` -> y ``(B, H)``; state parts ``(L, B, H)``.
    """
    kind, hidden = _kind(cell), cell.hidden_size
    hs, cs = [], []
    for layer, (w_ih, w_hh, b_ih, b_hh) in enumerate(_weights(cell)):
        h = g.op("Gather", state["h"], g.ints(layer), axis=0)  # (1, B, H)
        h = g.op("Squeeze", h, g.ints(0))
        gi = g.op("Add", g.op("MatMul", x, g.const(w_ih.T)), g.const(b_ih))
        gh = g.op("Add", g.op("MatMul", h, g.const(w_hh.T)), g.const(b_hh))
        if kind == "LSTM":
            c = g.op("Squeeze", g.op("Gather", state["c"], g.ints(layer), axis=0), g.ints(0))
            i, f, gg, o = g.op("Split", g.op("Add", gi, gh), g.ints(*[hidden] * 4), axis=1,
                               n_out=4)
            c = g.op("Add", g.op("Mul", g.op("Sigmoid", f), c),
                     g.op("Mul", g.op("Sigmoid", i), g.op("Tanh", gg)))
            h = g.op("Mul", g.op("Sigmoid", o), g.op("Tanh", c))
            cs.append(g.op("Unsqueeze", c, g.ints(0)))
        elif kind == "GRU":
            ir, iz, i_n = g.op("Split", gi, g.ints(*[hidden] * 3), axis=1, n_out=3)
            hr, hz, h_n = g.op("Split", gh, g.ints(*[hidden] * 3), axis=1, n_out=3)
            r = g.op("Sigmoid", g.op("Add", ir, hr))
            z = g.op("Sigmoid", g.op("Add", iz, hz))
            n = g.op("Tanh", g.op("Add", i_n, g.op("Mul", r, h_n)))
            h = g.op("Add", n, g.op("Mul", z, g.op("Sub", h, n)))  # (1 - z) n + z h
        else:
            act = "Tanh" if cell.nonlinearity == "tanh" else "Relu"
            h = g.op(act, g.op("Add", gi, gh))
        hs.append(g.op("Unsqueeze", h, g.ints(0)))
        x = h
    new = {"h": hs[0] if len(hs) == 1 else g.op("Concat", *hs, axis=0)}
    if kind == "LSTM":
        new["c"] = cs[0] if len(cs) == 1 else g.op("Concat", *cs, axis=0)
    return x, new


_scan = scan_form(classic_step)
_float64 = __import__("torch").float64

for _name in ("rnn", "lstm", "gru"):
    register_export(_name, classic_form)
