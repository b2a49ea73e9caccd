"""The onnxruntime engine (:class:`~streamrnn.export.OnnxModel`) under the existing
invariance suites: the chunk-invariance suite (tests/core/test_core_chunk_invariance.py)
and the batch-invariance suite (tests/core/test_core_batch_invariance.py), each run with
its models replaced by their exported copies. So a Stream and a StreamBank on an exported
file keep invariants 1 and 2 (float32 1e-5, float64 1e-10) exactly as on torch; parity
with torch is test_export_parity.py.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from _exported import exported, onnx_twin
from _oracle import KINDS, make_model

import streamrnn

CORE = Path(__file__).parent.parent / "core"


def _suite(name: str):
    spec = importlib.util.spec_from_file_location(f"onnx_{name}", CORE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


chunk = _suite("test_core_chunk_invariance")
batch = _suite("test_core_batch_invariance")


@pytest.fixture
def on_onnx(monkeypatch):
    monkeypatch.setattr(chunk, "model_for", lambda kind, layers, dtype: onnx_twin(
        kind, chunk.FEATURES, chunk.HIDDEN, layers, dtype, layers))
    monkeypatch.setattr(batch, "model_for", lambda kind, layers: onnx_twin(
        kind, batch.FEATURES, batch.HIDDEN, layers, torch.float64, 11 + layers))


CHUNK_TESTS = ["test_any_split_equals_one_offline_pass",
               "test_max_chunk_smaller_than_chunks_changes_nothing",
               "test_reset_then_replay_equals_a_fresh_stream",
               "test_numpy_views_of_any_stride_are_accepted",
               "test_reading_or_setting_the_state_between_steps_changes_nothing"]
BATCH_TESTS = ["test_interleaved_bank_equals_each_stream_alone",
               "test_eviction_is_lru_restarts_from_zero_and_is_counted",
               "test_evicted_stream_restarts_from_zero_state",
               "test_ragged_push_never_evicts_a_stream_of_the_same_push",
               "test_drop_len_and_in", "test_keys_that_look_alike_are_distinct_streams",
               "test_many_streams_one_step_each_equal_alone"]


@pytest.mark.parametrize("name", CHUNK_TESTS)
def test_chunk_invariance_suite(on_onnx, name):
    getattr(chunk, name)()


@pytest.mark.parametrize("kind", KINDS)
def test_chunk_invariance_suite_per_kind(on_onnx, kind):
    chunk.test_one_step_pushes_equal_one_offline_pass(kind)
    chunk.test_empty_chunks_leave_state_bitwise_unchanged(kind)
    for layers in (1, 2):
        for form in ["(F,)", "(1, F)"]:
            chunk.test_changing_an_output_in_place_leaves_the_state_alone(kind, layers, form)


@pytest.mark.parametrize("name", BATCH_TESTS)
def test_batch_invariance_suite(on_onnx, name):
    getattr(batch, name)()


@pytest.mark.parametrize("kind", KINDS)
def test_batch_invariance_suite_per_kind(on_onnx, kind):
    batch.test_reset_touches_only_that_stream(kind)


def test_one_session_serves_every_stream_of_a_bank(monkeypatch):
    # The bank steps its streams as one batch through the model's one session: no session
    # is made per stream, and a push of N streams is one onnxruntime call of batch N.
    import onnxruntime as ort

    path, onnx_model = exported(make_model("LSTM", 3, 4, 2, seed=0))
    made = []
    monkeypatch.setattr(ort, "InferenceSession", lambda *a, **k: made.append(a))
    calls = []
    real = onnx_model.session

    class Spy:
        def run(self, names, feeds):
            calls.append(feeds["x"].shape[0])
            return real.run(names, feeds)

    onnx_model.session = Spy()
    bank = streamrnn.StreamBank(onnx_model)
    for n in (5, 6, 7):
        bank.push({f"s{i}": torch.randn(2, 3) for i in range(n)})
    assert len(bank) == 7 and made == [] and calls == [5, 6, 7]
