"""Twin learners: one with the fast lanes, one with ``_fast_lane = False`` (the general
path), and bitwise comparison of everything they hold."""

from __future__ import annotations

import numpy as np
import torch

from streamrnn.learn import OnlineLearner

__all__ = ["assert_same", "assert_same_outputs", "count_calls", "twins"]


def twins(make):
    fast, slow = make(), make()
    slow._fast_lane = False
    return fast, slow


def assert_same(a: OnlineLearner, b: OnlineLearner) -> None:
    for (name, p), q in zip(a.model.named_parameters(), b.model.parameters(), strict=True):
        assert torch.equal(p, q), name
    sa, sb = a.optimizer.state_dict(), b.optimizer.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    assert sa["state"].keys() == sb["state"].keys()
    for i, entry in sa["state"].items():
        for k, v in entry.items():
            w = sb["state"][i][k]
            assert torch.equal(v, w) if torch.is_tensor(v) else v == w, (i, k)
    assert a.counts == b.counts
    assert (a.last_loss, a.last_reset, a._version) == (b.last_loss, b.last_reset, b._version)
    ra, rb = a.rows, b.rows
    assert ra.slot_of == rb.slot_of and ra.tick == rb.tick
    for name in ("xbuf", "ybuf", "enter_h", "enter_c"):
        x, y = getattr(ra, name), getattr(rb, name)
        assert (x is None and y is None) or torch.equal(x, y), name
    assert ra.live.parts == rb.live.parts
    for part in ra.live.parts:
        assert torch.equal(ra.live[part], rb.live[part]), f"live.{part}"
    for name in ("tstat", "count", "due", "last_used"):
        assert np.array_equal(getattr(ra, name), getattr(rb, name)), name


def assert_same_outputs(got: list, want: list) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert torch.equal(g, w) if torch.is_tensor(g) else g == w


def count_calls(obj, name: str) -> dict:
    """Wrap ``obj.name`` (on the instance) to count its calls in the returned dict."""
    calls = {name: 0}
    inner = getattr(obj, name)

    def counted(*args):
        calls[name] += 1
        return inner(*args)

    setattr(obj, name, counted)
    return calls
