"""minLSTM: the minimal LSTM of Feng et al. 2024, trained by parallel scan, streamed by step.

Leo Feng, Frederick Tung, Mohamed Osama Ahmed, Yoshua Bengio, Hossein Hajimirsadeghi,
"Were RNNs All We Needed?", 2024, arXiv:2410.01201 (Section 3.2 and Appendix B.3).
Written from the paper's equations.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ._scancell import ScanCell
from .base import register

__all__ = ["MinLSTM"]


@register("minlstm")
class MinLSTM(ScanCell):
    """Stateful multi-layer minLSTM: normalised forget / input gates from the input alone.

    Each layer (Feng et al. 2024, Section 3.2, length-independent scaling; the candidate
    as in their log-space version, Appendix B.3)::

        f_t  = sigmoid(W_f x_t + b_f)      i_t = sigmoid(W_i x_t + b_i)
        f'_t = f_t / (f_t + i_t)           i'_t = i_t / (f_t + i_t)
        h~_t = g(W_h x_t + b_h)            g(v) = v + 0.5 if v >= 0 else sigmoid(v)
        h_t  = f'_t * h_{t-1} + i'_t * h~_t

    The state is ``h`` alone (the minimal LSTM has no separate cell state and no output
    gate). ``f'`` and ``i'`` are computed as ``sigmoid(-d)`` and ``sigmoid(d)`` with
    ``d = softplus(-k_f) - softplus(-k_i)``, which is the ratio above without its 0 / 0.
    A chunk is one parallel scan per layer from the entering state; one step is O(1).
    One ``nn.Linear`` per layer (``layers[l]``) holds ``[W_f; W_i; W_h]``:
    ``3 H (F + 1)`` parameters.

    Parameters are those of :class:`~streamrnn.MinGRU`.

    Shape
    -----
    x: ``(B, T, F)`` -> y: ``(B, T, H)``; state ``h``: ``(L, B, H)``.

    Threads
    -------
    As a torch module: ``forward`` keeps nothing between calls (the state goes in and
    comes out), so several threads may run it at once, each with its own state. Changing
    the weights (training, ``load_state_dict``) while another thread runs it is not
    safe.

    Examples
    --------
    >>> import torch, streamrnn
    >>> cell = streamrnn.MinLSTM(3, 8, seed=0)
    >>> x = torch.randn(1, 6, 3, generator=torch.Generator().manual_seed(0))
    >>> h0 = streamrnn.State(h=-torch.ones(1, 1, 8))       # any entering state
    >>> y, s = cell(x, h0)
    >>> h = h0
    >>> for t in range(6):                                 # == step by step
    ...     _, h = cell.step(x[:, t], h)
    >>> torch.allclose(h.h, s.h, atol=1e-6), sum(p.numel() for p in cell.parameters())
    (True, 96)
    """

    _gates = 3

    def _gate_logits(self, z: Tensor) -> tuple[Tensor, Tensor]:
        # f' = f / (f + i) = sigmoid(log f - log i) = sigmoid(-d), i' = sigmoid(d).
        kf, ki, v = z.chunk(3, dim=-1)
        return F.softplus(-kf) - F.softplus(-ki), v  # d = log i - log f
