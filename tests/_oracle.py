"""Test oracle for the core: a plain NumPy loop of the textbook cell equations.

Independent of torch's kernels on purpose (NumPy float64, one step and one layer at a
time), so that parity tests compare the library with the equations, not with itself.
The equations are those of the torch.nn.LSTM / GRU / RNN documentation:

LSTM (gates stacked i, f, g, o in ``weight_ih`` / ``weight_hh``)::

    i = sigmoid(W_ii x + b_ii + W_hi h + b_hi)
    f = sigmoid(W_if x + b_if + W_hf h + b_hf)
    g = tanh(W_ig x + b_ig + W_hg h + b_hg)
    o = sigmoid(W_io x + b_io + W_ho h + b_ho)
    c' = f * c + i * g
    h' = o * tanh(c')

GRU (gates stacked r, z, n; r multiplies the whole recurrent term of n)::

    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
    z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    h' = (1 - z) * n + z * h

Elman RNN::

    h' = act(W_ih x + b_ih + W_hh h + b_hh),  act = tanh or relu

Also small shared helpers for the ``test_core_*`` files (model factories, weight
copying, state comparison).
"""

from __future__ import annotations

import numpy as np
import torch

import streamrnn

KINDS = ("RNN_TANH", "RNN_RELU", "LSTM", "GRU")

__all__ = [
    "KINDS",
    "copy_weights",
    "make_model",
    "reference_forward",
    "states_equal",
    "torch_module",
    "weights_of",
]


# -- the reference loop ----------------------------------------------------------------
def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-a))


def _lstm_step(x, h, c, w):
    hidden = h.shape[-1]
    gates = x @ w["w_ih"].T + w["b_ih"] + h @ w["w_hh"].T + w["b_hh"]
    i = _sigmoid(gates[:, 0 * hidden : 1 * hidden])
    f = _sigmoid(gates[:, 1 * hidden : 2 * hidden])
    g = np.tanh(gates[:, 2 * hidden : 3 * hidden])
    o = _sigmoid(gates[:, 3 * hidden : 4 * hidden])
    c_new = f * c + i * g
    return o * np.tanh(c_new), c_new


def _gru_step(x, h, w):
    hidden = h.shape[-1]
    gi = x @ w["w_ih"].T + w["b_ih"]
    gh = h @ w["w_hh"].T + w["b_hh"]
    r = _sigmoid(gi[:, :hidden] + gh[:, :hidden])
    z = _sigmoid(gi[:, hidden : 2 * hidden] + gh[:, hidden : 2 * hidden])
    n = np.tanh(gi[:, 2 * hidden :] + r * gh[:, 2 * hidden :])
    return (1.0 - z) * n + z * h


def _rnn_step(x, h, w, act):
    pre = x @ w["w_ih"].T + w["b_ih"] + h @ w["w_hh"].T + w["b_hh"]
    return np.tanh(pre) if act == "tanh" else np.maximum(pre, 0.0)


def reference_forward(kind: str, weights: list[dict], x, h0=None, c0=None):
    """Run the equations step by step, layer by layer.

    Parameters
    ----------
    kind : str
        One of ``KINDS``.
    weights : list of dict
        Per layer ``w_ih, w_hh, b_ih, b_hh`` as float64 arrays (zeros for no bias).
    x : array
        Inputs, batch first.
    h0, c0 : array or None
        Entering state (zeros if None); ``c0`` for LSTM only.

    Shape
    -----
    x: ``(B, T, F)`` -> y: ``(B, T, H)``; h, c: ``(L, B, H)``.
    """
    x = np.asarray(x, dtype=np.float64)
    batch, steps, _ = x.shape
    layers, hidden = len(weights), weights[0]["w_hh"].shape[1]
    h = np.zeros((layers, batch, hidden)) if h0 is None else np.array(h0, dtype=np.float64)
    c = np.zeros((layers, batch, hidden)) if c0 is None else np.array(c0, dtype=np.float64)
    ys = np.zeros((batch, steps, hidden))
    for t in range(steps):
        inp = x[:, t]
        for layer, w in enumerate(weights):
            if kind == "LSTM":
                h[layer], c[layer] = _lstm_step(inp, h[layer], c[layer], w)
            elif kind == "GRU":
                h[layer] = _gru_step(inp, h[layer], w)
            else:
                h[layer] = _rnn_step(inp, h[layer], w, "tanh" if kind == "RNN_TANH" else "relu")
            inp = h[layer]
        ys[:, t] = inp
    return ys, h, (c if kind == "LSTM" else None)


# -- helpers -----------------------------------------------------------------------------
def make_model(kind: str, input_size: int, hidden_size: int, num_layers: int = 1, **kw):
    """A streamrnn layer of ``kind`` (``KINDS``)."""
    if kind == "LSTM":
        return streamrnn.LSTM(input_size, hidden_size, num_layers, **kw)
    if kind == "GRU":
        return streamrnn.GRU(input_size, hidden_size, num_layers, **kw)
    act = "tanh" if kind == "RNN_TANH" else "relu"
    return streamrnn.RNN(input_size, hidden_size, num_layers, nonlinearity=act, **kw)


def torch_module(kind: str, input_size: int, hidden_size: int, num_layers: int = 1, **kw):
    """The torch.nn module of ``kind``, batch first."""
    if kind == "LSTM":
        return torch.nn.LSTM(input_size, hidden_size, num_layers, batch_first=True, **kw)
    if kind == "GRU":
        return torch.nn.GRU(input_size, hidden_size, num_layers, batch_first=True, **kw)
    act = "tanh" if kind == "RNN_TANH" else "relu"
    return torch.nn.RNN(
        input_size, hidden_size, num_layers, nonlinearity=act, batch_first=True, **kw
    )


def copy_weights(src: torch.nn.RNNBase, dst: torch.nn.RNNBase) -> None:
    """Copy every parameter of ``src`` into ``dst`` in place, by name."""
    dst_params = dict(dst.named_parameters())
    with torch.no_grad():
        for name, p in src.named_parameters():
            dst_params[name].copy_(p)


def weights_of(module: torch.nn.RNNBase) -> list[dict]:
    """Per-layer float64 NumPy weights of a torch RNN module, for ``reference_forward``."""
    out = []
    for layer in range(module.num_layers):
        w = {}
        for part in ("w_ih", "w_hh", "b_ih", "b_hh"):
            kind, which = part.split("_")
            name = f"{'weight' if kind == 'w' else 'bias'}_{which}_l{layer}"
            p = getattr(module, name, None)
            if p is None:  # bias=False
                rows = getattr(module, f"weight_{which}_l{layer}").shape[0]
                w[part] = np.zeros(rows)
            else:
                w[part] = p.detach().to(torch.float64).numpy().copy()
        out.append(w)
    return out


def states_equal(a: streamrnn.State, b: streamrnn.State) -> bool:
    """Bitwise equality of two states (both parts)."""
    if (a.c is None) != (b.c is None):
        return False
    return torch.equal(a.h, b.h) and (a.c is None or torch.equal(a.c, b.c))
