"""Learner checkpoints: the gaps mutation testing of ``_load`` / ``_state`` found.

Each test states a property of the contract (``streamrnn.learn`` docstring, Checkpoints):
a save / load round trip resumes bit for bit, also for an empty learner, a full slot table
and a stream with no steps yet; a refused state is a ``ValueError`` naming the field and
changes nothing (weights, optimizer state, streams, counters, recency).
"""

from __future__ import annotations

import pytest
import torch
from test_learn_loads import assert_unchanged, learner, snapshot

X = torch.linspace(-1, 1, 20, dtype=torch.float64).reshape(10, 2)


def _resumes_bitwise(source, tmp_path=None) -> None:
    """A learner loaded from ``source`` equals it, and both go on identically."""
    copy = learner()
    if tmp_path is None:
        copy.load_state_dict(source.state_dict())
    else:
        source.save(tmp_path / "l.safetensors")
        copy.load(tmp_path / "l.safetensors")
    assert_unchanged(copy, snapshot(source))
    assert copy.last_loss == source.last_loss
    for lrn in (source, copy):
        lrn.push_many(["a", "n0"], torch.stack([X[:6], -X[:6]]), torch.stack([X[:6, :1]] * 2))
        lrn.flush()
    assert_unchanged(copy, snapshot(source))


def test_an_empty_learner_round_trips(tmp_path):
    """No streams: the checkpoint has zero rows and loads (file and state_dict)."""
    _resumes_bitwise(learner())
    _resumes_bitwise(learner(), tmp_path)


def test_a_full_slot_table_round_trips(tmp_path):
    """A learner holding exactly max_streams (5) streams loads its own checkpoint."""
    source = learner()
    keys = ["a", "b", "c", "d", "e"]
    source.push_many(keys, torch.stack([X * (i + 1) / 5 for i in range(5)]),
                     torch.stack([X[:, :1]] * 5))
    assert len(source.keys()) == 5
    _resumes_bitwise(source)
    _resumes_bitwise(source, tmp_path)


def test_a_stream_with_no_steps_round_trips():
    """An empty push creates a stream whose step count is 0; its checkpoint loads."""
    source = learner()
    source.push(X, X[:, :1], key="a")
    source.push(X[:0], key="n0")
    _resumes_bitwise(source)


def test_last_loss_and_last_reset_after_a_load():
    """A load restores last_loss (not None after an update) and leaves last_reset a list."""
    source = learner()
    source.push(X[:9], X[:9, :1], key="a")
    source.flush()
    assert source.last_loss is not None
    copy = learner()
    copy.load_state_dict(source.state_dict())
    assert copy.last_loss == source.last_loss
    assert isinstance(copy.last_reset, list) and copy.last_reset == []


# -- refusals that must name the field -------------------------------------------------
def _source():
    """Streams "a" (9 steps: at a window end, k1 = 3), "b" (10 steps), "n0" (0 steps)."""
    lrn = learner()
    lrn.push(X[:9], X[:9, :1], key="a")
    lrn.push(X, X[:, :1], key="b")
    lrn.push(X[:0], key="n0")
    return lrn


def _row(sd, key) -> int:
    return sd["keys"].index(key)


def _fill(name, key, value):
    def change(sd):
        sd["tensors"][name][_row(sd, key)] = value
    return change


def _rename_weight(sd):
    sd["tensors"]["model.bogus"] = sd["tensors"].pop("model.head.linear.bias")


def _v1_model_config(sd):
    sd["config"]["model"]["state"] = {"num_layers": 1, "hidden_size": 4, "cell": True}


def _last_used_at_clock_plus_one(sd):
    sd["tensors"]["streams.last_used"][0] = sd["meta"]["tick"] + 1


REFUSED = {
    "state_dict a list": (lambda sd: [sd], r"state_dict must be a dict"),
    "keys missing": (lambda sd: sd.pop("keys") and sd, r"lacks 'keys'"),
    "config with an int key": (lambda sd: sd["config"].update({1: 2}) or sd, r"'config'"),
    "tensors with an int key": (lambda sd: sd["tensors"].update({1: torch.zeros(1)}) or sd,
                                r"'tensors'"),
    "target status 3": (lambda sd: _fill("streams.tstat", "b", 3)(sd) or sd,
                        r"streams\.tstat"),
    "due flag 5": (lambda sd: _fill("streams.due", "b", 5)(sd) or sd, r"streams\.due"),
    "due flag 2 at a window end": (lambda sd: _fill("streams.due", "a", 2)(sd) or sd,
                                   r"streams\.due"),
    "due on a stream with no steps": (lambda sd: _fill("streams.due", "n0", 1)(sd) or sd,
                                      "not at a window end"),
    "recency one past the clock": (lambda sd: _last_used_at_clock_plus_one(sd) or sd,
                                   r"streams\.last_used"),
    "renamed weight": (lambda sd: _rename_weight(sd) or sd,
                       r"model\.bogus.*model\.head\.linear\.bias|"
                       r"model\.head\.linear\.bias.*model\.bogus"),
    "last loss a string": (lambda sd: sd["meta"].update(last_loss="low") or sd,
                           r"meta\.last_loss"),
    "last loss a bool": (lambda sd: sd["meta"].update(last_loss=True) or sd,
                         r"meta\.last_loss"),
    "version-2 state with a version-1 model config": (lambda sd: _v1_model_config(sd) or sd,
                                                      r"model: file has"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_refused_state_names_the_field_and_changes_nothing(case):
    sd = _source().state_dict()
    change, message = REFUSED[case]
    bad = change(sd)
    target = learner()
    target.push(X, X[:, :1], key="mine")
    before = snapshot(target)
    with pytest.raises(ValueError, match=message) as err:
        target.load_state_dict(bad)
    assert type(err.value) is ValueError
    assert_unchanged(target, before)

