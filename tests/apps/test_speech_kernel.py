"""The recogniser runs the generic path: AudioFeatures + Stream (compiled engine) + softmax.

Any registered classic cell (LSTM, GRU, RNN), width and depth with a Readout is stepped by
the compiled engine inside the recogniser's :class:`~streamrnn.Stream`, and equals the
torch model to float32 rounding (1e-5); without numba the torch engine gives the same
digits. (The engine's own parity suite is ``tests/engines``.)
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from _data import demo_digits
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import streamrnn
from streamrnn.adapters.audio import AudioFeatures
from streamrnn.adapters.audio import _frames as _audio_frames
from streamrnn.apps.speech import DigitRecognizer, demo_path
from streamrnn.heads import Readout, RecurrentModel

FAST = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CELLS = {"lstm": streamrnn.LSTM, "gru": streamrnn.GRU, "rnn": streamrnn.RNN}


@FAST
@given(cell=st.sampled_from(sorted(CELLS)), hidden=st.integers(1, 40), layers=st.integers(1, 3),
       cuts=st.lists(st.integers(0, 5), min_size=1, max_size=5), seed=st.integers(0, 2**16))
def test_the_recogniser_model_runs_compiled_and_equals_torch(cell, hidden, layers, cuts, seed):
    model = RecurrentModel(CELLS[cell](40, hidden, layers, seed=seed),
                           Readout(hidden, 11, seed=seed + 1)).eval()
    fe = AudioFeatures(8000, n_mels=40, win_length=200, hop_length=80)
    rec = DigitRecognizer(model, fe, warmup_ms=0.0)  # from zeros, as model(x) starts
    x = torch.randn(sum(cuts) + 2, 40, generator=torch.Generator().manual_seed(seed))
    parts, i = [], 0
    for n in [*cuts, 2]:
        parts.append(rec.logits(x[i : i + n]))
        i += n
    assert rec._stream.engine == "compiled"
    with torch.no_grad():
        want = model(x[None])[0][0].numpy()
    np.testing.assert_allclose(np.concatenate(parts), want, rtol=1e-5, atol=1e-5)


def test_without_numba_the_torch_engine_gives_the_same_digits():
    # numba is a dependency; without it the one fallback, the torch engine, runs the
    # recogniser's Stream (the front end keeps its own fallback).
    code = (
        "import sys; sys.modules['numba'] = None\n"
        "from streamrnn.adapters.audio import WavSource\n"
        "from streamrnn.apps.speech import DigitRecognizer, demo_path\n"
        "rec = DigitRecognizer.load()\n"
        "found = []\n"
        "for chunk in WavSource(demo_path(), chunk_ms=20):\n"
        "    found += rec.push(chunk)\n"
        "found += rec.flush()\n"
        "assert rec._stream.engine == 'torch'\n"
        "print([(d.digit, round(d.time_s, 3)) for d in found])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    from streamrnn.adapters.audio import WavSource

    rec = DigitRecognizer.load()
    found = []
    for chunk in WavSource(demo_path(), chunk_ms=20):
        found += rec.push(chunk)
    found += rec.flush()
    assert rec._stream.engine == "compiled"
    assert out == str([(d.digit, round(d.time_s, 3)) for d in found])
    assert [d.digit for d in found] == demo_digits()


@pytest.mark.parametrize(
    "config", [{}, {"kind": "mfcc"}, {"win_length": 123, "hop_length": 37, "n_mels": 23}]
)
def test_front_end_small_path_with_and_without_numba(monkeypatch, config):
    rng = np.random.default_rng(0)
    x = (0.3 * rng.standard_normal(4000)).astype(np.float32)
    fast = AudioFeatures(16000, **config)
    monkeypatch.setattr(_audio_frames, "HAVE_NUMBA", False)
    slow = AudioFeatures(16000, **config)
    assert fast._framer.fused is not None and slow._framer.fused is None
    for i in range(0, 4000, 320):
        np.testing.assert_allclose(
            fast._push(x[i : i + 320], None), slow._push(x[i : i + 320], None), rtol=1e-5, atol=1e-5
        )
