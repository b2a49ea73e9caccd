"""Bad input gets a clear ``ValueError`` naming the parameter, and never a poisoned state:
after every refused call the stream's / bank's state is bitwise what it was before.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
import safetensors.torch
import torch
from _forge import forge
from _oracle import make_model, states_equal

import streamrnn

F, H = 3, 4


def model_for(kind="LSTM", dtype=torch.float32, hidden=H, layers=2, **kw):
    return make_model(kind, F, hidden, layers, dtype=dtype, seed=0, **kw)


def chunk(seed: int, steps: int, dtype=torch.float32) -> torch.Tensor:
    return torch.randn(steps, F, generator=torch.Generator().manual_seed(seed)).to(dtype)


def warm_stream(kind="LSTM", dtype=torch.float32) -> streamrnn.Stream:
    stream = streamrnn.Stream(model_for(kind, dtype))
    stream.push(chunk(0, 5, dtype))  # a non-zero state, so "unchanged" means something
    return stream


def snapshot_stream(stream):
    return stream.state.clone(), stream.steps


def assert_stream_unchanged(stream, snap) -> None:
    state, steps = snap
    assert states_equal(stream.state, state), "a refused push changed the state"
    assert stream.steps == steps


def warm_bank(keys=("a", 2, ("c", 3)), dtype=torch.float32, **kw) -> streamrnn.StreamBank:
    bank = streamrnn.StreamBank(model_for(dtype=dtype), **kw)
    for j, k in enumerate(keys):
        bank.push({k: chunk(j + 1, 2 + j, dtype)})
    return bank


def snapshot_bank(bank) -> dict:
    sd = bank.state_dict()
    sd["tensors"] = {k: v.clone() for k, v in sd["tensors"].items()}
    return sd


def assert_bank_unchanged(bank, snap) -> None:
    now = bank.state_dict()
    assert now["keys"] == snap["keys"], "a refused call added, removed or reordered streams"
    assert now["counts"] == snap["counts"]
    for name, t in snap["tensors"].items():
        assert torch.equal(now["tensors"][name], t), "a refused call changed a stream's state"


# -- Stream.push -------------------------------------------------------------------------
NAN_3 = torch.tensor([[0.0, 1.0, 2.0], [0.0, math.nan, 0.0]])
STREAM_BAD_CHUNKS = {
    "too few features": (torch.zeros(4, F - 1), ["chunk", f"{F} features", f"got {F - 1}"]),
    "too many features": (torch.zeros(4, F + 1), ["chunk", f"{F} features", f"got {F + 1}"]),
    "one step, wrong F": (torch.zeros(F + 2), ["chunk", f"{F} features", f"got {F + 2}"]),
    "3-D chunk": (torch.zeros(1, 4, F), ["chunk", "(T, F)", "(1, 4, 3)"]),
    "0-D chunk": (torch.tensor(1.0), ["chunk", "(T, F)"]),
    "float64 into float32": (torch.zeros(4, F, dtype=torch.float64), ["chunk", "dtype", "float64"]),
    "int tensor": (torch.zeros(4, F, dtype=torch.int64), ["chunk", "dtype", "int64"]),
    "bool tensor": (torch.zeros(4, F, dtype=torch.bool), ["chunk", "dtype", "bool"]),
    "numpy int": (np.zeros((4, F), dtype=np.int32), ["chunk", "int32"]),
    "numpy float64": (np.zeros((4, F)), ["chunk", "dtype", "float64"]),
    "sparse step": (torch.zeros(F).to_sparse(), ["chunk", "dense", "sparse_coo"]),
    "sparse chunk": (torch.ones(4, F).to_sparse(), ["chunk", "dense", "sparse_coo"]),
    "NaN": (NAN_3, ["chunk", "non-finite", "(1, 1)"]),
    "inf": (torch.tensor([math.inf, 0.0, 0.0]), ["chunk", "non-finite"]),
    "-inf": (torch.full((2, F), -math.inf), ["chunk", "non-finite"]),
    "numpy NaN": (np.full((2, F), np.nan, dtype=np.float32), ["chunk", "non-finite"]),
    "list NaN": ([[0.0, float("nan"), 1.0]], ["chunk", "non-finite"]),
    "ragged list": ([[1.0, 2.0, 3.0], [1.0]], ["chunk", "rectangular"]),
    "a string": ("0.1 0.2 0.3", ["chunk", "str"]),
    "a float": (0.5, ["chunk", "float"]),
    "None": (None, ["chunk", "NoneType"]),
}


@pytest.mark.parametrize("case", list(STREAM_BAD_CHUNKS))
def test_stream_refuses_bad_chunk_and_keeps_its_state(case):
    bad, words = STREAM_BAD_CHUNKS[case]
    stream = warm_stream()
    snap = snapshot_stream(stream)
    with pytest.raises(ValueError) as err:
        stream.push(bad)
    for word in words:
        assert word in str(err.value), f"{word!r} missing from: {err.value}"
    assert_stream_unchanged(stream, snap)
    stream.push(chunk(9, 2))  # and the stream still works


@pytest.mark.parametrize("value", [1, 0, "yes", None], ids=repr)
def test_stream_refuses_a_softmax_that_is_not_a_bool_and_keeps_its_state(value):
    stream = warm_stream()
    snap = snapshot_stream(stream)
    with pytest.raises(ValueError, match=f"softmax must be a bool, got {value!r}"):
        stream.push(chunk(9, 2), softmax=value)
    assert_stream_unchanged(stream, snap)


def test_stream_refuses_nan_in_a_long_chunk_sliced_by_max_chunk():
    # The whole chunk is checked before any slice runs: no partial advance.
    stream = streamrnn.Stream(model_for(), max_chunk=2)
    stream.push(chunk(0, 3))
    snap = snapshot_stream(stream)
    x = chunk(1, 9)
    x[7, 2] = math.inf
    with pytest.raises(ValueError, match="chunk has a non-finite value"):
        stream.push(x)
    assert_stream_unchanged(stream, snap)


def test_stream_refuses_a_3d_list_with_value_error():
    stream = warm_stream()
    snap = snapshot_stream(stream)
    with pytest.raises(ValueError, match="chunk"):
        stream.push([[[0.0, 1.0, 2.0]]])
    assert_stream_unchanged(stream, snap)


# -- Stream.state setter -----------------------------------------------------------------
def bad_states(kind: str):
    good = model_for(kind).initial_state(1)
    h, c = good.h, good.c
    nan_h = h.clone()
    nan_h[1, 0, 2] = math.nan
    cases = {
        "not a State": ((h, c), "state must be a streamrnn.State"),
        "wrong batch": (streamrnn.State(torch.zeros(2, 3, H), c), "state.h"),
        "wrong hidden": (streamrnn.State(torch.zeros(2, 1, H + 1), c), "state.h"),
        "wrong layers": (streamrnn.State(torch.zeros(1, 1, H), c), "state.h"),
        "wrong dtype": (streamrnn.State(h.double(), c), "state.h"),
        "NaN in h": (streamrnn.State(nan_h, c), "state.h"),
    }
    if kind == "LSTM":
        inf_c = c.clone()
        inf_c[0, 0, 0] = math.inf
        cases["missing c"] = (streamrnn.State(h, None), "state.c")
        cases["inf in c"] = (streamrnn.State(h, inf_c), "state.c")
        cases["c wrong shape"] = (streamrnn.State(h, torch.zeros(2, 1, H + 2)), "state.c")
    else:
        cases["unexpected c"] = (streamrnn.State(h, h.clone()), "state.c")
    return cases


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_state_setter_refuses_bad_states(kind):
    for case, (value, word) in bad_states(kind).items():
        stream = warm_stream(kind)
        snap = snapshot_stream(stream)
        with pytest.raises(ValueError) as err:
            stream.state = value
        assert word in str(err.value), f"{case}: {word!r} missing from {err.value}"
        assert_stream_unchanged(stream, snap)


def test_state_setter_accepts_a_good_state_and_uses_it():
    model = model_for("GRU")
    source = streamrnn.Stream(model)
    source.push(chunk(0, 4))
    target = streamrnn.Stream(model)
    target.state = source.state.clone()
    x = chunk(1, 3)
    assert torch.equal(target.push(x), source.push(x))


def test_stream_never_keeps_a_nonfinite_state():
    model = model_for("RNN_RELU", layers=1)
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    stream = streamrnn.Stream(model)
    stream.push(torch.full((3, F), 3e38))  # finite input, overflowing pre-activations
    assert torch.isfinite(stream.state.h).all()


def test_bank_resets_and_reports_a_stream_whose_state_overflows():
    model = model_for("RNN_RELU", layers=1)
    with torch.no_grad():
        for p in model.parameters():
            p.abs_()
    bank = streamrnn.StreamBank(model)
    bank.push({"calm": chunk(0, 2).abs(), "loud": chunk(1, 2).abs()})
    calm = bank.get_state("calm")
    bank.push({"loud": torch.full((3, F), 3e38)})
    assert bank.last_reset == ["loud"]
    assert bank.counts["nonfinite_resets"] == 1
    assert states_equal(bank.get_state("loud"), model.initial_state(1))
    assert states_equal(bank.get_state("calm"), calm)


# -- StreamBank.push / push_many -----------------------------------------------------------
BANK_BAD_CHUNKS = {
    "wrong features": torch.zeros(2, F + 1),
    "3-D": torch.zeros(1, 2, F),
    "float64": torch.zeros(2, F, dtype=torch.float64),
    "int": torch.zeros(2, F, dtype=torch.int32),
    "numpy int": np.zeros((2, F), dtype=np.int64),
    "NaN": torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, math.nan]]),
    "inf one step": torch.tensor([0.0, -math.inf, 0.0]),
}


@pytest.mark.parametrize("case", list(BANK_BAD_CHUNKS))
@pytest.mark.parametrize(
    "others",
    [
        {},
        {"a": chunk(5, 2), "new": chunk(6, 2)},  # same shape as most bad chunks
        {"a": chunk(5, 1)[0], 2: chunk(7, 4), "new": torch.zeros(0, F)},  # ragged
    ],
    ids=["alone", "uniform", "ragged"],
)
def test_bank_refuses_a_bad_chunk_naming_its_key_and_changes_no_stream(case, others):
    bank = warm_bank()
    snap = snapshot_bank(bank)
    bad_key = ("c", 3)
    chunks = dict(others)
    chunks[bad_key] = BANK_BAD_CHUNKS[case]
    chunks["tail"] = chunk(8, 2)  # a good key after the bad one
    with pytest.raises(ValueError) as err:
        bank.push(chunks)
    assert repr(bad_key) in str(err.value), f"bad key not named: {err.value}"
    for good in chunks:
        if good != bad_key:
            assert f"key {good!r}" not in str(err.value)
    assert_bank_unchanged(bank, snap)
    assert "new" not in bank and "tail" not in bank


@pytest.mark.parametrize("bad_row", [0, 2])
def test_push_many_refuses_nan_naming_the_key_and_changes_no_stream(bad_row):
    bank = warm_bank()
    snap = snapshot_bank(bank)
    keys = ["a", "fresh", 2]
    x = torch.zeros(3, 2, F)
    x[bad_row, 1, 0] = math.nan
    with pytest.raises(ValueError, match=f"key {keys[bad_row]!r}.*non-finite"):
        bank.push_many(keys, x)
    assert_bank_unchanged(bank, snap)


PUSH_MANY_BAD = {
    "2-D x": (["a"], torch.zeros(1, F), "x must be (N, T, F)"),
    "wrong F": (["a"], torch.zeros(1, 2, F + 1), "x must be (N, T, F)"),
    "float64 x": (["a"], torch.zeros(1, 2, F, dtype=torch.float64), "x must have dtype"),
    "not a tensor": (["a"], np.zeros((1, 2, F), dtype=np.float32), "x must be (N, T, F)"),
    "too few keys": (["a"], torch.zeros(2, 2, F), "keys must be 2 distinct keys"),
    "duplicate keys": (["a", "a"], torch.zeros(2, 2, F), "keys must be 2 distinct keys"),
    "float key": (["a", 1.5], torch.zeros(2, 1, F), "key must be"),
}


@pytest.mark.parametrize("case", list(PUSH_MANY_BAD))
def test_push_many_refuses_bad_arguments(case):
    keys, x, words = PUSH_MANY_BAD[case]
    bank = warm_bank()
    snap = snapshot_bank(bank)
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        bank.push_many(keys, x)
    assert_bank_unchanged(bank, snap)


def test_push_refuses_a_non_dict():
    bank = warm_bank()
    snap = snapshot_bank(bank)
    with pytest.raises(ValueError, match="chunks must be a dict"):
        bank.push([("a", chunk(0, 1))])
    assert_bank_unchanged(bank, snap)


# -- keys ----------------------------------------------------------------------------------
BAD_KEYS = [1.5, True, None, ("a", 2.5), ("a", (1, False)), b"bytes", frozenset({1})]


@pytest.mark.parametrize("key", BAD_KEYS, ids=repr)
@pytest.mark.parametrize("shape", [(F,), (2, F)], ids=["one-step", "chunk"])
def test_push_refuses_bad_key_types(key, shape):
    bank = warm_bank()
    snap = snapshot_bank(bank)
    with pytest.raises(ValueError, match="key must be a str, an int, or a tuple of them"):
        bank.push({"a": torch.zeros(shape), key: torch.zeros(shape)})
    assert_bank_unchanged(bank, snap)


def test_ragged_push_with_a_bad_key_changes_no_stream():
    bank = warm_bank()
    snap = snapshot_bank(bank)
    with pytest.raises(ValueError, match="key must be"):
        bank.push({"a": chunk(0, 2), 1.5: chunk(1, 3)})
    assert_bank_unchanged(bank, snap)


@pytest.mark.parametrize("alias", [True, 1.0], ids=repr)
def test_bad_key_types_are_refused_even_when_equal_to_a_live_key(alias):
    bank = warm_bank(keys=("b", 1))  # 1 pushed last: a repeated key list may be cached
    snap = snapshot_bank(bank)
    for call in (
        lambda: bank.push({alias: chunk(0, 2)}),
        lambda: bank.push_many([alias], chunk(0, 2).unsqueeze(0)),
        lambda: bank.reset(alias),
        lambda: bank.get_state(alias),
        lambda: bank.drop(alias),
    ):
        with pytest.raises(ValueError):
            call()
        assert_bank_unchanged(bank, snap)


def test_push_many_refuses_a_list_key_with_value_error():
    bank = warm_bank()
    snap = snapshot_bank(bank)
    with pytest.raises(ValueError, match="key"):
        bank.push_many([["a", 1]], torch.zeros(1, 1, F))
    assert_bank_unchanged(bank, snap)


@pytest.mark.parametrize("method", ["reset", "drop", "get_state"])
@pytest.mark.parametrize("key", ["zz", 99, ("a",), ["a"], 1.5], ids=repr)
def test_unknown_or_bad_key_for_per_key_calls(method, key):
    bank = warm_bank()
    snap = snapshot_bank(bank)
    with pytest.raises(ValueError) as err:
        getattr(bank, method)(key)
    assert repr(key) in str(err.value) and "not a live stream" in str(err.value)
    assert_bank_unchanged(bank, snap)


# -- constructors --------------------------------------------------------------------------
CTOR_BAD = {
    "hidden_size=0": (lambda: streamrnn.LSTM(3, 0), "hidden_size"),
    "hidden_size=True": (lambda: streamrnn.GRU(3, True), "hidden_size"),
    "hidden_size=2.0": (lambda: streamrnn.GRU(3, 2.0), "hidden_size"),
    "input_size=-1": (lambda: streamrnn.LSTM(-1, 4), "input_size"),
    "num_layers=0": (lambda: streamrnn.RNN(3, 4, 0), "num_layers"),
    "dropout=1.5": (lambda: streamrnn.LSTM(3, 4, 2, dropout=1.5), "dropout"),
    "dropout=1.0": (lambda: streamrnn.LSTM(3, 4, 2, dropout=1.0), "dropout"),
    "dropout=-0.1": (lambda: streamrnn.GRU(3, 4, 2, dropout=-0.1), "dropout"),
    "dropout='0.1'": (lambda: streamrnn.GRU(3, 4, 2, dropout="0.1"), "dropout"),
    "nonlinearity=sigmoid": (lambda: streamrnn.RNN(3, 4, nonlinearity="sigmoid"), "nonlinearity"),
    "bias='yes'": (lambda: streamrnn.LSTM(3, 4, bias="yes"), "bias"),
    "seed=1.5": (lambda: streamrnn.LSTM(3, 4, seed=1.5), "seed"),
    "max_streams=0": (lambda: streamrnn.StreamBank(model_for(), max_streams=0), "max_streams"),
    "max_streams=2.0": (lambda: streamrnn.StreamBank(model_for(), max_streams=2.0), "max_streams"),
    "bank grad=1": (lambda: streamrnn.StreamBank(model_for(), grad=1), "grad"),
    "max_chunk=0": (lambda: streamrnn.Stream(model_for(), max_chunk=0), "max_chunk"),
    "stream grad='no'": (lambda: streamrnn.Stream(model_for(), grad="no"), "grad"),
    "Stream(not a model)": (lambda: streamrnn.Stream(torch.nn.Linear(3, 4)), "model"),
    "StreamBank(not a model)": (lambda: streamrnn.StreamBank(object()), "model"),
}


@pytest.mark.parametrize("case", list(CTOR_BAD))
def test_constructors_refuse_bad_arguments_naming_them(case):
    make, name = CTOR_BAD[case]
    with pytest.raises(ValueError) as err:
        make()
    assert str(err.value).startswith(name) or f"{name} " in str(err.value), str(err.value)


# -- state files -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def saved_bytes(tmp_path_factory) -> bytes:
    """The bytes of a good state file (saved once: save fsyncs, which a busy disk makes slow)."""
    path = tmp_path_factory.mktemp("saved") / "bank.safetensors"
    warm_bank(keys=("x", ("y", 1))).save(path)
    return path.read_bytes()


@pytest.fixture
def saved(tmp_path, saved_bytes):
    """A good state file, and a warm bank (the one we try to load into) with its snapshot."""
    path = tmp_path / "bank.safetensors"
    path.write_bytes(saved_bytes)
    target = warm_bank()
    return path, target, snapshot_bank(target)


@pytest.mark.parametrize("keep", [0, 7, 8, 30, 0.5, -1], ids=lambda k: f"keep={k}")
def test_truncated_file_is_refused(saved, keep):
    path, target, snap = saved
    raw = path.read_bytes()
    n = int(len(raw) * keep) if isinstance(keep, float) else (keep % len(raw))
    path.write_bytes(raw[:n])
    with pytest.raises(ValueError, match="truncated or foreign"):
        target.load(path)
    assert_bank_unchanged(target, snap)


def test_random_bytes_are_refused(saved):
    path, target, snap = saved
    path.write_bytes(np.random.default_rng(0).bytes(512))
    with pytest.raises(ValueError, match="not a readable"):
        target.load(path)
    assert_bank_unchanged(target, snap)


def test_missing_file_and_folder_are_refused(saved, tmp_path):
    _, target, snap = saved
    for where in (tmp_path / "nope.safetensors", tmp_path):
        with pytest.raises(ValueError, match="not a file"):
            target.load(where)
    assert_bank_unchanged(target, snap)


def test_safetensors_file_without_our_metadata_is_refused(saved, tmp_path):
    _, target, snap = saved
    foreign = tmp_path / "foreign.safetensors"
    safetensors.torch.save_file({"h": torch.zeros(2, 1, H)}, str(foreign))
    with pytest.raises(ValueError, match="format None"):
        target.load(foreign)
    other = tmp_path / "other.safetensors"
    safetensors.torch.save_file({"h": torch.zeros(2, 1, H)}, str(other), {"format": "x"})
    with pytest.raises(ValueError, match="format 'x'"):
        target.load(other)
    assert_bank_unchanged(target, snap)


def rewrite(path, *, tensors=None, **meta_changes) -> None:
    """Rewrite a state file with some metadata (or tensors) changed, resealed."""
    with safetensors.safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
        old = {k: f.get_tensor(k) for k in f.keys()}
    meta.update(meta_changes)
    forge(path, old if tensors is None else tensors, meta)


def test_other_format_version_is_refused(saved):
    path, target, snap = saved
    rewrite(path, version="3")
    with pytest.raises(ValueError, match="version '3'"):
        target.load(path)
    assert_bank_unchanged(target, snap)


def test_damaged_header_is_refused(saved):
    path, target, snap = saved
    rewrite(path, header="{not json")
    with pytest.raises(ValueError, match="damaged header"):
        target.load(path)
    assert_bank_unchanged(target, snap)


def test_header_and_tensors_that_disagree_are_refused(saved):
    path, target, snap = saved
    with safetensors.safe_open(str(path), framework="pt") as f:
        header = json.loads(f.metadata()["header"])
    header["keys"].append("ghost")  # 3 keys, 2 rows of state
    rewrite(path, header=json.dumps(header))
    with pytest.raises(ValueError, match="shape"):
        target.load(path)
    assert_bank_unchanged(target, snap)


def test_file_with_a_bad_key_is_refused_and_the_bank_kept(saved):
    path, target, snap = saved
    with safetensors.safe_open(str(path), framework="pt") as f:
        header = json.loads(f.metadata()["header"])
    header["keys"][0] = 1.5
    rewrite(path, header=json.dumps(header))
    with pytest.raises(ValueError, match="key"):
        target.load(path)
    assert_bank_unchanged(target, snap)


def test_file_with_a_nonfinite_state_is_refused(saved):
    path, target, snap = saved
    with safetensors.safe_open(str(path), framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    tensors["c"][1, 0, 2] = math.nan
    rewrite(path, tensors=tensors)
    with pytest.raises(ValueError, match="non-finite"):
        target.load(path)
    assert_bank_unchanged(target, snap)


@pytest.mark.parametrize(
    ("other", "fields"),
    [
        (lambda: model_for(hidden=H + 1), ["hidden_size: file has 4, model has 5"]),
        (lambda: model_for("GRU"), ["type: file has 'LSTM', model has 'GRU'", "'c': [4]"]),
        (lambda: model_for(layers=1), ["num_layers: file has 2, model has 1"]),
        (lambda: make_model("LSTM", F + 1, H, 2, seed=0), ["input_size: file has 3"]),
        (
            lambda: model_for(hidden=H + 2, kind="RNN_TANH"),
            ["type: file has 'LSTM', model has 'RNN'", "hidden_size: file has 4, model has 6"],
        ),
    ],
    ids=["hidden", "cell type", "layers", "input", "type and hidden"],
)
def test_file_of_another_model_config_is_refused_listing_the_fields(saved, other, fields):
    path, _, _ = saved
    target = streamrnn.StreamBank(other())
    target.push({"mine": torch.zeros(2, target._features)})
    snap = snapshot_bank(target)
    with pytest.raises(ValueError) as err:
        target.load(path)
    for field in fields:
        assert field in str(err.value), f"{field!r} missing from: {err.value}"
    assert_bank_unchanged(target, snap)


def test_rnn_nonlinearity_mismatch_is_refused(tmp_path):
    tanh = streamrnn.StreamBank(make_model("RNN_TANH", F, H, seed=0))
    tanh.push({"a": chunk(0, 2)})
    tanh.save(tmp_path / "s")
    relu = streamrnn.StreamBank(make_model("RNN_RELU", F, H, seed=0))
    with pytest.raises(ValueError, match="nonlinearity: file has 'tanh', model has 'relu'"):
        relu.load(tmp_path / "s")


def test_state_dict_of_another_format_is_refused():
    bank = warm_bank()
    snap = snapshot_bank(bank)
    sd = bank.state_dict()
    for change in ({"format": "other"}, {"version": 99}):
        with pytest.raises(ValueError, match="state_dict must be a streamrnn.StreamBank"):
            bank.load_state_dict({**sd, **change})
    too_many = streamrnn.StreamBank(model_for(), max_streams=2)
    with pytest.raises(ValueError, match="max_streams"):
        too_many.load_state_dict(sd)  # 3 streams
    assert_bank_unchanged(bank, snap)
    assert len(too_many) == 0


def test_no_pickle_is_loaded(saved, tmp_path):
    # A pickle file (what torch.save writes) is refused, never unpickled.
    _, target, snap = saved
    evil = tmp_path / "evil.pt"
    torch.save({"h": torch.zeros(1)}, evil)
    with pytest.raises(ValueError, match="not a readable"):
        target.load(evil)
    assert os.path.exists(evil)
    assert_bank_unchanged(target, snap)
