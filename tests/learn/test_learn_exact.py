"""Exactness of online learning (invariant 5).

- k1 == k2 gives bitwise the weights and predictions of the canonical loop of
  pytorch/examples word_language_model (repackage hidden, zero_grad, forward, loss,
  backward, clip_grad_norm_, optimizer step), on real text;
- k1 < k2 gives the gradients of a brute-force autograd reference of the same
  truncation, written here independently with a Python loop of the LSTM equations
  (float64, 1e-10), for any split of the stream into chunks.
"""

from __future__ import annotations

import pytest
import torch
from _data import approval, shakespeare
from _tbptt import (
    RecordingSGD,
    assert_same_updates,
    check_learner_against_reference,
    recorded_gradients,
    reference_tbptt,
    stacked,
)
from torch import nn

from streamrnn.cells import GRU, LSTM
from streamrnn.heads import Readout, RecurrentModel
from streamrnn.learn import OnlineLearner


def batchify(ids: torch.Tensor, batch: int) -> torch.Tensor:
    """word_language_model's batchify, batch first: (B, N)."""
    n = ids.shape[0] // batch
    return ids[: n * batch].reshape(batch, n)


# -- k1 == k2: the canonical loop --------------------------------------------------------
def lm(vocab: int) -> RecurrentModel:
    return RecurrentModel(LSTM(16, 32, num_layers=2, seed=0), Readout(32, vocab, seed=1),
                          num_tokens=vocab, seed=2)


def canonical(model, x, y, k, windows, optimizer, clip):
    """pytorch/examples word_language_model's train loop (batch first)."""
    criterion = nn.CrossEntropyLoss()
    hidden = model.initial_state(x.shape[0])
    outs = []
    for i in range(windows):
        data, targets = x[:, i * k:(i + 1) * k], y[:, i * k:(i + 1) * k]
        hidden = hidden.detach()  # repackage_hidden
        model.zero_grad()
        output, hidden = model(data, hidden)
        loss = criterion(output.reshape(-1, output.shape[-1]), targets.reshape(-1))
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        outs.append(output.detach())
    return torch.cat(outs, 1)


@pytest.mark.parametrize("opt", ["adam", "sgd"])
@pytest.mark.parametrize("chunking", ["one_push", "per_window"])
def test_k1_equals_k2_is_the_canonical_loop(opt, chunking):
    ids, vocab = shakespeare(8000)
    data = batchify(ids, 4)
    x, y = data[:, :-1], data[:, 1:]
    k, windows = 12, 7
    ref = lm(vocab)
    make = (lambda p: torch.optim.Adam(p, lr=3e-3)) if opt == "adam" else (
        lambda p: torch.optim.SGD(p, lr=0.5, momentum=0.9))
    want = canonical(ref, x, y, k, windows, make(ref.parameters()), clip=0.25)

    learner = OnlineLearner(lm(vocab), optimizer=make, k1=k, clip=0.25)
    keys = ["a", "b", "c", "d"]
    if chunking == "one_push":
        got = learner.push_many(keys, x[:, : k * windows], y[:, : k * windows])
    else:
        got = torch.cat([learner.push_many(keys, x[:, i * k:(i + 1) * k],
                                           y[:, i * k:(i + 1) * k]) for i in range(windows)], 1)
    learner.flush()
    assert torch.equal(got, want)
    for (name, a), b in zip(learner.model.named_parameters(), ref.parameters(), strict=True):
        assert torch.equal(a, b), name
    assert learner.counts["updates"] == windows
    assert learner.counts["learned"] == windows * k * len(keys)


def test_k1_equals_k2_regression_matches_canonical_on_sensor_data():
    series = approval(400, dtype=torch.float32)
    x, y = series[None, :-1], series[None, 1:, 6:]  # all 7 columns -> next oil temperature
    k, windows = 16, 10

    def model():
        return RecurrentModel(GRU(7, 24, seed=3), Readout(24, 1, seed=4))

    ref = model()
    opt = torch.optim.Adam(ref.parameters(), lr=1e-2)
    hidden, outs = ref.initial_state(1), []
    for i in range(windows):
        hidden = hidden.detach()
        ref.zero_grad()
        out, hidden = ref(x[:, i * k:(i + 1) * k], hidden)
        loss = nn.MSELoss()(out.reshape(-1, 1), y[:, i * k:(i + 1) * k].reshape(-1, 1))
        loss.backward()
        nn.utils.clip_grad_norm_(ref.parameters(), 1.0)
        opt.step()
        outs.append(out.detach())
    learner = OnlineLearner(model(), k1=k, lr=1e-2)
    got = learner.push(x[0, : k * windows], y[0, : k * windows])
    learner.flush()
    assert torch.equal(got, torch.cat(outs, 1)[0])
    assert all(torch.equal(a, b) for a, b in zip(learner.model.parameters(), ref.parameters(),
                                                 strict=True))


