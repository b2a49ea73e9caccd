"""What a bank push hands back, and how push_many names a bad argument.

``BankOutputs.tensor`` is the whole batch exactly when every chunk has the same shape
(values and token ids, many steps or one), row i for the i-th key; a chunk of the wrong
rank is refused naming its key. Written to kill surviving mutants of
``StreamBank._stack_uniform`` / ``_push`` / ``_push_many`` (docs/mutation.md): a push that
silently fell back to the per-length path gave the same rows but no ``tensor``.
"""

from __future__ import annotations

import pytest
import torch

import streamrnn

F, H, V = 3, 4, 6


def values_bank() -> streamrnn.StreamBank:
    return streamrnn.StreamBank(streamrnn.GRU(F, H, seed=0))


def tokens_bank() -> streamrnn.StreamBank:
    lm = streamrnn.RecurrentModel(streamrnn.GRU(5, H, seed=0), streamrnn.Readout(H, V, seed=1),
                                  num_tokens=V, seed=2)
    return streamrnn.StreamBank(lm)


def check_tensor(out, shape) -> None:
    assert out.tensor is not None and tuple(out.tensor.shape) == shape
    for i, key in enumerate(out):
        assert torch.equal(out.tensor[i], out[key])


def test_equal_shapes_give_the_batch_as_one_tensor_and_unequal_ones_do_not():
    bank = values_bank()
    gen = torch.Generator().manual_seed(0)
    check_tensor(bank.push({k: torch.randn(3, F, generator=gen) for k in "abc"}), (3, 3, H))
    check_tensor(bank.push({k: torch.randn(F, generator=gen) for k in "ab"}), (2, H))
    ragged = bank.push({"a": torch.randn(2, F, generator=gen), "b": torch.randn(F)})
    assert ragged.tensor is None and ragged["a"].shape == (2, H) and ragged["b"].shape == (H,)


def test_equal_id_chunks_give_the_batch_as_one_tensor():
    bank = tokens_bank()
    check_tensor(bank.push({"a": torch.tensor([1, 2]), "b": torch.tensor([3, 0])}), (2, 2, V))
    check_tensor(bank.push({"a": torch.tensor(4), "b": torch.tensor(5)}), (2, V))


@pytest.mark.parametrize("bad", [torch.zeros(1, 2, F), torch.zeros(2, F + 1), torch.zeros(2, 1)])
def test_chunks_of_one_wrong_shape_are_refused_naming_a_key(bad):
    bank = values_bank()  # equal shapes stack, but the stack is not a batch of chunks
    with pytest.raises(ValueError, match=r"^chunk for key 'a' must have "):
        bank.push({"a": bad, "b": bad.clone()})
    assert len(bank) == 0


def test_id_chunks_of_two_dimensions_are_refused_naming_a_key():
    bank = tokens_bank()
    with pytest.raises(ValueError, match=r"^chunk for key 'a' must be token ids"):
        bank.push({"a": torch.zeros(2, 3, dtype=torch.int64),
                   "b": torch.zeros(2, 3, dtype=torch.int64)})
    assert len(bank) == 0


def test_push_many_names_what_is_wrong():
    bank = values_bank()
    cases = [
        (["a"], [[0.0] * F], r"^x must be \(N, T, F\) with F = 3, got list$"),
        ("ab", torch.zeros(2, 1, F), r"^keys must be a list, got str$"),
        (["a"], torch.zeros(2, 5, F),
         r"^keys must be 2 distinct keys \(one per row of x\), got 1 keys of which 1 distinct$"),
    ]
    for keys, x, message in cases:
        with pytest.raises(ValueError, match=message):
            bank.push_many(keys, x)
    assert len(bank) == 0


def test_a_fresh_bank_keeps_no_graph_and_an_empty_push_is_an_empty_mapping():
    bank = values_bank()
    assert bank.last_reset == [] and bank.grad is False
    out = bank.push({})
    assert len(out) == 0 and list(out) == [] and dict(out) == {}
    y = bank.push({"a": torch.ones(2, F)})["a"]
    assert not y.requires_grad and y.grad_fn is None
    with pytest.raises(ValueError, match=r"^chunks must be a dict \{key: chunk\}, got list$"):
        bank.push([torch.ones(2, F)])
