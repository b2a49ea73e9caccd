"""A shard's input offsets (what exactly-once replay and checkpoints rest on) equal those
of the plain rule, "every step pushed to a key counts; a key that leaves the bank leaves
the table", under any sequence of the shard's operations.

The shard counts pushes of one key list again and again once per push and adds them per
key when the offsets are read; this checks that deferral against the rule, in process
(no Ray), with evictions (a small bank), drops, clears, checkpoints and restores.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import streamrnn
from streamrnn.distributed._shard import ShardWorker

KEYS = [f"k{i}" for i in range(7)]
ops = st.lists(st.one_of(
    st.tuples(st.just("same"), st.integers(0, 3)),  # push_many of the last key list again
    st.tuples(st.just("many"), st.lists(st.sampled_from(KEYS), min_size=1, max_size=4,
                                        unique=True), st.integers(0, 3)),
    st.tuples(st.just("dict"), st.lists(st.sampled_from(KEYS), min_size=1, max_size=3,
                                        unique=True), st.integers(1, 3)),
    st.tuples(st.just("drop"), st.sampled_from(KEYS)),
    st.tuples(st.just("clear")),
    st.tuples(st.just("checkpoint")),
    st.tuples(st.just("restore")),
    st.tuples(st.just("read")),  # reading adds what is owed: only now and then
), max_size=30)


@settings(max_examples=60, deadline=None)
@given(script=ops)
def test_offsets_follow_the_plain_rule(tmp_path_factory, script):
    path = str(tmp_path_factory.mktemp("shard") / "shard-0.safetensors")
    worker = ShardWorker(streamrnn.GRU(2, 3, seed=0), max_streams=4, path=path)
    worker.restore(fresh=True)
    rule: dict = {}
    saved: dict = {}
    last: list | None = None
    seq = 0

    def apply(op, args):
        nonlocal seq
        seq += 1
        worker.apply(seq, op, args, False)

    for step in script:
        kind = step[0]
        if kind in ("same", "many"):
            keys = last if kind == "same" else step[1]
            if keys is None:
                continue
            steps = step[-1]
            apply("push_many", (None if kind == "same" else keys,
                                np.ones((len(keys), steps, 2), np.float32)))
            last = keys
            for k in keys:
                rule[k] = rule.get(k, 0) + steps
        elif kind == "dict":
            apply("push", ({k: np.ones((step[2], 2), np.float32) for k in step[1]},))
            for k in step[1]:
                rule[k] = rule.get(k, 0) + step[2]
        elif kind == "drop":
            if step[1] not in worker.bank:
                continue
            apply("drop", (step[1],))
            rule.pop(step[1])
            last = None  # the router sends the list again after a drop
        elif kind == "clear":
            apply("clear", ())
            rule, last = {}, None
        elif kind == "checkpoint":
            worker.checkpoint()
            saved = dict(rule)
        elif kind == "restore":
            seq = worker.restore()
            rule, last = dict(saved), None
        rule = {k: v for k, v in rule.items() if k in worker.bank}  # evicted keys leave
        if kind == "read":
            assert worker.offsets_of() == {k: rule.get(k, 0) for k in worker.bank.keys()}
    assert worker.offsets_of() == {k: rule.get(k, 0) for k in worker.bank.keys()}
