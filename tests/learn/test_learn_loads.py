"""Learner checkpoints: version-1 files still load exactly, and every refused load is a
``ValueError`` naming the file or field that leaves the learner exactly as it was.

A refused load must not change anything: weights, optimizer state, streams (states,
windows, counts, keys, recency) and counters. Each forged file below is a real save with
one thing broken; the learner that refuses it must then equal its state before, bit for
bit, and continue exactly as a twin that never saw the file.
"""

from __future__ import annotations

import json
import math

import pytest
import safetensors
import torch
from _forge import forge
from _v1_files import DATA, FILES, HALF, STEPS, make, run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamrnn.cells import LSTM
from streamrnn.heads import Readout, RecurrentModel
from streamrnn.learn import OnlineLearner


# -- version 1 ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(FILES))
def test_a_version_1_file_resumes_as_an_uninterrupted_run(name):
    """The file holds step HALF of ``run`` as an earlier streamrnn wrote it (entering
    states ``enter_h`` / ``enter_c``; for the GRU file also the old model config);
    loading it and running on equals today's run of all the steps."""
    cell = FILES[name][1]
    straight = make(cell)
    run(straight, 0, HALF)
    want = run(straight, HALF, STEPS)
    straight.flush()
    resumed = make(cell)
    resumed.load(DATA / f"{name}.safetensors")
    got = run(resumed, HALF, STEPS)
    resumed.flush()
    torch.testing.assert_close(got, want, rtol=0, atol=1e-10)
    for a, b in zip(resumed.model.parameters(), straight.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-10)
    assert resumed.counts == straight.counts and straight.counts["updates"] > 0
    assert resumed.keys() == straight.keys() == [None, "a", ("b", 1)]


