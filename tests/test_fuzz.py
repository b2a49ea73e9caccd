"""The fuzz suite: hostile values of every kind thrown at the public push, load and parse
entry points (hypothesis). Each call either works or raises ``ValueError`` / ``TypeError``
(never ``KeyError``, ``IndexError``, ``RuntimeError``, ``RecursionError``, a crash or a
hang), and a refused call changes nothing: the object's state_dict is the same after it.
A call that hangs fails through ``signal.alarm`` (no wall-clock assertion).
"""

from __future__ import annotations

import enum
import json
import math
import signal
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import streamrnn
from streamrnn.adapters.audio import AudioFeatures
from streamrnn.adapters.sensor import SensorAdapter

F, H = 3, 4
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


class Color(str, enum.Enum):
    RED = "red"


@contextmanager
def bounded(seconds: int = 20):
    """Fail instead of hanging: a call that runs ``seconds`` raises TimeoutError."""

    def fire(*_):
        raise TimeoutError(f"a call ran for {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


# -- hostile values ----------------------------------------------------------------------
FLOATS = st.sampled_from([0.0, -1.0, 1e-300, 3e38, 1e300, -1e300, math.inf, -math.inf,
                          math.nan, 1e25])
SHAPES = st.lists(st.integers(0, 5), min_size=0, max_size=4).map(tuple)
DTYPES = st.sampled_from([torch.float32, torch.float64, torch.float16, torch.int64,
                          torch.bool, torch.complex64, torch.uint8])


@st.composite
def tensors(draw):
    shape = draw(SHAPES)
    dtype = draw(DTYPES)
    t = torch.zeros(shape, dtype=dtype)
    if t.numel() and dtype.is_floating_point:
        t = t + torch.tensor(draw(FLOATS), dtype=torch.float64).to(dtype)
    kind = draw(st.sampled_from(["plain", "grad", "sparse", "view", "meta"]))
    if kind == "grad" and dtype.is_floating_point:
        t.requires_grad_(True)
    elif kind == "sparse" and t.dim() >= 1:
        t = t.to_sparse()
    elif kind == "view" and t.dim() >= 1 and t.shape[0] > 1:
        t = t.flip(0) if dtype != torch.bool else t
    elif kind == "meta":
        t = torch.empty(shape, dtype=dtype, device="meta")
    return t


@st.composite
def arrays(draw):
    shape = draw(SHAPES)
    dtype = draw(st.sampled_from([np.float32, np.float64, np.int32, np.object_, np.str_]))
    a = np.zeros(shape, dtype=dtype)
    if a.ndim and a.shape[0] > 1 and draw(st.booleans()):
        a = a[::-1]  # negative strides
    return a


def nested(depth: int):
    leaf = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), FLOATS,
                     st.text(max_size=5), st.binary(max_size=5), st.just(Color.RED))
    return st.recursive(leaf, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                     st.tuples(inner, inner)),
                        max_leaves=depth)


@st.composite
def near_valid(draw):
    """A chunk of the right shape, dtype float32, hostile in one way."""
    shape = draw(st.sampled_from([(F,), (1, F), (4, F), (0, F), (2, 1, F)]))
    t = torch.full(shape, draw(FLOATS), dtype=torch.float64).float()  # 1e300 -> inf
    kind = draw(st.sampled_from(["plain", "grad", "sparse", "flip", "float64", "list"]))
    if kind == "grad":
        return t.requires_grad_(True)
    if kind == "sparse":
        return t.to_sparse()
    if kind == "flip":
        return np.ascontiguousarray(t.numpy())[::-1]
    if kind == "float64":
        return t.double()
    if kind == "list":
        return t.tolist()
    return t


HOSTILE = st.one_of(near_valid(), tensors(), arrays(), nested(12), st.just(object()))
KEYS = st.one_of(st.text(max_size=4), st.integers(-3, 3), st.booleans(), st.none(), FLOATS,
                 st.just(Color.RED), st.tuples(st.text(max_size=2), st.integers()),
                 st.just(tuple([()]) * 1), st.just(_deep := (((((((((("a",),),),),),),),),),)),
                 st.lists(st.integers(), max_size=2))


def snapshot(obj) -> str:
    sd = obj.state_dict()
    tensors_ = {k: v.tolist() for k, v in sd.pop("tensors").items()}
    return json.dumps([sd, tensors_], sort_keys=True, default=repr)


def refused_or_done(call, obj) -> None:
    """Run ``call``; it may work, or raise ValueError / TypeError leaving ``obj`` as it was."""
    before = snapshot(obj)
    with bounded():
        try:
            call()
        except (ValueError, TypeError):
            assert snapshot(obj) == before, "a refused call changed the object"


