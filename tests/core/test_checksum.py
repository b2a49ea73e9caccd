"""Every file streamrnn writes is sealed by a checksum: any flipped bit, any truncation
and any edit of the header is refused with a ValueError, and the refused load changes
nothing (bank, learner, the LM checkpoint and the recogniser's weights)."""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import streamrnn
from streamrnn.utils import read_header

H = 6


def bank() -> streamrnn.StreamBank:
    b = streamrnn.StreamBank(streamrnn.LSTM(3, H, seed=0))
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    b.push({"a": x, ("b", 1): torch.ones(2, 3)})
    return b


def learner() -> streamrnn.OnlineLearner:
    net = streamrnn.RecurrentModel(streamrnn.GRU(2, H, seed=0), streamrnn.Readout(H, 2, seed=1))
    lrn = streamrnn.OnlineLearner(net, k1=3, k2=5, lr=1e-2, horizon=1, optimizer=torch.optim.Adam)
    lrn.push(torch.sin(torch.arange(20.0)).reshape(10, 2))
    return lrn


def snapshot(obj) -> str:
    """Everything a load could change, as one comparable value (weights included)."""
    sd = obj.state_dict()
    tensors = {k: v.tolist() for k, v in sd.pop("tensors").items()}
    weights = {}
    model = getattr(obj, "model", None)
    if model is not None:
        weights = {k: v.tolist() for k, v in model.state_dict().items()}
    return json.dumps([sd, tensors, weights], sort_keys=True, default=repr)


@pytest.fixture(scope="module", params=["bank", "learner"])
def saved(request, tmp_path_factory):
    make = {"bank": bank, "learner": learner}[request.param]
    path = tmp_path_factory.mktemp("sealed") / f"{request.param}.safetensors"
    make().save(path)
    target = make()
    target.push({"z": torch.zeros(2, 3)}) if request.param == "bank" else target.push(
        torch.ones(3, 2))
    return path.read_bytes(), target, snapshot(target)


def test_the_file_loads_and_records_a_checksum(saved, tmp_path):
    data, target, _ = saved
    path = tmp_path / "ok.safetensors"
    path.write_bytes(data)
    assert read_header(path).metadata["checksum"].startswith("xxh3_64:")
    fresh = bank() if isinstance(target, streamrnn.StreamBank) else learner()
    fresh.load(path)  # and a good file loads


def test_every_single_bit_flip_is_refused_and_changes_nothing(saved, tmp_path):
    data, target, snap = saved
    path = tmp_path / "flipped.safetensors"
    for i in range(len(data)):  # every byte, a different bit each time
        raw = bytearray(data)
        raw[i] ^= 1 << (i % 8)
        path.write_bytes(bytes(raw))
        with pytest.raises(ValueError, match="flipped.safetensors"):
            target.load(path)
    assert snapshot(target) == snap


@settings(max_examples=60, deadline=None)
@given(cut=st.floats(0, 1, exclude_max=True), extra=st.binary(max_size=16))
def test_truncated_or_extended_files_are_refused(saved, tmp_path_factory, cut, extra):
    data, target, snap = saved
    path = tmp_path_factory.mktemp("cut") / "cut.safetensors"
    body = data[: int(cut * len(data))] + extra
    if body == data:
        return
    path.write_bytes(body)
    with pytest.raises(ValueError):
        target.load(path)
    assert snapshot(target) == snap


def test_an_edited_header_value_is_refused(saved, tmp_path):
    # the same length and still valid JSON: only the checksum can tell
    data, target, snap = saved
    at = data.find(b'"version":"') + len(b'"version":"')
    for digit in b"0123456789":
        if digit == data[at]:
            continue
        raw = bytearray(data)
        raw[at] = digit
        (tmp_path / "v.safetensors").write_bytes(bytes(raw))
        with pytest.raises(ValueError, match="checksum|version"):
            target.load(tmp_path / "v.safetensors")
    assert snapshot(target) == snap


def test_a_file_without_a_checksum_is_refused_at_a_sealed_version(saved, tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    data, target, snap = saved
    src = tmp_path / "src.safetensors"
    src.write_bytes(data)
    with safe_open(str(src), framework="pt") as f:
        meta = {k: v for k, v in f.metadata().items() if k != "checksum"}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    save_file(tensors, str(tmp_path / "bare.safetensors"), meta)
    with pytest.raises(ValueError, match="records no checksum"):
        target.load(tmp_path / "bare.safetensors")
    assert snapshot(target) == snap
