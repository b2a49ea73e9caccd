"""The compiled LSTM kernel of the recogniser: parity with torch, saturation, fallbacks.

The kernel (``adapters/_speech_fast.py``) computes torch's LSTM + Linear equations in
float32 with its own vectorizable ``expm1``; parity is to float32 rounding (1e-5).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import streamrnn
from streamrnn.adapters.audio import AudioFeatures
from streamrnn.adapters.audio import _frames as _audio_frames
from streamrnn.apps.speech import DigitRecognizer, demo_path
from streamrnn.apps.speech import _fast as _speech_fast
from streamrnn.apps.speech._fast import FastLSTMKernel, expm1_f32
from streamrnn.apps.speech._kernel import LSTMKernel
from streamrnn.heads import Readout, RecurrentModel

pytestmark = pytest.mark.skipif(not _speech_fast.HAVE_NUMBA, reason="needs numba")

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
EPS32 = float(np.finfo(np.float32).eps)


def test_expm1_is_float32_accurate_and_saturates():
    x = np.concatenate([
        np.linspace(-100, 100, 200_001), np.geomspace(1e-30, 80, 5001),
        -np.geomspace(1e-30, 80, 5001), [0.0, 88.0, -88.0, 0.3465, -0.3466],
    ]).astype(np.float32)  # fmt: skip
    got = expm1_f32(x).astype(np.float64)
    want = np.expm1(x.astype(np.float64))
    finite = np.abs(x) <= 88
    rel = np.abs(got - want)[finite] / np.abs(want[finite]).clip(1e-300)
    assert rel.max() <= 2 * EPS32  # observed < 1 ulp
    assert np.all(got[x > 88] > 1e38) and np.all(got[x < -88] == -1.0)
    special = expm1_f32(np.array([np.inf, -np.inf, np.nan], dtype=np.float32))
    assert special[0] > 1e38 and special[1] == -1.0 and np.isnan(special[2])


def _reference(model, x, h0, c0):
    """torch's nn.LSTM (+ Linear) from state (h0, c0): outputs, final h and c."""
    rnn = model.cell.rnn if isinstance(model, RecurrentModel) else model.rnn
    with torch.no_grad():
        seq, (h, c) = rnn(
            torch.from_numpy(x)[None],
            (torch.from_numpy(h0)[:, None], torch.from_numpy(c0)[:, None]),
        )
        y = model.head.linear(seq) if isinstance(model, RecurrentModel) else seq
    return y[0].numpy(), h[:, 0].numpy(), c[:, 0].numpy()


@FAST
@given(
    n_in=st.integers(1, 45),
    hidden=st.integers(1, 40),
    layers=st.integers(1, 3),
    n_out=st.one_of(st.none(), st.integers(1, 20)),
    bias=st.booleans(),
    bias_scale=st.sampled_from([1.0, 8.0, 60.0, 1e4]),
    c_scale=st.sampled_from([0.0, 1.0, 50.0]),
    cuts=st.lists(st.integers(0, 5), min_size=1, max_size=5),
    seed=st.integers(0, 2**16),
)
def test_kernel_matches_torch(n_in, hidden, layers, n_out, bias, bias_scale, c_scale, cuts,
                              seed):  # fmt: skip
    """Random sizes, weights, carried states and chunkings; large biases saturate gates."""
    rng = np.random.default_rng(seed)
    cell = streamrnn.LSTM(n_in, hidden, layers, bias=bias, seed=seed)
    model = cell if n_out is None else RecurrentModel(cell, Readout(hidden, n_out, seed=seed))
    model.eval()
    with torch.no_grad():
        for name, p in cell.rnn.named_parameters():
            if name.startswith("bias"):  # some gates far from 0, of both signs
                p.mul_(torch.from_numpy(rng.choice([1.0, bias_scale], p.shape)).float())
    t_len = sum(cuts) + 2
    x = (rng.standard_normal((t_len, n_in)) * rng.choice([0.1, 1.0, 30.0])).astype(np.float32)
    h0 = rng.uniform(-1, 1, (layers, hidden)).astype(np.float32)
    c0 = (rng.standard_normal((layers, hidden)) * c_scale).astype(np.float32)
    want_y, want_h, want_c = _reference(model, x, h0, c0)
    kernel = FastLSTMKernel(model)
    kernel.h[:], kernel.c[:] = h0, c0
    parts, i = [], 0
    for n in [*cuts, 2]:
        parts.append(kernel(x[i : i + n]))
        i += n
    tol = {"rtol": 1e-5, "atol": 1e-5}
    np.testing.assert_allclose(np.concatenate(parts), want_y, **tol)
    np.testing.assert_allclose(kernel.h, want_h, **tol)
    np.testing.assert_allclose(kernel.c, want_c, **tol)
    if n_out is not None:  # the fused softmax, against the row-wise definition
        y, post = kernel.run(x[:3], softmax=True)
        z = np.exp(y.astype(np.float64) - y.max(axis=1, keepdims=True))
        np.testing.assert_allclose(post, z / z.sum(axis=1, keepdims=True), rtol=1e-5, atol=1e-7)


