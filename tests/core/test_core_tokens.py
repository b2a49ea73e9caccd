"""Token streams through Stream and StreamBank: ids in, exactly the offline pass out.

A token model (``RecurrentModel(..., num_tokens=V)``: an embedding before the cell) takes
token ids in ``Stream.push`` and ``StreamBank.push`` / ``push_many``. Properties, on
tiny-shakespeare characters:

- chunk invariance: any split of the text into pushes (single ids, lists, numpy arrays,
  empty chunks) gives the outputs and state of one offline pass over the whole text;
- batch invariance: streams pushed together in a bank, in uniform or ragged chunks, get
  what each gets alone;
- bad ids (out of range, negative, floats, wrong shape) raise ``ValueError`` naming the
  chunk (and the key) and change no state.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _data import shakespeare
from hypothesis import given, settings
from hypothesis import strategies as st

import streamrnn

F64 = torch.float64
ATOL = 1e-10


def lm(vocab: int, cell=streamrnn.LSTM) -> streamrnn.RecurrentModel:
    return streamrnn.RecurrentModel(cell(8, 12, num_layers=2, seed=0, dtype=F64),
                                    streamrnn.Readout(12, vocab, seed=1, dtype=F64),
                                    num_tokens=vocab, seed=2)


def offline(model, ids: torch.Tensor):
    with torch.no_grad():
        y, state = model(ids.unsqueeze(0))
    return y[0], state


def as_form(ids: torch.Tensor, form: str):
    return {"tensor": ids, "list": ids.tolist(), "numpy": ids.numpy().copy()}[form]


@st.composite
def pushes(draw, steps: int):
    """Chunk lengths summing to ``steps`` (zeros allowed), each with a form; a length-1
    chunk may be given as one id (an int, a 0-dim tensor or a numpy integer)."""
    out, left = [], steps
    while left > 0:
        length = left if len(out) >= 30 else draw(st.integers(0, min(left, 9)))
        form = draw(st.sampled_from(["tensor", "list", "numpy", "one"] if length == 1
                                    else ["tensor", "list", "numpy"]))
        out.append((length, form))
        left -= length
    return out


@pytest.mark.parametrize("cell", [streamrnn.LSTM, streamrnn.GRU], ids=["lstm", "gru"])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_any_split_of_a_text_into_pushes_is_the_offline_pass(cell, data):
    ids, vocab = shakespeare(120)
    model = lm(vocab, cell)
    stream = streamrnn.Stream(model)
    outs, start = [], 0
    for length, form in data.draw(pushes(len(ids))):
        part = ids[start:start + length]
        if form == "one":
            one = data.draw(st.sampled_from([int(part[0]), part[0], np.int64(part[0])]))
            y = stream.push(one)
            assert y.shape == (vocab,)
            y = y.unsqueeze(0)
        else:
            y = stream.push(as_form(part, form))
            assert y.shape == (length, vocab)
        outs.append(y)
        start += length
    want, state = offline(model, ids)
    torch.testing.assert_close(torch.cat(outs), want, rtol=0, atol=ATOL)
    torch.testing.assert_close(stream.state.h, state.h, rtol=0, atol=ATOL)
    assert stream.steps == len(ids)


LONG = st.integers(0, 39).map(lambda v: 40 - v)  # 1..40, simplest (shrinks to) 40


@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_streams_in_a_bank_get_what_each_gets_alone(data):
    ids, vocab = shakespeare(400)
    texts = {key: ids[i * 100:(i + 1) * 100] for i, key in enumerate(["a", ("b", 2), 7])}
    model = lm(vocab)
    bank = streamrnn.StreamBank(model)
    got = {key: [] for key in texts}
    pos = dict.fromkeys(texts, 0)
    while any(pos[k] < 100 for k in texts):
        live = [k for k in texts if pos[k] < 100]
        if data.draw(st.booleans()):  # uniform: push_many of (N, T) ids
            t = min(data.draw(LONG), *(100 - pos[k] for k in live))
            y = bank.push_many(live, torch.stack([texts[k][pos[k]:pos[k] + t] for k in live]))
            for k, yk in zip(live, y, strict=True):
                got[k].append(yk)
                pos[k] += t
        else:  # ragged dict push, single ids among them
            chunks = {}
            for k in live:
                t = min(data.draw(LONG) - 1, 100 - pos[k])
                chunks[k] = texts[k][pos[k]] if t == 1 else texts[k][pos[k]:pos[k] + t]
            out = bank.push(chunks)
            for k, c in chunks.items():
                got[k].append(out[k].reshape(-1, vocab))
                pos[k] += c.numel()
    for key, text in texts.items():
        want, state = offline(model, text)
        torch.testing.assert_close(torch.cat(got[key]), want, rtol=0, atol=ATOL)
        torch.testing.assert_close(bank.get_state(key).h, state.h, rtol=0, atol=ATOL)


BAD = {
    "out_of_range": (torch.tensor([1, 99]), "must hold ids in \\[0, 40\\), got 99"),
    "negative": ([3, -1], "must hold ids in \\[0, 40\\), got -1"),
    "floats": (torch.tensor([1.0, 2.0]), "must hold integer ids, got dtype torch.float32"),
    "numpy_floats": (np.array([1.5]), "must hold integer ids, got numpy float64"),
    "two_dims": (torch.tensor([[1, 2]]), "must be token ids of shape \\(T,\\) or one id"),
    "bools": (torch.tensor([True]), "must hold integer ids, got dtype torch.bool"),
    "text": ("ab", "must be a torch.Tensor, numpy array, list or int of ids"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_ids_name_the_chunk_and_change_no_state(case):
    bad, message = BAD[case]
    model = lm(40)
    stream = streamrnn.Stream(model)
    stream.push(torch.tensor([1, 2, 3]))
    before = (stream.state.h.clone(), stream.state.c.clone(), stream.steps)
    with pytest.raises(ValueError, match="chunk " + message):
        stream.push(bad)
    assert torch.equal(stream.state.h, before[0]) and torch.equal(stream.state.c, before[1])
    assert stream.steps == before[2]

    bank = streamrnn.StreamBank(model)
    bank.push({"a": torch.tensor([1, 2]), "b": torch.tensor([3, 4])})
    snap = bank.state_dict()
    snap = {name: t.clone() for name, t in snap["tensors"].items()}, snap["keys"]
    with pytest.raises(ValueError, match="chunk for key 'b' " + message):
        bank.push({"a": torch.tensor([5]), "b": bad, "new": [1]})
    now = bank.state_dict()
    assert now["keys"] == snap[1]
    assert all(torch.equal(now["tensors"][n], t) for n, t in snap[0].items())


def test_push_many_refuses_ids_of_the_wrong_kind_naming_the_rule():
    bank = streamrnn.StreamBank(lm(40))
    with pytest.raises(ValueError, match=r"x must be \(N, T\) token ids, got \(2, 3, 1\)"):
        bank.push_many(["a", "b"], torch.zeros(2, 3, 1, dtype=torch.int64))
    with pytest.raises(ValueError, match="x must have dtype torch.int64, got torch.int32"):
        bank.push_many(["a", "b"], torch.zeros(2, 3, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"chunk for key 'b' must hold ids in \[0, 40\), got 40"):
        bank.push_many(["a", "b"], torch.tensor([[1, 2], [3, 40]]))
    with pytest.raises(ValueError, match=r"chunk for key 'b' must hold ids in \[0, 40\), got 41"):
        bank.push({"a": torch.tensor([1, 2]), "b": torch.tensor([3, 41])})  # stacked
    assert len(bank) == 0
