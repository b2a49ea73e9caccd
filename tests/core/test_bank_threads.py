"""StreamBank under threads: every public method holds the bank's lock, so concurrent
pushes of distinct streams give each stream exactly the outputs of a serial run, while
other threads read, save and reset (no exception, no torn state)."""

from __future__ import annotations

import sys
import threading

import torch

import streamrnn

F, H, THREADS, PUSHES = 3, 8, 4, 40


def chunks(thread: int) -> list[dict]:
    """Pushes of one thread: its own keys, new ones arriving (the table grows while
    other threads gather rows), ragged lengths, and one-step pushes."""
    g = torch.Generator().manual_seed(thread)
    out = []
    for i in range(PUSHES):
        keys = range(i, i + 6)  # five known streams, a new one
        lengths = torch.randint(1, 4, (len(keys),), generator=g).tolist()
        push = {(thread, j): torch.randn(n, F, generator=g)
                for j, n in zip(keys, lengths, strict=True)}
        if i % 3:
            push[f"one-{thread}"] = torch.randn(F, generator=g)
        out.append(push)
    return out


def test_concurrent_pushes_equal_a_serial_run_while_others_read_and_save(tmp_path):
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can
    try:
        for _ in range(3):  # a race shows in most single runs without the lock; in 3, nearly always
            run(tmp_path)
    finally:
        sys.setswitchinterval(old)


def run(tmp_path):
    model = streamrnn.GRU(F, H, num_layers=2, seed=0)
    work = {t: chunks(t) for t in range(THREADS)}
    serial = streamrnn.StreamBank(model)
    expected = {t: [serial.push(c) for c in work[t]] for t in range(THREADS)}

    bank = streamrnn.StreamBank(model)
    got: dict = {}
    errors: list = []
    start = threading.Barrier(THREADS + 1)

    def pusher(t):
        start.wait()
        try:
            got[t] = [bank.push(c) for c in work[t]]
        except Exception as exc:  # noqa: BLE001 - collected and asserted empty below
            errors.append(exc)

    def reader():
        start.wait()
        try:
            for i in range(30):
                bank.state_dict(), len(bank), bank.keys()
                bank.reset("spare") if "spare" in bank else bank.push({"spare": torch.ones(F)})
                if i % 10 == 0:
                    bank.save(tmp_path / "b.safetensors")
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=pusher, args=(t,)) for t in range(THREADS)]
    threads.append(threading.Thread(target=reader))
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    for t in range(THREADS):
        for want, have in zip(expected[t], got[t], strict=True):
            assert want.keys() == have.keys()
            for k in want:
                torch.testing.assert_close(have[k], want[k], rtol=0, atol=1e-6)
    for k in serial.keys():
        torch.testing.assert_close(bank.get_state(k).h, serial.get_state(k).h, rtol=0, atol=1e-6)
