"""Parity: an exported graph run by onnxruntime chunk by chunk, the state carried between
calls through its explicit inputs and outputs, equals the eager model over the whole
sequence in one pass: float32 to 1e-5, for every exportable cell, 1 and 2 layers, with
and without an embedding and a readout, at B in {1, 3, 7} from ONE exported file, over
hypothesis chunkings with empty and one-step chunks, from a random (non-zero) state.

This one test catches the known ways to export a silently wrong recurrent model: a
graph that runs only at batch 1, a batch baked into the initial state, a frozen time
axis, and a missing state port (words broken at chunk boundaries).
"""

from __future__ import annotations

import functools

import numpy as np
import onnxruntime as ort
import pytest
import torch
from _exported import KINDS, cell, fresh_path
from _lengths import check_lengths
from hypothesis import given, settings
from hypothesis import strategies as st

import streamrnn
from streamrnn.export import OnnxModel, to_onnx

FEATURES, HIDDEN, OUT, TOKENS = 3, 6, 4, 7
WRAPS = ("bare", "readout", "embedding", "embedding+readout")
CONFIGS = [(kind, layers, wrap) for kind in KINDS for layers in (1, 2) for wrap in WRAPS]


def build(kind: str, layers: int, wrap: str, dtype=torch.float32):
    core = cell(kind, FEATURES, HIDDEN, layers, dtype=dtype, seed=layers)
    head = streamrnn.Readout(HIDDEN, OUT, seed=5, dtype=dtype) if "readout" in wrap else None
    if wrap == "bare":
        return core
    return streamrnn.RecurrentModel(core, head, num_tokens=TOKENS if "embedding" in wrap
                                    else None, seed=6)


@functools.cache
def exported(kind: str, layers: int, wrap: str):
    """(eager model, onnxruntime session) of one configuration: ONE file for every B."""
    model = build(kind, layers, wrap).eval()
    path = fresh_path(kind)
    to_onnx(model, path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return model, ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def inputs(model, batch: int, steps: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    if getattr(model, "num_tokens", None) is not None:
        return torch.randint(0, TOKENS, (batch, steps), generator=gen)
    return torch.randn(batch, steps, FEATURES, generator=gen)


def random_state(model, batch: int, seed: int) -> streamrnn.State:
    gen = torch.Generator().manual_seed(seed + 1)
    zero = model.initial_state(batch)
    return streamrnn.State(**{k: 0.5 * torch.randn(v.shape, generator=gen) for k, v in
                              zero.items()})


@st.composite
def chunkings(draw, steps: int) -> list[int]:
    """Chunk lengths summing to ``steps``, empty and one-step chunks likely."""
    out, left = [], steps
    while left > 0 or (len(out) < 2 and draw(st.booleans())):
        length = draw(st.sampled_from([0, 1, 1, 2, 3, 5, 8]))
        length = min(length, left) if len(out) < 30 else left
        out.append(length)
        left -= length
    return out


@settings(max_examples=150, deadline=None, database=None)
@given(config=st.sampled_from(CONFIGS), batch=st.sampled_from([1, 3, 7]),
       seed=st.integers(0, 2**16), data=st.data())
def test_chunked_onnxruntime_equals_one_eager_pass(config, batch, seed, data):
    model, session = exported(*config)
    steps = data.draw(st.integers(0, 24), label="steps")
    split = data.draw(chunkings(steps), label="split")
    x = inputs(model, batch, steps, seed)
    state0 = random_state(model, batch, seed)
    with torch.no_grad():
        want, want_state = model(x, state0)

    feeds_state = {f"state_{k}": v.numpy() for k, v in state0.items()}
    got, start = [], 0
    for length in split:  # the raw graph: T = 0 goes through the graph's If, too
        y, *new = session.run(None, {"x": x[:, start:start + length].numpy(), **feeds_state})
        assert y.shape == (batch, length, want.shape[2])
        got.append(y)
        feeds_state = {f"state_{k}": v for k, v in zip(state0.parts, new, strict=True)}
        start += length
    got = np.concatenate(got, axis=1) if got else np.zeros((batch, 0, want.shape[2]))
    np.testing.assert_allclose(got, want.numpy(), rtol=0, atol=1e-5)
    for k in state0.parts:
        np.testing.assert_allclose(feeds_state[f"state_{k}"], want_state[k].numpy(), rtol=0,
                                   atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_float64_exports_equal_the_eager_model_to_1e_10(kind):
    # onnxruntime's fused recurrent kernels run float32 only: float64 takes the Scan form.
    model = build(kind, 2, "readout", dtype=torch.float64)
    path = fresh_path()
    to_onnx(model, path)
    onnx_model = OnnxModel(path)
    x = torch.randn(3, 9, FEATURES, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want, want_state = model(x)
    got, got_state = onnx_model(x)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
    for k in want_state.parts:
        torch.testing.assert_close(got_state[k], want_state[k], rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_the_interface_outside_checks_use(kind):
    # streamrnn.LSTM(5, 16, num_layers=2): x (B, T, 5), state_h (and state_c) (2, B, 16).
    model = getattr(streamrnn, kind)(5, 16, num_layers=2, seed=0)
    path = fresh_path()
    to_onnx(model, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    parts = ["h", "c"] if kind == "LSTM" else ["h"]
    assert [(i.name, i.shape, i.type) for i in session.get_inputs()] == [
        ("x", ["B", "T", 5], "tensor(float)")] + [
        (f"state_{p}", [2, "B", 16], "tensor(float)") for p in parts]
    assert [o.name for o in session.get_outputs()] == ["y"] + [f"new_state_{p}" for p in parts]
    for batch, steps in [(1, 1), (4, 11), (2, 0)]:
        x = torch.randn(batch, steps, 5)
        out = session.run(None, {"x": x.numpy(), **{
            f"state_{p}": np.zeros((2, batch, 16), np.float32) for p in parts}})
        with torch.no_grad():
            want, state = model(x)
        np.testing.assert_allclose(out[0], want.numpy(), rtol=0, atol=1e-5)
        for p, got in zip(parts, out[1:], strict=True):
            np.testing.assert_allclose(got, state[p].numpy(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lengths_leave_each_streams_state_after_its_last_real_step(kind, dtype):
    # add_model(..., lengths): stream b's steps from lengths[b] on are padding; its state
    # is the eager state after its first lengths[b] steps (ragged chunks in one batch; the
    # fused kernels, the Scan forms and the min forms each honour it).
    check_lengths(build(kind, 2, "readout", dtype=dtype), fresh_path(), [6, 1, 3, 5],
                  features=FEATURES, outputs=OUT, state_scale=0.5, dtype=dtype)
