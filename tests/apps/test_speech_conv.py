"""The conv-front cell (``streamrnn.ConvGRU``), the recogniser's model option: its
equations step by step; streaming on the compiled engine (the front's compiled loop, then
the GRU's kernels) == one torch pass in any chunking, one stream or many (compiled up to 16
streams a call, torch beyond), a rejected chunk changing nothing and changed weights seen;
its ONNX export == the eager cell (float32 and float64, random chunkings, ragged
``lengths``); a recogniser file with it round-trips, a forged header is refused before
anything is built, and a DigitBank stream gets what the recogniser alone gets.
"""

from __future__ import annotations

import dataclasses
import itertools
import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from _forge import forge
from _lengths import check_lengths
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors import safe_open

import streamrnn
from streamrnn import ConvGRU
from streamrnn.adapters.audio import WavSource
from streamrnn.apps.speech import DigitBank, DigitRecognizer, demo_path, export_onnx
from streamrnn.apps.speech._export import initial_feeds
from streamrnn.engines import CompiledEngine
from streamrnn.export import OnnxModel, read_metadata, to_onnx
from streamrnn.heads import Readout, RecurrentModel


def _model(f=8, hidden=6, dtype=torch.float32, seed=4, **kw) -> RecurrentModel:
    """A model with a non-trivial standardisation (the carried frames are standardised)."""
    gen = torch.Generator().manual_seed(seed)
    model = RecurrentModel(ConvGRU(f, hidden, seed=seed, **{"channels": 3, **kw}),
                           Readout(hidden, 11, seed=seed + 1)).to(dtype).eval()
    model.cell.mean.copy_(torch.randn(f, generator=gen, dtype=dtype))
    model.cell.std.copy_(torch.rand(f, generator=gen, dtype=dtype) + 0.5)
    return model


