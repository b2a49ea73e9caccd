"""The online learner's fast lane: one step of one stream (private).

The river estimators and sensor loops push one step of one stream at a time
(``learner.push(x (F,))``), so the model's one-step forward (tens of µs) is all the
work there is, and the bookkeeping around it must not cost more. The general path
(:meth:`~streamrnn.learn._core.LearnerCore._advance`) is written for N streams and T
steps: numpy arrays of counts, ring positions and masks, and index tensors built from
them. For N = T = 1 every one of those is a single number, so this lane does the same
bookkeeping with Python ints and basic indexing:

- the live state is gathered and scattered with the slot's cached index tensor;
- the input, target and target status go to ring position ``count % k2`` by basic
  indexing (the status is a host numpy array: no device op at all);
- the horizon target of step ``count - h`` is this step's input (its chosen columns),
  so nothing is read back from the ring;
- the entering state is stored when ``(count + k2) % k1 == 0``, by basic indexing;
- the new state's finiteness is one reduction per state tensor (a per-stream check only
  when that fails).

It writes exactly the values the general path writes, so results are bitwise the same
(``tests/test_learn_fastlane.py`` checks predictions, weights, optimizer state, buffers
and counts against the general path). It is not taken with a target mask or for
k1 == k2 == 1, whose one-step windows use the fused autograd path; setting
``_fast_lane = False`` on a learner turns it off (and the window lane of
:mod:`streamrnn.learn._window`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ._store import NONE, PENDING

__all__ = ["OneStepLane"]


class OneStepLane:
    """:meth:`_step_one`: the general path's step, specialised to one step of one stream."""

    _fast_lane = True  # False sends every push down the general path (tests compare them)

    def _step_one(self, slot: int, x: Tensor, tg: Tensor | None) -> Tensor:
        # x: (1, 1, *in), tg: (1, 1, *target) or None -> y: (1, 1, *out).
        rows, k1, k2 = self.rows, self.k1, self.k2
        idx = rows.index((slot,))
        count = int(rows.count[slot])
        with torch.no_grad():
            y, new = self.model(x, rows.live.select(idx))
        new = new.detach()
        pos = count % k2
        rows.xbuf[slot, pos] = x  # (1, 1, *in) into (*in): leading ones are dropped
        if tg is None:
            rows.tstat[slot, pos] = NONE
        else:
            rows.ybuf[slot, pos] = tg
            rows.tstat[slot, pos] = PENDING
        rows.live.scatter_(idx, new)
        now = count + 1
        rows.count[slot] = now
        rows.bump()
        if self.horizon is not None:
            self._horizon_one(slot, x, count)
        rows.store_enter_one(slot, now, new)
        if now % k1 == 0:
            rows.due[slot] = True
        self.counts["steps"] += 1
        self._check_live(np.array([slot]), new)
        return y.detach()

    def _horizon_one(self, slot: int, x: Tensor, count: int) -> None:
        # :meth:`_horizon_targets` for one step: this input is the target of step t.
        t = count - self.horizon
        if t < 0:
            return
        now = count + 1
        end = now if now % self.k1 == 0 else (now // self.k1 + 1) * self.k1
        if t < end - self.k2:
            self.counts["late_dropped"] += 1
            return
        rows, pos = self.rows, t % self.k2
        if rows.tstat[slot, pos] != NONE:
            self.counts["duplicate_dropped"] += 1
            return
        if self.horizon_path:  # the inputs of steps t+1 .. t+h, from the ring
            ahead = rows.index((t + 1 + np.arange(self.horizon)) % self.k2)
            vals = rows.xbuf[slot].index_select(0, ahead)
        else:
            vals = x
        rows.ybuf[slot, pos] = vals if self._columns is None else vals[..., self._columns]
        rows.tstat[slot, pos] = PENDING
