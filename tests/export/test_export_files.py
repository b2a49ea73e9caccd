"""Exported files: the metadata round trip, and bad files / models refused clearly."""

from __future__ import annotations

import os

import onnx
import pytest
import torch
from _exported import cell, exported, fresh_path
from onnx import TensorProto, helper

import streamrnn
from streamrnn.cells import cell_class
from streamrnn.export import OnnxModel, read_metadata, registered_exports, to_onnx


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN_RELU", "MinGRU", "MinLSTM"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_metadata_round_trip_rebuilds_the_model(kind, dtype):
    core = cell(kind, 3, 5, 2, dtype=dtype)
    model = streamrnn.RecurrentModel(core, streamrnn.Readout(5, 2, dtype=dtype))
    path, onnx_model = exported(model)
    meta = read_metadata(path)
    assert meta["streamrnn_version"] == streamrnn.__version__
    assert meta["config"] == model.config()
    assert meta["state"] == {k: [2, "B", *v] for k, v in core.state_shapes().items()}
    assert meta["dtype"] == meta["input_dtype"] == str(dtype).replace("torch.", "")
    assert meta["quantize"] is None
    # the configuration rebuilds a model of the same shape; its weights load the file's
    cfg = dict(meta["config"]["cell"])
    rebuilt = cell_class(cfg.pop("type"))(**cfg, dtype=dtype)
    assert rebuilt.config() == core.config()
    assert onnx_model.state_parts == core.state_parts
    assert onnx_model.initial_state(4).h.dtype == dtype
    assert onnx_model.config() == model.config()


def test_token_model_metadata_says_ids():
    model = streamrnn.RecurrentModel(streamrnn.GRU(4, 5), None, num_tokens=9)
    path, onnx_model = exported(model)
    meta = read_metadata(path)
    assert (meta["input"], meta["input_dtype"], meta["num_tokens"]) == ("ids", "int64", 9)
    assert onnx_model.num_tokens == 9
    stream = streamrnn.Stream(onnx_model)
    with pytest.raises(ValueError, match="ids in"):
        stream.push(torch.tensor([1, 9]))


def _foreign(path):
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), path)


def test_a_foreign_onnx_file_is_refused():
    path = fresh_path()
    _foreign(path)
    for load in (OnnxModel, read_metadata):
        with pytest.raises(ValueError, match="not a streamrnn export"):
            load(path)


def test_a_truncated_file_is_refused():
    path, _ = exported(streamrnn.LSTM(3, 4))
    data = path.read_bytes()
    for cut in (len(data) // 2, 10, 0):
        path.write_bytes(data[:cut])
        with pytest.raises(ValueError, match="not a readable ONNX file|not a streamrnn"):
            OnnxModel(path)


def test_a_file_that_is_not_onnx_or_not_there_is_refused():
    path = fresh_path()
    path.write_text("hello, not a protobuf")
    with pytest.raises(ValueError, match="not a readable ONNX file"):
        OnnxModel(path)
    with pytest.raises(ValueError, match="path must be an existing .onnx file"):
        OnnxModel(str(path) + ".missing")


@pytest.mark.parametrize("lie", ["state", "input_size", "output_size"])
def test_a_graph_that_does_not_match_its_metadata_is_refused(lie):
    path, _ = exported(streamrnn.LSTM(3, 4, num_layers=2))
    proto = onnx.load(path)
    for prop in proto.metadata_props:
        if prop.key == lie:
            prop.value = {"state": '{"h": [2, "B", 5], "c": [2, "B", 5]}',
                          "input_size": "4", "output_size": "7"}[lie]
    onnx.save(proto, path)
    with pytest.raises(ValueError, match="does not match its metadata"):
        OnnxModel(path)


def test_a_cell_with_no_export_form_is_named():
    with pytest.raises(ValueError, match=r"cell DecayGRU \(registered name 'decaygru'\) has "
                                         r"no export form"):
        to_onnx(streamrnn.DecayGRU(3, 4), fresh_path())
    assert set(registered_exports()) >= {"rnn", "lstm", "gru", "mingru", "minlstm"}


def test_unsupported_heads_and_options_are_refused_and_write_nothing():
    path = fresh_path()
    head = torch.nn.Sequential(torch.nn.Linear(4, 2))
    head.output_size = 2
    with pytest.raises(ValueError, match="model.head must be a streamrnn.Readout or an "
                                         "nn.Linear"):
        to_onnx(streamrnn.RecurrentModel(streamrnn.GRU(3, 4), head), path)
    with pytest.raises(ValueError, match=r"opset must be an int in \[13, "):
        to_onnx(streamrnn.GRU(3, 4), path, opset=9)
    with pytest.raises(ValueError, match="quantize must be one of"):
        to_onnx(streamrnn.GRU(3, 4), path, quantize="int4")
    assert not os.path.exists(path)


def test_int8_file_is_smaller_marked_and_close():
    model = streamrnn.RecurrentModel(streamrnn.LSTM(16, 64, num_layers=2, seed=0),
                                     streamrnn.Readout(64, 8, seed=1))
    path, onnx_float = exported(model)
    qpath, onnx_int8 = exported(model, quantize="int8")
    assert read_metadata(qpath)["quantize"] == "int8"
    assert qpath.stat().st_size < 0.5 * path.stat().st_size
    x = torch.randn(3, 20, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = model(x)[0]
    err = (onnx_int8(x)[0] - want).abs().max()
    assert 0 < err < 0.05  # int8 weights: near, not equal (the float file is within 1e-5)
    assert (onnx_float(x)[0] - want).abs().max() < 1e-5
