"""Engines: how a model is stepped. Streams, banks and learners ask an engine to run.

- :class:`TorchEngine`, the reference: the model's own ``forward`` (torch's fused
  kernels, autograd when asked). It runs every model of the cell protocol, on any device.
- :class:`~streamrnn.engines.compiled.CompiledEngine` (numba, CPU): the built-in cells
  (RNN, LSTM, GRU), 1..N layers, float32 and float64, with an embedding and a linear
  head, for small batches; and (:mod:`streamrnn.engines.compiled.learner`) the exact
  single-stream TBPTT the river estimators run. Cells are found by registered name in a
  table of compiled forms (:func:`register_compiled`); a cell without one runs on torch.

:class:`StreamRunner` (one stream) and :class:`RowStepper` (rows of a bank) choose the
engine for each call by measured rules (see :mod:`streamrnn.engines._select`); the
choice never changes results beyond 1e-5 (float32) / 1e-10 (float64), which one parity
suite proves (``tests/engines``).
"""

from ._select import COMPILED_MAX_BATCH, RowStepper, StreamRunner, finite
from .compiled import (
    CompiledEngine,
    CompiledForm,
    compiled_form,
    register_compiled,
    weights_changed,
)
from .reference import TorchEngine

__all__ = [
    "COMPILED_MAX_BATCH", "CompiledEngine", "CompiledForm", "RowStepper", "StreamRunner",
    "TorchEngine", "compiled_form", "finite", "register_compiled", "weights_changed",
]
