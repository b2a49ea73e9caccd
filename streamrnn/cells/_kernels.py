"""The two kernel paths of the recurrent layers (private).

- :func:`fused`: a chunk of T steps, time first, through torch's fused multi-step kernel
  (``torch._VF.lstm`` and kin, what ``nn.LSTM`` calls; oneDNN on CPU), without
  ``nn.LSTM.forward``'s argument checks and batch-first transposes;
- :func:`one_step`: one step through the per-layer cell kernel (``torch._VF.lstm_cell``
  and kin, what ``nn.LSTMCell`` calls), faster than the fused kernel for one step of
  fewer than :data:`FUSED_FROM_BATCH` streams (see :mod:`streamrnn.cells`);
  :func:`cell_step`: the same for one layer on bare ``(B, H)`` tensors;
- :func:`packed_step`: one LSTM step of many streams without autograd, each layer's two
  products as one over ``[x, h]`` with a packed copy of ``[W_ih | W_hh]`` (re-packed
  when the weights change) and the gates computed in place: 1.1-1.25x
  ``torch._VF.lstm_cell`` from 16 streams up, and faster than the fused kernel at
  10,000 (``benchmarks/bench_core.py``).

Both take a :class:`~streamrnn.cells.RecurrentLayer` and use its ``nn`` module's
flat weights.
"""

from __future__ import annotations

import operator
import threading
import weakref

import torch
import torch.nn.functional as F
from torch import Tensor

from ..state import State

__all__ = ["CELL_KERNELS", "FUSED_FROM_BATCH", "PACKED_FROM_BATCH", "SEQ_KERNELS", "cell_step",
           "fused", "one_step", "packed_step"]

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

# One LSTM step without autograd: packed_step beat the cell kernel from about this batch
# size (benchmarks/bench_core.py; at one stream its extra copy of [x, h] costs more).
PACKED_FROM_BATCH = 16

_PACKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # layer -> (key, weights)
_WORK = threading.local()  # per thread: layer -> (batch, dtype, device), buffers


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


def packs(layer, batch: int) -> bool:
    """Whether :func:`packed_step` runs one step of ``batch`` streams of ``layer``: an LSTM,
    no autograd, no dropout drawn, at least :data:`PACKED_FROM_BATCH` streams, and the
    module's own weights (not replaced by ``functional_call`` or a parametrization)."""
    if (layer._mode != "LSTM" or batch < PACKED_FROM_BATCH or torch.is_grad_enabled()
            or (layer.dropout and layer.training and layer.num_layers > 1)):
        return False
    rnn = layer.rnn
    return all(map(operator.is_, map(rnn._parameters.get, rnn._flat_weights_names),
                   rnn._flat_weights)) and not any(w.is_inference() for w in rnn._flat_weights)


def _packed(layer) -> list[Tensor]:
    # Per layer [W_ih | W_hh | b_ih + b_hh]^T, (F + H + 1, 4H): the bias is the product's
    # last row, met by a column of ones, so no bias is copied into the gates at each step.
    # Gates reordered (i, f, o, g), the candidate's columns times 2 (exact in floating
    # point), so one sigmoid over the whole row gives the three gates and
    # sigmoid(2 g), from which tanh(g) = 2 sigmoid(2 g) - 1. Re-packed when a weight
    # changes (in place: its version; moved or cast: its memory).
    ws = layer.rnn._flat_weights
    key = tuple((id(w), w._version, w.data_ptr()) for w in ws)
    hit = _PACKED.get(layer)
    if hit is not None and hit[0] == key:
        return hit[1]
    n, hid = layer._weights_per_layer, layer.hidden_size
    packed = []
    with torch.no_grad():
        order = torch.cat([torch.arange(2 * hid), torch.arange(3 * hid, 4 * hid),
                           torch.arange(2 * hid, 3 * hid)]).to(ws[0].device)
        for i in range(layer.num_layers):
            w_ih, w_hh, *b = ws[i * n : i * n + n]
            bias = (b[0] + b[1]) if b else w_ih.new_zeros(4 * hid)
            w = torch.cat([w_ih, w_hh, bias[:, None]], 1)[order].t().contiguous()
            w[:, 3 * hid :] *= 2  # the candidate's pre-activation doubled (exact): see below
            packed.append(w)
    _PACKED[layer] = (key, packed)
    return packed


def _workspace(layer, x: Tensor) -> list[tuple]:
    # Per layer, the [x, h, 1] rows and the gates of this batch with their views, kept
    # between steps (per thread: forward may run in several at once) for the last batch
    # size and dtype, so that a step writes into warm memory instead of fresh pages.
    work = getattr(_WORK, "layers", None)
    if work is None:  # this thread's first step (setdefault would build one every call)
        work = _WORK.layers = weakref.WeakKeyDictionary()
    kept = work.get(layer)
    spec = (x.shape[0], x.dtype, x.device)
    if kept is None or kept[0] != spec:
        hid = layer.hidden_size
        with torch.inference_mode(False):  # plain tensors: written in place in any mode
            views = [_buffers(x, layer.input_size if i == 0 else hid, hid)
                     for i in range(layer.num_layers)]
        kept = work[layer] = (spec, views)
    return kept[1]


def _buffers(x: Tensor, n_in: int, hid: int) -> tuple:
    rows = x.shape[0]
    xh = torch.empty((rows, n_in + hid + 1), dtype=x.dtype, device=x.device)
    xh[:, -1] = 1.0
    g = torch.empty((rows, 4 * hid), dtype=x.dtype, device=x.device)  # gates i, f, o, g
    return (xh, xh[:, :n_in], xh[:, n_in:-1], g, g[:, :hid], g[:, hid : 2 * hid],
            g[:, 2 * hid : 3 * hid], g[:, 3 * hid :])


def packed_step(layer, x: Tensor, state: State) -> tuple[Tensor, State]:
    """One step of an LSTM ``layer`` for many streams without autograd (call :func:`packs`
    first): per layer one matrix product of ``[x, h, 1]`` with the packed weights and
    bias, then the gates in place.

    The equations are ``nn.LSTM``'s; the sums run in another order (one product, the two
    biases added first, inside it), and ``tanh(v)`` is computed as ``2 sigmoid(2 v) - 1``
    (torch's CPU ``tanh`` runs ~6x slower than its ``sigmoid`` here; the identity costs
    about one rounding of a value in [-1, 1]), so results agree with :func:`one_step` to
    rounding.

    Shape
    -----
    x: ``(B, F)`` -> top-layer output ``(B, H)`` (a view of the new ``h``); state
    ``(L, B, H)``.
    """
    shape = (layer.num_layers, x.shape[0], layer.hidden_size)
    h_new, c_new = x.new_empty(shape), x.new_empty(shape)
    inp = x
    hs, cs = state.h.unbind(0), state.c.unbind(0)
    for w, (xh, x_part, h_part, g, i, f, o, cand), h, c, h_out, c_out in zip(
            _packed(layer), _workspace(layer, x), hs, cs, h_new.unbind(0), c_new.unbind(0),
            strict=True):
        x_part.copy_(inp)
        h_part.copy_(h)
        torch.mm(xh, w, out=g)
        g.sigmoid_()  # i, f, o and sigmoid(2 g): cand
        # c' = f c + i tanh(g) = f c + 2 i cand - i; h' = o tanh(c') = o (2 sigmoid(2 c') - 1)
        torch.mul(f, c, out=c_out).addcmul_(i, cand, value=2.0).sub_(i)
        inp = torch.mul(c_out, 2.0, out=h_out).sigmoid_().mul_(2.0).sub_(1.0).mul_(o)
    return inp, State(h_new, c_new)
