"""Reading an exported file: its metadata, and :class:`OnnxModel` (onnxruntime)."""

from __future__ import annotations

import json
import os

import numpy as np
import torch
from torch import Tensor, nn

from ..cells.base import Cell
from ..state import State
from ._write import FORMAT

__all__ = ["OnnxModel", "read_metadata"]


def _load(path):
    import onnx
    from google.protobuf.message import DecodeError

    where = os.fspath(path)
    if not os.path.isfile(where):
        raise ValueError(f"path must be an existing .onnx file, got {where!r}")
    try:
        proto = onnx.load(where)
    except (DecodeError, ValueError, RuntimeError, OSError) as err:
        raise ValueError(f"{where!r} is not a readable ONNX file (truncated or not ONNX): "
                         f"{err}") from None
    return proto


def _metadata(proto, where: str) -> dict:
    props = {p.key: p.value for p in proto.metadata_props}
    if props.get(FORMAT[0]) != FORMAT[1]:
        raise ValueError(
            f"{where!r} is not a streamrnn export (its metadata has no "
            f"{FORMAT[0]} = {FORMAT[1]!r}); write one with streamrnn.export.to_onnx"
        )
    out = {"streamrnn_version": props.get("streamrnn_version")}
    for key, value in props.items():
        if key in (FORMAT[0], "streamrnn_version"):
            continue
        try:
            out[key] = json.loads(value)
        except ValueError:
            raise ValueError(f"{where!r}: metadata {key!r} is not JSON: {value[:80]!r}") from None
    for key in ("state", "dtype", "input_dtype", "input_size", "output_size", "config"):
        if key not in out:
            raise ValueError(f"{where!r}: metadata has no {key!r}")
    return out


def read_metadata(path) -> dict:
    """The metadata of a file written by :func:`~streamrnn.export.to_onnx`.

    Keys: ``streamrnn_version``, ``config`` (the model's configuration), ``cell``
    (registered name), ``state`` (``{part: [L, "B", ...]}``), ``dtype``, ``input_dtype``,
    ``input`` ("values" or "ids"), ``input_size``, ``output_size``, ``num_tokens``,
    ``num_layers``, ``quantize``. A file that is not ONNX, is truncated, or is not a
    streamrnn export raises ``ValueError``.

    Examples
    --------
    >>> import os, tempfile, streamrnn
    >>> from streamrnn.export import read_metadata, to_onnx
    >>> path = os.path.join(tempfile.mkdtemp(), "gru.onnx")
    >>> to_onnx(streamrnn.GRU(5, 16, num_layers=2), path)
    >>> meta = read_metadata(path)
    >>> meta["state"], meta["input_dtype"], meta["config"]["type"]
    ({'h': [2, 'B', 16]}, 'float32', 'GRU')
    """
    return _metadata(_load(path), os.fspath(path))


def _value_shape(v) -> list:
    return [d.dim_param if d.HasField("dim_param") else d.dim_value
            for d in v.type.tensor_type.shape.dim]


def _check_interface(proto, meta: dict, where: str) -> None:
    """The graph's inputs and outputs must be those its metadata describes."""
    want_in = {"x": ["B", "T"] + ([] if meta.get("input") == "ids" else [meta["input_size"]])}
    want_out = {"y": ["B", "T", meta["output_size"]]}
    for part, shape in meta["state"].items():
        want_in[f"state_{part}"] = shape
        want_out[f"new_state_{part}"] = shape
    for what, values, want in (("inputs", proto.graph.input, want_in),
                               ("outputs", proto.graph.output, want_out)):
        got = {v.name: _value_shape(v) for v in values if v.name not in
               {i.name for i in proto.graph.initializer}}
        if got != want:
            raise ValueError(f"{where!r} does not match its metadata: graph {what} {got}, "
                             f"metadata says {want}")


