"""The cell protocol and the registry of cells by name.

A cell is an ``nn.Module`` that maps a chunk of inputs and an entering state to outputs
and a leaving state. :class:`Stream`, :class:`StreamBank`, :class:`OnlineLearner`, the
shapes, the river estimators and checkpoints depend on this protocol and nothing else, so
a cell written outside the package works in all of them.

A cell module registers its class under a short name (``register("lstm")``); the name is
what configurations, checkpoints, the river estimators (``cell="gru"``) and the engines
use to find it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..state import State

__all__ = ["Cell", "cell_class", "cell_name", "register", "registered"]


class Cell(nn.Module):
    """Base class of recurrent cells: ``forward(x, state) -> (y, state)``.

    A subclass calls ``super().__init__()``, sets ``input_size`` (F), ``hidden_size`` (H)
    and ``num_layers`` (L) in its ``__init__``, and implements :meth:`initial_state` and
    :meth:`forward`. Its state is a :class:`~streamrnn.State` of any named parts, each
    ``(L, B, ...)``; the parts are read from :meth:`initial_state`. Optional: :meth:`step`
    (one step, when the cell has a faster form of it), ``output_size`` (default H),
    :meth:`output_of` (default the top layer of ``h``) and :meth:`config`.

    Shape
    -----
    x: ``(B, T, F)`` -> y: ``(B, T, O)``; every state part ``(L, B, ...)``.

    Threads
    -------
    As a torch module: ``forward`` keeps nothing between calls (the state goes in and
    comes out), so several threads may run it at once, each with its own state. Changing
    the weights (training, ``load_state_dict``) while another thread runs it is not
    safe.

    Examples
    --------
    A cell of a dozen lines: a leaky tanh unit that also keeps a running norm ``n``.

    >>> import torch, streamrnn
    >>> class Leaky(streamrnn.cells.Cell):
    ...     def __init__(self, input_size, hidden_size):
    ...         super().__init__()
    ...         self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, 1
    ...         self.lin = torch.nn.Linear(input_size + hidden_size, hidden_size)
    ...     def initial_state(self, batch_size, *, device=None, dtype=None):
    ...         z = torch.zeros(1, batch_size, self.hidden_size, device=device, dtype=dtype)
    ...         return streamrnn.State(h=z, n=z.clone())
    ...     def forward(self, x, state=None):
    ...         s = state or self.initial_state(x.shape[0], device=x.device, dtype=x.dtype)
    ...         h, n, ys = s.h[0], s.n[0], []
    ...         for t in range(x.shape[1]):
    ...             h = 0.5 * h + 0.5 * torch.tanh(self.lin(torch.cat([x[:, t], h], 1)))
    ...             n = n + h * h
    ...             ys.append(h)
    ...         y = torch.stack(ys, 1) if ys else x.new_zeros(x.shape[0], 0, self.hidden_size)
    ...         return y, streamrnn.State(h=h[None], n=n[None])
    >>> cell = Leaky(3, 5)
    >>> cell.state_parts, cell.output_size, cell.config()
    (('h', 'n'), 5, {'type': 'Leaky', 'input_size': 3, 'hidden_size': 5, 'num_layers': 1})
    >>> y, s = cell(torch.ones(2, 4, 3))
    >>> y.shape, s.n.shape
    (torch.Size([2, 4, 5]), torch.Size([1, 2, 5]))
    """

    input_size: int
    hidden_size: int
    num_layers: int = 1
    #: Whether the last input column is the time elapsed since the previous step (a
    #: time-aware cell such as :class:`~streamrnn.DecayGRU`); feature pipelines that
    #: have no such column (the river estimators) refuse the cell.
    takes_elapsed_time: bool = False

    def initial_state(
        self,
        batch_size: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> State:
        """The state of ``batch_size`` streams that have seen nothing.

        Shape
        -----
        every part ``(L, B, ...)``.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement initial_state")

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Run a chunk of T steps for B streams from ``state`` (``None``: initial).

        Shape
        -----
        x: ``(B, T, F)`` -> y: ``(B, T, O)``; state parts ``(L, B, ...)``.
        """
        raise NotImplementedError(f"{type(self).__name__} must implement forward")

    def step(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One step for B streams: :meth:`forward` of a one-step chunk.

        Shape
        -----
        x: ``(B, F)`` -> y: ``(B, O)``.
        """
        y, state = self(x.unsqueeze(1), state)
        return y[:, 0], state

    @property
    def output_size(self) -> int:
        """Features per output step (O); H unless the cell says otherwise."""
        return self.hidden_size

    @property
    def state_parts(self) -> tuple[str, ...]:
        """The names of the state's parts, as :meth:`initial_state` makes them."""
        return self.initial_state(0, device="cpu").parts

    def state_shapes(self) -> dict[str, tuple[int, ...]]:
        """Each state part's shape after ``(L, B)``."""
        return self.initial_state(0, device="cpu").trailing_shapes()

    def output_of(self, state: State) -> Tensor:
        """The output of the step that left ``state``: the top layer of ``h``.

        A cell whose output is not its top ``h`` overrides this (the many-to-one readout
        of :class:`~streamrnn.RecurrentModel` reads it).

        Shape
        -----
        state ``(L, B, ...)`` -> ``(B, O)``.
        """
        return state.h[-1]

    def config(self) -> dict:
        """The flat keyword configuration a checkpoint records to refuse a misfit."""
        return {
            "type": type(self).__name__,
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
        }

    def check_state(self, state: State, batch_size: int, name: str = "state") -> None:
        """Raise ``ValueError`` unless ``state`` has this cell's parts, each
        ``(L, batch_size, ...)`` with the cell's trailing shape and dtype."""
        if not isinstance(state, State):
            raise ValueError(f"{name} must be a streamrnn.State, got {type(state).__name__}")
        ref = self.initial_state(batch_size, device="cpu", dtype=_dtype_of(self))
        if state.parts != ref.parts:
            raise ValueError(f"{name} must have parts {ref.parts}, got {state.parts}")
        for part, want in ref.items():
            got = state[part]
            if got.shape != want.shape:
                raise ValueError(
                    f"{name}.{part} must have shape {tuple(want.shape)}, got {tuple(got.shape)}"
                )
            if got.dtype != want.dtype:
                raise ValueError(f"{name}.{part} must have dtype {want.dtype}, got {got.dtype}")


