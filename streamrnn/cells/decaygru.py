"""DecayGRU: a GRU whose state decays with the time elapsed between irregular steps.

The hidden-state decay of GRU-D: Zhengping Che, Sanjay Purushotham, Kyunghyun Cho, David
Sontag, Yan Liu, "Recurrent Neural Networks for Multivariate Time Series with Missing
Values", Scientific Reports 8, 6085 (2018), eq. (3)-(5): before each update the state is
multiplied by ``gamma = exp(-max(0, W_gamma * delta + b_gamma))``, ``delta`` the time
since the last observation. Here every step observes all its features (an event of an
irregular sensor), so ``delta`` is one number per step, Δt, and ``W_gamma delta`` is a
learned rate per hidden unit times Δt; GRU-D's input decay towards the empirical mean
(for missing values) is not part of this cell.

How Δt enters: as the **last input column**. The protocol (``forward(x (B, T, F),
state)``) is kept, so Stream, StreamBank, OnlineLearner and checkpoints take the cell
unchanged and a chunk is cut anywhere: Δt travels with its step. A separate time
argument would have had to be threaded through every one of them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..state import State
from .base import Cell, register, uniform_, zero_state

__all__ = ["DecayGRU"]


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


@register("decaygru")
class DecayGRU(Cell):
    """Stateful multi-layer GRU with GRU-D's hidden-state decay by elapsed time Δt.

    Every step, every layer ``l``::

        gamma_t = exp(-relu(w_l * dt_t + b_l))       per hidden unit (GRU-D's gamma_h)
        h_t     = GRU_l(u_t, gamma_t * h_{t-1})      torch.nn.GRU's equations

    where ``dt_t`` is the last column of ``x`` and ``u_t`` the other columns (layer 0) or
    layer ``l - 1``'s ``h_t``. With Δt = 0 and ``b <= 0`` the cell is ``torch.nn.GRU``.
    Δt may be in any unit (choose one where a regular step is about 1, e.g. the sensor's
    nominal period); the rates ``w`` start log-uniform over timescales of 1 to 1,000
    units (``w = 1 / tau``), ``b`` at 0. A gap of many timescales forgets the state.

    Parameters
    ----------
    input_size : int
        Columns per input step, **Δt included** (F features + 1); at least 2.
    hidden_size : int
        Hidden units per layer (H).
    num_layers : int
        Stacked layers (L).
    bias : bool
        Whether the GRU gates have biases (the decay always has ``b``).
    device, dtype
        Where and in what precision the weights live.
    seed : int or None
        Draw the initial weights (the GRU's as torch does, U(-1/sqrt(H), 1/sqrt(H)); the
        decay rates as above) from a local generator seeded with this value; ``None``
        uses torch's global RNG.

    Attributes
    ----------
    rnn : torch.nn.GRU
        The GRU weights (``F = input_size - 1`` inputs), batch first.
    decay_rate, decay_bias : Parameter
        ``w`` and ``b``, ``(L, H)``.

    Shape
    -----
    x: ``(B, T, F + 1)``, Δt last (finite, >= 0) -> y: ``(B, T, H)``; state ``h``:
    ``(L, B, H)``.

    Threads
    -------
    As a torch module: ``forward`` keeps nothing between calls (the state goes in and
    comes out), so several threads may run it at once, each with its own state. Changing
    the weights (training, ``load_state_dict``) while another thread runs it is not
    safe.

    Examples
    --------
    >>> import torch, streamrnn
    >>> cell = streamrnn.DecayGRU(3, 8, seed=0)        # 2 features + Δt
    >>> x = torch.tensor([[[0.5, 1.0, 0.0], [0.5, 1.0, 1.0], [0.5, 1.0, 1.0]]])
    >>> y, s = cell(x)
    >>> y.shape, s.h.shape
    (torch.Size([1, 3, 8]), torch.Size([1, 1, 8]))
    >>> long_gap = x.clone()
    >>> long_gap[0, 2, 2] = 1e6                         # a gap of 10^6 units: state forgotten
    >>> fresh, _ = cell(long_gap[:, 2:].clone(), None)
    >>> torch.allclose(cell(long_gap)[0][:, 2], fresh[:, 0], atol=1e-6)
    True
    >>> cell(torch.tensor([[[0.5, 1.0, -1.0]]]))
    Traceback (most recent call last):
    ...
    ValueError: x[..., -1] (Δt) must be >= 0, got -1.0
    """

    takes_elapsed_time = True  # the last input column is Δt

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
        if input_size < 2:
            raise ValueError(
                f"input_size must count the features and the Δt column (>= 2), got {input_size}"
            )
        self.hidden_size = _check_positive_int("hidden_size", hidden_size)
        self.num_layers = _check_positive_int("num_layers", num_layers)
        if not isinstance(bias, bool):
            raise ValueError(f"bias must be a bool, got {bias!r}")
        self.bias = bias
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an int or None, got {seed!r}")
        self.seed = seed
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            self.rnn = nn.GRU(input_size - 1, hidden_size, num_layers, bias=bias,
                              batch_first=True, device=device, dtype=dtype)
        shape = (num_layers, hidden_size)
        self.decay_rate = nn.Parameter(torch.empty(shape, device=device, dtype=dtype))
        self.decay_bias = nn.Parameter(torch.zeros(shape, device=device, dtype=dtype))
        self.reset_parameters(seed)

    def reset_parameters(self, seed: int | None = None) -> None:
        """Re-draw the weights (see ``seed``) from a local generator, or torch's global RNG
        when ``seed`` is ``None``."""
        gen = None if seed is None else torch.Generator(device="cpu").manual_seed(seed)
        bound = 1.0 / math.sqrt(self.hidden_size)
        uniform_(self.rnn.parameters(), bound, gen)
        with torch.no_grad():
            u = torch.rand(self.decay_rate.shape, generator=gen, dtype=torch.float64)
            self.decay_rate.copy_(torch.exp(-u * math.log(1000.0)))  # 1 / tau, tau in [1, 1e3]
            self.decay_bias.zero_()

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
        return zero_state(("h",), batch_size, shape, self.decay_rate, device, dtype)

    @property
    def state_parts(self) -> tuple[str, ...]:
        """``("h",)``."""
        return ("h",)

    def decay(self, dt: Tensor) -> Tensor:
        """The decay factors ``gamma`` of every layer for elapsed times ``dt``.

        Shape
        -----
        ``(...)`` -> ``(L, ..., H)``.
        """
        rate = self.decay_rate.view(self.num_layers, *([1] * dt.dim()), self.hidden_size)
        bias = self.decay_bias.view_as(rate)
        return torch.exp(-torch.relu(rate * dt.unsqueeze(-1) + bias))

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Run a chunk of T steps for B streams from ``state`` (``None``: zeros).

        Shape
        -----
        x: ``(B, T, F + 1)``, Δt last -> y: ``(B, T, H)``; state ``h``: ``(L, B, H)``.
        """
        if x.dim() != 3 or x.shape[2] != self.input_size:
            raise ValueError(
                f"x must have shape (B, T, F) with F = {self.input_size} (features + Δt), "
                f"got {tuple(x.shape)}"
            )
        dt = x[..., -1]
        # (Not while torch.export / torch.compile traces: a data-dependent branch.)
        if not torch.compiler.is_compiling() and dt.numel() and bool((dt < 0).any()):
            raise ValueError(f"x[..., -1] (Δt) must be >= 0, got {float(dt.min())}")
        if state is None:
            state = self.initial_state(x.shape[0], device=x.device, dtype=x.dtype)
        if x.shape[1] == 0:
            return x.new_zeros(x.shape[0], 0, self.hidden_size), state
        gammas = self.decay(dt)  # (L, B, T, H)
        inp, last = x[..., :-1], []
        for layer in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = self._weights(layer)
            h, gamma, ys = state.h[layer], gammas[layer].unbind(1), []
            for t, u in enumerate(inp.unbind(1)):
                h = torch._VF.gru_cell(u, gamma[t] * h, w_ih, w_hh, b_ih, b_hh)
                ys.append(h)
            inp = torch.stack(ys, 1)
            last.append(h)
        return inp, State(h=torch.stack(last))

    def _weights(self, layer: int) -> tuple[Tensor, ...]:
        rnn = self.rnn
        w = (getattr(rnn, f"weight_ih_l{layer}"), getattr(rnn, f"weight_hh_l{layer}"))
        if not self.bias:
            return (*w, None, None)
        return (*w, getattr(rnn, f"bias_ih_l{layer}"), getattr(rnn, f"bias_hh_l{layer}"))