def test_a_saved_file_is_version_2_with_one_entering_ring_per_state_part(tmp_path):
    learner = make("LSTM")
    run(learner, 0, 10)
    learner.save(tmp_path / "l.safetensors")
    with safetensors.safe_open(str(tmp_path / "l.safetensors"), framework="pt") as f:
        meta, names = f.metadata(), set(f.keys())
        ring = f.get_tensor("streams.enter.c")
    assert meta["format"] == "streamrnn.OnlineLearner" and meta["version"] == "2"
    assert {"streams.enter.h", "streams.enter.c", "streams.live.h", "streams.live.c"} <= names
    assert not any("enter_" in n for n in names)
    assert tuple(ring.shape) == (7 // 3 + 1, 1, 3, 4)  # (ring, layers, streams, hidden)


# -- refusals ----------------------------------------------------------------------------
def learner() -> OnlineLearner:
    model = RecurrentModel(LSTM(2, 4, seed=0, dtype=torch.float64),
                           Readout(4, 1, seed=1, dtype=torch.float64))
    return OnlineLearner(model, k1=3, k2=7, lr=1e-2, max_streams=5)


def snapshot(lrn: OnlineLearner) -> dict:
    sd = lrn.state_dict()
    return {**{k: v for k, v in sd.items() if k != "tensors"},
            "tensors": {k: v.clone() for k, v in sd["tensors"].items()},
            "extra": (list(lrn.keys()), lrn.last_loss, list(lrn.last_reset))}


def assert_unchanged(lrn: OnlineLearner, before: dict) -> None:
    now = snapshot(lrn)
    assert now.keys() == before.keys()
    for k in before:
        if k != "tensors":
            assert now[k] == before[k], k
    assert now["tensors"].keys() == before["tensors"].keys()
    for name, t in before["tensors"].items():
        assert torch.equal(now["tensors"][name], t), name


@pytest.fixture
def saved(tmp_path):
    """A saved learner (3 streams, an update due, pending targets) and a live learner
    holding other streams, that refuses forged versions of the file."""
    source = make("LSTM")
    run(source, 0, 13)
    path = tmp_path / "learner.safetensors"
    source.save(path)
    target = make("LSTM")
    x = torch.linspace(-1, 1, 22, dtype=torch.float64).reshape(11, 2)
    target.push(x, x[:, :1] * 0.3, key="mine")
    target.push(x[:4], key=("other", 2))
    return path, target


def rewrite(path, change) -> None:
    """Rewrite the file with ``change(header, tensors, metadata)`` applied, resealed."""
    with safetensors.safe_open(str(path), framework="pt") as f:
        metadata = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    original = metadata["header"]
    header = json.loads(original)
    change(header, tensors, metadata)
    if metadata["header"] == original:  # not replaced by raw text: write the edited one
        metadata["header"] = json.dumps(header)
    forge(path, tensors, metadata)


def _set(where: str, value):
    def change(header, tensors, metadata):
        *path, last = (int(p) if p.isdigit() else p for p in where.split("."))
        node = header
        for part in path:
            node = node[part]
        node[last] = value
    return change


def _tensor(name: str, fn):
    def change(header, tensors, metadata):
        tensors[name] = fn(tensors[name].clone())
    return change


def _drop_tensor(name: str):
    def change(header, tensors, metadata):
        del tensors[name]
    return change


def _nan_at(t):
    t.view(-1)[0] = math.nan
    return t


def _meta(**kw):
    def change(header, tensors, metadata):
        metadata.update(kw)
    return change


def _opt_field(field: str, value):
    def change(header, tensors, metadata):
        entry = header["meta"]["optimizer"]["state"]["0"]
        if value is None:
            del entry[field]
        else:
            entry[field] = value
    return change


def _deep_key(header, tensors, metadata):
    key = "x"
    for _ in range(12):
        key = {"t": [key]}
    header["keys"][1] = key


def _extra(header, tensors, metadata):
    tensors["streams.surprise"] = torch.zeros(3)


def _header_raw(text: str):
    def change(header, tensors, metadata):
        metadata["header"] = text
    return change


REFUSALS = {
    # the file and its header
    "other version": (_meta(version="3"), "format version '3'"),
    "other format": (_meta(format="streamrnn.StreamBank"), "holds format"),
    "damaged header": (_header_raw("{not json"), "damaged header"),
    "header not an object": (_header_raw("[1, 2]"), "damaged header"),
    "header nested too deeply": (_header_raw("[" * 100_000 + "]" * 100_000), "damaged header"),
    "header lacks keys": (lambda h, t, m: h.pop("keys"), "header lacks 'keys'"),
    "config of another window": (_set("config.k1", 4), "k1: file has 4, learner has 3"),
    "config not a dict": (_set("config", [1]), "'config' must be a dict"),
    # keys
    "float key": (_set("keys.1", 1.5), r"keys\[1\] must be a str"),
    "bool key": (_set("keys.1", True), r"keys\[1\] must be a str"),
    "duplicate key": (_set("keys.2", "a"), "lists a key twice"),
    "malformed tuple key": (_set("keys.2", {"t": 5}), r"keys\[2\] must be a str"),
    "foreign tuple key": (_set("keys.2", {"x": [1]}), r"keys\[2\] must be a str"),
    "key nested too deeply": (_deep_key, r"keys\[1\] must be .* nested deeper than 8"),
    "keys not a list": (_set("keys", "abc"), "'keys' must be a list"),
    "more keys than tensors": (lambda h, t, m: h["keys"].append("ghost"), "shape"),
    # counters and meta
    "negative count": (_set("counts.steps", -1), r"counts\['steps'\] must be an int >= 0"),
    "float count": (_set("counts.updates", 2.5), r"counts\['updates'\] must be an int"),
    "missing count": (lambda h, t, m: h["counts"].pop("evicted"), "counts must be exactly"),
    "unknown count": (_set("counts.bogus", 1), "counts must be exactly"),
    "nan last loss": (_set("meta.last_loss", math.nan), "last_loss must be a finite"),
    "negative tick": (_set("meta.tick", -3), "meta.tick must be an int >= 0"),
    "float optimizer steps": (_set("meta.optimizer_steps", 1.5), "optimizer_steps"),
    "meta lacks tick": (lambda h, t, m: h["meta"].pop("tick"), "meta lacks 'tick'"),
    # weights
    "nan weight": (_tensor("model.cell.rnn.weight_hh_l0", _nan_at), "non-finite"),
    "inf weight": (_tensor("model.head.linear.bias", lambda t: t.fill_(math.inf)),
                   "non-finite"),
    "misshapen weight": (_tensor("model.head.linear.bias", lambda t: torch.zeros(2)), "shape"),
    "weight of another dtype": (_tensor("model.head.linear.bias", lambda t: t.float()),
                                "dtype"),
    "missing weight": (_drop_tensor("model.head.linear.bias"), "weights do not fit"),
    # streams
    "nan live state": (_tensor("streams.live.c", _nan_at), "non-finite"),
    "nan entering state": (_tensor("streams.enter.h", _nan_at), "non-finite"),
    "nan input": (_tensor("streams.xbuf", _nan_at), "non-finite"),
    "inf target": (_tensor("streams.ybuf", lambda t: t.fill_(-math.inf)), "non-finite"),
    "bad target status": (_tensor("streams.tstat", lambda t: t.fill_(7)), r"\[0, 3\)"),
    "negative step count": (_tensor("streams.count", lambda t: t.fill_(-1)), "streams.count"),
    "due off a window end": (_tensor("streams.due", lambda t: t.fill_(1)), "not at a window"),
    "recency past the clock": (_tensor("streams.last_used", lambda t: t.fill_(10**9)),
                               "last_used"),
    "missing state part": (_drop_tensor("streams.live.c"), "lacks tensor 'streams.live.c'"),
    "unexpected tensor": (_extra, "does not use"),
    # the optimizer
    "optimizer of another type": (_set("meta.optimizer.type", "SGD"), "for 'SGD'"),
    "optimizer entry lost": (_opt_field("exp_avg_sq", None), "optimizer state does not fit"),
    "optimizer entry bad index": (
        lambda h, t, m: h["meta"]["optimizer"]["state"].update({"99": {}}),
        "not a parameter index"),
    "nan optimizer moment": (_tensor("optimizer.state.0.exp_avg", _nan_at), "non-finite"),
    "misshapen optimizer moment": (
        _tensor("optimizer.state.1.exp_avg_sq", lambda t: torch.zeros(3, dtype=t.dtype)),
        "optimizer state does not fit"),
    "missing optimizer tensor": (_drop_tensor("optimizer.state.0.exp_avg"), "lacks tensor"),
    "nan learning rate": (_set("meta.optimizer.param_groups.0.lr", math.nan), "not finite"),
    "string learning rate": (_set("meta.optimizer.param_groups.0.lr", "fast"),
                             "optimizer state does not fit"),
    "foreign parameter ids": (_set("meta.optimizer.param_groups.0.params", [0, 1]),
                              r"\['params'\] must be"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_a_refused_file_is_a_value_error_naming_it_and_changes_nothing(saved, case):
    path, target = saved
    change, message = REFUSALS[case]
    rewrite(path, change)
    twin = make("LSTM")
    twin.load_state_dict(target.state_dict())
    before = snapshot(target)
    with pytest.raises(ValueError, match=message) as err:
        target.load(path)
    assert type(err.value) is ValueError
    assert str(path) in str(err.value)
    assert_unchanged(target, before)
    # ... and it goes on exactly as a learner that never saw the file
    x = torch.linspace(0, 2, 16, dtype=torch.float64).reshape(8, 2)
    for lrn in (target, twin):
        lrn.push(x, x[:, 1:], key="mine")
        lrn.flush()
    assert_unchanged(target, snapshot(twin))


def test_missing_and_truncated_files_are_refused(saved, tmp_path):
    path, target = saved
    before = snapshot(target)
    with pytest.raises(ValueError, match="not a file"):
        target.load(tmp_path / "nope.safetensors")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(path.read_bytes()[:700])
    with pytest.raises(ValueError, match="not a readable streamrnn.OnlineLearner file"):
        target.load(cut)
    assert_unchanged(target, before)


def _sparse(sd):
    sd["tensors"]["streams.xbuf"] = sd["tensors"]["streams.xbuf"].to_sparse()


def _not_a_tensor(sd):
    sd["tensors"]["streams.count"] = [1, 2, 3]


IN_MEMORY = {
    "not a dict": (lambda sd: sd.clear() or sd.update(oops=1), "state_dict must be a"),
    "other version": (lambda sd: sd.update(version=99), "version 99"),
    "tensors not a dict": (lambda sd: sd.update(tensors=[1]), "'tensors' must be a dict"),
    "sparse tensor": (_sparse, "must be dense"),
    "not a tensor": (_not_a_tensor, "streams.count"),
    "too many streams": (lambda sd: sd["keys"].extend(["p", "q", "r"]), "max_streams is 5"),
}


@pytest.mark.parametrize("case", list(IN_MEMORY))
def test_a_refused_state_dict_is_a_value_error_and_changes_nothing(case):
    source, target = learner(), learner()
    x = torch.linspace(-1, 1, 20, dtype=torch.float64).reshape(10, 2)
    source.push_many(["a", "b", "c"], torch.stack([x, x * 0.5, -x]))
    target.push(x, x[:, :1], key="z")
    sd = source.state_dict()
    change, message = IN_MEMORY[case]
    change(sd)
    before = snapshot(target)
    with pytest.raises(ValueError, match=message) as err:
        target.load_state_dict(sd)
    assert type(err.value) is ValueError
    assert_unchanged(target, before)


def test_token_ids_out_of_range_in_a_file_are_refused(tmp_path):
    def lm():
        model = RecurrentModel(LSTM(3, 4, seed=0), Readout(4, 5, seed=1), num_tokens=5, seed=2)
        return OnlineLearner(model, k1=3)

    source, target = lm(), lm()
    source.push(torch.tensor([1, 2, 3, 4]), torch.tensor([2, 3, 4, 0]))
    target.push(torch.tensor([0, 1]))
    path = tmp_path / "lm.safetensors"
    before = snapshot(target)
    for name, bad in (("streams.xbuf", 5), ("streams.ybuf", -1), ("streams.ybuf", 5)):
        source.save(path)
        rewrite(path, _tensor(name, lambda t, bad=bad: t.fill_(bad)))
        with pytest.raises(ValueError, match=f"{name}.* must hold values in"):
            target.load(path)
    assert_unchanged(target, before)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats()
    | st.text(max_size=4) | st.just("__tensor__"),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner,
                                                               max_size=3),
    max_leaves=8)


def _paths(node, prefix=()):
    """Every path into a JSON header (dict keys and list indexes)."""
    yield prefix
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(
        node, list) else ()
    for k, v in items:
        yield from _paths(v, (*prefix, k))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_forged_header_field_is_loaded_or_refused_with_a_value_error(data):
    """Fuzz: replace any one field of a real state's header (config, keys, counts, meta,
    the optimizer's description) by any JSON value: the load either succeeds or raises
    ValueError and changes nothing."""
    source = learner()
    x = torch.linspace(-1, 1, 20, dtype=torch.float64).reshape(10, 2)
    source.push_many(["a", ("b", 1)], torch.stack([x, -x]), torch.stack([x[:, :1]] * 2))
    sd = source.state_dict()
    header = {k: sd[k] for k in ("config", "keys", "counts", "meta")}
    path = data.draw(st.sampled_from([p for p in _paths(header) if p]))
    value = data.draw(JSON)
    node = header
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    target = learner()
    target.push(x, x[:, :1], key="z")
    before = snapshot(target)
    try:
        target.load_state_dict({**sd, **header})
    except ValueError:
        assert_unchanged(target, before)