def _reference(cell, x: torch.Tensor) -> torch.Tensor:
    """The ConvGRU's equations one step at a time: the filters on the window of the last
    ``kernel_time`` standardised frames (standardised zeros before the first), written as
    sums over the window, a ReLU, the largest of each ``pool`` bands, a GRU cell step."""
    k, kb, pool = cell.kernel_time, cell.kernel_bands, cell.pool
    b, t, f = x.shape
    z = (x - cell.mean) / cell.std
    z = torch.cat([z.new_zeros(b, k - 1, f), z], 1)
    z = torch.nn.functional.pad(z, (kb // 2, kb // 2))  # zeros beyond the edge bands
    w, bias = cell.conv.weight[:, 0], cell.conv.bias  # (C, k, kb), (C,)
    rnn = cell.gru.rnn
    step = torch.nn.GRUCell(rnn.input_size, rnn.hidden_size).to(x.dtype)
    step.load_state_dict({name[:-3]: p for name, p in rnn.state_dict().items()})
    h, ys = x.new_zeros(b, rnn.hidden_size), []
    for i in range(t):
        window = z[:, i : i + k]  # (B, k, F + kb - 1)
        out = torch.stack([(window[:, :, j : j + kb, None] * w.permute(1, 2, 0)).sum((1, 2))
                           for j in range(f)], 2) + bias[None, :, None]  # (B, C, F)
        pooled = torch.relu(out).reshape(b, -1, f // pool, pool).amax(-1)
        h = step(pooled.reshape(b, -1), h)
        ys.append(h)
    return torch.stack(ys, 1)


@pytest.mark.parametrize("kernel_time, pool", [(3, 2), (1, 1), (4, 4)])
def test_conv_gru_equals_its_equations_step_by_step(kernel_time, pool):
    cell = _model(dtype=torch.float64, kernel_time=kernel_time, pool=pool, seed=2).cell
    x = torch.randn(2, 9, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        got = cell(x)[0]
        want = _reference(cell, x)
    torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(0, 30), max_size=8), float64=st.booleans())
def test_conv_gru_streamed_in_any_chunks_equals_one_pass(cuts, float64):
    """Through the library's Stream (the compiled engine: the front's loop, then the GRU's
    kernels), a recogniser model with the conv front gets the outputs and state of one
    offline torch pass, whatever the chunks (empty and one-step ones included)."""
    dtype = torch.float64 if float64 else torch.float32
    model = _model(dtype=dtype)
    x = torch.randn(30, 8, generator=torch.Generator().manual_seed(3), dtype=dtype)
    with torch.no_grad():
        want, state = model(x[None])
    stream = streamrnn.Stream(model)
    edges = [0, *sorted(cuts), 30]
    got = torch.cat([stream.push(x[a:b]) for a, b in itertools.pairwise(edges)])
    assert stream.engine == "compiled"
    tol = 1e-10 if float64 else 1e-5
    torch.testing.assert_close(got, want[0], atol=tol, rtol=tol)
    for part in ("h", "frames"):
        torch.testing.assert_close(stream.state[part], state[part], atol=tol, rtol=tol)


@settings(max_examples=20, deadline=None)
@given(cuts=st.lists(st.sampled_from([0, 1, 2, 3, 9]), min_size=1, max_size=5),
       batch=st.sampled_from([1, 3]), float64=st.booleans(), seed=st.integers(0, 999))
def test_the_compiled_engine_equals_the_cell_from_any_state(cuts, batch, float64, seed):
    """CompiledEngine.run (one stream: the single-stream kernel; several: the batched one)
    from a random state, carried frames included, in any chunking: the torch pass."""
    dtype = torch.float64 if float64 else torch.float32
    model = _model(dtype=dtype, kernel_time=3, pool=2, seed=seed)
    engine = CompiledEngine.for_model(model)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, sum(cuts), 8, generator=gen, dtype=dtype)
    s0 = model.initial_state(batch, dtype=dtype).map(
        lambda t: torch.randn(t.shape, generator=gen, dtype=dtype))
    with torch.no_grad():
        want, want_state = model(x, s0)
    got, state, start = [], s0, 0
    for n in cuts:
        y, state = engine.run(x[:, start:start + n], state)
        got.append(y)
        start += n
    tol = 1e-10 if float64 else 1e-5
    torch.testing.assert_close(torch.cat(got, 1), want, rtol=0, atol=tol)
    for part in ("h", "frames"):
        torch.testing.assert_close(state[part], want_state[part], rtol=0, atol=tol)


@pytest.mark.parametrize("streams", [3, 20])  # compiled (<= 16 a call), torch beyond
def test_a_bank_of_conv_streams_equals_each_stream_alone(streams):
    model = _model(kernel_time=4, pool=4, seed=11)
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(streams, 9, 8, generator=gen) * 2.0
    with torch.no_grad():
        want, state = model(x)
    bank = streamrnn.StreamBank(model, max_streams=32)
    keys = [f"s{i}" for i in range(streams)]
    got = []
    for a, b in [(0, 1), (1, 4), (4, 5), (5, 9)]:
        out = bank.push({k: x[i, a:b] if b - a > 1 else x[i, a] for i, k in enumerate(keys)})
        got.append(torch.stack([out[k].reshape(b - a, -1) for k in keys]))
    torch.testing.assert_close(torch.cat(got, 1), want, rtol=0, atol=1e-5)
    for i, k in enumerate(keys):
        torch.testing.assert_close(bank.get_state(k).frames[:, 0], state.frames[:, i], rtol=0,
                                   atol=1e-6)


def test_a_rejected_chunk_changes_nothing_and_new_weights_are_seen():
    model = _model(seed=12)
    stream = streamrnn.Stream(model)
    x = torch.randn(6, 8, generator=torch.Generator().manual_seed(6))
    stream.push(x[:3])
    before = stream.state
    bad = x[3:].clone()
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="non-finite|NaN"):
        stream.push(bad)
    for part in ("h", "frames"):  # neither the GRU's state nor the front's frames moved
        torch.testing.assert_close(stream.state[part], before[part], rtol=0, atol=0)
    def replace_mean():  # a buffer replaced (load_state_dict(assign=True) does that)
        model.cell.mean = model.cell.mean + 0.5

    for change in (replace_mean, lambda: model.cell.std.mul_(2.0),  # in place, as
                   lambda: model.cell.conv.weight.mul_(-1.0)):  # load_state_dict writes
        with torch.no_grad():
            change()
            start = stream.state
            want = model(x[3:][None], start)[0][0]
        got = stream.push(x[3:])
        assert stream.engine == "compiled"
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_a_chunk_the_front_overflows_resets_that_stream_on_either_engine():
    # finite input that the standardisation blows past float32: the torch engine's state
    # turns NaN and is reset, counted; the compiled engine reports the same, and in a bank
    # only that stream is reset
    model = _model(seed=13)
    with torch.no_grad():
        model.cell.std.fill_(1e-20)
    big = torch.full((3, 8), 1e20)
    for grad in (False, True):  # compiled, torch
        stream = streamrnn.Stream(model, grad=grad)
        with pytest.warns(RuntimeWarning, match="non-finite"):
            y = stream.push(big)
        assert stream.engine == ("torch" if grad else "compiled")
        assert torch.isnan(y).all() and stream.counts["nonfinite_resets"] == 1
        for part in ("h", "frames"):
            assert not stream.state[part].any()
    engine = CompiledEngine.for_model(model)  # the engine alone: the state it hands back
    y, state = engine.run(big[None], model.initial_state(1))
    with torch.no_grad():
        want_y, want = model(big[None])
    assert torch.isnan(y).all() and torch.isnan(want_y).all()
    assert torch.isnan(state.h).all() and torch.isnan(want.h).all()
    bank = streamrnn.StreamBank(model)
    calm = torch.randn(3, 8, generator=torch.Generator().manual_seed(7)) * 1e-20
    out = bank.push({"loud": big, "calm": calm})
    assert torch.isnan(out["loud"]).all() and bank.last_reset == ["loud"]
    assert bank.counts["nonfinite_resets"] == 1 and not bank.get_state("loud").frames.any()
    with torch.no_grad():
        torch.testing.assert_close(out["calm"], model(calm[None])[0][0], rtol=0, atol=1e-5)


