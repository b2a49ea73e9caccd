"""The diagonal linear recurrence ``h_t = a_t * h_{t-1} + b_t`` over a chunk (private).

:class:`~streamrnn.MinGRU` and :class:`~streamrnn.MinLSTM` (Feng et al. 2024, "Were RNNs
All We Needed?", arXiv:2410.01201) reduce a layer to this recurrence, with ``a_t`` and
``b_t`` computed from the input alone; :class:`ScanCell` is their shared stack of layers.

How a chunk runs
----------------
:func:`linear_scan` is one autograd node per layer and chunk, in linear space, from an
entering state ``h_0`` of any sign; its backward is the same recurrence time-reversed
(``g_t = dL/dh_t + a_{t+1} g_{t+1}``), not autograd through T steps. Inside, one of:

- the work-efficient odd/even parallel scan (Blelloch 1990; the algorithm of
  ``torch._higher_order_ops.associative_scan(combine_mode="generic")``) on the pairs
  ``(a, b)``, ``(a1, b1) . (a2, b2) = (a1 a2, a2 b1 + b2)``: O(log T) rounds of
  vectorised ops, which wins while a step is small (dispatch-bound);
- the T steps one after another, in place: on a CPU core the scan moves about twice
  the memory of the plain recurrence, so from :data:`SCAN_BELOW` elements per step
  (B * H) up the steps are faster.

Measured on this 2-core CPU, one thread, forward + backward of the recurrence alone
(``benchmarks/bench_cells.py --parts scan``):

- the paper's log-space scan (Heinsen 2023: ``cumsum`` + ``logcumsumexp``) is 3-10x
  slower than this on the CPU (``logcumsumexp`` dominates) and loses precision with the
  chunk's length: ``a*_t + logcumsumexp(...)`` cancels two terms of size
  ``|sum log a|``, so in float32 its error against the step-by-step recurrence is ~1e-5
  at T = 35, ~5e-5 at T = 256 and ~1e-3 at T = 4096: it cannot keep chunked == whole ==
  step to 1e-5. Linear space has no such drift (float32 error ~1e-6 at T = 4096);
- ``torch.associative_scan`` (generic mode, eager; a prototype API with autograd only in
  recent torch) is exact but 2-3x slower than the same scan with this custom backward.

The library call stays the reference: the tests compare :func:`linear_scan` (both ways)
with ``associative_scan`` and with a plain loop, values and gradients.
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


# Below this many elements per step (B * H) the odd/even scan runs, at or above it the
# steps run one after another (in place, inside the same autograd node): measured with 1
# thread on a 2-core CPU (``benchmarks/bench_cells.py --parts scan``), forward + backward,
# the scan is 1.3-27x faster below B * H = 2,048 (T = 35 to 512), even at 4,096 and
# 0.7-0.9x above (it moves about twice the memory of the plain recurrence).
SCAN_BELOW = 4096
_BASE = 8  # the recursion's sub-chunks of at most this many steps run step by step


# Both take b as a tensor of their own (they overwrite it).
def _steps(a: Tensor, b: Tensor) -> Tensor:
    # h_t = a_t h_{t-1} + b_t from h_{-1} = 0 (a_0 is not used), step by step, in place.
    for t in range(1, b.shape[1]):
        b[:, t].addcmul_(a[:, t], b[:, t - 1])
    return b


def _odd_even(a: Tensor, b: Tensor) -> Tensor:
    # The same, by the work-efficient scan: pair neighbours (2i, 2i+1), scan the pairs
    # (the prefixes ending at odd steps), then fill in the even steps.
    steps = b.shape[1]
    if steps <= _BASE:
        return _steps(a, b)
    a0, a1 = a[:, 0 : steps - 1 : 2], a[:, 1::2]
    odd = _odd_even(a0 * a1, torch.addcmul(b[:, 1::2], a1, b[:, 0 : steps - 1 : 2]))
    out = torch.empty_like(b)
    out[:, 1::2] = odd
    out[:, 0] = b[:, 0]
    torch.addcmul(b[:, 2::2], a[:, 2::2], odd[:, : (steps - 1) // 2], out=out[:, 2::2])
    return out


_METHODS = {"scan": _odd_even, "steps": _steps}


def _prefix(a: Tensor, b: Tensor, method: str) -> Tensor:
    if method == "auto":
        method = "scan" if b.shape[0] * b.shape[2] < SCAN_BELOW else "steps"
    return _METHODS[method](a, b)


class _LinearScan(torch.autograd.Function):
    @staticmethod
    def forward(a: Tensor, b: Tensor, h0: Tensor, method: str) -> Tensor:
        # Fold the entering state into the first step, then run from zero.
        h = b.clone()
        h[:, 0].addcmul_(a[:, 0], h0)
        return _prefix(a, h, method)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        a, _, h0, ctx.method = inputs
        ctx.save_for_backward(a, h0, output)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        a, h0, h = ctx.saved_tensors
        # g_t = grad_t + a_{t+1} g_{t+1}: the same recurrence, time reversed.
        shifted = torch.cat([a[:, :1], a[:, 1:].flip(1)], 1)  # its first entry is unused
        g = _prefix(shifted, grad.flip(1), ctx.method).flip(1)
        da = g * torch.cat([h0.unsqueeze(1), h[:, :-1]], 1) if ctx.needs_input_grad[0] else None
        dh0 = a[:, 0] * g[:, 0] if ctx.needs_input_grad[2] else None
        return da, g, dh0, None


def linear_scan(a: Tensor, b: Tensor, h0: Tensor, method: str = "auto") -> Tensor:
    """Every ``h_t = a_t * h_{t-1} + b_t`` of a chunk, from ``h0``, as one autograd node.

    Elementwise (diagonal) coefficients; ``h0`` and ``b`` may have any sign. ``method``:
    ``"scan"`` (the odd/even parallel scan), ``"steps"`` (the recurrence step by step,
    in place) or ``"auto"`` (the scan below :data:`SCAN_BELOW` elements per step, where
    it is faster). The backward is the reverse recurrence by the same method. One step
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
    if method not in ("auto", *_METHODS):
        raise ValueError(f"method must be 'auto', 'scan' or 'steps', got {method!r}")
    if a.shape[1] == 1:
        return torch.addcmul(b, a, h0.unsqueeze(1))
    if a.shape[1] == 0:
        return b.clone()
    return _LinearScan.apply(a, b, h0, method)


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
