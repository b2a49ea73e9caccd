"""The compiled engine: numba kernels for small batches on the CPU.

Torch spends microseconds of dispatch on every op, so one step of one stream costs tens
of microseconds whatever the model's size. The compiled engine runs a whole chunk (every
step, every layer, the head) in one call into machine code whose loops vectorise:

- inference (:class:`CompiledEngine`): the built-in cells (RNN tanh / relu, LSTM, GRU),
  1..N layers, float32 and float64, optionally preceded by a token embedding and
  followed by a linear head (:class:`~streamrnn.RecurrentModel` with a
  :class:`~streamrnn.Readout` or ``nn.Linear``), for :class:`~streamrnn.Stream`,
  :class:`~streamrnn.StreamBank` and the recogniser;
- learning (:class:`~streamrnn.engines.compiled.learner.CompiledLearner`): exact
  single-stream TBPTT(k1, k2) with clipping and Adam, float64, for the river
  estimators.

Cells are found by their registered name in a table of compiled forms
(:mod:`~streamrnn.engines.compiled.forms`); a cell without one runs on the torch
engine. Results equal the torch engine's to float rounding (1e-5 in float32, 1e-10 in
float64: ``tests/engines/test_engine_parity.py``). Kernels are compiled at first use
and cached on disk.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import torch
from torch import Tensor

from ...state import State
from ._pack import Packed, after_optimizer_step, plan_for, weights_changed
from .forms import CompiledForm, compiled_form, has_compiled_form, register_compiled

try:  # numba is a dependency; without it the torch engine runs everything (the fallback)
    from . import _builtin  # noqa: F401 - registers the built-in cells' forms
    from ._infer import build, work_size
    from ._math import all_finite as _all_finite
except ImportError as err:
    if "numba" not in str(err):
        raise
    HAVE_NUMBA = False
else:
    HAVE_NUMBA = True

__all__ = ["HAVE_NUMBA", "WORK_STEPS", "CompiledEngine", "CompiledForm", "after_optimizer_step",
           "compiled_form", "has_compiled_form", "register_compiled", "weights_changed"]


#: Streams per block of the one-step kernel of many streams (its scratch holds this many
#: rows of gates, 2 MB for LSTM 128 in float32). One LSTM 40 -> 128 step, ms, blocks of
#: 256 / 512 / 1,024 / the whole batch: 2.41 / 2.37 / 2.43 / 2.44 at 1,000 streams,
#: 24.6 / 24.1 / 23.4 / 26.2 at 10,000, 248 / 251 / 235 / 296 at 100,000 (medians of 3).
STEP_BLOCK = 1024

_ONE_ROW = np.zeros(1, dtype=np.int64)  # the rows of one stream: slot 0

#: Steps of one stream's chunk that :meth:`CompiledEngine.step_rows` runs in kept scratch
#: (longer chunks allocate theirs: one allocation is small next to their work).
WORK_STEPS = 8


@cache
def _kernels(form: CompiledForm):
    return build(form)


class CompiledEngine:
    """Steps a model in compiled kernels (CPU, no autograd), reading its current weights.

    Use :meth:`for_model`, which gives ``None`` for a model the engine cannot run (a cell
    without a compiled form, a model off the CPU or not float32 / float64, a head other
    than :class:`~streamrnn.Readout` / ``nn.Linear``).

    The engine keeps a packed copy of the weights and re-packs it when they change (see
    :mod:`streamrnn.engines.compiled._pack`): a model trained between two steps, or given
    other weights by ``load_state_dict``, is stepped with its weights of that moment.

    Shape
    -----
    x: ``(B, T, F)`` or ids ``(B, T)`` -> y: ``(B, T, O)``; state parts ``(L, B, H)``.

    Threads
    -------
    Not safe under concurrent calls, and not locked (a lock per call would cost more
    than the call): use it from one thread at a time, or hold your own lock around each
    call.

    Examples
    --------
    >>> import torch, streamrnn
    >>> model = streamrnn.RecurrentModel(streamrnn.LSTM(3, 8, seed=0),
    ...                                  streamrnn.Readout(8, 2, seed=1))
    >>> engine = CompiledEngine.for_model(model)
    >>> x = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(0))
    >>> y, state = engine.run(x, model.initial_state(2))
    >>> with torch.no_grad():
    ...     y_ref, state_ref = model(x)
    >>> torch.allclose(y, y_ref, atol=1e-6), torch.allclose(state.c, state_ref.c, atol=1e-6)
    (True, True)
    >>> CompiledEngine.for_model(model.double()) is not None  # float64 too
    True
    """

    name = "compiled"

    def __init__(self, model, packed: Packed) -> None:
        self.model = model
        self.packed = packed
        self.tokens = packed.plan.embedding is not None
        form = packed.plan.form
        self.parts = form.parts + form.front_parts  # the layers' parts, then the front's
        self._core = len(form.parts)
        self.fronted = form.front is not None
        self.output_size = packed.output_size
        self.np_dtype = packed.np_dtype
        self.run_values, self.run_one, self.run_tokens, self.run_batch, self.run_step = (
            _kernels(form.kernels))
        # ready() -> bool: whether the model still fits the engine (changed weights are
        # re-packed); packed.current itself, one Python call less per step
        self.ready = packed.current
        self.stacks = packed.plan.form.additive
        self._scratch = (np.zeros(0, self.np_dtype), np.zeros(0, self.np_dtype))
        form = packed.plan.form  # warm scratch of step_rows, for chunks up to WORK_STEPS
        self._work = np.zeros(work_size(WORK_STEPS, packed.hidden, form.gates, form.acts,
                                        len(form.parts), packed.output_size), self.np_dtype)
        self._no_x = np.zeros((0, 0, 0), dtype=self.np_dtype)
        self._no_ids = np.zeros((0, 0), dtype=np.int64)

    @classmethod
    def for_model(cls, model) -> CompiledEngine | None:
        """The engine for ``model``, or ``None`` if it must run on torch."""
        plan = plan_for(model) if HAVE_NUMBA else None
        return None if plan is None else cls(model, Packed(model, plan))

    @staticmethod
    def finite(x: np.ndarray) -> bool:
        """Whether every value of the float array ``x`` is finite (a compiled loop: no
        temporary, unlike ``torch.isfinite``)."""
        return _all_finite(x)

    def step_rows(self, x: np.ndarray, parts: tuple, rows: np.ndarray, y: np.ndarray,
                  bad: np.ndarray, softmax: bool = False) -> int:
        """Step the streams at ``rows`` of the state ``parts`` (numpy, in place).

        ``x`` is ``(B, T, F)`` values (or ``(T, F)``, ``(F,)`` for one stream) or ``(B, T)``
        ids; ``y`` receives ``(B, T, O)``, or with ``softmax`` their softmax over O.
        Returns -1 (nothing changed) for a non-finite input, else the number of streams
        whose new state is not finite (``bad``). Call ``ready()`` first.
        """
        p = self.packed
        if self.tokens:
            return self.run_tokens(p.weights, p.meta, p.embedding, x, parts, rows, y, bad,
                                   self._work, softmax)
        if self.fronted:
            return self._through_front(x, parts, rows, y, bad, lambda z, core: self.run_values(
                p.weights, p.meta, z, core, rows, y, bad, self._work, softmax))
        return self.run_values(p.weights, p.meta, x, parts, rows, y, bad, self._work, softmax)

    def _through_front(self, x: np.ndarray, parts: tuple, rows: np.ndarray, y: np.ndarray,
                       bad: np.ndarray, run) -> int:
        """``run(z, layer_parts)`` on the front's map ``z`` of ``x`` (any of step_rows'
        shapes), then the front's state of ``rows`` is written. A non-finite ``x`` changes
        nothing (-1). A stream whose finite chunk the front overflows (values too large for
        the dtype) is stepped on zeros, then given NaN outputs and a NaN state and counted
        in ``bad``, as the torch engine's state turns non-finite: its caller resets it."""
        if not _all_finite(x):
            return -1
        x3 = x.reshape((1,) * (3 - x.ndim) + x.shape)
        core, own = parts[:self._core], parts[self._core:]
        z, new = self.packed.plan.front(x3, tuple(part[0, rows] for part in own))
        over = None if _all_finite(z) else ~np.isfinite(z).all(axis=(1, 2))
        if over is not None:
            z[over] = 0.0
        code = run(z.reshape(x.shape[:-1] + z.shape[-1:]), core)  # z finite: never -1
        for part, value in zip(own, new, strict=True):
            part[0, rows] = value
        if over is not None:
            y.reshape(len(rows), -1)[over] = np.nan
            for part in core:
                part[:, rows[over]] = np.nan
            bad[over] = 1
            code = int(np.count_nonzero(bad))
        return code

    def step_one(self, x: Tensor, parts: tuple, y: np.ndarray, bad: np.ndarray,
                 softmax: bool = False) -> int:
        """:meth:`step_rows` of one stream (slot 0 of ``parts``) from a checked CPU tensor
        without autograd: values ``(T, F)`` / ``(F,)`` of the engine's dtype and F features,
        or int64 ids ``(T,)``. Dense values are read in place by their address
        (no ``Tensor.numpy()``, ~0.7 us; a non-contiguous tensor, or a negative view, is
        copied first).

        Shape
        -----
        x: ``(T, F)`` -> y: ``(T, O)``; ``(F,)`` -> ``(O,)``.
        """
        if self.tokens or self.fronted:
            return self.step_rows(x.resolve_neg().numpy(), parts, _ONE_ROW, y, bad, softmax)
        if x.is_neg() or not x.is_contiguous():  # the address must hold the values
            x = x.resolve_neg().contiguous()
        p = self.packed
        steps = 1 if x.dim() == 1 else x.shape[0]
        return self.run_one(p.weights, p.meta, x.data_ptr(), steps, parts, y, self._work,
                            softmax)

    def step_batch(self, x: np.ndarray, parts: tuple, rows: np.ndarray, y: np.ndarray,
                   bad: np.ndarray) -> int:
        """:meth:`step_rows` for many streams at once: each layer's products are matrix
        products over the batch (BLAS), which read each weight once for all streams.

        Shape
        -----
        x: ``(B, T, F)`` or ids ``(B, T)`` -> y: ``(B, T, O)``.
        """
        p = self.packed
        if self.fronted:
            return self._through_front(x, parts, rows, y, bad, lambda z, core: self.run_batch(
                p.weights, p.meta, p.embedding, z, self._no_ids, core, rows, y, bad))
        x_in, ids = (self._no_x, x) if self.tokens else (x, self._no_ids)
        if x.shape[1] == 1 and self.stacks:
            return self.run_step(p.weights, p.meta, p.embedding, x_in, ids, parts, rows, y,
                                 bad, *self._scratch_for(rows.shape[0]))
        return self.run_batch(p.weights, p.meta, p.embedding, x_in, ids, parts, rows, y, bad)

    def _scratch_for(self, batch: int) -> tuple[np.ndarray, np.ndarray]:
        # The rows [x, h, 1] and the gates of one block of streams of a step (at most
        # STEP_BLOCK rows: the kernel goes through the batch block by block): kept between
        # calls, so that a step writes into warm memory, not fresh pages.
        rows = max(1, min(batch, STEP_BLOCK))  # at least one row: a block of 0 never ends
        xh, gates = self._scratch
        meta = self.packed.meta
        hid, width = int(meta[1]), int(meta[1]) + max(int(meta[1]), int(meta[2])) + 1
        n = self.packed.plan.form.gates * hid
        if gates.shape[0] != rows * n:
            self._scratch = xh, gates = (np.empty(rows * width, self.np_dtype),
                                         np.empty(rows * n, self.np_dtype))
        return xh, gates

    def run(self, x: Tensor, state: State) -> tuple[Tensor, State]:
        """One chunk for B streams from ``state``; returns the outputs and the new state
        (``ValueError`` for a non-finite input). One stream runs :meth:`step_rows`, more
        :meth:`step_batch`."""
        if not self.ready():
            raise ValueError("the model no longer fits the compiled engine (moved or cast?)")
        parts = tuple(state[k].detach().cpu().numpy().copy() for k in self.parts)
        batch, steps = x.shape[0], x.shape[1]
        y = np.empty((batch, steps, self.output_size), dtype=self.np_dtype)
        if steps:
            run = self.step_rows if batch == 1 else self.step_batch
            code = run(np.ascontiguousarray(x.detach().numpy()), parts,
                                  np.arange(batch, dtype=np.int64), y,
                                  np.zeros(batch, dtype=np.uint8))
            if code < 0:
                raise ValueError("x has a non-finite value (NaN or inf)")
        return torch.from_numpy(y), State(**{k: torch.from_numpy(a)
                                             for k, a in zip(self.parts, parts, strict=True)})