def test_the_compiled_learner_never_takes_a_fronted_form(monkeypatch):
    # its kernels have no front: even a fronted form with a backward pass stays off it
    from streamrnn.engines.compiled import _cells, forms
    from streamrnn.engines.compiled._conv import CONVGRU_FORM
    from streamrnn.engines.compiled.learner import learner_eligible

    model = _model(dtype=torch.float64, seed=14)
    assert not learner_eligible(model)
    monkeypatch.setitem(forms._FORMS, "convgru",
                        dataclasses.replace(CONVGRU_FORM, backward=_cells.gru_backward))
    assert not learner_eligible(model)
    plain = RecurrentModel(streamrnn.GRU(8, 6, seed=0), Readout(6, 11, seed=1)).double()
    assert learner_eligible(plain)  # the check is not vacuous


def test_config_rules_name_the_parameter():
    for kw, match in [({"kernel_bands": 4}, "kernel_bands must be odd"),
                      ({"pool": 3}, "must be a multiple of pool"),
                      ({"channels": 0}, "channels"), ({"num_layers": 2}, "num_layers must be 1")]:
        with pytest.raises(ValueError, match=match):
            ConvGRU(8, 6, **kw)


# ------------------------------------------------------------------ the export form


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory):
    """One exported file per (dtype, kernel_time, pool), for every batch size."""
    out = {}
    for dtype, kt, pool in [(torch.float32, 3, 2), (torch.float64, 3, 2),
                            (torch.float32, 1, 1), (torch.float64, 4, 4)]:
        model = _model(dtype=dtype, kernel_time=kt, pool=pool, seed=kt + pool)
        path = tmp_path_factory.mktemp("conv") / f"{dtype}_{kt}_{pool}.onnx"
        to_onnx(model, path)
        out[dtype, kt, pool] = model, OnnxModel(path)
    return out


@settings(max_examples=30, deadline=None, database=None)
@given(which=st.integers(0, 3), batch=st.sampled_from([1, 3]), seed=st.integers(0, 2**16),
       split=st.lists(st.sampled_from([0, 1, 1, 2, 3, 7]), min_size=1, max_size=8))
