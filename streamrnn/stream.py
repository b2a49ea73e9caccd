"""Stream: one live stream with its hidden state carried between chunks."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from ._checks import as_chunk, as_id_chunk, model_device, model_dtype, num_tokens
from ._validate import check_bool, check_positive_int
from .engines import StreamRunner
from .state import State

__all__ = ["Stream", "check_model"]

_STRIDED = torch.strided  # dense tensors (sparse ones take the checked path, which refuses them)


def check_model(model) -> None:
    """Raise ``ValueError`` unless ``model`` follows the recurrent-model protocol.

    The protocol: ``input_size``, ``initial_state(batch_size, device=, dtype=)`` and
    ``forward(x, state) -> (y, state)`` with x ``(B, T, F)``.
    """
    for attr in ("input_size", "initial_state", "forward"):
        if not hasattr(model, attr):
            raise ValueError(
                f"model must be a streamrnn recurrent model (LSTM, GRU, RNN or one with "
                f"input_size, initial_state and forward(x, state)); {type(model).__name__} "
                f"has no {attr!r}"
            )


class Stream:
    """One live stream: push chunks, get their outputs, the state is carried over.

    Parameters
    ----------
    model : RecurrentLayer or recurrent model
        Anything with ``input_size``, ``initial_state`` and ``forward(x, state)``,
        such as :class:`~streamrnn.LSTM`. A token model (a ``num_tokens`` attribute, as
        :class:`~streamrnn.RecurrentModel` with ``num_tokens``) takes token ids.
    grad : bool
        ``False`` (default): no autograd; a built-in cell (with a ``Readout`` or
        ``nn.Linear`` head, an embedding) on the CPU runs on the compiled engine, anything
        else on torch under ``torch.inference_mode`` (:mod:`streamrnn.engines`; the
        engine never changes the results beyond float rounding). ``True`` keeps the
        autograd graph of each push's outputs (torch engine); the carried state is
        detached between pushes, so memory does not grow.
    max_chunk : int
        A longer chunk is processed in slices of at most this many steps (bounded
        memory for the intermediate buffers); the result is the same.

    Attributes
    ----------
    state : State
        The live state, readable and settable (validated on set).
    steps : int
        Steps pushed since construction or the last :meth:`reset`.
    counts : dict
        ``nonfinite_resets``: times the state overflowed to NaN / inf and was reset to
        the initial state (with a ``RuntimeWarning``); never kept silently.
    engine : str
        The engine that ran the last push: "compiled" or "torch".

    Shape
    -----
    push: ``(T, F)`` -> ``(T, O)``; one step ``(F,)`` -> ``(O,)``; a token model's ids
    ``(T,)`` -> ``(T, O)``, one id -> ``(O,)``.

    Threads
    -------
    Not safe under concurrent calls, and not locked (a lock per call would cost more
    than the call): use it from one thread at a time, or hold your own lock around each
    call.

    Examples
    --------
    >>> import torch, streamrnn
    >>> model = streamrnn.GRU(2, 4, seed=0)
    >>> stream = streamrnn.Stream(model)
    >>> x = torch.randn(6, 2, generator=torch.Generator().manual_seed(1))
    >>> a = torch.cat([stream.push(x[:2]), stream.push(x[2]).unsqueeze(0), stream.push(x[3:])])
    >>> b = model(x.unsqueeze(0))[0][0]
    >>> torch.allclose(a, b, atol=1e-6), stream.steps
    (True, 6)
    >>> stream.push(torch.zeros(3, 5))
    Traceback (most recent call last):
    ...
    ValueError: chunk must have 2 features per step, got 5 (shape (3, 5))

    Token ids, for a model with an embedding:

    >>> lm = streamrnn.RecurrentModel(streamrnn.LSTM(8, 16, seed=0),
    ...                               streamrnn.Readout(16, 5, seed=1), num_tokens=5, seed=2)
    >>> chars = streamrnn.Stream(lm)
    >>> chars.push(torch.tensor([1, 4, 2])).shape, chars.push(3).shape
    (torch.Size([3, 5]), torch.Size([5]))
    >>> chars.push([0, 7])
    Traceback (most recent call last):
    ...
    ValueError: chunk must hold ids in [0, 5), got 7
    """

    def __init__(self, model, *, grad: bool = False, max_chunk: int = 65536) -> None:
        check_model(model)
        self.grad = check_bool("grad", grad)
        self.model = model
        self.max_chunk = check_positive_int("max_chunk", max_chunk)
        self._dtype = model_dtype(model)
        self._device = model_device(model)
        self._on_cpu = self._device.type == "cpu"  # the fast path's device check
        self._features = model.input_size
        self._tokens = num_tokens(model)
        self._step_shape = torch.Size([model.input_size])
        self.counts = {"nonfinite_resets": 0}
        self._runner = StreamRunner(model, grad=grad)  # the engines, and the live state
        self.steps = 0

    @property
    def engine(self) -> str:
        """The engine that ran the last push: "compiled" or "torch" (see
        :mod:`streamrnn.engines`)."""
        return self._runner.engine

    def reset(self) -> None:
        """Start over from the initial (zero) state."""
        self._runner.reset()
        self.steps = 0

    @property
    def state(self) -> State:
        """The live state, as a value: later pushes do not change what this returns."""
        return self._runner.state

    @state.setter
    def state(self, value: State) -> None:
        ref = self._runner.live
        if not isinstance(value, State):
            raise ValueError(f"state must be a streamrnn.State, got {type(value).__name__}")
        if value.parts != ref.parts:
            missing = [k for k in ref.parts if k not in value.parts]
            extra = [k for k in value.parts if k not in ref.parts]
            what = (f"state.{missing[0]} is missing" if missing else
                    f"state.{extra[0]} is not a part of this model's state" if extra else
                    "the parts are in another order")
            raise ValueError(f"state must have parts {ref.parts}, got {value.parts}: {what}")
        for part, want in ref.items():
            got = value[part]
            if want.shape != got.shape or want.dtype != got.dtype:
                raise ValueError(
                    f"state.{part} must be {want.dtype} of shape {tuple(want.shape)}, "
                    f"got {got.dtype} of shape {tuple(got.shape)}"
                )
            if not bool(torch.isfinite(got).all()):
                raise ValueError(f"state.{part} has non-finite values")
        self._runner.reset(value.to(self._device).detach())

    def push(self, chunk, *, softmax: bool = False) -> Tensor:
        """Run one chunk through the model from the live state and keep the new state.

        Parameters
        ----------
        chunk : Tensor, numpy array, list or int
            T steps of F features, or one step of F features; for a token model, T token
            ids or one id. Empty chunks (T = 0) are allowed and leave the state as it is.
            A chunk with a NaN or inf, or an id out of range, raises ``ValueError`` and
            leaves the state untouched.
        softmax : bool
            Return the softmax of each step's outputs over their last dimension (a
            classifier's class probabilities from its logits), as ``torch.softmax(y, -1)``
            does; the compiled engine computes it inside the chunk's kernel, saving a torch
            call per push (~1.5 us, more in a live loop). The state is the same either way.

        Returns
        -------
        Tensor
            The outputs of this chunk's steps (their softmax, with ``softmax``).

        Shape
        -----
        ``(T, F)`` -> ``(T, O)``; ``(F,)`` -> ``(O,)``; ids ``(T,)`` -> ``(T, O)``, one id
        -> ``(O,)``.

        Examples
        --------
        A classifier's class probabilities, from the same state as its logits:

        >>> import torch, streamrnn
        >>> model = streamrnn.RecurrentModel(streamrnn.GRU(2, 8, seed=0),
        ...                                  streamrnn.Readout(8, 3, seed=1)).eval()
        >>> x = torch.tensor([[0.5, -1.0], [2.0, 0.0]])
        >>> logits = streamrnn.Stream(model).push(x)
        >>> probs = streamrnn.Stream(model).push(x, softmax=True)
        >>> probs.sum(dim=-1), torch.allclose(probs, torch.softmax(logits, -1), atol=1e-7)
        (tensor([1.0000, 1.0000]), True)
        >>> probs.argmax(dim=-1).tolist() == logits.argmax(dim=-1).tolist()
        True
        """
        if softmax is not False and softmax is not True:
            check_bool("softmax", softmax)
        if type(chunk) is Tensor and chunk.dtype is self._dtype and self._tokens is None and (
                chunk.is_cpu if self._on_cpu else chunk.device == self._device) and (
                chunk.layout is _STRIDED):
            shape = chunk.shape
            if shape == self._step_shape or (len(shape) == 2 and shape[1] == self._features
                                             and shape[0] <= self.max_chunk):
                # a (T, F) chunk or (F,) step of the right kind: the engine checks finiteness
                done = self._runner.run(chunk, softmax)
                if done is None:  # a NaN / inf in the input: refuse it with the rule's message
                    as_chunk(chunk, features=self._features, dtype=self._dtype,
                             device=self._device)
                y, finite = done
                self.steps += 1 if len(shape) == 1 else shape[0]
                if not finite:
                    self._overflowed(stacklevel=3)
                return y
        if self._tokens is not None:
            x, one_step = as_id_chunk(chunk, high=self._tokens, device=self._device)
        else:
            x, one_step = as_chunk(
                chunk, features=self._features, dtype=self._dtype, device=self._device
            )
        y = self._run(x, softmax)
        return y[0] if one_step else y

    def _run(self, x: Tensor, softmax: bool = False) -> Tensor:
        # Validated input (T, F) or ids (T,); slices of at most max_chunk steps. A state
        # that overflows in a slice runs on to the chunk's end, as in one pass (every
        # step gets its output row), and is reset once, at the end.
        steps = x.shape[0]
        parts = []
        finite = True
        for start in range(0, max(steps, 1), self.max_chunk):
            y, ok = self._runner.run(x[start : start + self.max_chunk], softmax)  # not None
            parts.append(y)
            finite = finite and ok
        self._commit(finite, steps, stacklevel=4)  # warn at push's caller
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def _commit(self, finite: bool, steps: int, stacklevel: int = 3) -> None:
        """Count the steps; reset and report a state that overflowed to NaN / inf."""
        self.steps += steps
        if not finite:
            self._overflowed(stacklevel + 1)

    def _overflowed(self, stacklevel: int) -> None:
        # ``stacklevel`` counts from this frame (3: the caller of push)
        self.counts["nonfinite_resets"] += 1
        self._runner.reset()
        warnings.warn(
            "the stream's state became non-finite (numeric overflow); it was reset to the "
            "initial state and counted in counts['nonfinite_resets']",
            RuntimeWarning,
            stacklevel=stacklevel,
        )
