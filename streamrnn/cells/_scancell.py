"""ScanCell: the shared stack of layers of MinGRU and MinLSTM (private).

A layer projects its input with one ``nn.Linear`` and runs the gated recurrence
``h_t = sigmoid(-d_t) h_{t-1} + sigmoid(d_t) g(v_t)`` (:func:`._scan.gated_scan`), where
the subclass says how ``d`` and ``v`` come from the projection.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..state import State
from ._scan import gate_terms, gated_scan
from .base import Cell, uniform_, zero_state

__all__ = ["ScanCell"]


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class ScanCell(Cell):
    """A stack of layers whose recurrence ``h_t = sigmoid(-d_t) h_{t-1} + sigmoid(d_t)
    g(v_t)`` has ``d_t``, ``v_t`` functions of the layer's input alone (the minimal RNNs
    of Feng et al. 2024).

    Layer ``l`` projects its input (the chunk, or layer ``l - 1``'s ``h``) with one
    ``nn.Linear`` of ``_gates * H`` outputs; a subclass turns that projection into
    ``(d, v)`` in :meth:`_gate_logits`. A chunk runs every layer by one
    :func:`~._scan.gated_scan`; one step is the recurrence itself, O(1) in the chunk's
    length. The state is ``h``, ``(L, B, H)``. Parameters are those of
    :class:`~streamrnn.MinGRU`.
    """

    _gates = 0

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.input_size = _check_positive_int("input_size", input_size)
        self.hidden_size = _check_positive_int("hidden_size", hidden_size)
        self.num_layers = _check_positive_int("num_layers", num_layers)
        if not isinstance(bias, bool):
            raise ValueError(f"bias must be a bool, got {bias!r}")
        self.bias = bias
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an int or None, got {seed!r}")
        self.seed = seed
        sizes = [input_size] + [hidden_size] * (num_layers - 1)
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            self.layers = nn.ModuleList(
                nn.Linear(f, self._gates * hidden_size, bias=bias, device=device, dtype=dtype)
                for f in sizes
            )
        if seed is not None:
            self.reset_parameters(seed)

    def reset_parameters(self, seed: int | None = None) -> None:
        """Re-draw the weights as ``nn.Linear`` does, U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
        from a local generator seeded with ``seed`` (``None``: torch's global RNG)."""
        if seed is None:
            for layer in self.layers:
                layer.reset_parameters()
            return
        gen = torch.Generator(device="cpu").manual_seed(seed)
        for layer in self.layers:
            uniform_(layer.parameters(), 1.0 / math.sqrt(layer.in_features), gen)

    def config(self) -> dict:
        """The flat keyword configuration; ``type(self)(**config)`` rebuilds the shape."""
        return {**super().config(), "bias": self.bias}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "type")

    def initial_state(
        self,
        batch_size: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> State:
        """The zero state for ``batch_size`` streams.

        Shape
        -----
        ``h``: ``(L, B, H)``.
        """
        shape = (self.num_layers, self.hidden_size)
        return zero_state(("h",), batch_size, shape, self.layers[0].weight, device, dtype)

    @property
    def state_parts(self) -> tuple[str, ...]:
        """``("h",)``."""
        return ("h",)

    def _gate_logits(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``(d, v)`` from one layer's projection ``z`` ``(..., G*H)``: ``d`` the logit of
        how much of the candidate enters, ``v`` the candidate before ``g``."""
        raise NotImplementedError

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Run a chunk of T steps for B streams from ``state`` (``None``: zeros), every
        layer by one parallel scan.

        Shape
        -----
        x: ``(B, T, F)`` -> y: ``(B, T, H)``; state ``h``: ``(L, B, H)``.
        """
        if x.dim() != 3 or x.shape[2] != self.input_size:
            raise ValueError(
                f"x must have shape (B, T, F) with F = {self.input_size}, got {tuple(x.shape)}"
            )
        if state is None:
            state = self.initial_state(x.shape[0], device=x.device, dtype=x.dtype)
        if x.shape[1] == 0:
            return x.new_zeros(x.shape[0], 0, self.hidden_size), state
        if x.shape[1] == 1:  # one step: the O(1) recurrence, no scan machinery
            y, state = self.step(x[:, 0], state)
            return y.unsqueeze(1), state
        last, inp = [], x
        for layer, h0 in zip(self.layers, state.h, strict=True):
            inp = gated_scan(*self._gate_logits(layer(inp)), h0)
            last.append(inp[:, -1])
        return inp, State(h=torch.stack(last))

    def step(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One step for B streams: ``h = a * h + b`` in every layer.

        Shape
        -----
        x: ``(B, F)`` -> y: ``(B, H)``; state ``h``: ``(L, B, H)``.
        """
        if x.dim() != 2 or x.shape[1] != self.input_size:
            raise ValueError(
                f"x must have shape (B, F) with F = {self.input_size}, got {tuple(x.shape)}"
            )
        if state is None:
            state = self.initial_state(x.shape[0], device=x.device, dtype=x.dtype)
        hs, inp = [], x
        for layer, h0 in zip(self.layers, state.h, strict=True):
            a, b = gate_terms(*self._gate_logits(layer(inp)))
            inp = torch.addcmul(b, a, h0)
            hs.append(inp)
        return inp, State(h=torch.stack(hs))
