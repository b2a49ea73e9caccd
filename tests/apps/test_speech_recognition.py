"""Spoken digits, end to end with the shipped model: the demo, silence and noise,
chunk invariance (streaming == offline), resampled input, and the ``listen`` command.

The expected digits of the demo come from the FSDD file names recorded in
``data/digits_demo.json`` (``{digit}_{speaker}_{take}.wav``), not from the model.
"""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest
import soxr
import torch
from _data import demo_digits
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamrnn.adapters.audio import WavSource, write_wav
from streamrnn.apps.speech import DigitRecognizer, demo_path, lead_samples, listen_main


@pytest.fixture(scope="module")
def demo():
    """The demo's samples, rate and clip list (file names, word bounds in seconds)."""
    meta_file = resources.files("streamrnn.apps.speech").joinpath("data", "digits_demo.json")
    meta = json.loads(meta_file.read_text())
    source = WavSource(demo_path())
    return source.read(), source.sample_rate, meta["clips"]


@pytest.fixture(scope="module")
def recognizer():
    return DigitRecognizer.load()


def stream(rec: DigitRecognizer, x: np.ndarray, chunk: int, **push_kw):
    rec.reset()
    found = []
    for i in range(0, len(x), chunk):
        found += rec.push(x[i : i + chunk], **push_kw)
    return found + rec.flush()


# ------------------------------------------------------------------ the demo recording


def test_demo_digits_in_order_each_after_its_word(demo, recognizer):
    x, sr, clips = demo
    found = stream(recognizer, x, sr // 50)  # 20 ms chunks
    assert [d.digit for d in found] == demo_digits(clips)
    for d, clip in zip(found, clips, strict=True):
        # emitted after the word ended, and within half a second of it
        assert clip["word_end_s"] <= d.time_s <= clip["word_end_s"] + 0.5
        assert 0.0 <= d.latency_ms <= 500.0


def test_demo_metadata_matches_the_recording(demo):
    x, sr, clips = demo
    assert sr == 8000 and len(clips) >= 4
    assert len({c["file"].split("_")[1] for c in clips}) == len(clips)  # one per speaker
    for c in clips:
        assert c["start_s"] <= c["word_start_s"] < c["word_end_s"] <= c["end_s"] + 0.03
    assert clips[-1]["end_s"] < len(x) / sr


# ------------------------------------------------------------------ silence and noise


@pytest.mark.parametrize(
    "kind, level_db",
    [("zero", None), ("white", -20.0), ("white", -45.0), ("pink", -30.0), ("white", -10.0)],
)
def test_silence_and_noise_give_no_digit(recognizer, kind, level_db):
    rng = np.random.default_rng(3)
    n = 8000 * 8
    if kind == "zero":
        x = np.zeros(n, dtype=np.float32)
    else:
        w = rng.standard_normal(n)
        if kind == "pink":
            spec = np.fft.rfft(w) / np.sqrt(np.maximum(np.fft.rfftfreq(n, 1 / 8000), 20.0))
            w = np.fft.irfft(spec, n)
        x = (w / w.std() * 10 ** (level_db / 20)).clip(-1, 1).astype(np.float32)
    assert stream(recognizer, x, 160) == []


def test_noise_burst_and_hum_give_no_digit(recognizer):
    t = np.arange(8000 * 4) / 8000
    hum = 0.05 * np.sin(2 * np.pi * 50 * t) + 0.02 * np.sin(2 * np.pi * 150 * t)
    burst = np.zeros_like(t)
    burst[8000:8400] = np.random.default_rng(0).standard_normal(400) * 0.3  # a 50 ms click
    x = (hum + burst).clip(-1, 1).astype(np.float32)
    assert stream(recognizer, x, 160) == []


# ------------------------------------------------------------------ chunk invariance


def test_chunk_size_does_not_change_detections(demo, recognizer):
    x, sr, _ = demo
    ref = stream(recognizer, x, 160)  # 20 ms
    assert stream(recognizer, x, 56) == ref  # 7 ms
    assert stream(recognizer, x, len(x)) == ref  # the whole file at once
    assert recognizer.recognize(x) == ref


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, 2000), min_size=1, max_size=30))
def test_random_chunking_gives_the_same_detections(demo, recognizer, sizes):
    x, _, _ = demo
    ref = recognizer.recognize(x)
    recognizer.reset()
    found, i, k = [], 0, 0
    while i < len(x):
        n = sizes[k % len(sizes)]
        found += recognizer.push(x[i : i + n])
        i, k = i + n, k + 1
        if n == 0 and all(s == 0 for s in sizes):
            break
    found += recognizer.push(x[i:]) + recognizer.flush()
    assert found == ref


def test_int16_bytes_give_the_same_digits(demo, recognizer):
    x, _, clips = demo
    pcm = np.round(x * 32768).clip(-32768, 32767).astype("<i2").tobytes()
    found = []
    recognizer.reset()
    for i in range(0, len(pcm), 333):  # odd byte counts: half samples wait
        found += recognizer.push(pcm[i : i + 333])
    found += recognizer.flush()
    assert [d.digit for d in found] == demo_digits(clips)


# ------------------------------------------------------------------ other sample rates


