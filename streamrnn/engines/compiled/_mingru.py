"""The compiled form of :class:`streamrnn.MinGRU` (private; inference only).

A MinGRU step reads no hidden state in its gates: ``z = W x + b`` holds ``[k; v]`` and
``h' = sigmoid(-k) * h + sigmoid(k) * g(v)`` with the paper's ``g`` (``v + 1/2`` for
``v >= 0``, ``sigmoid(v)`` below). The engine's drivers compute ``gi = W_ih x + b_ih``
and ``gh = W_hh h``; this form hands them ``W_ih = W``, ``b_ih = b`` and a zero
``W_hh`` (its product is wasted work, still far below torch's per-op cost at one step),
and does the pointwise part. Learning (river's compiled TBPTT) has no form here: a
MinGRU learns on torch. Parity with the cell's own step: tests/cells/test_cells_compiled.py.
"""

from __future__ import annotations

import math

import torch

from ._jit import helper, typed
from .forms import CompiledForm, register_compiled

__all__ = ["MINGRU_FORM", "mingru_step", "mingru_weights"]


@helper
def mingru_step(gi, gh, s, out, act, bits):  # noqa: ARG001 - the form's signature
    hid = s.shape[1]
    one, half = typed(gi, 1.0), typed(gi, 0.5)
    h, h_out = s[0], out[0]
    for u in range(hid):
        k = gi[u]
        v = gi[hid + u]
        keep = one / (one + math.exp(k))  # sigmoid(-k)
        take = one / (one + math.exp(-k))  # sigmoid(k)
        g = v + half if v >= 0 else one / (one + math.exp(-v))
        h_out[u] = keep * h[u] + take * g
        act[u] = h_out[u]


def mingru_weights(cell) -> list[tuple] | None:
    """Each layer's ``(W, zeros, b, None)``; ``None`` for a subclass that overrides the
    forward or the gates (it must not be bypassed)."""
    from ...cells.mingru import MinGRU

    if type(cell) is not MinGRU:
        return None
    layers = []
    for layer in cell.layers:
        w = layer.weight
        zeros = torch.zeros(w.shape[0], cell.hidden_size, dtype=w.dtype, device=w.device)
        layers.append((w, zeros, layer.bias, None))
    return layers


MINGRU_FORM = CompiledForm(2, 1, ("h",), mingru_step, None, mingru_weights)
register_compiled("mingru", MINGRU_FORM)