def test_chunked_onnx_equals_one_eager_pass(onnx_models, which, batch, seed, split):
    """Chunk by chunk through onnxruntime, the state carried through the graph's ports,
    from a random state: the eager cell's outputs and state of one pass (float32 1e-5,
    float64 1e-10; the float64 graph checks the filter matrix exactly)."""
    model, onnx_model = list(onnx_models.values())[which]
    dtype = model.cell.mean.dtype
    gen = torch.Generator().manual_seed(seed)
    steps = sum(split)
    x = torch.randn(batch, steps, 8, generator=gen, dtype=dtype) * 2.0
    s0 = streamrnn.State(**{k: torch.randn(v.shape, generator=gen, dtype=dtype)
                            for k, v in model.initial_state(batch, dtype=dtype).items()})
    with torch.no_grad():
        want, want_state = model(x, s0)
    got, state, start = [], s0, 0
    for length in split:
        y, state = onnx_model(x[:, start:start + length], state)
        got.append(y)
        start += length
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    torch.testing.assert_close(torch.cat(got, 1), want, atol=tol, rtol=0)
    for part in ("h", "frames"):
        torch.testing.assert_close(state[part], want_state[part], atol=tol, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_lengths_leave_each_streams_frames_and_state_after_its_last_real_step(dtype, tmp_path):
    check_lengths(_model(dtype=dtype, kernel_time=3, pool=2, seed=9), tmp_path / "lengths.onnx",
                  [6, 1, 3, 2], features=8, outputs=11, state_scale=1.0, dtype=dtype)


# ------------------------------------------------------------------ in the recogniser


@pytest.fixture(scope="module")
def conv_file(tmp_path_factory):
    """A recogniser file with a (small, untrained) ConvGRU model and the shipped front end."""
    rec = DigitRecognizer(_model(f=40, hidden=12, channels=4, pool=4, seed=7),
                          DigitRecognizer.load().features)
    path = tmp_path_factory.mktemp("convrec") / "conv.safetensors"
    rec.save(path)
    return rec, path


def _posteriors(rec: DigitRecognizer, pcm: np.ndarray) -> np.ndarray:
    rec.reset()
    logits = rec.logits(rec.features.push(pcm).numpy())
    z = np.exp(logits - logits.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def test_a_conv_recogniser_file_round_trips(conv_file):
    rec, path = conv_file
    back = DigitRecognizer.load(path)
    assert type(back.model.cell) is ConvGRU and back.model.cell.pool == 4
    for name, value in rec.model.state_dict().items():
        torch.testing.assert_close(back.model.state_dict()[name], value, rtol=0, atol=0)
    pcm = WavSource(demo_path()).read()[:16000]
    np.testing.assert_array_equal(_posteriors(back, pcm), _posteriors(rec, pcm))


def _forge(src, dst, cell=None, drop=None):
    with safe_open(src, framework="pt") as f:
        meta, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    if cell:
        model = json.loads(meta["model"])
        model["cell"].update(cell)
        meta["model"] = json.dumps(model)
    if drop:
        del tensors[drop]
    forge(dst, tensors, meta)  # sealed anew: the header checks behind the checksum stand
    return dst


@pytest.mark.parametrize(("change", "match"), [
    ({"cell": {"channels": 10**9}}, "'channels' must be an int in"),
    ({"cell": {"hidden_size": 64}}, "must equal the cell.s hidden_size 64"),
    ({"cell": {"channels": 5}}, "the tensors hold"),
    ({"cell": {"pool": 3}}, "a pool that divides input_size"),
    ({"cell": {"kernel_bands": 4}}, "odd kernel_bands"),
    ({"cell": {"kernel_time": True}}, "'kernel_time' must be an int"),
    ({"drop": "cell.mean"}, "the tensors hold"),
], ids=["channels-1e9", "hidden", "channels", "pool", "bands", "bool", "missing-buffer"])
def test_forged_conv_headers_are_refused_naming_the_file(conv_file, tmp_path, change, match):
    _, path = conv_file
    forged = _forge(str(path), str(tmp_path / "forged.safetensors"), **change)
    with pytest.raises(ValueError, match=match) as info:
        DigitRecognizer.load(forged)
    assert str(forged) in str(info.value)


def test_the_exported_conv_recogniser_equals_the_python_one(conv_file, tmp_path):
    rec, _ = conv_file
    export_onnx(rec, tmp_path / "conv.onnx")
    meta = read_metadata(tmp_path / "conv.onnx")
    assert set(meta["state"]) == {"pcm", "h", "frames"}
    session = ort.InferenceSession(str(tmp_path / "conv.onnx"),
                                   providers=["CPUExecutionProvider"])
    pcm = WavSource(demo_path()).read()[4000:4000 + 41 * 80][None]
    feeds, posts = initial_feeds(meta, 1), []
    names = [o.name for o in session.get_outputs()]
    for a, b in [(0, 1), (1, 3), (3, 20), (20, 41)]:  # hops
        out = dict(zip(names, session.run(None, {**feeds, "pcm": pcm[:, a * 80:b * 80]}),
                       strict=True))
        posts.append(out["posteriors"][0])
        feeds = {k: out[f"new_{k}"] for k in feeds}
    np.testing.assert_allclose(np.concatenate(posts), _posteriors(rec, pcm[0]), rtol=0,
                               atol=1e-5)


def test_a_bank_stream_gets_what_the_conv_recogniser_gets_alone(conv_file):
    rec, path = conv_file
    pcm = WavSource(demo_path()).read()
    bank = DigitBank(DigitRecognizer.load(path), max_streams=3)
    for key in ("a", "b"):
        bank.open(key)
    posts = {"a": [], "b": []}
    rng = np.random.default_rng(0)
    at = {"a": 0, "b": 0}
    while at["a"] < len(pcm) or at["b"] < len(pcm):
        chunks = {}
        for key in posts:
            size = int(rng.choice([0, 80, 160, 801, 3000]))
            chunks[key] = pcm[at[key]:at[key] + size]
            at[key] += size
        for key, res in bank.push(chunks).items():
            posts[key].append(res.posteriors)
    want = _posteriors(rec, pcm)
    for key in posts:
        got = np.concatenate(posts[key])
        assert len(got) == len(want)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
