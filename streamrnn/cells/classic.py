"""Stateful RNN, LSTM and GRU layers: ``forward(x, state) -> (y, state)``.

Each layer wraps torch's fused ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` (batch first) so
that a chunk of T steps is one fused call. The path is picked per shape, measured on a
2-core CPU (input 40, hidden 128, 1 thread, ``benchmarks/bench_core.py``):

- one step (T == 1) of fewer than 512 streams runs the per-layer cell kernel
  (``torch._VF.lstm_cell`` and kin, what ``nn.LSTMCell`` calls): 24 µs at B = 1,
  against 99 µs for ``nn.LSTM`` with oneDNN on and 44 µs with it off; from B = 512 up
  the fused oneDNN kernel is faster (3.4 ms vs 4.8 ms at B = 1,000);
- one LSTM step of 16 streams or more without autograd runs :func:`._kernels.packed_step`
  instead (one product of ``[x, h, 1]`` with packed weights, gates in place): 125 vs
  138 µs for the cell kernel at B = 100, about the fused kernel's time at B = 1,000, and
  13.7 vs 21.0 ms for it at B = 10,000;
- longer chunks run the fused module with oneDNN on (the default), which wins from
  T = 10 up (136 µs vs 184 µs at B = 1, T = 10; 2x at T = 100).

Both paths compute the same equations; outputs agree to rounding (float64: 1e-12).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..state import State
from ._kernels import CELL_KERNELS, FUSED_FROM_BATCH, fused, one_step, packed_step, packs
from .base import Cell, register, uniform_, zero_state

__all__ = ["RNN", "LSTM", "GRU", "RecurrentLayer"]


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


class RecurrentLayer(Cell):
    """Shared base of :class:`RNN`, :class:`LSTM` and :class:`GRU`: a :class:`Cell` on
    torch's fused kernels.

    Subclasses set ``_mode``; everything else (validation, the per-shape fast path,
    state handling, configuration) lives here.

    Threads
    -------
    As a torch module: ``forward`` keeps nothing between calls (the state goes in and
    comes out), so several threads may run it at once, each with its own state. Changing
    the weights (training, ``load_state_dict``) while another thread runs it is not
    safe.
    """

    _mode = ""
    _torch_class: type[nn.RNNBase] = nn.RNNBase

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        bias: bool = True,
        dropout: float = 0.0,
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
        if not isinstance(dropout, int | float) or not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be a float in [0, 1), got {dropout!r}")
        self.dropout = float(dropout)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed must be an int or None, got {seed!r}")
        self.seed = seed
        # With a seed, torch's own initial draw must not consume the global RNG.
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            self.rnn = self._torch_class(
                input_size,
                hidden_size,
                num_layers,
                bias=bias,
                batch_first=True,
                dropout=self.dropout if num_layers > 1 else 0.0,
                device=device,
                dtype=dtype,
                **self._torch_extra(),
            )
        if seed is not None:
            self.reset_parameters(seed)
        self._kernel = CELL_KERNELS[self._mode]
        self._weights_per_layer = 4 if bias else 2

    def _torch_extra(self) -> dict:
        # Keyword arguments of the wrapped torch module beyond the shared ones.
        return {}

    def reset_parameters(self, seed: int | None = None) -> None:
        """Re-draw the weights as torch does, U(-1/sqrt(H), 1/sqrt(H)), from ``seed``.

        The draw uses a local ``torch.Generator``; the global RNG is not touched when a
        seed is given.
        """
        if seed is None:
            self.rnn.reset_parameters()
            return
        gen = torch.Generator(device="cpu").manual_seed(seed)
        uniform_(self.rnn.parameters(), 1.0 / math.sqrt(self.hidden_size), gen)

    # -- configuration -------------------------------------------------------------
    def config(self) -> dict:
        """The flat keyword configuration; ``type(self)(**config)`` rebuilds the shape."""
        return {
            "type": type(self).__name__,
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "bias": self.bias,
            "dropout": self.dropout,
        }

    @property
    def output_size(self) -> int:
        """Features per output step (H)."""
        return self.hidden_size

    @property
    def has_cell_state(self) -> bool:
        """Whether the state carries ``c`` (LSTM)."""
        return self._mode == "LSTM"

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "type")

    # -- state ---------------------------------------------------------------------
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
        ``h`` (and ``c``): ``(L, B, H)``.
        """
        parts = ("h", "c") if self.has_cell_state else ("h",)
        shape = (self.num_layers, self.hidden_size)
        return zero_state(parts, batch_size, shape, self.rnn.weight_hh_l0, device, dtype)

    @property
    def state_parts(self) -> tuple[str, ...]:
        """``("h", "c")`` for an LSTM, ``("h",)`` otherwise."""
        return ("h", "c") if self.has_cell_state else ("h",)

    # -- forward -------------------------------------------------------------------
    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Run a chunk of T steps for B streams, starting from ``state``.

        Parameters
        ----------
        x : Tensor
            Inputs, batch first.
        state : State or None
            State entering the chunk; ``None`` means zeros.

        Returns
        -------
        y : Tensor
            Top-layer hidden state at every step.
        state : State
            State after the last step (the entering state if T == 0).

        Shape
        -----
        x: ``(B, T, F)`` -> y: ``(B, T, H)``; state: ``(L, B, H)``.
        """
        return self._chunk(x, state, 1)

    def forward_time_first(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """:meth:`forward` with time as the first dimension, as the fused kernel runs.

        A batch-first chunk is transposed to this layout inside the kernel and its output
        transposed back (a copy each way, in forward and backward); a caller that has its
        data time first (an embedding of transposed ids, a per-step readout after) saves
        both. The numbers are those of :meth:`forward`.

        Shape
        -----
        x: ``(T, B, F)`` -> y: ``(T, B, H)``, contiguous for T > 1; state ``(L, B, H)``.

        Examples
        --------
        >>> import torch
        >>> lstm = LSTM(3, 8, seed=0)
        >>> x = torch.randn(2, 6, 3, generator=torch.Generator().manual_seed(0))
        >>> y, _ = lstm.forward_time_first(x.transpose(0, 1))
        >>> torch.equal(y.transpose(0, 1), lstm(x)[0])
        True
        """
        return self._chunk(x, state, 0)

    def _chunk(self, x: Tensor, state: State | None, t: int) -> tuple[Tensor, State]:
        # forward (time on dim t = 1) and forward_time_first (t = 0): check, then pick the
        # kernel path for the shape.
        if x.dim() != 3 or x.shape[2] != self.input_size:
            layout = "(B, T, F)" if t else "(T, B, F)"
            raise ValueError(
                f"x must have shape {layout} with F = {self.input_size}, got {tuple(x.shape)}"
            )
        steps, batch = x.shape[t], x.shape[1 - t]
        if state is None:
            state = self.initial_state(batch, device=x.device, dtype=x.dtype)
        if steps == 1 and packs(self, batch):
            h, state = packed_step(self, x.select(t, 0), state)
            return h.unsqueeze(t), state
        if steps == 1 and batch < FUSED_FROM_BATCH:
            h, state = self._one_step(x.select(t, 0), state)
            return h.unsqueeze(t), state
        if steps == 0:
            shape = (batch, 0, self.hidden_size) if t else (0, batch, self.hidden_size)
            return x.new_zeros(shape), state
        if t == 0:
            return self._fused(x, state)
        y, state = self._fused(x.transpose(0, 1), state)
        return y.transpose(0, 1), state  # what nn.LSTM(batch_first=True) returns too

    # The kernel paths (streamrnn/_kernels.py), as methods.
    _fused = fused
    _one_step = one_step


@register("lstm")
class LSTM(RecurrentLayer):
    """Stateful multi-layer LSTM, batch first, state as a :class:`~streamrnn.State`.

    Parameters
    ----------
    input_size : int
        Features per input step (F).
    hidden_size : int
        Hidden units per layer (H).
    num_layers : int
        Stacked layers (L).
    bias : bool
        Whether the gates have biases.
    dropout : float
        Dropout between layers while training (not after the last layer).
    device, dtype
        Where and in what precision the weights live.
    seed : int or None
        Draw the initial weights from a local generator seeded with this value.

    Shape
    -----
    x: ``(B, T, F)`` -> y: ``(B, T, H)``; state ``h`` and ``c``: ``(L, B, H)``.

    Threads
    -------
    As a torch module: ``forward`` keeps no stream's state between calls (the state goes
    in and comes out), so several threads may run it at once, each with its own state;
    one step of many streams keeps work buffers per thread and a packed copy of the
    weights, re-made when they change. Changing the weights (training,
    ``load_state_dict``) while another thread runs it is not safe.

    Examples
    --------
    >>> import torch
    >>> lstm = LSTM(3, 8, num_layers=2, seed=0)
    >>> x = torch.randn(2, 10, 3, generator=torch.Generator().manual_seed(0))
    >>> y, s = lstm(x)
    >>> y.shape, s.h.shape, s.c.shape
    (torch.Size([2, 10, 8]), torch.Size([2, 2, 8]), torch.Size([2, 2, 8]))
    >>> y1, s1 = lstm(x[:, :4])
    >>> y2, s2 = lstm(x[:, 4:], s1)
    >>> torch.allclose(torch.cat([y1, y2], 1), y, atol=1e-6)
    True
    """

    _mode = "LSTM"
    _torch_class = nn.LSTM


@register("gru")
class GRU(RecurrentLayer):
    """Stateful multi-layer GRU, batch first, state as a :class:`~streamrnn.State`.

    Parameters are those of :class:`LSTM`; the state has ``c = None``.

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
    >>> import torch
    >>> gru = GRU(3, 8, seed=0)
    >>> y, s = gru(torch.zeros(1, 5, 3))
    >>> y.shape, s.h.shape, s.c is None
    (torch.Size([1, 5, 8]), torch.Size([1, 1, 8]), True)
    """

    _mode = "GRU"
    _torch_class = nn.GRU


@register("rnn")
class RNN(RecurrentLayer):
    """Stateful multi-layer Elman RNN, batch first, state as a :class:`~streamrnn.State`.

    Parameters are those of :class:`LSTM`, plus ``nonlinearity`` ("tanh" or "relu").

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
    >>> import torch
    >>> rnn = RNN(3, 8, nonlinearity="relu", seed=0)
    >>> y, s = rnn(torch.ones(4, 2, 3))
    >>> bool((y >= 0).all()), s.h.shape
    (True, torch.Size([1, 4, 8]))
    """

    _torch_class = nn.RNN

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        nonlinearity: str = "tanh",
        bias: bool = True,
        dropout: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        seed: int | None = None,
    ) -> None:
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self._mode = "RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU"
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias=bias,
            dropout=dropout,
            device=device,
            dtype=dtype,
            seed=seed,
        )

    @property
    def nonlinearity(self) -> str:
        """The activation, "tanh" or "relu"."""
        return "tanh" if self._mode == "RNN_TANH" else "relu"

    def _torch_extra(self) -> dict:
        return {"nonlinearity": self.nonlinearity}

    def config(self) -> dict:
        return {**super().config(), "nonlinearity": self.nonlinearity}
