"""Recurrent cells: the :class:`Cell` protocol, the registry of cells by name, the
built-in :class:`RNN`, :class:`LSTM` and :class:`GRU` on torch's fused kernels, the
minimal :class:`MinGRU` and :class:`MinLSTM` (a chunk as one scan per layer),
:class:`DecayGRU` for irregular time steps (Δt as the last input column), and
:class:`ConvGRU` (a causal convolution over time and features before a GRU).

Everything that steps, stores or learns a recurrent network (Stream, StreamBank,
OnlineLearner, the shapes, the river estimators, checkpoints) depends on the protocol
defined in :mod:`streamrnn.cells.base` and nothing else. Adding a cell is one module that
subclasses :class:`Cell` and registers it (``@register("name")``).
"""

from .base import Cell, cell_class, cell_name, register, registered
from .classic import GRU, LSTM, RNN, RecurrentLayer
from .convgru import ConvGRU
from .decaygru import DecayGRU
from .mingru import MinGRU
from .minlstm import MinLSTM

__all__ = [
    "GRU", "LSTM", "RNN", "Cell", "ConvGRU", "DecayGRU", "MinGRU", "MinLSTM", "RecurrentLayer",
    "cell_class", "cell_name", "register", "registered",
]
