"""The state value of a recurrent stream.

A :class:`State` is a small immutable record of named tensors ("parts"): ``h`` for an RNN
or GRU, ``h`` and ``c`` for an LSTM, or whatever a cell needs (``h`` and ``n``, a matrix
memory, ...). Every part is ``(L, B, ...)``: L layers, B streams, then the part's own
trailing shape. Everything that stores states (banks, learners, checkpoints) handles the
parts generically: a state can be sliced by stream, scattered back, concatenated,
detached, moved, and turned into plain named tensors for a state file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor

__all__ = ["State"]

_POSITIONAL = ("h", "c")  # State(h, c): the classic cells' parts, by position


class State:
    """Hidden state of a stack of recurrent layers for a batch of streams.

    Parameters
    ----------
    *args : Tensor or None
        ``h`` and then ``c``, by position (the classic cells' parts). ``None`` means the
        part is absent (``State(h, None)`` is an RNN / GRU state).
    **parts : Tensor or None
        Named parts, e.g. ``State(h=h, c=c)`` or ``State(h=h, n=n)``; ``None`` values are
        left out.

    Attributes
    ----------
    parts : tuple of str
        The part names, in order.
    h, c, <name> : Tensor
        Each part by name. ``c`` is ``None`` for a state without a ``c`` part (the RNN /
        GRU state), so code written for the classic cells keeps working.

    Shape
    -----
    Every part: ``(L, B, ...)`` with L layers and B streams; ``h`` is ``(L, B, H)``.

    Threads
    -------
    A value of tensors: reading it from several threads is safe; its in-place methods
    (``copy_``, ``scatter_``) are not locked, so do not run them while another thread
    reads or writes the same State.

    Examples
    --------
    >>> import torch
    >>> s = State(h=torch.zeros(2, 3, 4), c=torch.ones(2, 3, 4))
    >>> s.parts, s.batch_size, s.num_layers, s.hidden_size
    (('h', 'c'), 3, 2, 4)
    >>> s.select(torch.tensor([2, 0])).h.shape
    torch.Size([2, 2, 4])
    >>> State.cat([s, s]).batch_size
    6
    >>> sorted(s.to_tensors("state."))
    ['state.c', 'state.h']
    >>> back = State.from_tensors(s.to_tensors("state."), "state.", parts=s.parts)
    >>> back.parts, all(torch.equal(back[k], s[k]) for k in s.parts)
    (('h', 'c'), True)
    >>> gru = State(torch.zeros(1, 2, 4))   # positional h; no c part
    >>> gru.parts, gru.c is None
    (('h',), True)
    >>> m = State(h=torch.zeros(1, 2, 4), n=torch.zeros(1, 2, 4, 4))  # any trailing shape
    >>> m.n.shape, m.trailing_shapes()
    (torch.Size([1, 2, 4, 4]), {'h': (4,), 'n': (4, 4)})
    """

    __slots__ = ("_parts",)

    def __init__(self, *args: Tensor | None, **parts: Tensor | None) -> None:
        if len(args) > len(_POSITIONAL):
            raise TypeError(
                f"State takes at most {len(_POSITIONAL)} positional parts (h, c), got "
                f"{len(args)}; name the others: State(h=..., n=...)"
            )
        named: dict[str, Tensor] = {}
        for name, value in zip(_POSITIONAL, args, strict=False):
            if name in parts:
                raise TypeError(f"State got part {name!r} both by position and by name")
            if value is not None:
                named[name] = value
        for name, value in parts.items():
            if value is not None:
                named[name] = value
        if not named:
            raise ValueError("a State needs at least one part (a tensor), got none")
        for name, value in named.items():
            if not isinstance(value, Tensor):
                raise TypeError(
                    f"state part {name!r} must be a torch.Tensor, got {type(value).__name__}"
                )
        object.__setattr__(self, "_parts", named)

    # -- access --------------------------------------------------------------------
    def __getattr__(self, name: str) -> Tensor:
        try:
            return object.__getattribute__(self, "_parts")[name]
        except KeyError:
            if name == "c":  # the classic state's optional cell part
                return None
            raise AttributeError(f"State has no part {name!r} (parts: {self.parts})") from None

    def __setattr__(self, name, value) -> None:
        raise AttributeError("State is immutable; make a new one (State(**parts), map)")

    def __getitem__(self, name: str) -> Tensor:
        try:
            return self._parts[name]
        except KeyError:
            raise KeyError(f"State has no part {name!r} (parts: {self.parts})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._parts

    def __len__(self) -> int:
        return len(self._parts)

    def __iter__(self):
        raise TypeError(
            "a State is not a sequence of tensors; use state.parts, state.items() or "
            "state.values()"
        )

    def __reduce__(self):
        return (_rebuild, (tuple(self._parts.items()),))

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={tuple(v.shape)}" for k, v in self._parts.items())
        return f"State({inner})"

    @property
    def parts(self) -> tuple[str, ...]:
        """The part names, in order."""
        return tuple(self._parts)

    def items(self):
        """``(name, tensor)`` pairs, in order."""
        return self._parts.items()

    def values(self):
        """The tensors, in part order."""
        return self._parts.values()

    def trailing_shapes(self) -> dict[str, tuple[int, ...]]:
        """Each part's shape after ``(L, B)``."""
        return {k: tuple(v.shape[2:]) for k, v in self._parts.items()}

    @property
    def _first(self) -> Tensor:
        return next(iter(self._parts.values()))

    @property
    def batch_size(self) -> int:
        """Number of streams B."""
        return self._first.shape[1]

    @property
    def num_layers(self) -> int:
        """Number of layers L."""
        return self._first.shape[0]

    @property
    def hidden_size(self) -> int:
        """Hidden units H: the last dimension of ``h`` (else of the first part)."""
        t = self._parts.get("h", self._first)
        return t.shape[-1]

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the first part."""
        return self._first.dtype

    @property
    def device(self) -> torch.device:
        """The device of the first part."""
        return self._first.device

    # -- whole-state operations ----------------------------------------------------
    def map(self, fn: Callable[[Tensor], Tensor]) -> State:
        """A new state with ``fn`` applied to every part."""
        return State(**{k: fn(v) for k, v in self._parts.items()})

    def detach(self) -> State:
        """The same values, cut from the autograd graph."""
        return State(**{k: v.detach() for k, v in self._parts.items()})

    def clone(self) -> State:
        """An independent copy."""
        return State(**{k: v.clone() for k, v in self._parts.items()})

    def to(self, *args, **kwargs) -> State:
        """Move or cast like :meth:`torch.Tensor.to`."""
        return State(**{k: v.to(*args, **kwargs) for k, v in self._parts.items()})

    def select(self, index: Tensor) -> State:
        """The rows (streams) at ``index``, gathered into a new state.

        Shape
        -----
        index: ``(N,)`` -> state with B = N.
        """
        return State(**{k: v.index_select(1, index) for k, v in self._parts.items()})

    def rows(self, start: int, stop: int) -> State:
        """Streams ``start .. stop - 1`` as views (no copy)."""
        return State(**{k: v[:, start:stop] for k, v in self._parts.items()})

    def scatter_(self, index: Tensor, rows: State) -> None:
        """Write ``rows`` into the streams at ``index`` in place.

        Shape
        -----
        index: ``(N,)``; rows: state with B = N and the same parts.
        """
        for k, v in self._parts.items():
            v.index_copy_(1, index, rows._parts[k])

    def copy_(self, other: State) -> None:
        """Copy ``other``'s values into this state's tensors in place."""
        for k, v in self._parts.items():
            v.copy_(other._parts[k])

    def is_finite(self) -> Tensor:
        """Per stream, whether every value of its state is finite.

        Shape
        -----
        ``(B,)`` bool.
        """
        ok = None
        for v in self._parts.values():
            part = torch.isfinite(v).transpose(0, 1).flatten(1).all(dim=1)
            ok = part if ok is None else ok & part
        return ok

    def all_finite(self) -> bool:
        """Whether every value of every part is finite (one reduction per part)."""
        return all(bool(torch.isfinite(v).all()) for v in self._parts.values())

    def matches(self, other: State) -> bool:
        """Whether ``other`` has the same parts with the same shapes and dtypes."""
        if self.parts != other.parts:
            return False
        return all(
            v.shape == other._parts[k].shape and v.dtype == other._parts[k].dtype
            for k, v in self._parts.items()
        )

    @staticmethod
    def cat(states: Iterable[State]) -> State:
        """Concatenate states along the stream dimension."""
        states = list(states)
        names = states[0].parts
        return State(**{k: torch.cat([s._parts[k] for s in states], dim=1) for k in names})

    # -- files ---------------------------------------------------------------------
    def to_tensors(self, prefix: str = "") -> dict[str, Tensor]:
        """Plain named tensors for a state file (no pickle): ``prefix + part``."""
        return {prefix + k: v.detach().contiguous() for k, v in self._parts.items()}

    @staticmethod
    def from_tensors(
        tensors: dict[str, Tensor], prefix: str = "", *, parts: Iterable[str] | None = None
    ) -> State:
        """Inverse of :meth:`to_tensors`.

        With ``parts``, exactly those parts are read, in that order (``ValueError`` names
        a missing one); without, every tensor whose name is ``prefix`` plus a name without
        dots, in name order.
        """
        if parts is None:
            names = sorted(
                k[len(prefix):] for k in tensors
                if k.startswith(prefix) and "." not in k[len(prefix):]
            )
        else:
            names = list(parts)
            missing = [n for n in names if prefix + n not in tensors]
            if missing:
                raise ValueError(f"state tensors lack part(s) {missing} (prefix {prefix!r})")
        if not names:
            raise ValueError(f"no state tensors with prefix {prefix!r}")
        return State(**{n: tensors[prefix + n] for n in names})


def _rebuild(items) -> State:
    return State(**dict(items))


def _register_pytree() -> None:
    # torch.export, torch.compile and torch.func see a State as a node of named tensors.
    try:
        from torch.utils import _pytree
    except ImportError:  # pragma: no cover - very old torch
        return

    def flatten(s: State):
        return list(s._parts.values()), tuple(s._parts)

    def unflatten(values, names):
        return State(**dict(zip(names, values, strict=True)))

    def flatten_with_keys(s: State):
        return [(_pytree.MappingKey(k), v) for k, v in s._parts.items()], tuple(s._parts)

    try:
        _pytree.register_pytree_node(
            State, flatten, unflatten, serialized_type_name="streamrnn.State",
            flatten_with_keys_fn=flatten_with_keys,
        )
    except (TypeError, ValueError):  # pragma: no cover - older signature / registered
        pass


_register_pytree()
