"""A numpy inference kernel for one live stream of an LSTM + linear readout (private).

The recogniser runs the compiled kernel of :mod:`._speech_fast` (~2x faster) when numba
is installed; this one is its fallback, and :func:`lstm_parts` says which models both take.

Why: a 20 ms push carries 2 frames, and at batch 1 the cost of a step is the dispatch of
small ops, not arithmetic. Measured on the project's 2-core machine (1 thread, 2 x 128
LSTM, input 40): ``Stream.push`` of a 2-frame chunk ~290 us (the fused module), one-frame
pushes ~225 us (``torch._VF.lstm_cell``: ~25-37 us per layer step); this kernel ~60-100 us.
It computes the same equations as ``torch.nn.LSTM`` in float32 (parity-tested to 1e-5):

    i, f, o = sigmoid(.), g = tanh(.),  c' = f * c + i * g,  h' = o * tanh(c')

with ``sigmoid(z) = (tanh(z / 2) + 1) / 2``, so one ``tanh`` over the 4H gate block
serves every gate: the rows of i, f, o are pre-scaled by 1/2 and reordered to i, f, o, g.
Inputs are projected for all T steps of a chunk in one matrix product per layer.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["LSTMKernel", "lstm_parts"]


def lstm_parts(model):
    """(lstm layer, head or None) if ``model`` is a float32 streamrnn LSTM (+ linear head)."""
    from streamrnn.cells import LSTM
    from streamrnn.heads import Readout, RecurrentModel

    cell, head = model, None
    if isinstance(model, RecurrentModel):
        if model.num_tokens is not None:
            return None
        cell, head = model.cell, model.head
    if not isinstance(cell, LSTM) or cell.rnn.weight_hh_l0.dtype != torch.float32:
        return None
    if getattr(cell.rnn, "proj_size", 0):
        return None
    if head is None or isinstance(head, nn.Linear):
        return cell, head
    if isinstance(head, Readout):
        return cell, head.linear
    return None


class LSTMKernel:
    """Frozen float32 copy of an LSTM (+ linear readout) stepping one stream in numpy.

    Shape
    -----
    ``(T, F)`` float32 -> ``(T, O)`` float32; state ``(L, H)`` for ``h`` and ``c``.
    """

    @staticmethod
    def supports(model) -> bool:
        """Whether ``model`` is an LSTM layer or a RecurrentModel(LSTM, linear head)."""
        return lstm_parts(model) is not None

    def __init__(self, model) -> None:
        parts = lstm_parts(model)
        if parts is None:
            raise ValueError(
                f"model must be a float32 streamrnn LSTM or RecurrentModel(LSTM, Readout), "
                f"got {type(model).__name__}"
            )
        cell, head = parts
        hid = cell.hidden_size
        order = np.r_[0:hid, hid : 2 * hid, 3 * hid : 4 * hid, 2 * hid : 3 * hid]  # i f o g
        scale = np.ones(4 * hid, dtype=np.float32)
        scale[: 3 * hid] = 0.5
        self.w_ih, self.w_hh, self.bias = [], [], []
        with torch.no_grad():
            for k in range(cell.num_layers):
                w_ih = getattr(cell.rnn, f"weight_ih_l{k}").numpy()[order] * scale[:, None]
                w_hh = getattr(cell.rnn, f"weight_hh_l{k}").numpy()[order] * scale[:, None]
                b = np.zeros(4 * hid, dtype=np.float32)
                if cell.bias:
                    b_ih = getattr(cell.rnn, f"bias_ih_l{k}").numpy()
                    b_hh = getattr(cell.rnn, f"bias_hh_l{k}").numpy()
                    b = (b_ih + b_hh)[order] * scale
                self.w_ih.append(np.ascontiguousarray(w_ih.T, dtype=np.float32))  # (in, 4H)
                self.w_hh.append(np.ascontiguousarray(w_hh.T, dtype=np.float32))  # (H, 4H)
                self.bias.append(b.astype(np.float32))
            if head is None:
                self.w_out = self.b_out = None
            else:
                self.w_out = np.ascontiguousarray(head.weight.numpy().T, dtype=np.float32)
                bias = head.bias
                self.b_out = None if bias is None else bias.numpy().astype(np.float32)
        self.hidden_size, self.num_layers = hid, cell.num_layers
        self.input_size = cell.input_size
        self.h = np.zeros((self.num_layers, hid), dtype=np.float32)
        self.c = np.zeros((self.num_layers, hid), dtype=np.float32)
        gates = np.empty(4 * hid, dtype=np.float32)
        self._tmp = np.empty(hid, dtype=np.float32)
        self._half = np.full(3 * hid, 0.5, dtype=np.float32)  # an array: scalars cost 2-3x more
        # Everything a step touches, looked up once: weights, this layer's state rows (views
        # that stay valid: the state is only ever written in place) and the gate slices.
        gate_views = (gates, gates[:hid], gates[hid : 2 * hid], gates[2 * hid : 3 * hid])
        gate_views += (gates[3 * hid :], gates[: 3 * hid])  # g, then i f o together
        self._layers = [
            (self.w_ih[k], self.w_hh[k], self.bias[k], self.h[k], self.c[k], *gate_views)
            for k in range(self.num_layers)
        ]

    def reset(self) -> None:
        """Zero state (in place)."""
        self.h[:] = 0.0
        self.c[:] = 0.0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Run T steps from the carried state; keep the new state."""
        tmp, half, hid = self._tmp, self._half, self.hidden_size
        inp = x
        for w_ih, w_hh, bias, h_state, c, gates, i, f, o, g, ifo in self._layers:
            proj = inp @ w_ih  # (T, 4H): every step's input projection at once
            proj += bias
            out = np.empty((len(inp), hid), dtype=np.float32)
            h = h_state
            for p_t, h_new in zip(proj, out, strict=True):
                np.matmul(h, w_hh, out=gates)
                gates += p_t
                np.tanh(gates, out=gates)
                ifo *= half
                ifo += half  # sigmoid of i, f, o; tanh of g
                c *= f
                np.multiply(i, g, out=tmp)
                c += tmp
                np.tanh(c, out=tmp)
                np.multiply(o, tmp, out=h_new)
                h = h_new
            if len(inp):
                h_state[:] = h
            inp = out
        if self.w_out is None:
            return inp
        y = inp @ self.w_out
        if self.b_out is not None:
            y += self.b_out
        return y
