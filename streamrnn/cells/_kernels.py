"""The two kernel paths of the recurrent layers (private).

- :func:`fused`: a chunk of T steps, time first, through torch's fused multi-step kernel
  (``torch._VF.lstm`` and kin, what ``nn.LSTM`` calls; oneDNN on CPU), without
  ``nn.LSTM.forward``'s argument checks and batch-first transposes;
- :func:`one_step`: one step through the per-layer cell kernel (``torch._VF.lstm_cell``
  and kin, what ``nn.LSTMCell`` calls), faster than the fused kernel for one step of
  fewer than :data:`FUSED_FROM_BATCH` streams (see :mod:`streamrnn.cells`);
  :func:`cell_step`: the same for one layer on bare ``(B, H)`` tensors.

Both take a :class:`~streamrnn.cells.RecurrentLayer` and use its ``nn`` module's
flat weights.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import Tensor

from ..state import State

__all__ = ["CELL_KERNELS", "FUSED_FROM_BATCH", "SEQ_KERNELS", "cell_step", "fused", "one_step"]

# The fused multi-step kernels nn.LSTM / nn.GRU / nn.RNN call, taken time first.
SEQ_KERNELS = {
    "LSTM": torch._VF.lstm,
    "GRU": torch._VF.gru,
    "RNN_TANH": torch._VF.rnn_tanh,
    "RNN_RELU": torch._VF.rnn_relu,
}

CELL_KERNELS = {
    "LSTM": torch._VF.lstm_cell,
    "GRU": torch._VF.gru_cell,
    "RNN_TANH": torch._VF.rnn_tanh_cell,
    "RNN_RELU": torch._VF.rnn_relu_cell,
}


# One step of many streams: oneDNN's fused kernel beat the per-layer cell kernel from
# about this batch size in benchmarks/bench_core.py (B = 1,000: 3.4 ms vs 4.8 ms).
FUSED_FROM_BATCH = 512


def fused(layer, x: Tensor, state: State) -> tuple[Tensor, State]:
    """The fused kernel over a time-first chunk: what ``layer.rnn`` runs, minus its
    argument checks (the state was checked by the caller's shapes).

    Shape
    -----
    x: ``(T, B, F)`` -> y: ``(T, B, H)``; state ``(L, B, H)``.
    """
    rnn = layer.rnn
    if not all(map(operator.is_, map(rnn._parameters.get, rnn._flat_weights_names),
                   rnn._flat_weights)):  # replaced since (functional_call, parametrize)
        rnn._init_flat_weights()
    hx = (state.h, state.c) if layer._mode == "LSTM" else state.h
    out = SEQ_KERNELS[layer._mode](x, hx, rnn._flat_weights, rnn.bias, rnn.num_layers,
                                   rnn.dropout, rnn.training, False, False)
    if layer._mode == "LSTM":
        return out[0], State(out[1], out[2])
    return out[0], State(out[1])


def cell_step(rnn, kernel, x: Tensor, h: Tensor, c: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """One step of a single-layer ``nn`` module ``rnn`` through its cell ``kernel``, on
    bare tensors: :func:`one_step` without the layer dimension (what a one-stream loop
    carries; it may keep ``rnn`` and ``kernel``, the weights are read at each call).

    Shape
    -----
    x: ``(B, F)``; h, c: ``(B, H)`` (c None but for an LSTM) -> the new h, c.
    """
    w = rnn._flat_weights
    if c is not None:
        return kernel(x, (h, c), *w)
    return kernel(x, h, *w), None


def one_step(layer, x: Tensor, state: State) -> tuple[Tensor, State]:
    """One step through the per-layer cell kernel: the fast path for T == 1.

    Shape
    -----
    x: ``(B, F)`` -> top-layer output ``(B, H)``; state ``(L, B, H)``.
    """
    if layer.num_layers == 1:  # the common case, without per-layer lists
        h, c = cell_step(layer.rnn, layer._kernel, x, state.h[0],
                         None if state.c is None else state.c[0])
        return h, State(h.unsqueeze(0), None if c is None else c.unsqueeze(0))
    w, n = layer.rnn._flat_weights, layer._weights_per_layer
    kernel = layer._kernel
    hs, cs, inp = [], [], x
    for i in range(layer.num_layers):
        lw = w[i * n : i * n + n]
        b_ih, b_hh = (lw[2], lw[3]) if n == 4 else (None, None)
        if state.c is not None:
            h, c = kernel(inp, (state.h[i], state.c[i]), lw[0], lw[1], b_ih, b_hh)
            cs.append(c)
        else:
            h = kernel(inp, state.h[i], lw[0], lw[1], b_ih, b_hh)
        hs.append(h)
        inp = h
        if layer.dropout and layer.training and i < layer.num_layers - 1:
            inp = F.dropout(inp, layer.dropout, training=True)
    return inp, State(torch.stack(hs), torch.stack(cs) if cs else None)
