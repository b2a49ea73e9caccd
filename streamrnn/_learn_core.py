"""The online learner's stepping and learning machinery (private).

See :mod:`streamrnn.learn` for the semantics this implements.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from streamrnn._learn_store import LEARNED, NONE, PENDING, Span

__all__ = ["LearnerCore"]


class LearnerCore:
    """Segmenting pushes at window ends, ring bookkeeping, and the TBPTT update."""

    def _push(self, keys: list, x: Tensor, tg, m) -> Tensor:
        rows = self.rows
        slots = np.asarray(rows.slots_for(keys), dtype=np.int64)
        back = None
        if len(slots) > 1 and not bool((np.diff(slots) > 0).all()):
            order = np.argsort(slots)
            back = torch.as_tensor(np.argsort(order), device=self._device)
            slots, sel = slots[order], torch.as_tensor(order, device=self._device)
            x = x.index_select(0, sel)
            tg = None if tg is None else tg.index_select(0, sel)
            m = None if m is None else m.index_select(0, sel)
        steps = x.shape[1]
        if steps == 0:
            return x.new_zeros((len(keys), 0, *self._out_shape), dtype=self._dtype)
        self.last_reset = []
        self._update_due()
        idx = torch.as_tensor(slots, device=self._device)
        outs, pos = [], 0
        while pos < steps:
            seg = self._segment(slots, steps - pos)
            cut = slice(pos, pos + seg)
            outs.append(self._advance(slots, idx, x[:, cut], None if tg is None else tg[:, cut],
                                      None if m is None else m[:, cut]))
            pos += seg
            if pos < steps:
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
        span = Span(idx, count, seg, k2)
        span.write(rows.xbuf, x)
        if tg is None:
            span.write(rows.tstat, NONE)
        elif m is None:
            span.write(rows.ybuf, tg)
            span.write(rows.tstat, PENDING)
        else:
            span.write(rows.tstat, m.to(torch.uint8) * PENDING)
            span.write_masked(rows.ybuf, m, tg)
        rows.live.scatter_(idx, new)
        rows.count[slots] = count + seg
        if self.horizon is not None:
            self._horizon_targets(slots, idx, count, seg)
        rows.store_enter(slots, idx, new)
        rows.due[slots[(count + seg) % k1 == 0]] = True
        self.counts["steps"] += n * seg
        ok = new.is_finite()
        if not bool(ok.all()):
            bad = slots[~ok.cpu().numpy()]
            self.last_reset.extend(rows.key_of[s] for s in bad)
            rows.zero_rows(bad.tolist())
            self.counts["nonfinite_resets"] += len(bad)
            self._graph = None
        return y.detach()

    def _next_end(self, count: np.ndarray, due: np.ndarray) -> np.ndarray:
        # Step count at which each stream's next update happens.
        return np.where(due, count, (count // self.k1 + 1) * self.k1)

    def _horizon_targets(self, slots, idx, count, seg) -> None:
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
        who = idx.index_select(0, torch.as_tensor(r, device=self._device))
        if self.horizon_path:
            ahead = torch.as_tensor((step[:, None] + 1 + np.arange(h)) % k2, device=self._device)
            vals = rows.xbuf[who.unsqueeze(1).expand_as(ahead), ahead]
        else:
            vals = rows.xbuf[who, torch.as_tensor((step + h) % k2, device=self._device)]
        if self._columns is not None:
            vals = vals[..., self._columns]
        self._put_targets(who, step, vals)

    def _put_targets(self, who: Tensor, step: np.ndarray, vals: Tensor) -> int:
        rows = self.rows
        pos = torch.as_tensor(step % self.k2, device=self._device)
        free = rows.tstat[who, pos] == NONE
        n_free = int(free.sum())
        self.counts["duplicate_dropped"] += len(step) - n_free
        if n_free < len(step):
            who, pos, vals = who[free], pos[free], vals[free]
        rows.ybuf[who, pos] = vals.reshape(-1, *self._spec.target_shape)
        rows.tstat[who, pos] = PENDING
        return n_free

    def _update_due(self) -> None:
        rows, k2 = self.rows, self.k2
        due = np.nonzero(rows.due)[0]
        if not len(due):
            return
        graph, self._graph = self._graph, None
        ends = rows.count[due]
        width = np.minimum(ends, k2)
        preds, targets = [], []
        with torch.enable_grad():
            for w in sorted(set(width.tolist()), reverse=True):
                slots, end = due[width == w], ends[width == w]
                idx = torch.as_tensor(slots, device=self._device)
                span = Span(idx, end - w, w, k2)
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
                    y, _ = self.model(span.read(rows.xbuf), rows.enter_state(slots, end))
                tg = span.read(rows.ybuf)
                if terms == sel.numel():
                    preds.append(y.reshape(-1, *y.shape[2:]))
                    targets.append(tg.reshape(-1, *tg.shape[2:]))
                    span.write(rows.tstat, LEARNED)
                else:
                    preds.append(y[sel])
                    targets.append(tg[sel])
                    span.write(rows.tstat, torch.where(sel, LEARNED, stat))
            rows.due[due] = False
            if preds:
                pred = preds[0] if len(preds) == 1 else torch.cat(preds)
                target = targets[0] if len(targets) == 1 else torch.cat(targets)
                self._learn_from(pred, target)

    def _learn_from(self, pred: Tensor, target: Tensor) -> None:
        loss = self.loss(pred, target)
        if not isinstance(loss, Tensor):
            raise ValueError(f"loss must return a Tensor, got {type(loss).__name__}")
        if loss.dim() > 0:
            loss = loss.mean()
        value = float(loss.detach())
        self.optimizer.zero_grad(set_to_none=True)
        if not math.isfinite(value):
            self.counts["skipped_nonfinite"] += 1
            return
        loss.backward()
        if self.clip is not None:
            norm = nn.utils.clip_grad_norm_(self._params, self.clip)
        else:
            norm = nn.utils.get_total_norm([p.grad for p in self._params if p.grad is not None])
        if not math.isfinite(float(norm)):
            self.optimizer.zero_grad(set_to_none=True)
            self.counts["skipped_nonfinite"] += 1
            return
        self.optimizer.step()
        self._version += 1
        self.counts["updates"] += 1
        self.counts["learned"] += pred.shape[0]
        self.last_loss = value

