"""The ragged-``lengths`` check of an export form, shared by the export suites.

``add_model(..., lengths)``: stream ``b``'s steps from ``lengths[b]`` on are padding; its
outputs before them and its state after the chunk are the eager model's over its first
``lengths[b]`` steps alone.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import torch

import streamrnn
from streamrnn.export import Graph, add_model, write_graph

__all__ = ["check_lengths"]


def check_lengths(model, path, lens, *, features: int, outputs: int, state_scale: float,
                  dtype=torch.float32) -> None:
    """Write ``model``'s chunk graph with a ``lengths`` input to ``path``, run a batch of
    ``len(lens)`` streams of ``max(lens)`` steps from a random state (``state_scale``
    times normal draws), and compare each stream with the eager model."""
    np_dtype = np.float32 if dtype == torch.float32 else np.float64
    layers = model.cell.num_layers
    g = Graph("lengths")
    x = g.input("x", np_dtype, ["T", "B", features])
    lengths = g.input("lengths", np.int64, ["B"])
    shapes = {k: [layers, "B", *v] for k, v in model.cell.state_shapes().items()}
    state = {k: g.input(f"state_{k}", np_dtype, shapes[k]) for k in shapes}
    y, new = add_model(g, model, x, state, lengths)
    g.output("y", y, np_dtype, ["T", "B", outputs])
    for k, v in new.items():
        g.output(f"new_state_{k}", v, np_dtype, shapes[k])
    write_graph(g, path, {})
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(3)
    batch = len(lens)
    xs = torch.randn(int(max(lens)), batch, features, generator=gen, dtype=dtype)
    s0 = streamrnn.State(**{k: state_scale * torch.randn(v.shape, generator=gen, dtype=dtype)
                            for k, v in model.initial_state(batch, dtype=dtype).items()})
    y, *got = session.run(None, {"x": xs.numpy(), "lengths": np.asarray(lens),
                                 **{f"state_{k}": v.numpy() for k, v in s0.items()}})
    atol = 1e-5 if dtype == torch.float32 else 1e-10
    for b, n in enumerate(lens):
        with torch.no_grad():
            want_y, want = model(xs[:n, b:b + 1].transpose(0, 1),
                                 streamrnn.State(**{k: v[:, b:b + 1] for k, v in s0.items()}))
        np.testing.assert_allclose(y[:n, b], want_y[0].numpy(), rtol=0, atol=atol)
        for k, part in zip(s0.parts, got, strict=True):
            np.testing.assert_allclose(part[:, b], want[k][:, 0].numpy(), rtol=0, atol=atol)
