"""minGRU: the minimal GRU of Feng et al. 2024, trained by parallel scan, streamed by step.

Leo Feng, Frederick Tung, Mohamed Osama Ahmed, Yoshua Bengio, Hossein Hajimirsadeghi,
"Were RNNs All We Needed?", 2024, arXiv:2410.01201 (Section 3.1 and Appendix B.3).
Written from the paper's equations; lucidrains/minGRU-pytorch was read for comparison
(its parallel and sequential outputs disagree from a non-zero state, its issue #9; here
the entering state is folded into the scan's first step, any sign, so they agree).
"""

from __future__ import annotations

from torch import Tensor

from ._scancell import ScanCell
from .base import register

__all__ = ["MinGRU"]


@register("mingru")
class MinGRU(ScanCell):
    """Stateful multi-layer minGRU: gates from the input alone, a chunk by parallel scan.

    Each layer (Feng et al. 2024, Appendix B.3, the formulation of their log-space
    version, computed in linear space)::

        z_t  = sigmoid(W_z x_t + b_z)
        h~_t = g(W_h x_t + b_h)          g(v) = v + 0.5 if v >= 0 else sigmoid(v)
        h_t  = (1 - z_t) * h_{t-1} + z_t * h~_t

    Neither gate sees ``h_{t-1}``, so a chunk of T steps is one linear recurrence per
    layer, run by a parallel scan from the entering state; one step costs the same
    whatever came before. Layer ``l > 0`` takes layer ``l - 1``'s ``h`` as input. One
    ``nn.Linear`` per layer (``layers[l]``) holds ``[W_z; W_h]``: ``2 H (F + 1)``
    parameters (``2 H F`` without bias).

    Parameters
    ----------
    input_size : int
        Features per input step (F).
    hidden_size : int
        Hidden units per layer (H).
    num_layers : int
        Stacked layers (L).
    bias : bool
        Whether the projections have biases.
    device, dtype
        Where and in what precision the weights live.
    seed : int or None
        Draw the initial weights (U(-1/sqrt(fan_in), 1/sqrt(fan_in)), as ``nn.Linear``)
        from a local generator seeded with this value; ``None`` uses torch's global RNG.

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
    >>> cell = streamrnn.MinGRU(3, 8, num_layers=2, seed=0)
    >>> x = torch.randn(2, 10, 3, generator=torch.Generator().manual_seed(0))
    >>> y, s = cell(x)
    >>> y.shape, s.parts, s.h.shape, sum(p.numel() for p in cell.parameters())
    (torch.Size([2, 10, 8]), ('h',), torch.Size([2, 2, 8]), 208)
    >>> y1, s1 = cell(x[:, :4])                         # chunked == whole
    >>> y2, s2 = cell(x[:, 4:], s1)
    >>> torch.allclose(torch.cat([y1, y2], 1), y, atol=1e-6)
    True
    >>> h = s1                                          # == step by step
    >>> for t in range(4, 10):
    ...     yt, h = cell.step(x[:, t], h)
    >>> torch.allclose(yt, y[:, -1], atol=1e-6), torch.allclose(h.h, s.h, atol=1e-6)
    (True, True)
    >>> streamrnn.cells.cell_class("mingru") is streamrnn.MinGRU
    True
    """

    _gates = 2

    def _gate_logits(self, z: Tensor) -> tuple[Tensor, Tensor]:
        # z = sigmoid(k): 1 - z = sigmoid(-k), so d = k.
        k, v = z.chunk(2, dim=-1)
        return k, v
