"""The online learner's window lane: whole k1 == k2 windows with all their targets (private).

This is the classic TBPTT loop (pytorch/examples word_language_model): every push is
one window of T = k1 == k2 steps of the same B streams, with all their targets. Nothing
of such a window can still arrive, so it is learned in the same push, from the graph of
the forward that made its predictions, while its activations are still in cache:

- :meth:`WindowLane.learn_window` does the general path's ``Stepper.advance`` and
  ``Stepper.update_due`` for that case in one: the same writes (inputs, targets, live and
  entering states, counts), minus the target-status round trip and the window's
  re-read from the rings. The new live (and entering) state of streams in lockstep is
  held back (:meth:`StreamRows.hold`): the next window of the same streams starts from
  it with no copy out of the buffers and back, and anything else that reads or writes
  the states first writes it;
- :meth:`WindowLane.push_windows` serves ``push_many`` when the keys are the very key
  objects of the last push (``SlotTable.recall``): their validation and slot lookup
  are skipped (the inputs and targets are still checked), and the streams' common step
  count is read from the host arrays once, then carried while nothing else steps them
  (``StreamRows.epoch``).

With a hidden size of a few hundred the forward and backward kernels are almost all of
the time; what this lane saves is the bookkeeping around them, which is what separated
the learner from the plain loop in ``benchmarks/bench_tbptt.py``. Results are bitwise
those of the general path (``tests/learn/test_learn_windowlane.py`` compares predictions,
weights, optimizer state, buffers and counts with ``stepper.fast = False``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from ._checks import as_inputs
from ._store import LEARNED, PENDING

if TYPE_CHECKING:
    from ._core import Stepper

__all__ = ["WindowLane"]


class WindowLane:
    """Whole k1 == k2 windows pushed with all their targets, learned in the same push."""

    def __init__(self, stepper: Stepper) -> None:
        self.stepper = stepper
        self.rows, self.windows, self.updater = stepper.rows, stepper.windows, stepper.updater
        self.counts = stepper.counts
        self._known = (None, None)  # (slots, (idx, host index)) of the last recalled push
        self._at = None  # (slots, their common step count, rows.epoch) after a lane push

    def applies(self) -> bool:
        """Whether pushes with all targets and no mask may take this lane."""
        s = self.stepper
        return s.fast and self.windows.k1 == self.windows.k2 and s.horizon is None

    def push_windows(self, keys, x, targets, check_targets) -> Tensor | None:
        """``push_many(keys, x, targets)`` of the streams of the last push, when they are
        all at the same window start and ``x`` holds whole windows; ``None`` (nothing
        done) when that does not hold. ``check_targets(targets, lead)`` validates the
        targets."""
        rows, k = self.rows, self.windows.k1
        slots = rows.table.recall(keys) if isinstance(keys, list | tuple) else None
        if slots is None:
            return None
        known = self._known
        if known[0] is not slots:  # first recall of these slots: indexes, or None
            step = np.diff(slots)
            known = self._known = (slots, None if (step <= 0).any() else (
                rows.index(slots),
                slice(int(slots[0]), int(slots[-1]) + 1) if (step == 1).all() else slots))
        if known[1] is None:
            return None
        idx, at_host = known[1]
        xs = as_inputs(self.stepper.spec, x, len(slots))
        steps = xs.shape[1]
        if steps == 0 or steps % k:
            return None
        at = self._at
        if at is not None and at[0] is slots and at[2] == rows.epoch:
            count = at[1]  # nothing else has stepped these streams since
        else:
            counts = rows.count[slots]
            count = int(counts[0])
            if not self.windows.ends(count) or (counts != count).any() or rows.due.any():
                return None
        tg = check_targets(targets, (len(slots), steps))
        rows.table.stamp(slots)  # as the general path's lookup does
        self.stepper.last_reset = []
        outs, self._at = [], None
        for i in range(0, steps, k):
            cut = (xs, tg) if steps == k else (xs[:, i:i + k], tg[:, i:i + k])
            outs.append(self.learn_window(slots, idx, count, *cut, at_host))
            # A stream that was reset is at step 0: still a window start, not in lockstep.
            count = None if count is None or self.stepper.last_reset else count + k
        if count is not None:
            self._at = (slots, count, rows.epoch)
        return outs[0] if len(outs) == 1 else torch.cat(outs, 1)

    def learn_window(self, slots: np.ndarray, idx: Tensor, count: int | None, x: Tensor,
                     tg: Tensor, at_host: slice | np.ndarray | None = None) -> Tensor:
        """One whole window of streams ``slots``, each at a window start: predict, store,
        and learn from the forward's graph. ``count``: their common step count, or
        ``None`` when they differ; ``at_host``: ``slots`` as a slice when consecutive.

        Shape
        -----
        x: ``(N, k1, *in)``, tg: ``(N, k1, *target)`` -> ``(N, k1, *out)``.
        """
        stepper, rows, k = self.stepper, self.rows, self.windows.k1
        at_host = slots if at_host is None else at_host
        state = rows.held(idx)  # what the last window of these streams left
        with torch.enable_grad():
            y, new = stepper.model(x, rows.live.select(idx) if state is None else state)
        new = new.detach()
        rows.xbuf.index_copy_(0, idx, x)  # the whole ring: k1 == k2, the window starts at 0
        rows.ybuf.index_copy_(0, idx, tg)
        if count is None:
            rows.live.scatter_(idx, new)
            rows.count[slots] += k
            rows.store_enter(slots, idx, new)
            rows.tstat[at_host] = LEARNED
        else:  # the same writes, held back until something else reads these buffers
            rows.hold(idx, at_host, count + k, new)
        self.counts["steps"] += len(slots) * k
        if not stepper.check_live(slots, new):
            # Streams were reset (their counts are 0): their window's targets are lost (as
            # pending ones are on the general path); the others learn from the rings.
            gone = rows.count[slots] == 0
            self.counts["lost_pending"] += k * int(gone.sum())
            alive = slots[~gone]
            rows.tstat[alive] = PENDING
            rows.due[alive] = True
            stepper.update_due()
            return y.detach()
        self.updater.learn(*stepper.terms(y, tg, None))
        return y.detach()
