"""Nothing is lost (invariant 6): N steps + save + load into a fresh learner + N steps
equals 2N steps exactly; checkpoints refuse what does not fit."""

from __future__ import annotations

import pytest
import torch
from _data import approval, shakespeare

from streamrnn.bank import StreamBank
from streamrnn.cells import GRU, LSTM
from streamrnn.heads import Readout, RecurrentModel
from streamrnn.learn import OnlineLearner


def lm_learner(vocab):
    model = RecurrentModel(LSTM(8, 16, num_layers=2, seed=0), Readout(16, vocab, seed=1),
                           num_tokens=vocab, seed=2)
    return OnlineLearner(model, k1=6, lr=3e-3)


def sensor_learner(k1=3, k2=8, hidden=12):
    model = RecurrentModel(GRU(7, hidden, seed=3), Readout(hidden, 1, seed=4))
    return OnlineLearner(model, k1=k1, k2=k2, horizon=2, horizon_column=6, lr=1e-2,
                         optimizer=torch.optim.AdamW)


def late_learner():
    model = RecurrentModel(LSTM(6, 10, seed=5), Readout(10, 1, seed=6))
    return OnlineLearner(model, k1=4, k2=9, optimizer=torch.optim.SGD, lr=0.05)


def run_lm(learner, ids, start, stop):
    data = ids[: (ids.shape[0] // 3) * 3].reshape(3, -1)
    outs = []
    for pos in range(start, stop, 6):  # whole windows: the fused k1 == k2 path
        outs.append(learner.push_many(["x", ("y", 1), 7], data[:, pos:pos + 6],
                                      data[:, pos + 1:pos + 7]))
    return torch.cat(outs, 1)


def run_sensor(learner, series, start, stop):
    outs = [learner.push(series[start:start + 5], key="s")]
    outs.append(learner.push_many(["t", "u"], torch.stack(
        [series[start + 5:stop], series[start + 5:stop] * 0.5])).flatten())
    return torch.cat([outs[0].flatten(), outs[1]])


def run_late(learner, series, start, stop):
    outs = []
    for t in range(start, stop):
        outs.append(learner.step(series[t, :6]))
        if t >= 3 and t % 2:
            learner.learn(t - 3, series[t - 3, 6:])  # some targets pending at the save
    return torch.stack(outs)


CASES = {
    "token_lm_fused_windows": (lambda: lm_learner(shakespeare(10)[1]), run_lm, 24),
    "sensor_horizon_k1_lt_k2": (sensor_learner, run_sensor, 23),
    "late_targets_pending": (late_learner, run_late, 21),
}


@pytest.mark.parametrize("case", list(CASES))
def test_save_load_resume_equals_an_uninterrupted_run(case, tmp_path):
    make, run, n = CASES[case]
    data = shakespeare(400)[0] if case.startswith("token") else approval(200, torch.float32)
    straight = make()
    run(straight, data, 0, n)
    want = run(straight, data, n, 2 * n)
    straight.flush()

    first = make()
    run(first, data, 0, n)
    first.save(tmp_path / "learner.safetensors")
    resumed = make()
    resumed.load(tmp_path / "learner.safetensors")
    got = run(resumed, data, n, 2 * n)
    resumed.flush()

    assert torch.equal(got, want)
    for a, b in zip(resumed.model.parameters(), straight.model.parameters(), strict=True):
        assert torch.equal(a, b)
    assert resumed.counts == straight.counts and resumed.counts["updates"] > 0
    sa, sb = resumed.optimizer.state_dict()["state"], straight.optimizer.state_dict()["state"]
    assert all(torch.equal(sa[i][k], sb[i][k]) for i in sb for k in sb[i]
               if torch.is_tensor(sb[i][k]))


def test_state_dict_round_trip_in_memory():
    series = approval(60, torch.float32)
    a = sensor_learner()
    run_sensor(a, series, 0, 20)
    b = sensor_learner()
    b.load_state_dict(a.state_dict())
    assert torch.equal(run_sensor(a, series, 20, 40), run_sensor(b, series, 20, 40))


def test_a_checkpoint_refuses_a_learner_it_does_not_fit(tmp_path):
    series = approval(40, torch.float32)
    a = sensor_learner()
    run_sensor(a, series, 0, 20)
    path = tmp_path / "a.safetensors"
    a.save(path)
    other_window = sensor_learner(k1=4)
    before = [p.clone() for p in other_window.model.parameters()]
    with pytest.raises(ValueError, match="k1: file has 3, learner has 4"):
        other_window.load(path)
    assert all(torch.equal(p, q) for p, q in zip(before, other_window.model.parameters(),
                                                 strict=True))
    with pytest.raises(ValueError, match="hidden_size"):
        sensor_learner(hidden=13).load(path)
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match="not a readable streamrnn.OnlineLearner file"):
        sensor_learner().load(truncated)
    bank = StreamBank(GRU(7, 12, seed=0))
    bank.push({"k": series[:3]})
    bank.save(tmp_path / "bank.safetensors")
    with pytest.raises(ValueError, match="holds format 'streamrnn.StreamBank'"):
        sensor_learner().load(tmp_path / "bank.safetensors")
