"""The state value of a recurrent stream.

A :class:`State` is an immutable pair of tensors, the same kind of thing for RNN, GRU and
LSTM (torch returns a Tensor for two of them and a tuple for the third; we do not).
Rows along dimension 1 are streams, so a state can be sliced by stream, scattered back,
concatenated, detached, moved, and turned into plain tensors for a state file.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["State"]


class State(NamedTuple):
    """Hidden state of a stack of recurrent layers for a batch of streams.

    Parameters
    ----------
    h : Tensor
        Hidden state.
    c : Tensor or None
        Cell state, for LSTM only; ``None`` for RNN and GRU.

    Shape
    -----
    ``h`` and ``c``: ``(L, B, H)`` with L layers, B streams, H hidden units.

    Examples
    --------
    >>> import torch
    >>> s = State(torch.zeros(2, 3, 4), torch.ones(2, 3, 4))
    >>> s.batch_size, s.num_layers, s.hidden_size
    (3, 2, 4)
    >>> s.select(torch.tensor([2, 0])).h.shape
    torch.Size([2, 2, 4])
    >>> State.cat([s, s]).batch_size
    6
    >>> all(torch.equal(a, b) for a, b in zip(State.from_tensors(s.to_tensors()), s))
    True
    """

    h: Tensor
    c: Tensor | None = None

    @property
    def batch_size(self) -> int:
        """Number of streams B."""
        return self.h.shape[1]

    @property
    def num_layers(self) -> int:
        """Number of layers L."""
        return self.h.shape[0]

    @property
    def hidden_size(self) -> int:
        """Hidden units H."""
        return self.h.shape[2]

    def detach(self) -> State:
        """The same values, cut from the autograd graph."""
        return State(self.h.detach(), None if self.c is None else self.c.detach())

    def clone(self) -> State:
        """An independent copy."""
        return State(self.h.clone(), None if self.c is None else self.c.clone())

    def to(self, *args, **kwargs) -> State:
        """Move or cast like :meth:`torch.Tensor.to`."""
        return State(
            self.h.to(*args, **kwargs), None if self.c is None else self.c.to(*args, **kwargs)
        )

    def select(self, index: Tensor) -> State:
        """The rows (streams) at ``index``, gathered into a new state.

        Shape
        -----
        index: ``(N,)`` -> state with B = N.
        """
        return State(
            self.h.index_select(1, index),
            None if self.c is None else self.c.index_select(1, index),
        )

    def scatter_(self, index: Tensor, rows: State) -> None:
        """Write ``rows`` into the streams at ``index`` in place.

        Shape
        -----
        index: ``(N,)``; rows: state with B = N.
        """
        self.h.index_copy_(1, index, rows.h)
        if self.c is not None:
            self.c.index_copy_(1, index, rows.c)

    def is_finite(self) -> Tensor:
        """Per stream, whether every value of its state is finite.

        Shape
        -----
        ``(B,)`` bool.
        """
        ok = torch.isfinite(self.h).all(dim=2).all(dim=0)
        if self.c is not None:
            ok &= torch.isfinite(self.c).all(dim=2).all(dim=0)
        return ok

    @staticmethod
    def cat(states: list[State]) -> State:
        """Concatenate states along the stream dimension."""
        h = torch.cat([s.h for s in states], dim=1)
        c = None if states[0].c is None else torch.cat([s.c for s in states], dim=1)
        return State(h, c)

    def to_tensors(self, prefix: str = "") -> dict[str, Tensor]:
        """Plain named tensors for a state file (no pickle)."""
        out = {prefix + "h": self.h.detach().contiguous()}
        if self.c is not None:
            out[prefix + "c"] = self.c.detach().contiguous()
        return out

    @staticmethod
    def from_tensors(tensors: dict[str, Tensor], prefix: str = "") -> State:
        """Inverse of :meth:`to_tensors`."""
        return State(tensors[prefix + "h"], tensors.get(prefix + "c"))
