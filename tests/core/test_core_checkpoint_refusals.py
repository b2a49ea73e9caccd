"""A bank's state_dict that does not fit is refused with a ValueError that says what is
wrong, and the bank is left exactly as it was: every stream, the LRU order, the counters.

Written to kill surviving mutants of ``streamrnn._checkpoint`` (docs/mutation.md); several
of these cases raised ``KeyError`` / ``TypeError`` or loaded silently before (forged
counters, a malformed key tag, a version-1 config without its state).
"""

from __future__ import annotations

import copy

import pytest
import torch
from _oracle import make_model

import streamrnn

F, H = 3, 4


def warm_bank(kind: str = "GRU") -> streamrnn.StreamBank:
    bank = streamrnn.StreamBank(make_model(kind, F, H, 2, dtype=torch.float64, seed=3),
                                max_streams=8)
    gen = torch.Generator().manual_seed(0)
    for key in ("a", ("b", 2), 7):
        bank.push({key: torch.randn(3, F, generator=gen, dtype=torch.float64)})
    return bank


def snapshot(bank: streamrnn.StreamBank):
    return bank.keys(), dict(bank.counts), {k: bank.get_state(k) for k in bank.keys()}


def assert_unchanged(bank: streamrnn.StreamBank, snap) -> None:
    keys, counts, states = snap
    assert bank.keys() == keys and bank.counts == counts
    for key, state in states.items():
        got = bank.get_state(key)
        assert all(torch.equal(got[p], state[p]) for p in state.parts)


def forged(edit) -> dict:
    sd = copy.deepcopy(warm_bank().state_dict())
    edit(sd)
    return sd


def deep_tag(levels: int) -> dict:
    tag: object = 1
    for _ in range(levels):
        tag = {"t": [tag]}
    return tag


def v1(sd: dict) -> None:  # the version-1 layout of the state's configuration
    sd["version"] = 1
    sd["config"]["state"] = {"num_layers": 2, "hidden_size": H, "cell": False}


CASES = {
    "foreign format": (lambda sd: sd.update(format="other.Thing"),
                       "got 'other.Thing' version 2"),
    "unknown version": (lambda sd: sd.update(version=9), "got 'streamrnn.StreamBank' version 9"),
    "not a dict": (None, "state_dict must be a dict, got list"),
    "no config": (lambda sd: sd.pop("config"), "state_dict['config'] must be a dict"),
    "keys not a list": (lambda sd: sd.update(keys="abc"), "state_dict['keys'] must be a list"),
    "no tensors": (lambda sd: sd.pop("tensors"), "state_dict['tensors'] must be a dict"),
    "v1 config without state": (lambda sd: (v1(sd), sd["config"].pop("state")),
                                "does not fit"),
    "v1 config with an empty state": (lambda sd: (v1(sd), sd["config"].update(state={})),
                                      "does not fit"),
    "v1 config with a cell": (lambda sd: (v1(sd), sd["config"]["state"].update(cell=True)),
                              "does not fit"),
    "v1 state not a dict": (lambda sd: (v1(sd), sd["config"].update(state=[4])),
                            "does not fit"),
    "a float key": (lambda sd: sd["keys"].__setitem__(1, 2.5),
                    "a key in the state must be a str, an int"),
    "a key listed twice": (lambda sd: sd["keys"].__setitem__(2, "a"),
                           "the state lists a key twice"),
    "a malformed key tag": (lambda sd: sd["keys"].__setitem__(0, {"x": ["a"]}),
                            "a stored key must be"),
    "a key tag nested too deep": (
        lambda sd: sd["keys"].__setitem__(0, deep_tag(3000)),
        "a stored key must be"),
    "counts of another kind": (lambda sd: sd["counts"].update(evicted="3"),
                               "state_dict['counts'] must map"),
    "negative counts": (lambda sd: sd["counts"].update(steps=-1),
                        "state_dict['counts'] must map"),
    "unknown counter": (lambda sd: sd["counts"].update(spurious=1),
                        "state_dict['counts'] must map"),
    "a part missing": (lambda sd: sd["tensors"].pop("h"), "lack part(s) ['h']"),
    "a part of another shape": (lambda sd: sd["tensors"].update(h=sd["tensors"]["h"][:, :2]),
                                "state part 'h' has shape"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_state_dict_that_does_not_fit_is_refused_and_changes_nothing(case):
    edit, words = CASES[case]
    sd = [1, 2] if edit is None else forged(edit)
    bank = warm_bank()
    bank.push({"other": torch.ones(2, F, dtype=torch.float64)})
    snap = snapshot(bank)
    with pytest.raises(ValueError) as err:
        bank.load_state_dict(sd)
    assert words in str(err.value), f"{case}: {words!r} not in {err.value}"
    assert_unchanged(bank, snap)


def test_an_extra_part_is_not_taken_for_a_state():
    # A GRU bank reads only its own part (h); a forged c is never loaded into it.
    sd = forged(lambda sd: sd["tensors"].update(c=torch.zeros_like(sd["tensors"]["h"])))
    bank = warm_bank()
    bank.load_state_dict(sd)
    assert bank.get_state("a").parts == ("h",)
    assert torch.equal(bank.get_state("a").h, warm_bank().get_state("a").h)


class Bare(torch.nn.Module):
    """The bare model protocol (input_size, initial_state, forward), no ``config()``."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = make_model("GRU", F, H, 1, dtype=torch.float64, seed=4)
        self.input_size = F

    def initial_state(self, batch_size, *, device=None, dtype=None):
        return self.inner.initial_state(batch_size, device=device, dtype=dtype)

    def forward(self, x, state=None):
        return self.inner(x, state)


def test_a_model_without_config_round_trips_and_a_file_names_its_model_type(tmp_path):
    bank = streamrnn.StreamBank(Bare(), max_streams=4)
    bank.push({"a": torch.ones(2, F, dtype=torch.float64)})
    path = tmp_path / "bare.safetensors"
    bank.save(path)
    again = streamrnn.StreamBank(Bare(), max_streams=4)
    again.load(path)
    assert again.keys() == ["a"] and torch.equal(again.get_state("a").h, bank.get_state("a").h)
    gru = streamrnn.StreamBank(make_model("GRU", F, H, 1, dtype=torch.float64, seed=4))
    with pytest.raises(ValueError, match="type: file has 'Bare', model has 'GRU'"):
        gru.load(path)
