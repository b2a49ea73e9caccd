"""Which engine steps a stream or a bank, by measured rules (private).

The compiled engine runs a model it supports (see
:class:`~streamrnn.engines.compiled.CompiledEngine`) when nothing needs autograd and the
batch is small; the torch engine runs everything else. The rules, measured on the
project's 2-core machine under the load of other jobs (1 thread for torch and BLAS,
LSTM input 40, hidden 128, best of interleaved repeats; ``benchmarks/bench_core.py``):

- one stream (:class:`StreamRunner`): compiled at every chunk length. ``Stream.push`` of
  one step takes 0.28-0.31x the time of a raw ``nn.LSTMCell`` call (GRU: 0.29x of
  ``nn.GRUCell``; medians, 2026-12-07); a chunk through the engines directly, compiled /
  torch: 0.62x at T = 1, 0.59x at T = 10, 0.92x at T = 100 (torch's fused kernel catches
  up on long chunks, but does not pass);
- many streams (:class:`RowStepper`): compiled up to :data:`COMPILED_MAX_BATCH` streams
  per call (one stream: the single-stream kernel; more: each layer's products as BLAS
  matrix products over the batch), and one step of any number of streams of a cell whose
  gates add (LSTM, RNN: :attr:`CompiledForm.additive`: one product of ``[x, h, 1]`` with
  the stacked weights per layer); torch's batched kernels for the rest (GRU beyond 16
  streams, chunks of several steps). One LSTM step through ``push_many``, compiled /
  torch: 91 / 196 us at 17 streams, 138 / 243 at 40, 273 / 367 at 100, 2,312 / 2,498 at
  1,000 (medians of 5; the product is ~180 us of the 273 at 100).

Neither choice changes results beyond float rounding: 1e-5 in float32, 1e-10 in float64
(``tests/engines/test_engine_parity.py``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .._checks import all_finite, shares_memory
from ..state import State
from .compiled import HAVE_NUMBA, CompiledEngine
from .reference import TorchEngine

__all__ = ["COMPILED_MAX_BATCH", "RowStepper", "StreamRunner", "finite"]

#: Most streams per call the compiled engine takes in a bank (measured: see above).
COMPILED_MAX_BATCH = 16

_NUMPY_FLOATS = (torch.float32, torch.float64)  # the dtypes the compiled check reads


def finite(x: Tensor) -> bool:
    """Whether every value of the float tensor ``x`` is finite: for float32 and float64 on
    the CPU the compiled engine's vectorised count (no temporary: ~0.3 ms for 4M float32
    against ~9 ms for ``torch.isfinite(x).all()``), else torch's check.

    Examples
    --------
    >>> import torch
    >>> finite(torch.ones(3, 2)), finite(torch.tensor([1.0, float("nan")]))
    (True, False)
    """
    if HAVE_NUMBA and x.is_cpu and not x.requires_grad and x.dtype in _NUMPY_FLOATS:
        return CompiledEngine.finite(x.numpy())
    return all_finite(x)


class StreamRunner:
    """One stream's live state, and the engines that step it.

    Parameters
    ----------
    model : nn.Module
        A model of the cell protocol.
    grad : bool
        Keep autograd graphs (torch engine only); the carried state is detached.

    Attributes
    ----------
    engine : str
        The engine of the last chunk: "compiled" or "torch".

    Threads
    -------
    Not safe under concurrent calls, and not locked (a lock per call would cost more
    than the call): use it from one thread at a time, or hold your own lock around each
    call.

    Examples
    --------
    >>> import torch, streamrnn
    >>> runner = StreamRunner(streamrnn.LSTM(2, 3, seed=0), grad=False)
    >>> y, finite = runner.run(torch.ones(4, 2))
    >>> y.shape, finite, runner.engine, runner.state.h.shape
    (torch.Size([4, 3]), True, 'compiled', torch.Size([1, 1, 3]))
    """

    def __init__(self, model, *, grad: bool) -> None:
        self.model = model
        self.torch = TorchEngine(model, grad=grad)
        self.compiled = None if grad else CompiledEngine.for_model(model)
        self.engine = "torch" if self.compiled is None else "compiled"
        self._bad = np.zeros(1, dtype=np.uint8)
        self._live: State | None = None
        self._np: tuple | None = None  # numpy views of the live parts, for the compiled engine
        self.reset()

    def reset(self, state: State | None = None) -> None:
        """Start from ``state`` (copied) or the model's initial state."""
        if state is None:
            p = next(iter(self.model.parameters()), None)
            device = None if p is None else p.device
            state = self.model.initial_state(1, device=device,
                                             dtype=None if p is None else p.dtype)
        else:
            state = state.clone()
        self._set(state)

    def _set(self, state: State) -> None:
        self._live = state
        self._np = None

    @property
    def state(self) -> State:
        """The live state, as a value (a copy: later steps do not change it)."""
        return self._live.clone()

    @property
    def live(self) -> State:
        """The live state itself (not a copy)."""
        return self._live

    def _views(self) -> tuple | None:
        views = self._np
        if views is None:
            live = self._live
            if any(t.device.type != "cpu" or t.requires_grad or not t.is_contiguous()
                   for t in live.values()):
                return None
            views = self._np = tuple(live[k].numpy() for k in self.compiled.parts)
        return views

    def run(self, x: Tensor, softmax: bool = False) -> tuple[Tensor, bool] | None:
        """Step a chunk from the live state and keep the new state.

        ``x`` is ``(T, F)`` values or ``(T,)`` token ids, or one step ``(F,)`` of values,
        checked (device, dtype, features). Returns the outputs (with ``softmax``: their
        softmax over the last dimension) and whether the new state is finite (the caller
        resets a non-finite one), or ``None``, with nothing changed, when ``x`` holds a NaN
        or inf.

        Shape
        -----
        ``(T, F)`` or ids ``(T,)`` -> ``(T, O)``; ``(F,)`` -> ``(O,)``.
        """
        compiled = self.compiled
        if compiled is not None and not x.requires_grad and compiled.ready():
            views = self._np or self._views()
            if views is not None:
                shape = x.shape
                if len(shape) == 1 and not compiled.tokens:  # one step
                    y = np.empty(compiled.output_size, dtype=compiled.np_dtype)
                elif shape[0]:
                    y = np.empty((shape[0], compiled.output_size), dtype=compiled.np_dtype)
                else:  # no steps
                    return torch.from_numpy(np.empty((0, compiled.output_size),
                                                     dtype=compiled.np_dtype)), True
                code = compiled.step_one(x, views, y, self._bad, softmax)
                if code < 0:
                    return None
                self.engine = "compiled"
                return torch.from_numpy(y), code == 0
        self.engine = "torch"
        if x.is_floating_point() and not all_finite(x):
            return None
        one = x.dim() == 1 and x.is_floating_point()
        y, new = self.torch.run(x.unsqueeze(0) if not one else x.view(1, 1, -1), self._live)
        y = y[0, 0] if one else y[0]
        if softmax:
            y = torch.softmax(y, dim=-1)
        elif shares_memory(y, new):
            y = y.clone()  # one step of a bare layer: its output is the new state
        self._set(new)
        return y, all(bool(torch.isfinite(t).all()) for t in new.values())


