"""Oracle for the minimal RNNs: the paper's sequential equations as a plain NumPy loop.

Feng et al. 2024 ("Were RNNs All We Needed?", arXiv:2410.01201), Appendix B.3, written
out step by step in float64 and independent of the library's scan and gate formulas
(minLSTM's gates are normalised by the plain ratio f / (f + i) here)::

    minGRU:  z = sigmoid(W_z x + b_z),  h~ = g(W_h x + b_h),  h = (1 - z) h + z h~
    minLSTM: f = sigmoid(W_f x + b_f),  i = sigmoid(W_i x + b_i),  h~ = g(W_h x + b_h),
             h = f / (f + i) h + i / (f + i) h~
    g(v) = v + 0.5 (v >= 0), sigmoid(v) (v < 0)

Also the paper's own parallel form (its log-space pseudo-code, Appendix B.3.1 with the
Heinsen scan), valid for a positive entering state, as a second reference.
"""

from __future__ import annotations

import numpy as np
import torch


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


def _g(v):
    return np.where(v >= 0, v + 0.5, _sigmoid(v))


def weights(cell) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each layer's (W, b) as float64 arrays (b zeros without bias)."""
    out = []
    for layer in cell.layers:
        w = layer.weight.detach().double().numpy()
        b = (layer.bias.detach().double().numpy() if layer.bias is not None
             else np.zeros(w.shape[0]))
        out.append((w, b))
    return out


def reference(kind: str, cell, x: torch.Tensor, h0: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Outputs ``(B, T, H)`` and final state ``(L, B, H)`` of the sequential equations."""
    xs = x.detach().double().numpy()
    hs = [h.detach().double().numpy().copy() for h in h0]
    hidden = cell.hidden_size
    ys = []
    for t in range(xs.shape[1]):
        inp = xs[:, t]
        for layer, (w, b) in enumerate(weights(cell)):
            proj = inp @ w.T + b
            if kind == "mingru":
                z = _sigmoid(proj[:, :hidden])
                hs[layer] = (1 - z) * hs[layer] + z * _g(proj[:, hidden:])
            else:
                f = _sigmoid(proj[:, :hidden])
                i = _sigmoid(proj[:, hidden:2 * hidden])
                hs[layer] = f / (f + i) * hs[layer] + i / (f + i) * _g(proj[:, 2 * hidden:])
            inp = hs[layer]
        ys.append(inp)
    y = np.stack(ys, 1) if ys else np.zeros((xs.shape[0], 0, hidden))
    return y, np.stack(hs)


def paper_parallel_mingru(cell, x: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """The paper's log-space parallel minGRU (one layer), h0 > 0: ``log_h0 = log(h0)``
    prepended to the values, Heinsen's scan (cumsum + logcumsumexp)."""
    w, b = (torch.tensor(v) for v in weights(cell)[0])
    proj = x.double() @ w.T + b
    k, v = proj.chunk(2, dim=-1)
    log_z = -torch.nn.functional.softplus(-k)
    log_coeffs = -torch.nn.functional.softplus(k)
    log_tilde_h = torch.where(v >= 0, (torch.relu(v) + 0.5).log(),
                              -torch.nn.functional.softplus(-v))
    log_values = torch.cat([h0.double().log().unsqueeze(1), log_z + log_tilde_h], 1)
    a_star = torch.nn.functional.pad(log_coeffs.cumsum(1), (0, 0, 1, 0))
    log_h = a_star + (log_values - a_star).logcumsumexp(1)
    return log_h.exp()[:, 1:]
