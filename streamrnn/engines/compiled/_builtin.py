"""The compiled forms of the built-in cells, registered under their names (private)."""

from __future__ import annotations

from . import _cells, _conv, _mingru  # noqa: F401 - _conv, _mingru register their forms
from .forms import CompiledForm, register_compiled

__all__ = ["GRU_FORM", "LSTM_FORM", "RELU_FORM", "TANH_FORM"]

LSTM_FORM = CompiledForm(4, 5, ("h", "c"), _cells.lstm_step, _cells.lstm_backward,
                         additive=True)
GRU_FORM = CompiledForm(3, 4, ("h",), _cells.gru_step, _cells.gru_backward)
TANH_FORM = CompiledForm(1, 1, ("h",), _cells.tanh_step, _cells.tanh_backward,
                         additive=True)
RELU_FORM = CompiledForm(1, 1, ("h",), _cells.relu_step, _cells.relu_backward,
                         additive=True)

register_compiled("lstm", LSTM_FORM)
register_compiled("gru", GRU_FORM)
register_compiled("rnn", lambda cell: TANH_FORM if cell.nonlinearity == "tanh" else RELU_FORM)