class RowStepper:
    """Steps chosen rows of a bank's state in place: compiled for small calls and for
    one step of an additive cell (LSTM, RNN) at any batch, torch beyond
    (:data:`COMPILED_MAX_BATCH`).

    Parameters
    ----------
    model : nn.Module
        A model of the cell protocol.
    grad : bool
        Keep autograd graphs (torch engine only).

    Threads
    -------
    Not safe under concurrent calls, and not locked (a lock per call would cost more
    than the call): use it from one thread at a time, or hold your own lock around each
    call.
    """

    def __init__(self, model, *, grad: bool) -> None:
        self.torch = TorchEngine(model, grad=grad, inference=False)
        self.compiled = None if grad else CompiledEngine.for_model(model)
        self._views: tuple = (None, None)
        self._lent = np.zeros(0, dtype=np.float32)  # step(lend=True)'s output memory

    def finite(self, x: Tensor) -> bool:
        """Whether every value of the float tensor ``x`` is finite (:func:`finite`)."""
        return finite(x)

    def takes(self, batch: int, steps: int, state: State) -> bool:
        """Whether the compiled engine steps this call (re-packs changed weights)."""
        compiled = self.compiled
        return (compiled is not None
                and (batch <= COMPILED_MAX_BATCH or (steps == 1 and compiled.stacks))
                and compiled.ready() and self._parts(state) is not None)

    def _parts(self, state: State) -> tuple | None:
        cached, views = self._views
        if cached is not state:
            if any(t.device.type != "cpu" or t.requires_grad or not t.is_contiguous()
                   for t in state.values()):
                return None
            views = tuple(state[k].numpy() for k in self.compiled.parts)
            self._views = (state, views)
        return views

    def step(self, state: State, slots: np.ndarray, x: Tensor, *, lend: bool = False
             ) -> tuple[Tensor, list[int]]:
        """Step the streams in ``slots`` with ``x`` ``(N, T, F)`` (or ids ``(N, T)``, or one
        step of values ``(N, F)``) in place (call :meth:`takes` first); returns the outputs
        and the positions in ``slots`` whose new state is not finite (written anyway: reset
        them). ``state`` must be the one :meth:`takes` was asked about. With ``lend``, the
        outputs are written into memory kept by the stepper, valid until its next call (for
        a caller that copies them at once: no fresh pages per call).

        Shape
        -----
        x: ``(N, T, F)`` -> ``(N, T, O)``; ``(N, F)`` -> ``(N, O)``.
        """
        compiled = self.compiled
        xs = x.numpy()
        flat = xs.ndim == 2 and not compiled.tokens  # one step, no T axis (numpy views:
        if flat:  # a torch view op costs ~1 us, a numpy reshape ~0.2)
            xs = xs.reshape(xs.shape[0], 1, xs.shape[1])
        n, steps = xs.shape[0], xs.shape[1]
        size = n * steps * compiled.output_size
        if lend:
            if self._lent.shape[0] < size or self._lent.dtype != compiled.np_dtype:
                self._lent = np.empty(size, dtype=compiled.np_dtype)
            y = self._lent[:size].reshape(n, steps, compiled.output_size)
        else:
            y = np.empty((n, steps, compiled.output_size), dtype=compiled.np_dtype)
        bad = np.zeros(n, dtype=np.uint8)
        if slots.dtype != np.int64 or not slots.flags.c_contiguous:
            slots = np.ascontiguousarray(slots, dtype=np.int64)
        run = compiled.step_rows if n == 1 else compiled.step_batch
        code = run(xs, self._views[1], slots, y, bad)
        if code < 0:
            raise ValueError("x has a non-finite value (NaN or inf)")
        out = torch.from_numpy(y.reshape(n, compiled.output_size) if flat else y)
        return out, np.flatnonzero(bad).tolist() if code else []
