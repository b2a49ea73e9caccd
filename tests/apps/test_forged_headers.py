"""Forged configuration headers: a clear ValueError naming the file and the field, raised
from the header before any model is built (issue 15: 2.6 GB / minutes / 7.1 GB before)."""

from __future__ import annotations

import json

import pytest
from _forge import forge
from safetensors import safe_open

import streamrnn.apps.lm._model as lm_model
import streamrnn.apps.lm._train as lm_train
from streamrnn.apps.lm import CharLM, LMTrainer
from streamrnn.apps.speech import DigitRecognizer

TEXT = "the quick brown fox jumps over the lazy dog. " * 4


def _read(path):
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}


def _no_build(*args, **kwargs):
    raise AssertionError("a model was built from a forged header")


@pytest.fixture(scope="module")
def lm_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("lm") / "lm.safetensors"
    trainer = LMTrainer(TEXT, hidden=8, layers=1, emb=4, batch=2, k1=4)
    trainer.train(steps=4)
    trainer.save(path)
    return path


def _forge_lm(src, dst, *, model=None, train=None, drop=None):
    meta, tensors = _read(src)
    lm = json.loads(meta["streamrnn.lm"])
    lm["model"].update(model or {})
    lm["train"].update(train or {})
    meta["streamrnn.lm"] = json.dumps(lm)
    if drop:
        del tensors[drop]
    forge(dst, tensors, meta)
    return dst


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"model": {"hidden": 8192}, "train": {"hidden": 8192}}, "hidden"),
        ({"model": {"layers": 100_000}, "train": {"layers": 100_000}}, "layers"),
        ({"model": {"vocab": 1e9}}, "vocab"),
        ({"model": {"emb": "4"}}, "emb"),
        ({"model": {"hidden": 9}, "train": {"hidden": 9}}, "must describe"),
        ({"drop": "model.embedding.weight"}, "must describe"),
        ({"train": {"hidden": 16}}, "train.hidden"),
        ({"train": {"surprise": 1}}, "unknown fields"),
    ],
    ids=["hidden-8192", "layers-1e5", "vocab-1e9", "emb-str", "hidden-off-by-one",
         "missing-tensor", "train-disagrees", "train-unknown"],
)
def test_forged_lm_checkpoints_fail_on_the_header(lm_file, tmp_path, monkeypatch, change,
                                                  field):
    path = _forge_lm(lm_file, tmp_path / "forged.safetensors", **change)
    monkeypatch.setattr(lm_model, "build_model", _no_build)
    monkeypatch.setattr(lm_train, "build_model", _no_build)
    for load in (lambda: CharLM.from_checkpoint(path), lambda: LMTrainer.resume(path, TEXT)):
        with pytest.raises(ValueError, match=field) as info:
            load()
        assert str(path) in str(info.value)


def test_the_unforged_lm_checkpoint_still_loads(lm_file):
    assert CharLM.from_checkpoint(lm_file).model.num_tokens == LMTrainer(TEXT, hidden=8, layers=1,
                                                              emb=4, batch=2).codec.vocab_size


@pytest.fixture(scope="module")
def speech_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("speech") / "digits.safetensors"
    DigitRecognizer.load().save(path)
    return path


def _forge_speech(src, dst, *, features=None, cell=None, drop=None, raw=None):
    meta, tensors = _read(src)
    if features:
        meta["features"] = json.dumps({**json.loads(meta["features"]), **features})
    if cell:
        model = json.loads(meta["model"])
        model["cell"].update(cell)
        meta["model"] = json.dumps(model)
    if drop:
        del tensors[drop]
    meta.update(raw or {})
    forge(dst, tensors, meta)
    return dst


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"features": {"n_fft": 2**26}}, "n_fft must be <= 65536"),
        ({"features": {"n_mels": 10**6}}, "n_mels must be <= 2048"),
        ({"cell": {"hidden_size": 8192}}, "hidden_size 8192"),
        ({"cell": {"hidden_size": 10**9}}, "'hidden_size' must be an int in"),
        ({"cell": {"num_layers": 10**9}}, "'num_layers' must be an int in"),  # > the values
        ({"cell": {"type": "Transformer"}}, "'cell' must be an LSTM, GRU, RNN or ConvGRU"),
        ({"drop": "head.linear.bias"}, "must describe a RecurrentModel"),
        ({"raw": {"features": "[1, 2]"}}, "'features' must be a mapping"),
        ({"raw": {"labels": "{not json"}}, "'labels' is not JSON"),
        ({"raw": {"decoder": "7"}}, "'decoder' must be a mapping"),
    ],
    ids=["n_fft", "n_mels", "hidden", "hidden-1e9", "layers", "cell-type", "missing-tensor",
         "features", "labels", "decoder"],
)
def test_forged_recogniser_files_fail_on_the_header(speech_file, tmp_path, change, match):
    path = _forge_speech(speech_file, tmp_path / "forged.safetensors", **change)
    with pytest.raises(ValueError, match=match) as info:
        DigitRecognizer.load(path)
    assert str(path) in str(info.value)


def test_a_missing_tensor_in_a_learner_header_is_a_value_error(lm_file, tmp_path):
    meta, tensors = _read(lm_file)
    name = next(k for k in tensors if not k.startswith("model."))
    del tensors[name]
    path = tmp_path / "partial.safetensors"
    forge(path, tensors, meta)
    with pytest.raises(ValueError, match=str(path)):
        LMTrainer.resume(path, TEXT)
