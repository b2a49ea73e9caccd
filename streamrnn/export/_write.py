"""Writing an exported graph: ``to_onnx``, its metadata, int8 quantization (private)."""

from __future__ import annotations

import json
import logging
import os
import tempfile

from .._io import atomic_write_bytes
from .._version import __version__
from ._build import model_graph

__all__ = ["FORMAT", "OPSET", "write_graph", "to_onnx"]

#: The metadata key that marks a file as a streamrnn export, and its format version.
FORMAT = ("streamrnn_format", "1")
#: The default ONNX opset (the oldest that has every node the graphs use, for the
#: widest range of runtimes).
OPSET = 17
_QUANTIZE = (None, "int8")


def _check_opset(opset) -> int:
    from onnx.defs import onnx_opset_version

    if opset is None:
        return OPSET
    top = onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not 13 <= opset <= top:
        raise ValueError(f"opset must be an int in [13, {top}] or None, got {opset!r}")
    return opset


def write_graph(g, path, meta: dict, *, opset=None, quantize=None,
                float_prefix: str | None = None) -> None:
    """Write the graph ``g`` with ``meta`` (JSON-able values) as metadata, atomically.

    With ``quantize="int8"``, the nodes whose names (their first output's) start with
    ``float_prefix`` stay float (a front end whose features int8 would coarsen).
    """
    import onnx
    from onnx import helper

    opset = _check_opset(opset)
    if quantize not in _QUANTIZE:
        raise ValueError(f"quantize must be one of {list(_QUANTIZE)}, got {quantize!r}")
    proto = helper.make_model(
        g.proto(), opset_imports=[helper.make_opsetid("", opset)],
        producer_name="streamrnn", producer_version=__version__,
    )
    proto.ir_version = min(proto.ir_version, 8)  # readable by runtimes of 2022 on
    onnx.checker.check_model(proto, full_check=True)
    if quantize == "int8":
        proto = _int8(proto, float_prefix)
    props = {FORMAT[0]: FORMAT[1], "streamrnn_version": __version__,
             "quantize": json.dumps(quantize)}
    props.update({k: json.dumps(v) for k, v in meta.items()})
    helper.set_model_props(proto, props)
    atomic_write_bytes(os.fspath(path), proto.SerializeToString())


def _int8(proto, float_prefix: str | None):
    """onnxruntime's dynamic quantization: int8 weights, activations quantized per call."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice to pre-process, and the int64 ids it skips
    try:
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = os.path.join(tmp, "f.onnx"), os.path.join(tmp, "q.onnx")
            onnx.save(proto, src)
            keep = [] if not float_prefix else [n for n in _node_names(proto.graph)
                                                 if n.startswith(float_prefix)]
            quantize_dynamic(src, dst, weight_type=QuantType.QInt8, nodes_to_exclude=keep,
                             extra_options={"EnableSubgraph": True})
            return onnx.load(dst)
    finally:
        root.setLevel(level)


def _node_names(graph) -> list[str]:
    names = []
    for node in graph.node:
        names.append(node.name)
        for attr in node.attribute:
            if attr.g.node:
                names += _node_names(attr.g)
    return names


def to_onnx(model, path, *, opset: int | None = None, quantize: str | None = None) -> None:
    """Write ``model`` as an ONNX graph with its recurrent state as explicit inputs and
    outputs, for onnxruntime in any language.

    Parameters
    ----------
    model : Cell or RecurrentModel
        A cell whose registered name has an export form (``streamrnn.export.
        registered_exports()``: RNN, LSTM, GRU, MinGRU, MinLSTM, any number of layers,
        float32 or float64), or a :class:`~streamrnn.RecurrentModel` of one, with a
        ``Readout`` / ``nn.Linear`` head or none, and a token embedding or none.
    path : str or path-like
        The ``.onnx`` file (written atomically).
    opset : int or None
        The ONNX opset (``None``: 17).
    quantize : None or "int8"
        ``"int8"``: onnxruntime's dynamic quantization (int8 weights).

    Notes
    -----
    Graph inputs: ``x`` ``(B, T, F)`` in the model's dtype (token ids: int64 ``(B, T)``)
    and ``state_<part>`` ``(L, B, ...)`` per state part; outputs ``y`` ``(B, T, O)`` and
    ``new_state_<part>``. B and T are dynamic everywhere; T may be 0. The metadata
    (:func:`~streamrnn.export.read_metadata`) holds streamrnn's version, the model's
    configuration, the state parts with their shapes and the input's dtype.

    Shape
    -----
    x: ``(B, T, F)`` or ids ``(B, T)`` -> y: ``(B, T, O)``; state parts ``(L, B, ...)``.

    Examples
    --------
    >>> import os, tempfile, numpy as np, onnxruntime as ort, streamrnn
    >>> from streamrnn.export import to_onnx
    >>> path = os.path.join(tempfile.mkdtemp(), "lstm.onnx")
    >>> to_onnx(streamrnn.LSTM(5, 16, num_layers=2, seed=0), path)
    >>> session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    >>> [i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()]
    (['x', 'state_h', 'state_c'], ['y', 'new_state_h', 'new_state_c'])
    >>> zeros = np.zeros((2, 3, 16), np.float32)
    >>> y, h, c = session.run(None, {"x": np.ones((3, 7, 5), np.float32),
    ...                              "state_h": zeros, "state_c": zeros})
    >>> y.shape, h.shape, c.shape
    ((3, 7, 16), (2, 3, 16), (2, 3, 16))
    >>> to_onnx(streamrnn.cells.DecayGRU(3, 4), path)
    Traceback (most recent call last):
    ...
    ValueError: cell DecayGRU (registered name 'decaygru') has no export form; cells with
    one: ['convgru', 'gru', 'lstm', 'mingru', 'minlstm', 'rnn'] (add one with
    streamrnn.export.register_export)
    """
    g, facts = model_graph(model)
    config = model.config() if callable(getattr(model, "config", None)) else {}
    write_graph(g, path, {"config": config, **facts}, opset=opset, quantize=quantize)