# -- k1 < k2: brute-force reference --------------------------------------------------------
def lstm_step(w: dict, layers: int, x: torch.Tensor, h: list, c: list):
    """One step of the LSTM equations (torch's gate order i, f, g, o), every layer."""
    h2, c2, inp = [], [], x
    for i in range(layers):
        gates = (inp @ w[f"cell.rnn.weight_ih_l{i}"].T + w[f"cell.rnn.bias_ih_l{i}"]
                 + h[i] @ w[f"cell.rnn.weight_hh_l{i}"].T + w[f"cell.rnn.bias_hh_l{i}"])
        gi, gf, gg, go = gates.chunk(4, dim=1)
        cc = torch.sigmoid(gf) * c[i] + torch.sigmoid(gi) * torch.tanh(gg)
        hh = torch.sigmoid(go) * torch.tanh(cc)
        h2.append(hh)
        c2.append(cc)
        inp = hh
    return h2, c2


def lstm(layers: int):
    """The LSTM model (stacked layers, ``head.linear``) as a step for the shared reference;
    its state is ``(h, c)``, per-layer lists."""
    return stacked(lambda w, xt, s: lstm_step(w, layers, xt, *s), top=lambda s: s[0][-1])


def lstm_zeros(batch: int, hidden: int, layers: int) -> tuple[list, list]:
    zeros = [torch.zeros(batch, hidden, dtype=torch.float64) for _ in range(layers)]
    return zeros, zeros


def model64(features: int, hidden: int, layers: int) -> RecurrentModel:
    return RecurrentModel(LSTM(features, hidden, num_layers=layers, seed=5, dtype=torch.float64),
                          Readout(hidden, 1, seed=6, dtype=torch.float64))


@pytest.mark.parametrize("k1,k2,layers,batch", [(3, 7, 1, 1), (4, 12, 2, 2), (5, 5, 2, 2),
                                                 (2, 9, 1, 3)])
def test_k1_below_k2_gradients_equal_brute_force(k1, k2, layers, batch):
    series = approval(100)
    x = torch.stack([series[i * 7: i * 7 + 80, :3] for i in range(batch)])  # (B, 80, 3)
    y = torch.stack([series[i * 7 + 1: i * 7 + 81, 6:] for i in range(batch)])
    hidden, lr = 6, 0.05
    learner = OnlineLearner(model64(3, hidden, layers), optimizer=RecordingSGD, lr=lr,
                            k1=k1, k2=k2, clip=None)
    check_learner_against_reference(learner, lstm(layers), lstm_zeros(batch, hidden, layers),
                                    x, y, k1, k2, lr)


@pytest.mark.parametrize("delay", [0, 2, 5])
def test_late_targets_equal_brute_force(delay):
    """The target of step t arrives (via learn) after step t + delay; with k2 >= k1 + delay
    none is dropped and each update learns the targets that arrived since the last one."""
    k1, k2, hidden, lr = 4, 10, 5, 0.05
    series = approval(70)
    x, y = series[None, :64, :3], series[None, 1:65, 6:]
    learner = OnlineLearner(model64(3, hidden, 1), optimizer=RecordingSGD, lr=lr,
                            k1=k1, k2=k2, clip=None)

    def terms_at(n):  # learned by the update at n: arrived at count t + delay + 1 in (n-k1, n]
        return [t for t in range(n) if n - k1 < t + delay + 1 <= n]

    want_pred, want_grads = reference_tbptt(
        lstm(1), dict(learner.model.named_parameters()), lstm_zeros(1, hidden, 1), x, y, k1,
        k2, lr, terms_at)
    got_pred = []
    for t in range(64):
        got_pred.append(learner.step(x[0, t]))
        if t - delay >= 0:
            assert learner.learn(t - delay, y[0, t - delay])
    learner.flush()
    assert learner.counts["late_dropped"] == 0
    assert len(want_grads) == 64 // k1 - (delay + 1 > k1)
    assert_same_updates(recorded_gradients(learner), want_grads)
    torch.testing.assert_close(torch.stack(got_pred)[None], want_pred, rtol=0, atol=1e-10)


def test_a_whole_window_with_all_its_targets_is_learned_in_the_same_push():
    ids, vocab = shakespeare(2000)
    data = batchify(ids, 2)
    x, y = data[:, :-1], data[:, 1:]
    k = 10
    eager, lazy = (OnlineLearner(lm(vocab), k1=k, clip=0.25) for _ in range(2))
    eager.push_many(["a", "b"], x[:, :k], y[:, :k])
    assert eager.counts["updates"] == 1  # no flush needed: nothing of it can still arrive
    # With one target missing the update waits, so that target can still come late.
    mask = torch.ones(2, k, dtype=torch.bool)
    mask[1, 3] = False
    lazy.push_many(["a", "b"], x[:, :k], y[:, :k], mask=mask)
    assert lazy.counts["updates"] == 0
    assert lazy.learn(3, y[1, 3], key="b")
    lazy.flush()
    assert lazy.counts["updates"] == 1 and lazy.counts["learned"] == 2 * k
    # Both orders learned the same terms from the same graph: the same weights.
    for a, b in zip(eager.model.parameters(), lazy.model.parameters(), strict=True):
        assert torch.equal(a, b)
