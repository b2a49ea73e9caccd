"""The diagonal linear recurrence ``h_t = a_t * h_{t-1} + b_t`` by parallel scan (private).

:class:`~streamrnn.MinGRU` and :class:`~streamrnn.MinLSTM` (Feng et al. 2024, "Were RNNs
All We Needed?", arXiv:2410.01201) reduce a layer to this recurrence, with ``a_t`` and
``b_t`` computed from the input alone; :class:`ScanCell` is their shared stack of layers.

How the chunk is scanned
------------------------
:func:`linear_scan` runs the work-efficient odd/even recursion (Blelloch 1990; the
algorithm of ``torch._higher_order_ops.associative_scan(combine_mode="generic")``) on
the pairs ``(a, b)`` with ``(a1, b1) . (a2, b2) = (a1 a2, a2 b1 + b2)``, in linear space,
from the entering state ``h_0`` of any sign; its backward is the reverse scan of the
same recurrence (``g_t = dL/dh_t + a_{t+1} g_{t+1}``), not autograd through the
recursion. Measured on this 2-core CPU, one thread, forward + backward of the scan alone
(``benchmarks/bench_cells.py --scan``):

- the paper's log-space scan (Heinsen 2023: ``cumsum`` + ``logcumsumexp``) is the
  slowest on the CPU (``logcumsumexp`` dominates) and loses precision with the chunk's
  length: ``a*_t + logcumsumexp(...)`` cancels two terms of size ``|sum log a|``, so in
  float32 its error against the step-by-step recurrence is ~1e-5 at T = 35, 1e-4 at
  T = 256 and 3e-3 at T = 4096 -- it cannot keep chunked == whole == step to 1e-5;
- ``torch.associative_scan`` (generic mode, eager; a prototype API with autograd only in
  recent torch) is exact but 2-3x slower than this hand-written scan, whose custom
  backward saves the recursion's graph.

The library call stays the reference: the tests compare :func:`linear_scan` with
``associative_scan`` and with the plain loop, values and gradients.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..state import State
from .base import Cell

__all__ = ["ScanCell", "candidate", "linear_scan"]


def candidate(x: Tensor) -> Tensor:
    """The paper's positive candidate activation ``g`` (Feng et al. 2024, Appendix B.3):
    ``x + 0.5`` for ``x >= 0``, ``sigmoid(x)`` below; continuous, increasing, > 0."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def _prefix(a: Tensor, b: Tensor) -> Tensor:
    # h_t = a_t h_{t-1} + b_t from h_{-1} = 0 (a_0 is not used), time on dim 1: pair
    # neighbours (2i, 2i+1), scan the pairs (the odd prefixes), fill in the even ones.
    steps = a.shape[1]
    if steps < 2:
        return b
    a0, a1 = a[:, 0 : steps - 1 : 2], a[:, 1::2]
    b0, b1 = b[:, 0 : steps - 1 : 2], b[:, 1::2]
    odd = _prefix(a0 * a1, a1 * b0 + b1)  # prefixes ending at 1, 3, 5, ...
    rest = a[:, 2::2] * odd[:, : (steps - 1) // 2] + b[:, 2::2]  # ending at 2, 4, ...
    even = torch.cat([b[:, :1], rest], 1)
    if odd.shape[1] < even.shape[1]:
        odd = torch.cat([odd, odd[:, :1]], 1)  # filler, cut below
    return torch.stack([even, odd], 2).flatten(1, 2)[:, :steps]


def _run(a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
    # Fold the entering state into the first step, then scan from zero.
    first = torch.addcmul(b[:, :1], a[:, :1], h0.unsqueeze(1))
    return _prefix(a, torch.cat([first, b[:, 1:]], 1))


class _LinearScan(torch.autograd.Function):
    @staticmethod
    def forward(a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
        return _run(a, b, h0)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        a, _, h0 = inputs
        ctx.save_for_backward(a, h0, output)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        a, h0, h = ctx.saved_tensors
        # g_t = grad_t + a_{t+1} g_{t+1}: the same recurrence, time reversed.
        shifted = torch.cat([a[:, :1], a[:, 1:].flip(1)], 1)  # its first entry is unused
        g = _prefix(shifted, grad.flip(1)).flip(1)
        da = g * torch.cat([h0.unsqueeze(1), h[:, :-1]], 1) if ctx.needs_input_grad[0] else None
        dh0 = a[:, 0] * g[:, 0] if ctx.needs_input_grad[2] else None
        return da, g, dh0


def linear_scan(a: Tensor, b: Tensor, h0: Tensor) -> Tensor:
    """Every ``h_t = a_t * h_{t-1} + b_t`` of a chunk, from ``h0``, by parallel scan.

    Elementwise (diagonal) coefficients; ``h0`` and ``b`` may have any sign. One step
    (T = 1) is the recurrence itself; T = 0 gives an empty result.

    Shape
    -----
    a, b: ``(B, T, H)``, h0: ``(B, H)`` -> ``(B, T, H)``.

    Examples
    --------
    >>> import torch
    >>> a = torch.tensor([[[0.5], [0.5], [1.0]]])
    >>> b = torch.tensor([[[1.0], [-2.0], [3.0]]])
    >>> linear_scan(a, b, torch.tensor([[-4.0]]))[0, :, 0]  # -1, -2.5, 0.5
    tensor([-1.0000, -2.5000,  0.5000])
    """
    if a.shape[1] == 1:
        return torch.addcmul(b, a, h0.unsqueeze(1))
    if a.shape[1] == 0:
        return b.clone()
    return _LinearScan.apply(a, b, h0)


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class ScanCell(Cell):
    """A stack of layers whose recurrence is ``h_t = a_t * h_{t-1} + b_t`` with ``a_t``,
    ``b_t`` functions of the layer's input alone (the minimal RNNs of Feng et al. 2024).

    Layer ``l`` projects its input (the chunk, or layer ``l - 1``'s ``h``) with one
    ``nn.Linear`` of ``_gates * H`` outputs; a subclass turns that projection into
    ``(a, b)`` in :meth:`_coefficients`. A chunk runs every layer by :func:`linear_scan`;
    one step is the recurrence itself, O(1) in the chunk's length. The state is ``h``,
    ``(L, B, H)``. Parameters are those of :class:`~streamrnn.MinGRU`.
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
        with torch.no_grad():
            for layer in self.layers:
                bound = 1.0 / math.sqrt(layer.in_features)
                for p in layer.parameters():
                    draw = torch.empty(p.shape, dtype=p.dtype)
                    p.copy_(draw.uniform_(-bound, bound, generator=gen))

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
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 0:
            raise ValueError(f"batch_size must be a non-negative int, got {batch_size!r}")
        ref = self.layers[0].weight
        return State(h=torch.zeros(
            self.num_layers, batch_size, self.hidden_size,
            device=ref.device if device is None else device,
            dtype=ref.dtype if dtype is None else dtype,
        ))

    @property
    def state_parts(self) -> tuple[str, ...]:
        """``("h",)``."""
        return ("h",)

    def _coefficients(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``(a, b)`` of the recurrence from one layer's projection ``z``, ``(..., G*H)``."""
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
        last, inp = [], x
        for layer, h0 in zip(self.layers, state.h, strict=True):
            inp = linear_scan(*self._coefficients(layer(inp)), h0)
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
            a, b = self._coefficients(layer(inp))
            inp = torch.addcmul(b, a, h0)
            hs.append(inp)
        return inp, State(h=torch.stack(hs))
