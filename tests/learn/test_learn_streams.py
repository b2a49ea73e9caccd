"""Many streams in one learner: each stream's windows are its own (invariant 5 for streams
out of phase), the slot table's key rule and LRU order (kept across a checkpoint), and
calls from several threads.
"""

from __future__ import annotations

import threading
from enum import Enum

import pytest
import torch
from _tbptt import RecordingSGD
from _user_cell import MemoryCell
from torch import nn

from streamrnn.cells import LSTM
from streamrnn.heads import Readout, RecurrentModel
from streamrnn.learn import OnlineLearner

F64 = torch.float64


CELLS = {"lstm": lambda: LSTM(2, 5, num_layers=2, seed=0, dtype=F64),
         "user_cell": lambda: MemoryCell(2, 5, 2, seed=0)}


def frozen(cell: str, k1: int, k2: int) -> OnlineLearner:
    """A learner whose updates record their gradients and change nothing (lr 0), with a
    summed loss: an update of several streams then has the sum of their gradients."""
    model = RecurrentModel(CELLS[cell](), Readout(5, 1, seed=1, dtype=F64))
    return OnlineLearner(model, optimizer=lambda p: RecordingSGD(p, lr=0.0), k1=k1, k2=k2,
                         clip=None, loss=nn.MSELoss(reduction="sum"))


def data(n: int, steps: int):
    gen = torch.Generator().manual_seed(n)
    x = torch.randn(n, steps, 2, generator=gen, dtype=F64)
    return x, torch.tanh(x[..., :1] * x[..., 1:] + 0.3)


