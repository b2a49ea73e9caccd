"""Readouts, and the recurrent model that joins a layer and a readout.

A :class:`RecurrentModel` is a recurrent layer (``streamrnn.LSTM`` and kin) followed by a
readout applied at every step, optionally preceded by a token embedding. It follows the
same protocol as the layers (``forward(x, state) -> (y, state)``, ``initial_state``,
``input_size``, ``output_size``, ``config``), so :class:`~streamrnn.Stream`,
:class:`~streamrnn.StreamBank` and :class:`~streamrnn.learn.OnlineLearner` take it as they
take a bare layer. It also reads out the current state on demand (many-to-one):
``readout(state)`` is the prediction the last step made.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ._validate import check_bool, check_choice, check_int, check_positive_int
from .cells.classic import RecurrentLayer
from .state import State

__all__ = ["Readout", "RecurrentModel", "pool"]

_POOLS = ("last", "mean")


def pool(y: Tensor, mode: str = "last") -> Tensor:
    """Pool the per-step outputs of one segment into one vector per stream.

    Parameters
    ----------
    y : Tensor
        Per-step outputs of a segment (at least one step).
    mode : str
        ``"last"`` (the output of the segment's last step) or ``"mean"`` (the average
        over the segment's steps).

    Shape
    -----
    ``(B, T, H)`` -> ``(B, H)``.

    Examples
    --------
    >>> import torch
    >>> y = torch.arange(6.0).reshape(1, 3, 2)
    >>> pool(y, "last"), pool(y, "mean")
    (tensor([[4., 5.]]), tensor([[2., 3.]]))
    """
    check_choice("mode", mode, _POOLS)
    if y.dim() != 3 or y.shape[1] == 0:
        raise ValueError(f"y must have shape (B, T, H) with T >= 1, got {tuple(y.shape)}")
    return y[:, -1] if mode == "last" else y.mean(dim=1)


class Readout(nn.Module):
    """A linear readout applied at every step (or to one state).

    Parameters
    ----------
    input_size : int
        Features in (H, the recurrent layer's output size).
    output_size : int
        Features out (O): values for regression, logits for classification.
    bias : bool
        Whether the readout has a bias.
    device, dtype
        Where and in what precision the weights live.
    seed : int or None
        Draw the initial weights from a local generator seeded with this value, from
        U(-1/sqrt(H), 1/sqrt(H)) as ``nn.Linear`` does; ``None`` uses torch's global RNG.

    Shape
    -----
    ``(B, T, H)`` -> ``(B, T, O)``; ``(B, H)`` -> ``(B, O)``.

    Threads
    -------
    As a torch module: ``forward`` keeps nothing between calls (the state goes in and
    comes out), so several threads may run it at once, each with its own state. Changing
    the weights (training, ``load_state_dict``) while another thread runs it is not
    safe.

    Examples
    --------
    >>> import torch
    >>> head = Readout(8, 3, seed=0)
    >>> head(torch.zeros(2, 5, 8)).shape, head(torch.zeros(2, 8)).shape
    (torch.Size([2, 5, 3]), torch.Size([2, 3]))
    >>> head.config()
    {'type': 'Readout', 'input_size': 8, 'output_size': 3, 'bias': True}
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        *,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.input_size = check_positive_int("input_size", input_size)
        self.output_size = check_positive_int("output_size", output_size)
        self.bias = check_bool("bias", bias)
        self.seed = check_int("seed", seed, none_ok=True)
        self.linear = nn.Linear(input_size, output_size, bias=bias, device=device, dtype=dtype)
        if seed is not None:
            self.reset_parameters(seed)

    def reset_parameters(self, seed: int | None = None) -> None:
        """Re-draw the weights from U(-1/sqrt(H), 1/sqrt(H)), from ``seed`` if given."""
        if seed is None:
            self.linear.reset_parameters()
            return
        gen = torch.Generator(device="cpu").manual_seed(seed)
        bound = 1.0 / math.sqrt(self.input_size)
        with torch.no_grad():
            for p in self.linear.parameters():
                p.copy_(torch.empty(p.shape, dtype=p.dtype).uniform_(-bound, bound, generator=gen))

    def forward(self, y: Tensor) -> Tensor:
        """Apply the readout to the last dimension of ``y``."""
        return self.linear(y)

    def config(self) -> dict:
        """The flat keyword configuration."""
        return {
            "type": "Readout",
            "input_size": self.input_size,
            "output_size": self.output_size,
            "bias": self.bias,
        }


def _head_output_size(head: nn.Module) -> int:
    for attr in ("output_size", "out_features"):
        size = getattr(head, attr, None)
        if isinstance(size, int) and not isinstance(size, bool):
            return size
    raise ValueError(
        f"head must have an int output_size or out_features (as Readout and nn.Linear do); "
        f"{type(head).__name__} has neither"
    )


class RecurrentModel(nn.Module):
    """A recurrent layer followed by a readout at every step: the many-to-many model.

    Parameters
    ----------
    cell : RecurrentLayer
        The recurrent layer (:class:`~streamrnn.LSTM`, :class:`~streamrnn.GRU`,
        :class:`~streamrnn.RNN`, or anything with the same protocol).
    head : nn.Module or None
        Readout applied at every step, mapping H features to ``head.output_size``
        (:class:`Readout`, ``nn.Linear``, or any module with ``output_size`` or
        ``out_features``); ``None`` outputs the layer's hidden state.
    num_tokens : int or None
        If given, inputs are token ids in ``[0, num_tokens)`` (an int64 tensor
        ``(B, T)``), looked up in an embedding of ``cell.input_size`` features. The model's
        ``input_size`` is then 1 (one id per step).
    seed : int or None
        Seed of the local generator that draws the embedding, from N(0, 1) as
        ``nn.Embedding`` does. The layer and head draw their own weights.

    Attributes
    ----------
    input_size : int
        Features per input step (1 for token models).
    output_size : int
        Features per output step (O).

    Shape
    -----
    x: ``(B, T, F)`` (or token ids ``(B, T)``) -> y: ``(B, T, O)``; state ``(L, B, H)``.

    Threads
    -------
    As a torch module: ``forward`` keeps nothing between calls (the state goes in and
    comes out), so several threads may run it at once, each with its own state. Changing
    the weights (training, ``load_state_dict``) while another thread runs it is not
    safe.

    Examples
    --------
    >>> import torch
    >>> from streamrnn.cells import LSTM
    >>> model = RecurrentModel(LSTM(3, 8, seed=0), Readout(8, 2, seed=1))
    >>> x = torch.randn(4, 10, 3, generator=torch.Generator().manual_seed(0))
    >>> y, state = model(x)
    >>> y.shape, model.input_size, model.output_size
    (torch.Size([4, 10, 2]), 3, 2)
    >>> torch.allclose(model.readout(state), y[:, -1], atol=1e-6)  # many-to-one on demand
    True
    >>> lm = RecurrentModel(LSTM(16, 32, seed=0), Readout(32, 65, seed=1), num_tokens=65, seed=2)
    >>> lm(torch.tensor([[1, 2, 3]]))[0].shape
    torch.Size([1, 3, 65])
    """

    def __init__(
        self,
        cell: nn.Module,
        head: nn.Module | None = None,
        *,
        num_tokens: int | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        for attr in ("input_size", "initial_state", "forward", "output_size"):
            if not hasattr(cell, attr):
                raise ValueError(
                    f"cell must be a streamrnn recurrent layer (LSTM, GRU, RNN); "
                    f"{type(cell).__name__} has no {attr!r}"
                )
        if head is not None and not isinstance(head, nn.Module):
            raise ValueError(f"head must be an nn.Module or None, got {type(head).__name__}")
        if num_tokens is not None:
            check_positive_int("num_tokens", num_tokens)
        self.seed = check_int("seed", seed, none_ok=True)
        self.cell = cell
        self.head = head
        self.num_tokens = num_tokens
        self._out = cell.output_size if head is None else _head_output_size(head)
        if head is not None and isinstance(getattr(head, "input_size", None), int):
            if head.input_size != cell.output_size:
                raise ValueError(
                    f"head.input_size must equal cell.output_size = {cell.output_size}, "
                    f"got {head.input_size}"
                )
        if num_tokens is not None:
            ref = next(cell.parameters())
            self.embedding = nn.Embedding(
                num_tokens, cell.input_size, device=ref.device, dtype=ref.dtype
            )
            if seed is not None:
                gen = torch.Generator(device="cpu").manual_seed(seed)
                w = torch.randn(self.embedding.weight.shape, generator=gen, dtype=ref.dtype)
                with torch.no_grad():
                    self.embedding.weight.copy_(w)
        else:
            self.embedding = None

    @property
    def input_size(self) -> int:
        """Features per input step (1 for token models: one id)."""
        return 1 if self.num_tokens is not None else self.cell.input_size

    @property
    def output_size(self) -> int:
        """Features per output step (O)."""
        return self._out

    def initial_state(
        self,
        batch_size: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> State:
        """The layer's zero state for ``batch_size`` streams.

        Shape
        -----
        ``h`` (and ``c``): ``(L, B, H)``.
        """
        return self.cell.initial_state(batch_size, device=device, dtype=dtype)

    def embed(self, x: Tensor) -> Tensor:
        """Token ids to embedded features (identity for value models).

        Shape
        -----
        ``(B, T)`` int64 -> ``(B, T, E)``; value inputs pass through.
        """
        if self.embedding is None:
            return x
        return self.embedding(self._ids(x))

    def _ids(self, x: Tensor) -> Tensor:
        # Token ids (B, T) from (B, T) or (B, T, 1), checked.
        if x.dim() == 3 and x.shape[2] == 1:
            x = x[..., 0]
        if x.dim() != 2 or x.dtype != torch.int64:
            raise ValueError(
                f"x must be token ids, an int64 tensor of shape (B, T), got "
                f"{x.dtype} of shape {tuple(x.shape)}"
            )
        return x

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Run a chunk of T steps for B streams and read out every step.

        Parameters
        ----------
        x : Tensor
            Inputs, batch first (token ids for token models).
        state : State or None
            State entering the chunk; ``None`` means zeros.

        Returns
        -------
        y : Tensor
            The readout at every step.
        state : State
            State after the last step.

        Shape
        -----
        x: ``(B, T, F)`` or ids ``(B, T)`` -> y: ``(B, T, O)``; state ``(L, B, H)``.
        """
        cell, head, embedding = self.cell, self.head, self.embedding
        if x.dim() >= 2 and x.shape[1] > 1 and isinstance(cell, RecurrentLayer) and (
                head is None or type(head) is Readout) and (
                embedding is not None or x.shape[-1] == cell.input_size):
            # Time first through embedding, fused kernel and per-step readout (a head that
            # works on each step alone): the kernel's layout, so neither its input nor its
            # output is transposed by a copy.
            xt = x.transpose(0, 1) if embedding is None else embedding(self._ids(x).t())
            y, state = cell.forward_time_first(xt, state)
            return (y if head is None else head(y)).transpose(0, 1), state
        y, state = cell(self.embed(x), state)
        return (y if head is None else head(y)), state

    def readout(self, state: State) -> Tensor:
        """The readout of a state: what the step that produced it predicted.

        This is the many-to-one readout on demand: it reads the cell's output of that
        step (:meth:`~streamrnn.cells.Cell.output_of`, the top layer of ``h`` unless the
        cell says otherwise) and changes nothing.

        Shape
        -----
        state ``(L, B, ...)`` -> ``(B, O)``.
        """
        output_of = getattr(self.cell, "output_of", None)
        top = output_of(state) if callable(output_of) else state.h[-1]
        return top if self.head is None else self.head(top)

    def config(self) -> dict:
        """The configuration (the layer's and head's nested under their names)."""
        cell_cfg = self.cell.config() if callable(getattr(self.cell, "config", None)) else {}
        if self.head is None:
            head_cfg = None
        elif callable(getattr(self.head, "config", None)):
            head_cfg = self.head.config()
        else:
            head_cfg = {"type": type(self.head).__name__, "output_size": self._out}
        return {
            "type": "RecurrentModel",
            "cell": cell_cfg,
            "head": head_cfg,
            "num_tokens": self.num_tokens,
        }
