"""The online learner's fast lane: one step of one stream (private).

The river estimators and sensor loops push one step of one stream at a time
(``learner.push(x (F,))``), so the model's one-step forward (tens of µs) is all the
work there is, and the bookkeeping around it must not cost more. The general path
(:meth:`~streamrnn.learn._core.Stepper.advance`) is written for N streams and T
steps: numpy arrays of counts, ring positions and masks, and index tensors built from
them. For N = T = 1 every one of those is a single number, so this lane does the same
bookkeeping with Python ints and basic indexing:

- the live state is gathered and scattered with the slot's cached index tensor;
- the input, target and target status go to ring position ``count % k2`` by basic
  indexing (the status is a host numpy array: no device op at all);
- the horizon target of step ``count - h`` is this step's input (its chosen columns),
  so nothing is read back from the ring;
- the entering state is stored when it enters a window (:class:`~._windows.Windows`),
  by basic indexing, every state part;
- the new state's finiteness is one reduction (a per-stream check only when that
  fails).

It writes exactly the values the general path writes, so results are bitwise the same
(``tests/learn/test_learn_fastlane.py`` checks predictions, weights, optimizer state, buffers
and counts against the general path). It is not taken with a target mask or for
k1 == k2 == 1, whose one-step windows use the fused autograd path; setting
``learner.stepper.fast = False`` turns it off (and the window lane of
:mod:`streamrnn.learn._window`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from ._store import NONE, PENDING

if TYPE_CHECKING:
    from ._core import Stepper

__all__ = ["OneStepLane"]


class OneStepLane:
    """:meth:`step`: the general path's step, specialised to one step of one stream."""

    def __init__(self, stepper: Stepper) -> None:
        self.stepper = stepper
        self.rows, self.windows, self.model = stepper.rows, stepper.windows, stepper.model
        self.counts = stepper.counts

    def step(self, slot: int, x: Tensor, tg: Tensor | None) -> Tensor:
        """One step ``x`` (target ``tg``) of the stream at ``slot``.

        Shape
        -----
        x: ``(1, 1, *in)``, tg: ``(1, 1, *target)`` or None -> ``(1, 1, *out)``.
        """
        rows, k2 = self.rows, self.windows.k2
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
        if self.stepper.horizon is not None:
            self._horizon(slot, x, count)
        rows.store_enter_one(slot, now, new)
        if self.windows.ends(now):
            rows.due[slot] = True
        self.counts["steps"] += 1
        self.stepper.check_live(np.array([slot]), new)
        return y.detach()

    def _horizon(self, slot: int, x: Tensor, count: int) -> None:
        # Stepper._horizon_targets for one step: this input is the target of step t.
        stepper, windows = self.stepper, self.windows
        t = count - stepper.horizon
        if t < 0:
            return
        now = count + 1
        if t < windows.first_kept(now, windows.ends(now)):
            self.counts["late_dropped"] += 1
            return
        rows, pos = self.rows, t % windows.k2
        if rows.tstat[slot, pos] != NONE:
            self.counts["duplicate_dropped"] += 1
            return
        if stepper.horizon_path:  # the inputs of steps t+1 .. t+h, from the ring
            ahead = rows.index((t + 1 + np.arange(stepper.horizon)) % windows.k2)
            vals = rows.xbuf[slot].index_select(0, ahead)
        else:
            vals = x
        rows.ybuf[slot, pos] = vals if stepper.columns is None else vals[..., stepper.columns]
        rows.tstat[slot, pos] = PENDING
