"""The online learner's stepping and learning machinery (private).

See :mod:`streamrnn.learn` for the semantics this implements. One step of one stream
takes the fast lane of :mod:`streamrnn.learn._lane`; everything else comes here.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ..state import State
from ._lane import OneStepLane
from ._span import Span
from ._store import LEARNED, NONE, PENDING
from ._update import UpdateSteps
from ._window import WindowLane

__all__ = ["LearnerCore"]

class LearnerCore(OneStepLane, WindowLane, UpdateSteps):
    """Segmenting pushes at window ends, ring bookkeeping, and the TBPTT update."""

    def _push(self, keys: list, x: Tensor, tg, m) -> Tensor:
        rows = self.rows
        slots = rows.slots_for(keys)
        steps = x.shape[1]
        if self._fast_lane and steps == 1 and len(slots) == 1 and m is None and self.k2 > 1:
            self.last_reset = []
            self._update_due()
            return self._step_one(slots[0], x, tg)
        back, in_order = None, slots == sorted(slots)
        slots = np.asarray(slots, dtype=np.int64)
        if not in_order:
            order = np.argsort(slots)
            back = torch.as_tensor(np.argsort(order), device=self._device)
            slots, sel = slots[order], torch.as_tensor(order, device=self._device)
            x = x.index_select(0, sel)
            tg = None if tg is None else tg.index_select(0, sel)
            m = None if m is None else m.index_select(0, sel)
        if steps == 0:
            return x.new_zeros((len(keys), 0, *self._out_shape), dtype=self._dtype)
        self.last_reset = []
        self._update_due()
        idx = rows.index(slots)
        lean = tg is not None and m is None and self._window_lane()
        outs, pos = [], 0
        while pos < steps:
            seg = self._segment(slots, steps - pos)

            def part(t, lo=pos, hi=pos + seg):
                return t if t is None or (lo, hi) == (0, steps) else t[:, lo:hi]

            if lean and seg == self.k1 and not (rows.count[slots] % seg).any():
                outs.append(self._learn_window(slots, idx, None, part(x), part(tg)))
            else:
                outs.append(self._advance(slots, idx, part(x), part(tg), part(m)))
            pos += seg
            if pos < steps:
                self._update_due()
        if self._graph is not None and tg is not None and m is None and self.horizon is None:
            # A whole window pushed with all its targets (the window lane's case, with the
            # lane off): learned now, as the lane does. Nothing of it can still arrive.
            self._update_due()
        y = outs[0] if len(outs) == 1 else torch.cat(outs, 1)
        return y if back is None else y.index_select(0, back)

    def _segment(self, slots: np.ndarray, remaining: int) -> int:
        # Steps until the first stream reaches a window end (or stores an entering state).
        count, k1, k2 = self.rows.count[slots], self.k1, self.k2
        seg = min(remaining, int((k1 - count % k1).min()))
        if k2 % k1:
            gap = (-(count + k2)) % k1
            seg = min(seg, int(np.where(gap == 0, k1, gap).min()))
        return seg

    def _advance(self, slots, idx, x, tg, m) -> Tensor:
        rows, k1, k2 = self.rows, self.k1, self.k2
        n, seg = x.shape[0], x.shape[1]
        count = rows.count[slots].copy()
        state = rows.live.select(idx)
        if k1 == k2 and seg == k1 and not (count % k1).any():
            with torch.enable_grad():
                y, new = self.model(x, state)
            self._graph = (self._version, tuple(slots.tolist()), y)
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
        rows.due[slots[(count + seg) % k1 == 0]] = True
        self.counts["steps"] += n * seg
        self._check_live(slots, new)
        return y.detach()

    def _check_live(self, slots: np.ndarray, new: State) -> bool:
        # Reset the streams whose new live state is not finite (one reduction when all is);
        # return whether none was.
        total = (new.h if new.c is None else new.h + new.c).sum()
        if math.isfinite(float(total)):  # (a finite state whose sum overflows: see below)
            return True
        ok = new.is_finite().cpu().numpy()
        if ok.all():
            return True
        bad = slots[~ok]
        self.last_reset.extend(self.rows.key_of[s] for s in bad)
        self.rows.zero_rows(bad.tolist())
        self.counts["nonfinite_resets"] += len(bad)
        self._graph = None
        return False

    def _next_end(self, count: np.ndarray, due: np.ndarray) -> np.ndarray:
        # Step count at which each stream's next update happens.
        return np.where(due, count, (count // self.k1 + 1) * self.k1)

    def _horizon_targets(self, slots, x, count, seg) -> None:
        # The input of step t + h (this segment's x) is the target of step t.
        rows, h, k2 = self.rows, self.horizon, self.k2
        now = count + seg
        t = count[:, None] + np.arange(seg) - h
        valid = t >= 0
        accept = valid & (t >= (self._next_end(now, now % self.k1 == 0) - k2)[:, None])
        self.counts["late_dropped"] += int((valid & ~accept).sum())
        if not accept.any():
            return
        r, j = np.nonzero(accept)
        step = t[r, j]
        if self.horizon_path:
            ahead = rows.index(((step[:, None] + 1 + np.arange(h)) % k2).ravel()).view(-1, h)
            vals = rows.xbuf[rows.index(slots[r]).unsqueeze(1).expand_as(ahead), ahead]
        elif accept.all():
            vals = x.reshape(-1, *x.shape[2:])
        else:
            vals = x[torch.from_numpy(accept).to(x.device)]
        if self._columns is not None:
            vals = vals[..., self._columns]
        self._put_targets(slots[r], step, vals)

    def _put_targets(self, slots: np.ndarray, step: np.ndarray, vals: Tensor) -> int:
        # Targets of steps ``step`` of streams ``slots``; a step that has one is skipped.
        rows = self.rows
        pos = step % self.k2
        free = rows.tstat[slots, pos] == NONE
        n_free = int(free.sum())
        self.counts["duplicate_dropped"] += len(step) - n_free
        if n_free < len(step):
            slots, pos = slots[free], pos[free]
            vals = vals[torch.from_numpy(free).to(vals.device)]
        if n_free == 1:
            rows.ybuf[int(slots[0]), int(pos[0])] = vals.reshape(self._spec.target_shape)
        elif n_free:
            rows.ybuf[rows.index(slots), rows.index(pos)] = vals.reshape(
                -1, *self._spec.target_shape)
        rows.tstat[slots, pos] = PENDING
        return n_free

    def _update_due(self) -> None:
        rows, k2 = self.rows, self.k2
        due = np.flatnonzero(rows.due)
        if not len(due):
            return
        graph, self._graph = self._graph, None
        ends = rows.count[due]
        width = np.minimum(ends, k2)
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
                if graph is not None and graph[0] == self._version and graph[1] == tuple(
                    slots.tolist()
                ) and graph[2].shape[1] == w:
                    y = graph[2]
                else:
                    y, _ = self.model(span.read(rows.xbuf), rows.enter_state(slots, idx, end))
                tg = span.read(rows.ybuf)
                pred, target = self._terms(y, tg, None if terms == sel.size else sel)
                preds.append(pred)
                targets.append(target)
                span.write(rows.tstat, LEARNED if terms == sel.size else np.where(
                    sel, LEARNED, stat))
            rows.due[due] = False
            if preds:
                pred = preds[0] if len(preds) == 1 else torch.cat(preds)
                target = targets[0] if len(targets) == 1 else torch.cat(targets)
                self._learn_from(pred, target)

    def _terms(self, y: Tensor, tg: Tensor, sel: np.ndarray | None) -> tuple[Tensor, Tensor]:
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
        at = torch.from_numpy(np.ascontiguousarray(sel.T)).to(self._device)
        return y.transpose(0, 1)[at], tg.transpose(0, 1)[at]

    def _learn_from(self, pred: Tensor, target: Tensor) -> None:
        loss = self.loss(pred, target)
        if not isinstance(loss, Tensor):
            raise ValueError(f"loss must return a Tensor, got {type(loss).__name__}")
        if loss.dim() > 0:
            loss = loss.mean()
        value = float(loss.detach())
        self._zero_grad()
        if not math.isfinite(value):
            self.counts["skipped_nonfinite"] += 1
            return
        loss.backward()
        if not self._clip_grads():
            self._zero_grad()
            self.counts["skipped_nonfinite"] += 1
            return
        self._step()
        self._version += 1
        self.counts["updates"] += 1
        self.counts["learned"] += pred.shape[0]
        self.last_loss = value
