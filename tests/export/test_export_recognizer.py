"""The digit recogniser exported as one graph, raw PCM -> posteriors, all state explicit.

Parity: B streams of different audio pushed through onnxruntime in hypothesis chunkings
(multiples of the hop, one-hop calls included), every piece of state carried through the
graph's ports, give the posteriors and frame energies of the Python recogniser (its
front end with its lead of silence, model and warm state) pushed the same audio, frame
for frame from the first call on, to 1e-5 (posteriors) / 1e-4 dB (energy).
"""

from __future__ import annotations

import functools

import numpy as np
import onnxruntime as ort
import pytest
import soundfile
from _data import DATA, demo_digits
from _exported import fresh_path
from hypothesis import example, given, settings
from hypothesis import strategies as st

from streamrnn.adapters.audio import AudioFeatures
from streamrnn.apps.speech import DigitRecognizer, demo_path, export_onnx
from streamrnn.apps.speech._endpoint import frame_energy_db
from streamrnn.apps.speech._export import initial_feeds
from streamrnn.export import read_metadata

HOP = 80


@functools.cache
def exported():
    rec = DigitRecognizer.load()
    path = fresh_path("digits")
    export_onnx(rec, path)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return rec, read_metadata(path), ort.InferenceSession(str(path), options,
                                                          providers=["CPUExecutionProvider"])


@functools.cache
def demo() -> np.ndarray:
    pcm, rate = soundfile.read(demo_path(), dtype="float32")
    assert rate == 8000
    return pcm


def python_frames(rec: DigitRecognizer, pcm: np.ndarray):
    """Posteriors and energies of the Python recogniser over ``pcm`` from its warm state."""
    rec.reset()
    feats = rec.features.push(pcm).numpy()
    logits = rec.logits(feats)
    z = np.exp(logits - logits.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True), frame_energy_db(feats, rec._ref_db)


@settings(max_examples=12, deadline=None, database=None)
@given(batch=st.sampled_from([1, 3]), offset=st.integers(0, 40000),
       hops=st.lists(st.sampled_from([0, 1, 2, 2, 2, 5, 13]), min_size=1, max_size=40)
       .filter(any))
@example(batch=3, offset=0, hops=[1, 0, 1, 1, 2])  # one-hop calls first: the first frames
def test_chunked_graph_equals_the_python_recognizer(batch, offset, hops):
    rec, meta, session = exported()
    total = sum(hops) * HOP
    pcm = np.stack([np.roll(demo(), -(offset + 7919 * b))[:total] for b in range(batch)])
    feeds = initial_feeds(meta, batch)
    posts, energies, start = [], [], 0
    names = [o.name for o in session.get_outputs()]
    for h in hops:
        if h == 0:
            continue  # N = 0 is no call (the graph takes a positive multiple of the hop)
        out = dict(zip(names, session.run(None, {**feeds, "pcm": pcm[:, start:start + h * HOP]}),
                       strict=True))
        assert out["posteriors"].shape == (batch, h * HOP // HOP, 11)
        posts.append(out["posteriors"])
        energies.append(out["energy_db"])
        feeds = {k: out[f"new_{k}"] for k in feeds}
        start += h * HOP
    got_post = np.concatenate(posts, 1)
    got_energy = np.concatenate(energies, 1)
    for b in range(batch):
        want_post, want_energy = python_frames(rec, pcm[b])
        np.testing.assert_allclose(got_post[b], want_post, rtol=0, atol=1e-5)
        np.testing.assert_allclose(got_energy[b], want_energy, rtol=0, atol=1e-4)


def test_the_metadata_holds_what_a_caller_needs():
    rec, meta, session = exported()
    assert meta["kind"] == "digit_recognizer" and meta["sample_rate"] == 8000
    assert meta["lead_samples"] == 160
    assert meta["decoder"]["threshold"] == rec.threshold
    parts = list(rec._warm.parts)  # the recurrent state's parts, whatever the shipped cell
    assert [i.name for i in session.get_inputs()] == ["pcm", "state_pcm",
                                                      *(f"state_{k}" for k in parts)]
    feeds = initial_feeds(meta, 2)
    for k in parts:
        np.testing.assert_array_equal(feeds[f"state_{k}"][:, 0], rec._warm[k][:, 0].numpy())
    assert feeds["state_pcm"].shape == (2, 160) and not feeds["state_pcm"].any()


def test_preemphasis_is_carried_as_state():
    base = DigitRecognizer.load()
    features = AudioFeatures(sample_rate=8000, win_length=200, hop_length=80, n_mels=40,
                             f_min=100.0, preemphasis=0.97)
    rec = DigitRecognizer(base.model, features)
    path = fresh_path("pre")
    export_onnx(rec, path)
    meta = read_metadata(path)
    assert meta["state"]["preemph"] == ["B", 1]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    pcm = demo()[8000:8000 + 37 * HOP][None]
    feeds, posts = initial_feeds(meta, 1), []
    names = [o.name for o in session.get_outputs()]
    for a, b in [(0, 3), (3, 4), (4, 20), (20, 37)]:
        out = dict(zip(names, session.run(None, {**feeds, "pcm": pcm[:, a * HOP:b * HOP]}),
                       strict=True))
        posts.append(out["posteriors"][0])
        feeds = {k: out[f"new_{k}"] for k in feeds}
    want, _ = python_frames(rec, pcm[0])
    np.testing.assert_allclose(np.concatenate(posts), want, rtol=0, atol=1e-5)


def test_what_the_graph_cannot_hold_is_refused():
    base = DigitRecognizer.load()
    with pytest.raises(ValueError, match="input_rate must equal its sample_rate"):
        export_onnx(DigitRecognizer.load(input_rate=16000), fresh_path())
    running = AudioFeatures(sample_rate=8000, win_length=200, hop_length=80, n_mels=40,
                            normalize="running")
    with pytest.raises(ValueError, match="normalize must be 'none'"):
        export_onnx(DigitRecognizer(base.model, running), fresh_path())


def test_onnx_recognizer_emits_what_the_python_recognizer_emits():
    # Same digits, times and latencies on the demo and on FSDD clips of every speaker,
    # streamed in 20 ms chunks, from the first frame on.
    from streamrnn.apps.speech import OnnxDigitRecognizer

    rec, _, _ = exported()
    path = fresh_path("digits")
    export_onnx(rec, path)
    twin = OnnxDigitRecognizer(path)
    fsdd = sorted((DATA / "fsdd").glob("*_*_1*.wav"))[::25]
    assert len(fsdd) >= 8
    signals = [demo()] + [soundfile.read(p, dtype="float32")[0] for p in fsdd]
    for pcm in signals:
        want, got = [], []
        rec.reset()
        for i in range(0, len(pcm), 160):
            want += rec.push(pcm[i:i + 160])
            got += twin.push(pcm[i:i + 160])
        want += rec.flush()
        got += twin.flush()
        assert [d.as_dict() for d in got] == [d.as_dict() for d in want]


def test_int8_recognizer_still_hears_the_demo():
    from streamrnn.apps.speech import OnnxDigitRecognizer

    rec, _, _ = exported()
    path = fresh_path("digits8")
    export_onnx(rec, path, quantize="int8")
    assert read_metadata(path)["quantize"] == "int8"
    twin = OnnxDigitRecognizer(path)
    found = []
    for i in range(0, len(demo()), 160):
        found += twin.push(demo()[i:i + 160])
    assert [d.digit for d in found + twin.flush()] == demo_digits()