def test_infinite_gate_inputs_saturate_as_in_torch():
    model = RecurrentModel(streamrnn.LSTM(6, 8, 2, seed=0), Readout(8, 3, seed=1)).eval()
    with torch.no_grad():
        signs = torch.tensor([1.0, -1.0]).repeat(16)
        model.cell.rnn.bias_ih_l0.copy_(signs * float("inf"))
    x = np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32)
    zeros = np.zeros((2, 8), dtype=np.float32)
    want_y, want_h, want_c = _reference(model, x, zeros, zeros)
    kernel = FastLSTMKernel(model)
    got = kernel(x)
    assert np.isfinite(want_y).all()  # no NaN: +-inf gates saturate (c picks up 0 * ...)
    np.testing.assert_allclose(got, want_y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(kernel.h, want_h, rtol=1e-5, atol=1e-5)


def test_kernel_agrees_with_the_numpy_kernel_and_checks_shapes():
    model = RecurrentModel(streamrnn.LSTM(40, 128, 2, seed=0), Readout(128, 11, seed=1)).eval()
    fast, slow = FastLSTMKernel(model), LSTMKernel(model)
    x = np.random.default_rng(1).standard_normal((30, 40)).astype(np.float32)
    for i in range(0, 30, 2):
        np.testing.assert_allclose(fast(x[i : i + 2]), slow(x[i : i + 2]), atol=1e-5)
    np.testing.assert_allclose(fast.c, slow.c, atol=1e-5)
    assert fast(x[:0]).shape == (0, 11)
    assert fast(x[:3].astype(np.float64)).dtype == np.float32  # converted
    with pytest.raises(ValueError, match=r"x must have shape \(T, 40\)"):
        fast(x[:, :39])
    with pytest.raises(ValueError, match=r"x must have shape \(T, 40\)"):
        fast(x[0])
    assert not FastLSTMKernel.supports(model.double())


def test_without_numba_the_numpy_paths_give_the_same_digits(monkeypatch):
    from streamrnn.adapters.audio import WavSource

    def run():
        rec = DigitRecognizer.load()
        found = []
        for chunk in WavSource(demo_path(), chunk_ms=20):
            found += rec.push(chunk)
        return rec, found + rec.flush()

    fast_rec, fast = run()
    assert isinstance(fast_rec._kernel, FastLSTMKernel)
    assert fast_rec.features._framer._mel is not None
    monkeypatch.setattr(_speech_fast, "HAVE_NUMBA", False)
    monkeypatch.setattr(_audio_frames, "HAVE_NUMBA", False)
    slow_rec, slow = run()
    assert type(slow_rec._kernel) is LSTMKernel and slow_rec.features._framer._mel is None
    meta = json.loads(Path(demo_path()).with_suffix(".json").read_text())
    labelled = [int(c["file"].split("_")[0]) for c in meta["clips"]]  # {digit}_{speaker}_{take}
    assert [d.digit for d in slow] == [d.digit for d in fast] == labelled
    assert [d.time_s for d in slow] == [d.time_s for d in fast]


@pytest.mark.parametrize(
    "config", [{}, {"kind": "mfcc"}, {"win_length": 123, "hop_length": 37, "n_mels": 23}]
)
def test_front_end_small_path_with_and_without_numba(monkeypatch, config):
    rng = np.random.default_rng(0)
    x = (0.3 * rng.standard_normal(4000)).astype(np.float32)
    fast = AudioFeatures(16000, **config)
    monkeypatch.setattr(_audio_frames, "HAVE_NUMBA", False)
    slow = AudioFeatures(16000, **config)
    assert fast._framer._mel is not None and slow._framer._mel is None
    for i in range(0, 4000, 320):
        np.testing.assert_allclose(
            fast._push(x[i : i + 320], None), slow._push(x[i : i + 320], None), rtol=1e-5, atol=1e-5
        )
