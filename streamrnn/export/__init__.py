"""Export with explicit state: ONNX graphs that onnxruntime runs in any language.

:func:`to_onnx` writes a cell (RNN, LSTM, GRU, MinGRU, MinLSTM, ConvGRU; any number of layers)
or a :class:`~streamrnn.RecurrentModel` of one as an ONNX graph whose recurrent state is
explicit: inputs ``x`` and ``state_<part>``, outputs ``y`` and ``new_state_<part>``,
batch and time dynamic, and metadata (:func:`read_metadata`) that says what the file
holds. :class:`OnnxModel` runs such a file with onnxruntime as a model of the cell
protocol, so :class:`~streamrnn.Stream` and :class:`~streamrnn.StreamBank` run it
unchanged. A cell is exportable when its registered name has an *export form*
(:func:`register_export`; see :mod:`streamrnn.export.forms`).

``onnx`` and ``onnxruntime`` are needed (``pip install streamrnn[export]``); they are
imported when a file is written or read, not when this package is. Graphs of more than
a model (the digit recogniser's, PCM to posteriors:
``streamrnn.apps.speech.export_onnx``) are built with :class:`Graph`, :func:`add_model`
and :func:`if_steps`, and written with :func:`write_graph`.
"""

from . import _classic, _conv, _min  # noqa: F401  (they register the built-in export forms)
from ._build import add_model, if_steps
from ._graph import Graph
from ._runtime import OnnxModel, read_metadata
from ._write import to_onnx, write_graph
from .forms import export_form, register_export, registered_exports, scan_form

__all__ = [
    "Graph", "OnnxModel", "add_model", "export_form", "if_steps", "read_metadata",
    "register_export", "registered_exports", "scan_form", "to_onnx", "write_graph",
]
