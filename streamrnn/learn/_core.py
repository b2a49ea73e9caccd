"""The online learner's stepper: pushes cut at window ends, and the TBPTT update (private).

See :mod:`streamrnn.learn` for the semantics this implements. The stepper holds
the learner's parts it works with (the model, the :class:`~._windows.Windows` rule, the
:class:`~._store.StreamRows`, the :class:`~._update.Updater`) and its two lanes: one
step of one stream takes :class:`~._lane.OneStepLane`, whole k1 == k2 windows pushed
with all their targets take :class:`~._window.WindowLane`; everything else comes here.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..state import State
from ._lane import OneStepLane
from ._span import Span
from ._store import LEARNED, NONE, PENDING, finite_total
from ._window import WindowLane

__all__ = ["Stepper"]


def _increasing(slots: np.ndarray) -> bool:
    # Whether distinct slots are in increasing order (a few: as a list, which is faster).
    if len(slots) > 16:
        return bool((slots[1:] > slots[:-1]).all())
    listed = slots.tolist()
    return listed == sorted(listed)


class Stepper:
    """Steps streams, stores what learning needs, and performs the due updates.

    Attributes
    ----------
    fast : bool
        Whether the lanes may be taken (``False`` sends every push down the general
        path; the tests compare the two bit for bit).
    last_reset : list
        Keys of streams reset by the last push because their state became non-finite.
    graph : tuple or None
        ``(version, slots, outputs)`` of the last fused k1 == k2 window: the update of
        exactly those streams, with no optimizer step between, reuses it.
    """

    def __init__(self, *, model, spec, windows, rows, updater, counts: dict, out_shape: tuple,
                 horizon, horizon_path: bool, columns) -> None:
        self.model, self.spec, self.windows = model, spec, windows
        self.out_shape = out_shape  # the model's output per step
        self.rows, self.updater, self.counts = rows, updater, counts
        self.horizon, self.horizon_path, self.columns = horizon, horizon_path, columns
        self.device, self.dtype = rows.device, rows.dtype
        self.fast = True
        self.last_reset: list = []
        self.graph = None
        self.one = OneStepLane(self)
        self.lane = WindowLane(self)

    def forget_graph(self) -> None:
        """Drop the fused window's graph (its streams were reset, dropped or replaced)."""
        self.graph = None

    def push(self, keys: list, x: Tensor, tg, m) -> Tensor:
        """Predict ``x`` of streams ``keys`` (validated), store it with targets ``tg``
        (given where ``m``), learning as windows end.

        Shape
        -----
        x: ``(N, T, *in)``, tg: ``(N, T, *target)``, m: ``(N, T)`` -> ``(N, T, *out)``.
        """
        rows = self.rows
        slots = rows.table.lookup(keys)
        steps = x.shape[1]
        if self.fast and steps == 1 and len(slots) == 1 and m is None and self.windows.k2 > 1:
            self.last_reset = []
            self.update_due()
            return self.one.step(int(slots[0]), x, tg)
        back = None
        if len(slots) > 1 and not _increasing(slots):
            order = np.argsort(slots)
            back = torch.as_tensor(np.argsort(order), device=self.device)
            slots, sel = slots[order], torch.as_tensor(order, device=self.device)
            x = x.index_select(0, sel)
            tg = None if tg is None else tg.index_select(0, sel)
            m = None if m is None else m.index_select(0, sel)
        if steps == 0 or not len(keys):
            return x.new_zeros((len(keys), steps, *self.out_shape), dtype=self.dtype)
        self.last_reset = []
        self.update_due()
        idx = rows.index(slots)
        k1 = self.windows.k1
        lean = tg is not None and m is None and self.lane.applies()
        outs, pos = [], 0
        while pos < steps:
            seg = self.windows.segment(rows.count[slots], steps - pos)

            def part(t, lo=pos, hi=pos + seg):
                return t if t is None or (lo, hi) == (0, steps) else t[:, lo:hi]

            if lean and seg == k1 and self.windows.ends(rows.count[slots]).all():
                outs.append(self.lane.learn_window(slots, idx, None, part(x), part(tg)))
            else:
                outs.append(self.advance(slots, idx, part(x), part(tg), part(m)))
            pos += seg
            if pos < steps:
                self.update_due()
        if self.graph is not None and tg is not None and m is None and self.horizon is None:
            # A whole window pushed with all its targets (the window lane's case, with the
            # lane off): learned now, as the lane does. Nothing of it can still arrive.
            self.update_due()
        y = outs[0] if len(outs) == 1 else torch.cat(outs, 1)
        return y if back is None else y.index_select(0, back)

    def advance(self, slots, idx, x, tg, m) -> Tensor:
        """Step streams ``slots`` (increasing) through a segment that ends at most at a
        window end of each: predict, store inputs, targets, states, counts."""
        rows, windows = self.rows, self.windows
        n, seg = x.shape[0], x.shape[1]
        count = rows.count[slots].copy()
        state = rows.live.select(idx)
        if windows.k1 == windows.k2 and seg == windows.k1 and windows.ends(count).all():
            with torch.enable_grad():
                y, new = self.model(x, state)
            self.graph = (self.updater.version, tuple(slots.tolist()), y)
        else:
            with torch.no_grad():
                y, new = self.model(x, state)
        new = new.detach()
        span = Span(rows, slots, idx, count, seg)
        span.write(rows.xbuf, x)
        if tg is None:
            span.write(rows.tstat, NONE)
        elif m is None:
            span.write(rows.ybuf, tg)
            span.write(rows.tstat, PENDING)
        else:
            span.write(rows.tstat, m.cpu().numpy().astype(np.uint8) * PENDING)
            span.write_masked(rows.ybuf, m, tg)
        rows.live.scatter_(idx, new)
        rows.count[slots] = count + seg
        rows.bump()
        if self.horizon is not None:
            self._horizon_targets(slots, x, count, seg)
        rows.store_enter(slots, idx, new)
        rows.due[slots[windows.ends(count + seg)]] = True
        self.counts["steps"] += n * seg
        self.check_live(slots, new)
        return y.detach()

    def check_live(self, slots: np.ndarray, new: State) -> bool:
        """Reset the streams whose new live state is not finite (one reduction when all
        is); return whether none was."""
        if finite_total(new, self.rows.alike):
            return True
        ok = new.is_finite().cpu().numpy()
        if ok.all():
            return True
        bad = slots[~ok]
        self.last_reset.extend(self.rows.table.key_of[s] for s in bad)
        self.rows.zero_rows(bad.tolist())
        self.counts["nonfinite_resets"] += len(bad)
        self.graph = None
        return False

    def _horizon_targets(self, slots, x, count, seg) -> None:
        # The input of step t + h (this segment's x) is the target of step t.
        rows, h, windows = self.rows, self.horizon, self.windows
        now = count + seg
        t = count[:, None] + np.arange(seg) - h
        valid = t >= 0
        accept = valid & (t >= windows.first_kept(now, windows.ends(now))[:, None])
        self.counts["late_dropped"] += int((valid & ~accept).sum())
        if not accept.any():
            return
        r, j = np.nonzero(accept)
        step = t[r, j]
        if self.horizon_path:
            ahead = rows.index(((step[:, None] + 1 + np.arange(h)) % windows.k2).ravel())
            ahead = ahead.view(-1, h)
            vals = rows.xbuf[rows.index(slots[r]).unsqueeze(1).expand_as(ahead), ahead]
        elif accept.all():
            vals = x.reshape(-1, *x.shape[2:])
        else:
            vals = x[torch.from_numpy(accept).to(x.device)]
        if self.columns is not None:
            vals = vals[..., self.columns]
        self.put_targets(slots[r], step, vals)

    def late_target(self, slot: int, step: int, target: Tensor) -> bool:
        """The target of an earlier step ``step`` of the stream at ``slot``: taken if the
        stream's next update learns that step and it has none yet (else dropped and
        counted); returns whether it was taken."""
        rows = self.rows
        if step < self.windows.first_kept(int(rows.count[slot]), bool(rows.due[slot])):
            self.counts["late_dropped"] += 1
            return False
        return self.put_targets(np.array([slot]), np.array([step]), target.unsqueeze(0)) == 1

    def late_targets(self, slots: np.ndarray, steps: np.ndarray, targets: Tensor) -> np.ndarray:
        """:meth:`late_target` for the distinct streams at ``slots`` at once (their steps
        ``steps``, targets ``(N, *target)``); returns which were taken."""
        rows = self.rows
        kept = steps >= self.windows.first_kept(rows.count[slots], rows.due[slots])
        self.counts["late_dropped"] += len(steps) - int(kept.sum())
        if not kept.all():
            slots, steps = slots[kept], steps[kept]
            targets = targets[torch.from_numpy(kept).to(targets.device)]
        free = rows.tstat[slots, steps % self.windows.k2] == NONE
        self.put_targets(slots, steps, targets)
        taken = np.zeros(len(kept), dtype=bool)
        taken[np.flatnonzero(kept)[free]] = True
        return taken

    def put_targets(self, slots: np.ndarray, step: np.ndarray, vals: Tensor) -> int:
        """Targets of steps ``step`` of streams ``slots``; a step that has one is skipped
        and counted. Returns how many were taken."""
        rows = self.rows
        pos = step % self.windows.k2
        free = rows.tstat[slots, pos] == NONE
        n_free = int(free.sum())
        self.counts["duplicate_dropped"] += len(step) - n_free
        if n_free < len(step):
            slots, pos = slots[free], pos[free]
            vals = vals[torch.from_numpy(free).to(vals.device)]
        if n_free == 1:
            rows.ybuf[int(slots[0]), int(pos[0])] = vals.reshape(self.spec.target_shape)
        elif n_free:
            rows.ybuf[rows.index(slots), rows.index(pos)] = vals.reshape(
                -1, *self.spec.target_shape)
        rows.tstat[slots, pos] = PENDING
        return n_free

    def update_due(self) -> None:
        """Perform the due updates, all streams in one optimizer step."""
        rows = self.rows
        due = np.flatnonzero(rows.due)
        if not len(due):
            return
        graph, self.graph = self.graph, None
        ends = rows.count[due]
        width = self.windows.width(ends)
        preds, targets = [], []
        with torch.enable_grad():
            for w in sorted(set(width.tolist()), reverse=True):
                slots, end = (due, ends) if len(due) == 1 else (due[width == w], ends[width == w])
                idx = rows.index(slots)
                span = Span(rows, slots, idx, end - w, w)
                stat = span.read(rows.tstat)
                sel = stat == PENDING
                terms = int(sel.sum())
                if terms == 0:
                    continue
                if graph is not None and graph[0] == self.updater.version and graph[1] == tuple(
                    slots.tolist()
                ) and graph[2].shape[1] == w:
                    y = graph[2]
                else:
                    y, _ = self.model(span.read(rows.xbuf), rows.enter_state(slots, idx, end))
                tg = span.read(rows.ybuf)
                pred, target = self.terms(y, tg, None if terms == sel.size else sel)
                preds.append(pred)
                targets.append(target)
                span.write(rows.tstat, LEARNED if terms == sel.size else np.where(
                    sel, LEARNED, stat))
            rows.due[due] = False
            if preds:
                pred = preds[0] if len(preds) == 1 else torch.cat(preds)
                target = targets[0] if len(targets) == 1 else torch.cat(targets)
                self.updater.learn(pred, target)

    def terms(self, y: Tensor, tg: Tensor, sel: np.ndarray | None) -> tuple[Tensor, Tensor]:
        """The loss terms of a window group, step-major: by step, and within a step by
        stream in slot order (the order of word_language_model's time-first flatten).

        ``y`` is batch first over the time-first outputs of the kernel, so all its terms
        (``sel`` None) are a view, not a copy.

        Shape
        -----
        y: ``(N, W, *out)``, tg: ``(N, W, *target)``, sel: ``(N, W)`` bool ->
        ``(terms, *out)``, ``(terms, *target)``.
        """
        if sel is None:
            return (y.transpose(0, 1).reshape(-1, *y.shape[2:]),
                    tg.transpose(0, 1).reshape(-1, *tg.shape[2:]))
        if len(sel) == 1:  # one stream: its steps, a slice when they are one run
            at = np.flatnonzero(sel[0])
            if at[-1] - at[0] + 1 == len(at):
                cut = slice(int(at[0]), int(at[-1]) + 1)
                return y[0, cut], tg[0, cut]
        at = torch.from_numpy(np.ascontiguousarray(sel.T)).to(self.device)
        return y.transpose(0, 1)[at], tg.transpose(0, 1)[at]
