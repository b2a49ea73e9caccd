"""Bidirectional recurrence offline, and a bounded lookahead for live streams.

A bidirectional layer reads the whole sequence backwards, so it cannot run on a live
stream: :class:`Bidirectional` refuses a state (and so a :class:`~streamrnn.Stream`,
:class:`~streamrnn.StreamBank` or :class:`~streamrnn.learn.OnlineLearner`) with an error
that points here. :class:`Lookahead` is the streaming form with bounded latency: the
output of step t is emitted L steps late and its backward half reads only the L future
inputs ``x[t .. t+L]`` (from a zero state). Offline, ``Bidirectional.forward(x,
lookahead=L)`` computes exactly the same thing, so a model trained offline with a
lookahead runs unchanged on a stream.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._checks import as_chunk, model_device, model_dtype
from ._validate import check_nonneg_int
from .heads import _head_output_size
from .state import State

__all__ = ["Bidirectional", "Lookahead"]

_OFFLINE = (
    "Bidirectional runs offline on whole sequences: its backward direction reads the "
    "future, so it has no live state and cannot run on a stream (Stream, StreamBank, "
    "OnlineLearner). For a stream use streamrnn.lookahead.Lookahead(model, lookahead=L), "
    "which delays each output by L steps"
)


class Bidirectional(nn.Module):
    """A forward and a backward recurrent layer whose outputs are joined per step.

    Each direction may be a stack of layers; the directions are stacked separately (the
    backward stack reads the reversed inputs), then the two top outputs are concatenated
    and, if given, read out by ``head``.

    Parameters
    ----------
    forward_layer, backward_layer : RecurrentLayer
        The two directions; same ``input_size``.
    head : nn.Module or None
        Readout of the ``Hf + Hb`` joined features; ``None`` returns them.

    Shape
    -----
    x: ``(B, T, F)`` -> ``(B, T, O)`` (O = Hf + Hb without a head).

    Threads
    -------
    As a torch module: ``forward`` keeps nothing between calls (the state goes in and
    comes out), so several threads may run it at once, each with its own state. Changing
    the weights (training, ``load_state_dict``) while another thread runs it is not
    safe.

    Examples
    --------
    >>> import torch
    >>> from streamrnn.cells import GRU
    >>> from streamrnn.heads import Readout
    >>> bi = Bidirectional(GRU(2, 4, seed=0), GRU(2, 4, seed=1), Readout(8, 3, seed=2))
    >>> x = torch.randn(1, 12, 2, generator=torch.Generator().manual_seed(0))
    >>> bi(x).shape
    torch.Size([1, 12, 3])
    >>> torch.allclose(bi(x, lookahead=11), bi(x), atol=1e-6)  # full lookahead = offline
    True
    >>> import streamrnn
    >>> streamrnn.Stream(bi)
    Traceback (most recent call last):
    ...
    ValueError: Bidirectional runs offline on whole sequences: ...
    """

    def __init__(self, forward_layer: nn.Module, backward_layer: nn.Module,
                 head: nn.Module | None = None) -> None:
        super().__init__()
        if forward_layer.input_size != backward_layer.input_size:
            raise ValueError(
                f"backward_layer.input_size must equal forward_layer.input_size = "
                f"{forward_layer.input_size}, got {backward_layer.input_size}"
            )
        self.fwd, self.bwd, self.head = forward_layer, backward_layer, head
        joined = forward_layer.output_size + backward_layer.output_size
        self.output_size = joined if head is None else _head_output_size(head)

    @property
    def input_size(self) -> int:
        return self.fwd.input_size

    def initial_state(self, *args, **kwargs) -> State:
        """Refused: a bidirectional layer has no live state (see :class:`Lookahead`)."""
        raise ValueError(_OFFLINE)

    def join(self, yf: Tensor, yb: Tensor) -> Tensor:
        """Concatenate the two directions' outputs and read them out.

        Shape
        -----
        ``(..., Hf)`` and ``(..., Hb)`` -> ``(..., O)``.
        """
        y = torch.cat([yf, yb], dim=-1)
        return y if self.head is None else self.head(y)

    def backward_windows(self, x: Tensor, lookahead: int, *, cut: bool = True) -> Tensor:
        """Backward output of each step t read from ``x[t .. t+lookahead]`` only.

        Windows cut by the end of ``x`` are shorter (``cut=False`` leaves their steps
        out). Each window runs from the zero
        state, reading the inputs in reverse; its last output belongs to step t.

        Shape
        -----
        x: ``(B, T, F)`` -> ``(B, T, Hb)``.
        """
        b, t, f = x.shape
        full = max(0, t - lookahead)
        parts = [x.new_zeros(b, 0, self.bwd.output_size)]
        if full:
            win = x.unfold(1, lookahead + 1, 1)[:, :full]  # (B, full, F, L+1)
            win = win.permute(0, 1, 3, 2).flip(2).reshape(b * full, lookahead + 1, f)
            parts.append(self.bwd(win)[0][:, -1].reshape(b, full, -1))
        for j in range(full, t if cut else full):  # the last steps see fewer inputs
            parts.append(self.bwd(x[:, j:].flip(1))[0][:, -1:])
        return torch.cat(parts, 1)

    def forward(self, x: Tensor, state: State | None = None, *,
                lookahead: int | None = None) -> Tensor:
        """Run offline over whole sequences.

        Parameters
        ----------
        x : Tensor
            Whole sequences.
        state : None
            Must be ``None`` (there is no live state).
        lookahead : int or None
            ``None``: the backward direction reads to the end of the sequence. An int
            L: it reads only ``x[t .. t+L]`` for step t (what :class:`Lookahead` does).

        Shape
        -----
        x: ``(B, T, F)`` -> ``(B, T, O)``.
        """
        if state is not None:
            raise ValueError(_OFFLINE)
        yf, _ = self.fwd(x)
        if lookahead is None:
            yb = self.bwd(x.flip(1))[0].flip(1)
        else:
            check_nonneg_int("lookahead", lookahead)
            yb = self.backward_windows(x, lookahead)
        return self.join(yf, yb)

    def config(self) -> dict:
        head = None
        if self.head is not None and callable(getattr(self.head, "config", None)):
            head = self.head.config()
        return {"type": "Bidirectional", "forward": self.fwd.config(),
                "backward": self.bwd.config(), "head": head}


class Lookahead:
    """A :class:`Bidirectional` model on a live stream, each output L steps late.

    Step t's output is emitted when step t + L arrives. Its forward half is the live
    forward state; its backward half reads ``x[t .. t+L]``. :meth:`flush` ends the stream
    and emits the last L outputs from the shorter windows. For any split of a sequence
    into chunks, the outputs equal ``model(x, lookahead=L)``.

    Parameters
    ----------
    model : Bidirectional
        The model (trained offline, typically with the same ``lookahead``).
    lookahead : int
        L, the delay in steps (0: a causal forward-plus-current-step model).

    Attributes
    ----------
    steps : int
        Steps pushed since the last :meth:`reset` or :meth:`flush`.
    emitted : int
        Outputs returned since then: ``max(0, steps - L)`` until :meth:`flush`.

    Shape
    -----
    push: ``(T, F)`` -> ``(T', O)`` with T' the outputs that became ready.

    Threads
    -------
    Not safe under concurrent calls, and not locked (a lock per call would cost more
    than the call): use it from one thread at a time, or hold your own lock around each
    call.

    Examples
    --------
    >>> import torch
    >>> from streamrnn.cells import LSTM
    >>> bi = Bidirectional(LSTM(2, 4, seed=0), LSTM(2, 4, seed=1))
    >>> x = torch.randn(20, 2, generator=torch.Generator().manual_seed(0))
    >>> live = Lookahead(bi, lookahead=3)
    >>> outs = [live.push(x[:2]), live.push(x[2:9]), live.push(x[9:]), live.flush()]
    >>> [o.shape[0] for o in outs]
    [0, 6, 11, 3]
    >>> torch.allclose(torch.cat(outs), bi(x[None], lookahead=3)[0], atol=1e-6)
    True
    """

    def __init__(self, model: Bidirectional, *, lookahead: int) -> None:
        if not isinstance(model, Bidirectional):
            raise ValueError(f"model must be a Bidirectional, got {type(model).__name__}")
        self.lookahead = check_nonneg_int("lookahead", lookahead)
        self.model = model
        self._dtype, self._device = model_dtype(model), model_device(model)
        self.reset()

    def reset(self) -> None:
        """Start a new stream: zero forward state, nothing pending."""
        self.state = self.model.fwd.initial_state(1, device=self._device, dtype=self._dtype)
        self._x = torch.zeros(0, self.model.input_size, dtype=self._dtype, device=self._device)
        self._yf = None
        self.steps = 0
        self.emitted = 0

    def _emit(self, n: int, *, final: bool) -> Tensor:
        yb = self.model.backward_windows(self._x[None], self.lookahead, cut=final)[0]
        out = self.model.join(self._yf[:n], yb)
        self._x, self._yf = self._x[n:], self._yf[n:]
        self.emitted += n
        return out

    def push(self, chunk) -> Tensor:
        """Add a chunk; return the outputs of the steps that now have L future inputs.

        Shape
        -----
        ``(T, F)`` -> ``(T', O)``.
        """
        x, _ = as_chunk(chunk, features=self.model.input_size, dtype=self._dtype,
                        device=self._device)
        with torch.no_grad():
            if x.shape[0]:
                yf, self.state = self.model.fwd(x[None], self.state)
                self._yf = yf[0] if self._yf is None else torch.cat([self._yf, yf[0]])
                self._x = torch.cat([self._x, x])
                self.steps += x.shape[0]
            ready = max(0, self._x.shape[0] - self.lookahead)
            if ready == 0:
                return x.new_zeros(0, self.model.output_size)
            return self._emit(ready, final=False)

    def flush(self) -> Tensor:
        """End the stream: emit the last (up to L) outputs, then :meth:`reset`.

        Shape
        -----
        ``(<= L, O)``.
        """
        with torch.no_grad():
            n = self._x.shape[0]
            out = self._x.new_zeros(0, self.model.output_size) if n == 0 else self._emit(
                n, final=True)
        self.reset()
        return out