# (keys of a push, steps): the streams start apart and stay out of phase
SCHEDULE = [(["a"], 2), (["b"], 1), (["a", "b", "c"], 5), (["c"], 4), (["b", "c"], 3),
            (["c", "a", "b"], 7), (["a"], 1), (["b", "a"], 6), (["a", "b", "c"], 9),
            (["c"], 2), (["b", "c", "a"], 4)]


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("k1,k2", [(3, 7), (4, 4), (2, 5)])
def test_out_of_phase_streams_learn_their_own_windows(cell, k1, k2):
    """Three streams whose windows close at different steps, pushed together and apart:
    every update's gradient is the sum of the gradients each due stream's window has
    when that stream runs alone, and every prediction is the stream's own."""
    names = ["a", "b", "c"]
    x, y = data(3, 60)
    alone, want_pred = {}, {}
    for i, key in enumerate(names):  # each stream alone, in one push
        lrn = frozen(cell, k1, k2)
        steps = sum(n for keys, n in SCHEDULE if key in keys)
        want_pred[key] = lrn.push(x[i, :steps], y[i, :steps])
        lrn.flush()
        alone[key] = lrn.optimizer.records  # update j: the window ending at (j + 1) k1
    together = frozen(cell, k1, k2)
    pos = dict.fromkeys(names, 0)
    got_pred = {key: [] for key in names}
    expected = []  # per update of `together`: {stream: its window end}
    for keys, n in SCHEDULE:
        rows = [names.index(k) for k in keys]
        xs = torch.stack([x[r, pos[k]:pos[k] + n] for r, k in zip(rows, keys, strict=True)])
        ys = torch.stack([y[r, pos[k]:pos[k] + n] for r, k in zip(rows, keys, strict=True)])
        out = together.push(xs[0], ys[0], key=keys[0]) if len(keys) == 1 else \
            together.push_many(keys, xs, ys)
        out = out.unsqueeze(0) if len(keys) == 1 else out
        for j, k in enumerate(keys):
            got_pred[k].append(out[j])
        for step in range(1, n + 1):  # window ends in this push, in order
            due = {k: pos[k] + step for k in keys if (pos[k] + step) % k1 == 0}
            if due:
                expected.append(due)
        for k in keys:
            pos[k] += n
    together.flush()
    assert together.counts["updates"] == len(expected) > 5
    assert any(len(due) > 1 for due in expected) and any(len(due) == 1 for due in expected)
    for got, due in zip(together.optimizer.records, expected, strict=True):
        for p, grad in enumerate(got):
            want = sum(alone[k][end // k1 - 1][p] for k, end in due.items())
            torch.testing.assert_close(grad, want, rtol=0, atol=1e-10)
    for key in names:
        torch.testing.assert_close(torch.cat(got_pred[key]), want_pred[key], rtol=0,
                                   atol=1e-10)


# -- keys and recency ----------------------------------------------------------------------
def small(max_streams: int = 10) -> OnlineLearner:
    model = RecurrentModel(LSTM(2, 4, seed=0, dtype=F64), Readout(4, 1, seed=1, dtype=F64))
    return OnlineLearner(model, k1=3, k2=5, lr=1e-2, max_streams=max_streams)


class Room(str, Enum):
    KITCHEN = "kitchen"


def nest(depth: int):
    """A key of ``depth`` nested tuples."""
    key = "deep"
    for _ in range(depth):
        key = (key,)
    return key


@pytest.mark.parametrize("key", [Room.KITCHEN, True, 2.5, ("a", None), nest(9), ["list"]],
                         ids=["str_enum", "bool", "float", "none_inside", "nested_9_deep",
                              "list"])
def test_keys_follow_the_slot_tables_rule(key):
    """One key rule for bank and learner: exact str / int or tuples of them, nested at
    most 8 deep (a str Enum would come back from a checkpoint as a plain str)."""
    lrn = small()
    x = torch.zeros(3, 2, dtype=F64)
    with pytest.raises(ValueError, match="key must be a str, an int, or a tuple of them"):
        lrn.push(x, key=key)
    with pytest.raises(ValueError, match="key must be a str, an int, or a tuple of them"):
        lrn.push_many(["ok", key], torch.stack([x, x]))
    assert len(lrn) == 0 and lrn.counts["steps"] == 0
    lrn.push(x)  # the default stream (key None) and a deep but legal key are fine
    lrn.push(x, key=nest(8))
    assert len(lrn) == 2


def test_a_push_stamps_its_keys_in_order_the_first_is_least_recent():
    lrn = small(max_streams=3)
    x = torch.zeros(1, 2, 2, dtype=F64)
    lrn.push_many(["p", "q", "r"], x.expand(3, 2, 2))
    lrn.push(x[0], key="s")  # evicts p, the first key of the push
    assert sorted(lrn.keys()) == ["q", "r", "s"]


def test_lru_order_survives_a_checkpoint(tmp_path):
    """Recency is part of the checkpoint: after a resume, new keys evict the same streams,
    in the same order, as in a learner that never stopped."""
    x = torch.linspace(-1, 1, 8, dtype=F64).reshape(4, 2)

    def before(lrn):
        for key in ["u", "v", "w", "u", "w"]:  # least recent now: v (slot 1), then u
            lrn.push(x, x[:, :1], key=key)

    def after(lrn):
        seen = []
        for key in ["n1", "n2", "w", "n3", "n4"]:
            lrn.push(x, key=key)
            seen.append(sorted(lrn.keys(), key=str))
        return seen, lrn.counts["evicted"]

    straight = small(max_streams=3)
    before(straight)
    want = after(straight)

    first = small(max_streams=3)
    before(first)
    first.save(tmp_path / "l.safetensors")
    resumed = small(max_streams=3)
    resumed.load(tmp_path / "l.safetensors")
    assert after(resumed) == want
    assert want[0][0] == ["n1", "u", "w"]  # v, the least recently used, went first
    assert want[0][1] == ["n1", "n2", "w"] and want[1] == 4


# -- threads -------------------------------------------------------------------------------
def _threads(target, n: int) -> list:
    errors, barrier = [], threading.Barrier(n)

    def run(i):
        barrier.wait()
        try:
            target(i)
        except Exception as err:  # noqa: BLE001 - collected and reported below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_calls_from_many_threads_run_whole_and_learn_every_window():
    """Four threads push, push_many, learn, flush, read and checkpoint one learner (Adam):
    no call fails, no step is lost or doubled, every window is learned."""
    model = RecurrentModel(LSTM(2, 8, seed=0), Readout(8, 1, seed=1))
    lrn = OnlineLearner(model, k1=4, k2=8, lr=1e-3)
    x = torch.randn(4, 200, 2, generator=torch.Generator().manual_seed(0))
    y = x[..., :1] * 0.5
    rounds = 25

    def work(i):
        for r in range(rounds):
            lo = r * 8
            lrn.push(x[i, lo:lo + 4], y[i, lo:lo + 4], key=i)
            lrn.push_many([("pair", i, 0), ("pair", i, 1)], x[[i, i], lo:lo + 8],
                          y[[i, i], lo:lo + 8])
            lrn.push(x[i, lo + 4:lo + 8], key=i)
            lrn.learn(lo + 4, y[i, lo + 4], key=i)
            lrn.state(key=i)
            if r % 5 == 0:
                lrn.flush()
                lrn.state_dict()

    assert _threads(work, 4) == []
    for i in range(4):  # one more window: the last late target is learned too
        lrn.push(x[i, :4], key=i)
    lrn.flush()
    assert lrn.counts["steps"] == 4 * rounds * (4 + 16 + 4) + 4 * 4
    assert all(lrn.steps_seen(key=i) == 8 * rounds + 4 for i in range(4))
    assert lrn.counts["late_dropped"] == lrn.counts["duplicate_dropped"] == 0
    assert lrn.counts["learned"] == 4 * rounds * (4 + 1 + 16)
    assert all(bool(torch.isfinite(p).all()) for p in lrn.model.parameters())


def test_streams_pushed_from_threads_get_what_they_get_alone():
    """With weights that do not move (lr 0), each thread's streams must see exactly the
    predictions and gradients of their own data, whatever the interleaving."""
    x, y = data(4, 48)
    lrn = frozen("lstm", 4, 6)
    out = {}

    def work(i):
        got = []
        for lo in range(0, 48, 3):
            got.append(lrn.push(x[i, lo:lo + 3], y[i, lo:lo + 3], key=("t", i)))
        out[i] = torch.cat(got)

    assert _threads(work, 4) == []
    lrn.flush()
    for i in range(4):
        alone = frozen("lstm", 4, 6)
        torch.testing.assert_close(out[i], alone.push(x[i], y[i]), rtol=0, atol=1e-10)
    assert lrn.counts["updates"] >= 48 // 4 and lrn.counts["learned"] == 4 * 48


def test_a_push_of_no_streams_and_keys_that_are_not_a_list():
    model = RecurrentModel(LSTM(2, 4, seed=0, dtype=F64), Readout(4, 1, seed=1, dtype=F64))
    lrn = OnlineLearner(model, k1=3)  # k1 == k2: pushes may take the window lane
    x = torch.zeros(1, 3, 2, dtype=F64)
    assert lrn.push_many([], x[:0]).shape == (0, 3, 1)
    lrn.push_many(["a"], x, x[..., :1])
    for keys in (5, "a", None):
        with pytest.raises(ValueError, match="keys must be a list of stream keys"):
            lrn.push_many(keys, x, x[..., :1])
    assert lrn.counts["steps"] == 3 and lrn.keys() == ["a"]


def test_a_key_equal_to_the_last_push_but_against_the_rule_is_refused():
    """The slot table remembers the last key list (the window lane trusts it); an equal
    list is not trusted blindly: ("a", True) == ("a", 1), but a bool is not a key part."""
    model = RecurrentModel(LSTM(2, 4, seed=0, dtype=F64), Readout(4, 1, seed=1, dtype=F64))
    lrn = OnlineLearner(model, k1=2)  # k1 == k2: whole windows take the window lane
    x = torch.zeros(1, 2, 2, dtype=F64)
    lrn.push_many([("a", 1)], x, x[..., :1])
    for bad in (("a", True), ("a", 1.0)):
        with pytest.raises(ValueError, match="key must be a str, an int, or a tuple of them"):
            lrn.push_many([bad], x, x[..., :1])
    lrn.push_many([("a", 1)], x, x[..., :1])  # an equal, valid key: the same stream
    assert lrn.keys() == [("a", 1)] and lrn.steps_seen(key=("a", 1)) == 4