class OnnxModel(Cell):
    """An exported model run by onnxruntime, as a model of the cell protocol.

    It runs in :class:`~streamrnn.Stream` and :class:`~streamrnn.StreamBank` (on their
    torch engine: ``forward`` calls onnxruntime) like the model it was exported from,
    with one ``InferenceSession`` for all the streams of a bank. An empty chunk returns
    the entering state without calling onnxruntime.

    Parameters
    ----------
    path : str or path-like
        A file written by :func:`~streamrnn.export.to_onnx`.
    threads : int
        onnxruntime's intra-op threads (1: the session never competes with the caller).

    Attributes
    ----------
    metadata : dict
        :func:`~streamrnn.export.read_metadata` of the file.
    session : onnxruntime.InferenceSession
        The one session this model runs.

    Shape
    -----
    x: ``(B, T, F)`` (or ids ``(B, T)``) -> y: ``(B, T, O)``; state parts ``(L, B, ...)``.

    Threads
    -------
    As a torch module: ``forward`` keeps nothing between calls (the state goes in and
    comes out), so several threads may run it at once, each with its own state. Changing
    the weights (training, ``load_state_dict``) while another thread runs it is not
    safe.

    Examples
    --------
    >>> import os, tempfile, torch, streamrnn
    >>> from streamrnn.export import OnnxModel, to_onnx
    >>> model = streamrnn.RecurrentModel(streamrnn.LSTM(3, 8, seed=0),
    ...                                  streamrnn.Readout(8, 2, seed=1))
    >>> path = os.path.join(tempfile.mkdtemp(), "m.onnx")
    >>> to_onnx(model, path)
    >>> onnx_model = OnnxModel(path)
    >>> onnx_model.state_parts, onnx_model.input_size, onnx_model.output_size
    (('h', 'c'), 3, 2)
    >>> x = torch.randn(10, 3, generator=torch.Generator().manual_seed(0))
    >>> stream = streamrnn.Stream(onnx_model)
    >>> got = torch.cat([stream.push(x[:4]), stream.push(x[4:4]), stream.push(x[4:])])
    >>> want = model(x[None])[0][0].detach()
    >>> float((got - want).abs().max()) < 1e-5
    True
    """

    def __init__(self, path, *, threads: int = 1) -> None:
        super().__init__()
        import onnxruntime as ort

        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive int, got {threads!r}")
        where = os.fspath(path)
        proto = _load(where)
        meta = _metadata(proto, where)
        _check_interface(proto, meta, where)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(proto.SerializeToString(), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types
            raise ValueError(f"onnxruntime cannot load {where!r}: {err}") from None
        self.path = where
        self.metadata = meta
        self.input_size = int(meta["input_size"])
        self.num_layers = int(meta.get("num_layers", 1))
        self._out = int(meta["output_size"])
        self.num_tokens = meta.get("num_tokens")
        self._np_dtype = np.dtype(meta["dtype"])
        torch_dtype = torch.from_numpy(np.zeros(0, self._np_dtype)).dtype
        # No weights of its own: an empty parameter tells Stream / StreamBank the dtype.
        self.anchor = nn.Parameter(torch.zeros(0, dtype=torch_dtype), requires_grad=False)
        self._parts = {k: tuple(v[2:]) for k, v in meta["state"].items()}
        cfg = meta["config"]
        self.hidden_size = int(cfg.get("hidden_size", cfg.get("cell", {}).get(
            "hidden_size", 0)) or 0)

    @property
    def output_size(self) -> int:
        """Features per output step (O)."""
        return self._out

    def config(self) -> dict:
        """The exported model's configuration, from the metadata."""
        return dict(self.metadata["config"])

    def initial_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        """The zero state of ``batch_size`` streams.

        Shape
        -----
        every part ``(L, B, ...)``.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 0:
            raise ValueError(f"batch_size must be a non-negative int, got {batch_size!r}")
        dtype = self.anchor.dtype if dtype is None else dtype
        return State(**{k: torch.zeros(self.num_layers, batch_size, *shape, dtype=dtype,
                                       device=device) for k, shape in self._parts.items()})

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Run a chunk through onnxruntime from ``state`` (``None``: zeros).

        Shape
        -----
        x: ``(B, T, F)`` or ids ``(B, T)`` -> y: ``(B, T, O)``; state ``(L, B, ...)``.
        """
        if self.num_tokens is not None and x.dim() == 3 and x.shape[2] == 1:
            x = x[..., 0]
        if state is None:
            state = self.initial_state(x.shape[0])
        if x.shape[1] == 0:
            return x.new_zeros(x.shape[0], 0, self._out, dtype=self.anchor.dtype), state
        feeds = {"x": np.ascontiguousarray(x.detach().cpu().numpy())}
        for k in self._parts:
            feeds[f"state_{k}"] = np.ascontiguousarray(state[k].detach().cpu().numpy())
        y, *new = self.session.run(None, feeds)
        return torch.from_numpy(y), State(**{k: torch.from_numpy(v) for k, v in
                                             zip(self._parts, new, strict=True)})

    def extra_repr(self) -> str:
        return f"{self.path!r}, cell={self.metadata.get('cell')!r}"
