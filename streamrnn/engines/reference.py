"""The torch engine: the reference every other engine is proven against."""

from __future__ import annotations

import torch
from torch import Tensor

from ..state import State

__all__ = ["TorchEngine"]


class TorchEngine:
    """Steps a model through its own ``forward``: torch's fused kernels, autograd on demand.

    It runs any model of the cell protocol, on any device, at any batch size; it is what
    the other engines are proven against (``tests/engines``), and what runs a cell
    without a compiled form, a stream with ``grad=True``, a model off the CPU, and
    batches too big for the compiled engine to win.

    Parameters
    ----------
    model : nn.Module
        ``forward(x, state) -> (y, state)``.
    grad : bool
        Keep the autograd graph of the outputs (the returned state is detached).
    inference : bool
        Without ``grad``: run under ``torch.inference_mode`` (``True``) or
        ``torch.no_grad`` (``False``: the results may later be written in place).

    Shape
    -----
    x: ``(B, T, F)`` or ids ``(B, T)`` -> y: ``(B, T, O)``; state parts ``(L, B, ...)``.

    Threads
    -------
    Like the module it runs: ``run`` keeps nothing between calls (the state goes in and
    comes out), so several threads may run it at once, each with its own state. Changing
    the weights (training, ``load_state_dict``) while another thread runs is not safe.

    Examples
    --------
    >>> import torch, streamrnn
    >>> model = streamrnn.GRU(2, 3, seed=0)
    >>> engine = TorchEngine(model)
    >>> y, state = engine.run(torch.ones(1, 4, 2), model.initial_state(1))
    >>> y.shape, state.h.shape, y.requires_grad
    (torch.Size([1, 4, 3]), torch.Size([1, 1, 3]), False)
    """

    name = "torch"

    def __init__(self, model, *, grad: bool = False, inference: bool = True) -> None:
        self.model = model
        self.grad = grad
        self._mode = torch.inference_mode if inference else torch.no_grad

    def run(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """One chunk for B streams from ``state``; returns the outputs and the new state."""
        if self.grad:
            y, new = self.model(x, state)
            return y, new.detach()
        with self._mode():
            return self.model(x, state)
