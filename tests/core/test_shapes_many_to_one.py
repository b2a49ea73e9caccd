"""Many-to-one on real data: activity from 2.56 s of smartphone motion (HAPT), read out
once per segment (last state or mean over the segment); the same readout on a live
stream is chunk-invariant; the learner reads a stream's current state out on demand."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _data import DATA, require
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamrnn.cells import GRU, LSTM
from streamrnn.heads import Readout, RecurrentModel
from streamrnn.learn import OnlineLearner
from streamrnn.shapes import ManyToOne, PooledStream

HAPT = DATA / "sensors" / "hapt" / "RawData"


def read(path: Path) -> np.ndarray:
    with gzip.open(path, "rt") as f:
        return np.loadtxt(f, dtype=np.float32)


@pytest.fixture(scope="module")
def windows():
    """Windows of 128 samples (50 Hz, taken every 2nd sample: 64 steps of 6 channels) of
    the 6 basic activities from the first 12 recordings; labels 0..5; user of each."""
    require(HAPT / "labels.txt")
    labels = np.loadtxt(HAPT / "labels.txt", dtype=np.int64)
    xs, ys, users = [], [], []
    for exp, user in sorted({(int(e), int(u)) for e, u in labels[:, :2]})[:12]:
        name = f"exp{exp:02d}_user{user:02d}.txt.gz"
        signal = np.concatenate([read(HAPT / f"acc_{name}"), read(HAPT / f"gyro_{name}")], 1)
        for _, _, activity, start, end in labels[labels[:, 0] == exp]:
            if activity > 6:
                continue
            segment = signal[start - 1:end]  # 1-based inclusive
            for w in range(0, len(segment) - 127, 128):
                xs.append(segment[w:w + 128:2])
                ys.append(activity - 1)
                users.append(user)
    x = torch.tensor(np.stack(xs))
    flat = x.reshape(-1, 6)
    return (x - flat.mean(0)) / flat.std(0), torch.tensor(ys), np.array(users)


@pytest.mark.parametrize("pool", ["last", "mean"])
def test_segment_classifier_recognises_activities_of_unseen_users(windows, pool):
    x, y, users = windows
    test = np.isin(users, np.unique(users)[-2:])  # the last two users are held out
    train = np.nonzero(~test)[0]
    clf = ManyToOne(GRU(6, 32, seed=0), Readout(32, 6, seed=1), pool=pool)
    opt = torch.optim.Adam(clf.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(4):
        order = train[torch.randperm(len(train), generator=gen).numpy()]
        for i in range(0, len(order), 32):
            batch = order[i:i + 32]
            loss = F.cross_entropy(clf(x[batch])[0], y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        accuracy = (clf(x[test])[0].argmax(1) == y[test]).double().mean()
    assert float(accuracy) > 0.55  # 6 balanced classes: chance is about 0.17


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(0, 20), max_size=8), st.sampled_from(["last", "mean"]))
def test_pooled_readout_of_a_live_stream_is_chunk_invariant(windows, sizes, pool):
    x = windows[0][17].double()  # (64, 6), a real window
    clf = ManyToOne(LSTM(6, 8, seed=0, dtype=torch.float64),
                    Readout(8, 6, seed=1, dtype=torch.float64), pool=pool)
    live = PooledStream(clf)
    pos = 0
    for size in sizes:
        live.push(x[pos:pos + size])
        pos = min(64, pos + size)
    live.push(x[pos:])
    want = clf(x[None])[0][0]
    torch.testing.assert_close(live.readout(), want, rtol=0, atol=1e-10)
    torch.testing.assert_close(live.end_segment(reset_state=False), want, rtol=0, atol=1e-10)
    assert live.steps == 0
    with pytest.raises(ValueError, match="the segment is empty"):
        live.readout()


def test_learner_reads_the_current_state_out_on_demand(windows):
    x = windows[0][:3]  # three real windows as three keyed streams
    model = RecurrentModel(GRU(6, 16, seed=0), Readout(16, 6, seed=1))
    learner = OnlineLearner(model, k1=16, target_kind="classes")
    labels = windows[1][:3, None].expand(3, 40)
    pred = learner.push_many(["a", "b", "c"], x[:, :40], labels)
    for i, key in enumerate(["a", "b", "c"]):
        on_demand = learner.readout(key=key)
        torch.testing.assert_close(on_demand, pred[i, -1], rtol=0, atol=1e-6)
        torch.testing.assert_close(on_demand, model.readout(learner.state(key=key))[0])
    assert learner.steps_seen(key="b") == 40  # reading out changed nothing