def zero_state(
    parts: tuple[str, ...],
    batch_size: int,
    shape: tuple[int, ...],
    ref: Tensor,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> State:
    """The zero state of ``batch_size`` streams: each of ``parts`` a zero tensor
    ``(L, B, *shape)`` on ``ref``'s device and dtype unless ``device`` / ``dtype`` say
    otherwise; what the cells' :meth:`Cell.initial_state` returns.

    Shape
    -----
    every part ``(shape[0], batch_size, *shape[1:])``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 0:
        raise ValueError(f"batch_size must be a non-negative int, got {batch_size!r}")
    device = ref.device if device is None else device
    dtype = ref.dtype if dtype is None else dtype
    full = (shape[0], batch_size, *shape[1:])
    return State(**{part: torch.zeros(full, device=device, dtype=dtype) for part in parts})


def uniform_(params, bound: float, generator: torch.Generator | None) -> None:
    """Re-draw each of ``params`` in place from U(-bound, bound) with ``generator`` (a
    CPU generator; ``None``: torch's global RNG), drawn on the CPU in the parameter's
    dtype so one seed gives the same weights on every device."""
    with torch.no_grad():
        for p in params:
            draw = torch.empty(p.shape, dtype=p.dtype).uniform_(-bound, bound, generator=generator)
            p.copy_(draw)


def _dtype_of(module: nn.Module) -> torch.dtype:
    for p in module.parameters():
        return p.dtype
    return torch.get_default_dtype()


# -- the registry ------------------------------------------------------------------
_REGISTRY: dict[str, type[Cell]] = {}


def register(name: str):
    """Class decorator: register a :class:`Cell` subclass under ``name``.

    Examples
    --------
    >>> import streamrnn
    >>> streamrnn.cells.cell_class("gru") is streamrnn.GRU
    True
    >>> streamrnn.cells.register("gru")(streamrnn.LSTM)
    Traceback (most recent call last):
    ...
    ValueError: cell name 'gru' is taken by GRU
    """
    if not isinstance(name, str) or not name.isidentifier() or name != name.lower():
        raise ValueError(f"cell name must be a lowercase identifier, got {name!r}")

    def add(cls: type[Cell]) -> type[Cell]:
        if not (isinstance(cls, type) and issubclass(cls, Cell)):
            raise ValueError(f"only Cell subclasses can be registered, got {cls!r}")
        known = _REGISTRY.get(name)
        if known is not None and known is not cls:
            raise ValueError(f"cell name {name!r} is taken by {known.__name__}")
        _REGISTRY[name] = cls
        cls.registry_name = name
        return cls

    return add


def cell_class(name: str) -> type[Cell]:
    """The cell class registered under ``name`` (or whose class name is ``name``, as a
    configuration's ``type`` records it); ``ValueError`` lists the known names."""
    cls = _REGISTRY.get(name) if isinstance(name, str) else None
    if cls is None and isinstance(name, str):
        cls = next((c for c in _REGISTRY.values() if c.__name__ == name), None)
    if cls is None:
        raise ValueError(f"cell must be one of {sorted(_REGISTRY)}, got {name!r}")
    return cls


def cell_name(cell) -> str:
    """The registered name of ``cell``'s class (its class name if it has none)."""
    cls = cell if isinstance(cell, type) else type(cell)
    name = cls.__dict__.get("registry_name")
    return name if name is not None else cls.__name__


def registered() -> tuple[str, ...]:
    """The registered cell names, sorted."""
    return tuple(sorted(_REGISTRY))
