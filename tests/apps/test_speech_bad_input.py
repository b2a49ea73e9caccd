"""Spoken digits, bad input: clear errors (parameter, rule, value), never a poisoned stream."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _forge import forge
from safetensors.torch import save_file

import streamrnn
from streamrnn.adapters.audio import AudioFeatures, WavSource, write_wav
from streamrnn.apps.speech import DigitRecognizer, demo_path, listen_main
from streamrnn.heads import Readout, RecurrentModel


@pytest.fixture(scope="module")
def recognizer():
    return DigitRecognizer.load()


def _model(hidden=8, out=11, n_in=40):
    return RecurrentModel(streamrnn.LSTM(n_in, hidden, seed=0), Readout(hidden, out, seed=1))


# ------------------------------------------------------------------ files and the command


def test_listen_missing_file(tmp_path, capsys):
    assert listen_main([str(tmp_path / "nope.wav")]) == 2
    err = capsys.readouterr().err
    assert "nope.wav" in err and "no such file" in err


def test_listen_truncated_wav(tmp_path, capsys):
    path = tmp_path / "cut.wav"
    write_wav(path, np.zeros(8000), 8000)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # the header still declares 8000 frames
    assert listen_main([str(path)]) == 2
    assert "truncated" in capsys.readouterr().err


def test_listen_not_a_wav(tmp_path, capsys):
    path = tmp_path / "text.wav"
    path.write_text("hello")
    assert listen_main([str(path)]) == 2
    assert "not a readable WAV file" in capsys.readouterr().err


def test_listen_bad_weights(tmp_path, capsys):
    bad = tmp_path / "w.safetensors"
    bad.write_bytes(b"\x00" * 16)
    assert listen_main([demo_path(), "--weights", str(bad)]) == 2
    assert "not a readable safetensors file" in capsys.readouterr().err


def test_listen_usage_error_returns_2(capsys):
    assert listen_main([]) == 2
    assert "FILE.wav" in capsys.readouterr().err


def test_load_missing_weights(tmp_path):
    with pytest.raises(ValueError, match="no such weights file"):
        DigitRecognizer.load(tmp_path / "missing.safetensors")


def test_load_refuses_other_formats_and_versions(tmp_path, recognizer):
    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), {"format": "something-else"})
    with pytest.raises(ValueError, match="format must be"):
        DigitRecognizer.load(path)
    good = tmp_path / "good.safetensors"
    recognizer.save(good)
    from safetensors import safe_open

    with safe_open(str(good), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    forge(path, tensors, {**meta, "version": "99"})
    with pytest.raises(ValueError, match="version must be"):
        DigitRecognizer.load(path)
    name = next(k for k in tensors if k.endswith("weight_hh_l0"))  # the shipped cell's
    tensors[name] = tensors[name][:, :3].contiguous()
    forge(path, tensors, meta)
    with pytest.raises(ValueError, match="must describe a RecurrentModel"):
        DigitRecognizer.load(path)


def test_save_is_atomic_and_round_trips(tmp_path, recognizer):
    path = tmp_path / "copy.safetensors"
    recognizer.save(path, info={"note": "copy"})
    assert [p.name for p in tmp_path.iterdir()] == ["copy.safetensors"]  # no temp left
    again = DigitRecognizer.load(path)
    x = WavSource(demo_path()).read()
    assert again.recognize(x) == recognizer.recognize(x)
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        assert json.loads(f.metadata()["info"]) == {"note": "copy"}


# ------------------------------------------------------------------ pushes


def test_wrong_sample_rate_is_refused(recognizer):
    with pytest.raises(ValueError, match="sample_rate must equal the input rate"):
        recognizer.push(np.zeros(320, dtype=np.float32), sample_rate=16000)


def test_nonfinite_chunk_raises_and_leaves_the_stream_untouched(recognizer):
    x = WavSource(demo_path()).read()
    ref = recognizer.recognize(x)
    recognizer.reset()
    half = len(x) // 2
    found = recognizer.push(x[:half])
    bad = x[half : half + 160].copy()
    bad[10] = np.nan
    with pytest.raises(ValueError, match="finite"):
        recognizer.push(bad)
    found += recognizer.push(x[half:]) + recognizer.flush()
    assert found == ref


def test_stereo_needs_a_channel_rule():
    rec = DigitRecognizer.load()
    with pytest.raises(ValueError, match="channels"):
        rec.push(np.zeros((320, 2), dtype=np.float32))
    assert DigitRecognizer.load(channels="mean").push(np.zeros((320, 2), np.float32)) == []


# ------------------------------------------------------------------ construction


def test_model_must_fit_the_front_end_and_labels():
    fe = AudioFeatures(8000, n_mels=40, win_length=200, hop_length=80)
    with pytest.raises(ValueError, match="model.input_size must equal features.n_features"):
        DigitRecognizer(_model(n_in=13), fe)
    with pytest.raises(ValueError, match="model.output_size must be 11"):
        DigitRecognizer(_model(out=10), fe)
    with pytest.raises(ValueError, match="features must be an AudioFeatures"):
        DigitRecognizer(_model(), "logmel")


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"threshold": 0.0}, "threshold must be a number in"),
        ({"threshold": 1.5}, "threshold must be a number in"),
        ({"min_frames": 0}, "min_frames must be a positive int, got 0"),
        ({"release_frames": 2.5}, "release_frames must be a positive int, got 2.5"),
        ({"voice_frames": True}, "voice_frames must be a positive int, got True"),
        ({"flush_ms": -1}, "flush_ms must be a finite number >= 0"),
        ({"warmup_ms": float("nan")}, "warmup_ms must be a finite number >= 0"),
        ({"min_range_db": -1.0}, "min_range_db must be a finite number >= 0"),
        ({"decay": 0.0}, "decay must be a number in"),
        ({"decay": 1.5}, "decay must be a number in"),
        ({"decay": float("nan")}, "decay must be a number in"),
    ],
)
def test_decoder_settings_are_validated(kw, match):
    fe = AudioFeatures(8000, n_mels=40, win_length=200, hop_length=80)
    with pytest.raises(ValueError, match=match):
        DigitRecognizer(_model(), fe, **kw)
