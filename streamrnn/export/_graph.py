"""A small ONNX graph builder: nodes as plain records, made into protobuf at the end.

The builder needs nothing but numpy; :meth:`Graph.proto` imports ``onnx`` only when the
graph is written, so the export forms can be declared (and registered) where onnx is not
installed. Names are made unique by the builder; a value is referred to by its name.

Examples
--------
>>> import numpy as np
>>> g = Graph("affine")
>>> x = g.input("x", np.float32, ["B", 3])
>>> y = g.op("Add", g.op("MatMul", x, g.const(np.ones((3, 2), np.float32))),
...          g.const(np.zeros(2, np.float32)))
>>> g.output("y", y, np.float32, ["B", 2])
>>> [n.op for n in g.nodes], g.outputs[0].name
(['MatMul', 'Add', 'Identity'], 'y')
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Graph", "Node", "ValueInfo", "onnx_type"]

_ONNX_TYPES = {  # numpy dtype -> onnx.TensorProto data type
    np.dtype(np.float32): 1, np.dtype(np.uint8): 2, np.dtype(np.int8): 3,
    np.dtype(np.int32): 6, np.dtype(np.int64): 7, np.dtype(np.bool_): 9,
    np.dtype(np.float64): 11,
}  # fmt: skip


def onnx_type(dtype) -> int:
    """The ``onnx.TensorProto`` element type of a numpy (or torch) dtype."""
    name = str(dtype).replace("torch.", "")
    try:
        return _ONNX_TYPES[np.dtype(name)]
    except (KeyError, TypeError):
        known = sorted(map(str, _ONNX_TYPES))
        raise ValueError(f"dtype must be one of {known}, got {dtype}") from None


@dataclass
class Node:
    """One node: ``op`` in ``domain`` from ``inputs`` to ``outputs`` with ``attrs``."""

    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict
    domain: str = ""


@dataclass
class ValueInfo:
    """A graph input or output: name, numpy dtype and shape (ints, or str for a dynamic
    axis; ``None`` for an unknown shape)."""

    name: str
    dtype: np.dtype
    shape: list | None


@dataclass
class Graph:
    """Nodes, constants, inputs and outputs of one ONNX graph (or a subgraph).

    Threads
    -------
    Not safe under concurrent calls, and not locked: build it from one thread.
    """

    name: str
    nodes: list[Node] = field(default_factory=list)
    inputs: list[ValueInfo] = field(default_factory=list)
    outputs: list[ValueInfo] = field(default_factory=list)
    consts: dict[str, np.ndarray] = field(default_factory=dict)
    prefix: str = ""
    _count: list = field(default_factory=lambda: [0])
    _seen: dict = field(default_factory=dict)  # (dtype, shape, bytes) -> constant's name

    def fresh(self, hint: str = "v") -> str:
        """A name no other value of the graph (or of its subgraphs) has."""
        self._count[0] += 1
        return f"{self.prefix}{hint}_{self._count[0]}"

    def subgraph(self, name: str) -> Graph:
        """A graph for a node attribute (Scan's body, If's branches) that shares this
        one's names; its constants are its own initializers (onnxruntime's quantizer
        looks for a node's weights in the node's own graph)."""
        return Graph(name, prefix=self.prefix, _count=self._count)

    def input(self, name: str, dtype, shape: list | None) -> str:
        """Declare a graph input."""
        self.inputs.append(ValueInfo(name, np.dtype(dtype), shape))
        return name

    def output(self, name: str, value: str, dtype, shape: list | None) -> None:
        """Declare ``value`` as the graph output ``name`` (through an Identity node)."""
        self.nodes.append(Node("Identity", [value], [name], {}))
        self.outputs.append(ValueInfo(name, np.dtype(dtype), shape))

    def const(self, value, name: str | None = None, dtype=None) -> str:
        """A constant (an initializer of the graph); a 0-d array stays a scalar."""
        arr = np.array(value, dtype=dtype, order="C")  # ascontiguousarray makes 0-d 1-d
        same = (arr.dtype.str, arr.shape, arr.tobytes())
        if name is None and same in self._seen:
            return self._seen[same]
        key = name or self.fresh("c")
        self.consts[key] = arr
        self._seen.setdefault(same, key)
        return key

    def ints(self, *values: int) -> str:
        """An int64 vector constant (shapes, axes, indices)."""
        return self.const(np.array(values, dtype=np.int64))

    def op(self, op: str, *inputs: str, n_out: int = 1, domain: str = "", **attrs):
        """Add a node; returns its output's name (a tuple of names for ``n_out > 1``).

        An empty string stands for an optional input that is left out.
        """
        outs = [self.fresh(op.lower()) for _ in range(n_out)]
        self.nodes.append(Node(op, list(inputs), outs, attrs, domain))
        return outs[0] if n_out == 1 else tuple(outs)

    # -- into protobuf -------------------------------------------------------------
    def proto(self):
        """This graph as an ``onnx.GraphProto``."""
        from onnx import helper, numpy_helper

        def value_info(v: ValueInfo):
            return helper.make_tensor_value_info(v.name, onnx_type(v.dtype), v.shape)

        nodes = []
        for n in self.nodes:
            attrs = {k: (v.proto() if isinstance(v, Graph) else v) for k, v in n.attrs.items()}
            nodes.append(helper.make_node(n.op, n.inputs, n.outputs, name=n.outputs[0],
                                          domain=n.domain or None, **attrs))
        inits = [numpy_helper.from_array(a, k) for k, a in self.consts.items()]
        return helper.make_graph(nodes, self.name, [value_info(v) for v in self.inputs],
                                 [value_info(v) for v in self.outputs], inits)
