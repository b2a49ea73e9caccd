"""ConvGRU: a causal convolution over (time, feature) before a GRU, streamed by chunk.

Each step, ``C`` filters of ``kernel_time`` steps x ``kernel_bands`` neighbouring features
look at the standardised input of this step and the ``kernel_time - 1`` before it (causal
in time, zero-padded at the feature edges), a ReLU, then the largest of each ``pool``
adjacent features: on a spectrogram (log-mel bands), a detector that fires wherever on
the frequency axis its pattern sits, so a formant moved by another speaker's vocal tract
still fires it (the streaming CRNN of keyword spotting). The ``C * F / pool`` values feed
a GRU. The state is the GRU's ``h`` and the last ``kernel_time - 1`` standardised steps
(``frames``), so a stream pushed in any chunks gets the outputs of one pass.

Its compiled form runs the front in one compiled loop before the GRU's kernels
(:mod:`streamrnn.engines.compiled._conv`); its export form writes the front as one
``MatMul`` on each step's window (:mod:`streamrnn.export._conv`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .._validate import check_positive_int
from ..state import State
from .base import Cell, register, uniform_
from .classic import GRU

__all__ = ["ConvGRU"]

#: The configuration keys of a ConvGRU beyond a cell's sizes.
CONV_KEYS = ("channels", "kernel_time", "kernel_bands", "pool")


@register("convgru")
class ConvGRU(Cell):
    """Causal conv over (time, feature), max-pool over features, then a GRU.

    Parameters
    ----------
    input_size : int
        Features per step (F): mel bands, say.
    hidden_size : int
        GRU units (H).
    num_layers : int
        Must be 1 (one conv front, one GRU).
    channels : int
        Filters (C).
    kernel_time, kernel_bands : int
        The filters' extent in steps and in neighbouring features (``kernel_bands`` odd).
    pool : int
        Features per max-pool (``input_size`` divisible by it).
    seed : int or None
        Seeds a local generator for the initial weights (torch's defaults' ranges).

    Shape
    -----
    x: ``(B, T, F)`` -> y: ``(B, T, H)``; state ``h``: ``(1, B, H)``,
    ``frames``: ``(1, B, (kernel_time - 1) * F)``.

    Threads
    -------
    As a torch module: ``forward`` keeps nothing between calls; changing the weights while
    another thread runs it is not safe.

    Examples
    --------
    >>> cell = ConvGRU(8, 5, channels=3, seed=0)
    >>> x = torch.randn(2, 7, 8)
    >>> y, s = cell(x)
    >>> y.shape, s.h.shape, s.frames.shape
    (torch.Size([2, 7, 5]), torch.Size([1, 2, 5]), torch.Size([1, 2, 16]))
    >>> y1, s1 = cell(x[:, :3])
    >>> y2, s2 = cell(x[:, 3:], s1)
    >>> bool(torch.allclose(torch.cat([y1, y2], 1), y, atol=1e-6))
    True
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, *,
                 channels: int = 16, kernel_time: int = 3, kernel_bands: int = 5,
                 pool: int = 2, seed: int | None = None) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size),
                            ("channels", channels), ("kernel_time", kernel_time),
                            ("kernel_bands", kernel_bands), ("pool", pool)):
            check_positive_int(name, value)
        if num_layers != 1:
            raise ValueError(f"num_layers must be 1 (one conv front, one GRU), got {num_layers}")
        if kernel_bands % 2 == 0:
            raise ValueError(f"kernel_bands must be odd (centred on a band), got {kernel_bands}")
        if input_size % pool:
            raise ValueError(f"input_size = {input_size} must be a multiple of pool, got {pool}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, 1
        self.channels, self.kernel_time, self.kernel_bands = channels, kernel_time, kernel_bands
        self.pool = pool
        gen = None if seed is None else torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(1, channels, (kernel_time, kernel_bands),
                              padding=(0, kernel_bands // 2))
        uniform_(self.conv.parameters(), 1.0 / math.sqrt(kernel_time * kernel_bands), gen)
        self.gru = GRU(channels * (input_size // pool), hidden_size,
                       seed=None if seed is None else seed + 1)
        # the input's standardisation, part of the model (the recogniser's trainer sets it)
        self.register_buffer("mean", torch.zeros(input_size))
        self.register_buffer("std", torch.ones(input_size))

    def initial_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        dtype = self.mean.dtype if dtype is None else dtype
        h = torch.zeros(1, batch_size, self.hidden_size, device=device, dtype=dtype)
        lead = (self.kernel_time - 1) * self.input_size
        return State(h=h, frames=torch.zeros(1, batch_size, lead, device=device, dtype=dtype))

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        b, t, f = x.shape
        s = self.initial_state(b, device=x.device, dtype=x.dtype) if state is None else state
        if t == 0:
            return x.new_zeros(b, 0, self.hidden_size), s
        past = s.frames[0].reshape(b, self.kernel_time - 1, f)
        full = torch.cat([past, (x - self.mean) / self.std], 1)  # (B, K - 1 + T, F)
        z = torch.relu(self.conv(full.unsqueeze(1)))  # (B, C, T, F)
        z = z.reshape(b, self.channels, t, f // self.pool, self.pool).amax(-1)
        y, g = self.gru(z.permute(0, 2, 1, 3).reshape(b, t, -1), State(h=s.h))
        frames = full[:, full.shape[1] - (self.kernel_time - 1):].reshape(1, b, -1)
        return y, State(h=g.h, frames=frames)

    def config(self) -> dict:
        return {**super().config(), **{k: getattr(self, k) for k in CONV_KEYS}}


