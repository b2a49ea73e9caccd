"""A cell written the way a user outside the package would write one.

It subclasses :class:`streamrnn.cells.Cell`, is not registered, and keeps a state of two
parts with different trailing shapes: ``h`` ``(L, B, H)`` and a small memory ``m``
``(L, B, 2)`` (a decaying summary of ``h``, fed back into the next step). Nothing in the
library knows these names; every suite that runs it proves the library handles state
parts generically.
"""

from __future__ import annotations

import torch
from torch import nn

import streamrnn


class MemoryCell(streamrnn.cells.Cell):
    """``h_t = tanh([x_t, h_{t-1}, m_{t-1}] W)``, ``m_t = 0.9 m_{t-1} + 0.1 tanh(h_t U)``,
    stacked over ``num_layers`` layers (layer l's input is layer l-1's ``h``)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, *,
                 seed: int = 0, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        gen = torch.Generator().manual_seed(seed)
        sizes = [input_size] + [hidden_size] * (num_layers - 1)
        self.w = nn.ParameterList(
            nn.Parameter(0.4 * torch.randn(f + hidden_size + 2, hidden_size, generator=gen,
                                           dtype=dtype))
            for f in sizes
        )
        self.u = nn.ParameterList(
            nn.Parameter(0.4 * torch.randn(hidden_size, 2, generator=gen, dtype=dtype))
            for _ in sizes
        )

    def initial_state(self, batch_size, *, device=None, dtype=None) -> streamrnn.State:
        dtype = self.w[0].dtype if dtype is None else dtype
        device = self.w[0].device if device is None else device
        shape = (self.num_layers, batch_size)
        return streamrnn.State(
            h=torch.zeros(*shape, self.hidden_size, device=device, dtype=dtype),
            m=torch.zeros(*shape, 2, device=device, dtype=dtype),
        )

    def forward(self, x, state=None):
        if state is None:
            state = self.initial_state(x.shape[0], device=x.device, dtype=x.dtype)
        hs, ms = list(state.h.unbind(0)), list(state.m.unbind(0))
        ys = []
        for t in range(x.shape[1]):
            inp = x[:, t]
            for layer in range(self.num_layers):
                z = torch.cat([inp, hs[layer], ms[layer]], dim=1) @ self.w[layer]
                hs[layer] = torch.tanh(z)
                ms[layer] = 0.9 * ms[layer] + 0.1 * torch.tanh(hs[layer] @ self.u[layer])
                inp = hs[layer]
            ys.append(inp)
        y = torch.stack(ys, 1) if ys else x.new_zeros(x.shape[0], 0, self.hidden_size)
        return y, streamrnn.State(h=torch.stack(hs), m=torch.stack(ms))