# -- the entry points --------------------------------------------------------------------
@pytest.fixture(scope="module")
def model():
    return streamrnn.LSTM(F, H, seed=0)


@FUZZ
@given(x=HOSTILE)
def test_stream_push(model, x):
    stream = streamrnn.Stream(model)
    stream.push(torch.ones(2, F))
    before = stream.state.clone()
    with bounded():
        try:
            stream.push(x)
        except (ValueError, TypeError):
            assert all(torch.equal(a, b) for a, b in zip(stream.state.values(),
                                                          before.values(), strict=True))
    assert stream.state.all_finite() if hasattr(stream.state, "all_finite") else True


@FUZZ
@given(key=KEYS, x=HOSTILE)
def test_bank_push(model, key, x):
    bank = streamrnn.StreamBank(model, max_streams=4)
    bank.push({"a": torch.ones(2, F), 7: torch.ones(F)})
    refused_or_done(lambda: bank.push({key: x}), bank)
    refused_or_done(lambda: bank.push({"a": torch.ones(1, F), key: x}), bank)


@FUZZ
@given(keys=st.one_of(st.lists(KEYS, max_size=3), nested(4)), x=HOSTILE)
def test_bank_push_many(model, keys, x):
    bank = streamrnn.StreamBank(model, max_streams=4)
    bank.push({"a": torch.ones(2, F)})
    refused_or_done(lambda: bank.push_many(keys, x), bank)


@FUZZ
@given(x=HOSTILE, targets=st.one_of(st.none(), HOSTILE), key=st.one_of(st.none(), KEYS))
def test_learner_push(x, targets, key):
    net = streamrnn.RecurrentModel(streamrnn.GRU(F, H, seed=0), streamrnn.Readout(H, F, seed=1))
    learner = streamrnn.OnlineLearner(net, k1=2, k2=3, lr=1e-2)
    learner.push(torch.ones(3, F))
    refused_or_done(lambda: learner.push(x, targets, key=key), learner)
    learner.push(torch.ones(3, F))  # still learning
    assert all(torch.isfinite(p).all() for p in net.parameters())


@pytest.fixture(scope="module")
def bank_file(tmp_path_factory, model):
    path = tmp_path_factory.mktemp("fz") / "bank.safetensors"
    bank = streamrnn.StreamBank(model)
    bank.push({"a": torch.ones(2, F), ("b", 1): torch.ones(F)})
    bank.save(path)
    return path.read_bytes()


@FUZZ
@given(data=st.data())
def test_bank_load_of_damaged_files(model, bank_file, tmp_path_factory, data):
    raw = bytearray(bank_file)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "cut", "insert", "header"]))
        if op == "flip" and raw:
            raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
        elif op == "cut":
            raw = raw[: data.draw(st.integers(0, len(raw)))]
        elif op == "insert":
            at = data.draw(st.integers(0, len(raw)))
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=8))
        elif op == "header" and len(raw) > 16:
            raw[8:16] = data.draw(st.binary(min_size=8, max_size=8))
    path = tmp_path_factory.mktemp("fzl") / "x.safetensors"
    path.write_bytes(bytes(raw))
    bank = streamrnn.StreamBank(model)
    bank.push({"z": torch.ones(F)})
    refused_or_done(lambda: bank.load(path), bank)


RECORD = st.one_of(
    st.tuples(st.one_of(FLOATS, st.integers(-2**70, 2**70), st.text(max_size=3)),
              st.dictionaries(st.sampled_from(["x", "y", "z", ""]),
                              st.one_of(FLOATS, st.text(max_size=3), st.none(), nested(3)),
                              max_size=3)),
    nested(4))


@FUZZ
@given(records=st.lists(RECORD, max_size=6))
def test_sensor_push(records):
    ad = SensorAdapter(["x", "y"], period=1.0)
    ad.push([(0.0, {"x": 1.0, "y": 2.0})])
    with bounded():
        try:
            ad.push(records)
        except (ValueError, TypeError):
            pass
        ad.push([(1e6, {"x": 1.0, "y": 2.0})])  # still works afterwards


@FUZZ
@given(pcm=HOSTILE, rate=st.one_of(st.none(), st.integers(-5, 10**9), FLOATS))
def test_audio_push(pcm, rate):
    fe = AudioFeatures(16000, n_mels=8)
    fe.push(np.zeros(400, np.float32))
    with bounded():
        try:
            fe.push(pcm, sample_rate=rate)
        except (ValueError, TypeError):
            pass
        # still works afterwards: int16 bytes are valid in every state (an accepted odd
        # number of bytes leaves half a sample waiting, and then only bytes may follow)
        out = fe.push(bytes(640))
    assert torch.isfinite(out).all()