def test_16khz_copy_is_resampled_and_recognised(demo, tmp_path):
    x, sr, clips = demo
    path = tmp_path / "demo16k.wav"
    write_wav(path, soxr.resample(x, sr, 16000).clip(-1, 1), 16000)
    rec = DigitRecognizer.load(input_rate=16000)
    source = WavSource(path, chunk_ms=20)
    found = stream(rec, source.read(), 320, sample_rate=16000)
    assert [d.digit for d in found] == demo_digits(clips)
    ref = stream(DigitRecognizer.load(), x, 160)
    assert all(abs(a.time_s - b.time_s) <= 0.03 for a, b in zip(found, ref, strict=True))


# ------------------------------------------------------------------ the listen command


def test_listen_json_prints_one_valid_object_per_digit(demo, capsys):
    _, _, clips = demo
    assert listen_main([demo_path(), "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    objs = [json.loads(line) for line in lines]
    assert [o["digit"] for o in objs] == demo_digits(clips)
    for o in objs:
        assert set(o) == {"digit", "time_s", "latency_ms"}
        assert isinstance(o["time_s"], float) and isinstance(o["latency_ms"], float)


def test_listen_human_readable(demo, capsys):
    _, _, clips = demo
    assert listen_main([demo_path()]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == len(clips) + 1
    assert out[-1] == "digits: " + " ".join(map(str, demo_digits(clips)))


def test_listen_stereo_16khz_file(demo, tmp_path, capsys):
    x, sr, clips = demo
    y = soxr.resample(x, sr, 16000).clip(-1, 1)
    path = tmp_path / "stereo.wav"
    write_wav(path, np.stack([y, 0.5 * y], axis=1), 16000)
    assert listen_main([str(path), "--json"]) == 0
    digits = [json.loads(line)["digit"] for line in capsys.readouterr().out.splitlines()]
    assert digits == demo_digits(clips)


# ------------------------------------------------------------------ the fast path is the reference


def test_fast_path_equals_the_reference_computation(demo):
    """What ``listen`` runs on 20 ms chunks (the front end's small-push path, the compiled
    kernel) equals torchaudio features of the whole signal (after the stream's lead of
    silence) through the torch model from the warm-up state, and its detections are those
    the demo's labels call for."""
    x, sr, clips = demo
    rec = DigitRecognizer.load()
    feats, logits = [], []
    for i in range(0, len(x), sr // 50):
        f = rec.features._push(x[i : i + sr // 50], None)
        feats.append(f)
        logits.append(rec.logits(f))
    feats, logits = np.concatenate(feats), np.concatenate(logits)
    lead = np.zeros(lead_samples(rec.features), np.float32)  # every stream starts with it
    ref = rec.features.offline(np.concatenate([lead, x]))  # one batched torchaudio call
    assert feats.shape == ref.shape
    np.testing.assert_allclose(feats, ref.numpy(), rtol=1e-5, atol=1e-5)
    silence = rec.features.offline(np.zeros(round(rec.warmup_ms * sr / 1000), np.float32))
    with torch.no_grad():
        want = rec.model(torch.cat([silence, ref])[None])[0][0, len(silence) :].numpy()
    np.testing.assert_allclose(logits, want, rtol=1e-4, atol=1e-4)
    found = stream(rec, x, sr // 50)
    assert [d.digit for d in found] == demo_digits(clips)
    win_s = rec.features.win_length / rec.features.sample_rate
    for d, clip in zip(found, clips, strict=True):
        assert clip["word_end_s"] <= d.time_s <= clip["word_end_s"] + 0.5
        # time_s - latency is the end of the last frame the endpointer called voiced: a
        # frame of this clip's word (it ends after the word starts, starts before the clip
        # ends), not of the silence around it
        heard_end = d.time_s - d.latency_ms / 1000
        assert clip["word_start_s"] < heard_end < clip["end_s"] + win_s



_RECOGNIZER: dict = {}  # one for the examples below (loading it costs more than a push)


@settings(max_examples=25, deadline=None, database=None)
@given(sizes=st.lists(st.one_of(st.integers(0, 700), st.sampled_from([80, 160, 240])),
                      min_size=1, max_size=12))
def test_every_hop_pushed_is_a_frame_from_the_first_push_on(sizes):
    # The stream's lead of silence (lead_samples: 160 of a 200-sample window) makes the
    # frame count exactly the hops pushed, whatever the chunking: what lets the exported
    # graph step streams of every age in one batch with no per-stream bookkeeping.
    rec = _RECOGNIZER.get("r") or _RECOGNIZER.setdefault("r", DigitRecognizer.load())
    rec.reset()
    assert lead_samples(rec.features) == 160
    x = np.random.default_rng(len(sizes)).uniform(-0.3, 0.3, sum(sizes)).astype(np.float32)
    hop, win, pushed = rec.features.hop_length, rec.features.win_length, 0
    for n in sizes:
        rec.push(x[pushed:pushed + n])
        pushed += n
        # the frames that end by the last sample pushed, the lead counted in
        assert rec.frames == max(0, (pushed + 160 - win) // hop + 1)
        if pushed % hop == 0:
            assert rec.frames == pushed // hop
