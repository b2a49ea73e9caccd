"""Ring positions of a span of steps in the learner's per-stream buffers (private).

:class:`Span` reads and writes the window rings of :class:`~streamrnn.learn._store.StreamRows`
(``xbuf``, ``ybuf`` on the device, ``tstat`` on the host) for some streams over
consecutive steps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

if TYPE_CHECKING:
    from ._store import StreamRows

__all__ = ["Span"]


class Span:
    """Ring positions of ``width`` consecutive steps of some streams, from step ``start``.

    Reads and writes device buffers (torch, streams on dim 0) and host buffers (numpy).
    When every stream starts at the same ring position and the span does not wrap, they
    are a slice plus ``index_select`` / ``index_copy_`` on the stream rows (the lockstep
    case, e.g. batchified streams; plain basic indexing for one stream); otherwise a
    gather with the ring positions of each step.
    """

    def __init__(self, rows: StreamRows, slots: np.ndarray, idx: Tensor, start: np.ndarray,
                 width: int) -> None:
        k2 = rows.windows.k2
        self.rows, self.slots, self.idx, self.width = rows, slots, idx, width
        if len(start) == 1:
            first = int(start[0]) % k2
            self.p0 = first if first + width <= k2 else -1
        else:
            first = start % k2
            lockstep = (first == first[0]).all() and first[0] + width <= k2
            self.p0 = int(first[0]) if lockstep else -1
        if self.p0 < 0:
            self.ring = (start[:, None] + np.arange(width)) % k2  # (N, width)

    def _cut(self) -> slice:
        return slice(self.p0, self.p0 + self.width)

    def _gather_index(self) -> tuple[Tensor, Tensor]:
        ring = self.rows.index(self.ring.ravel()).view(self.ring.shape)
        return self.idx.unsqueeze(1).expand(self.ring.shape), ring

    def read(self, buf):
        """``(N, width, ...)`` values of ``buf`` (a copy)."""
        if isinstance(buf, np.ndarray) and self.p0 >= 0:
            return buf[self.slots, self._cut()]
        if isinstance(buf, np.ndarray):
            return buf[self.slots[:, None], self.ring]
        if self.p0 >= 0:
            return buf[:, self._cut()].index_select(0, self.idx)
        if len(self.slots) == 1:
            return buf[int(self.slots[0])].index_select(0, self.rows.index(self.ring[0]))[None]
        return buf[self._gather_index()]

    def write(self, buf, values) -> None:
        """Set the span of ``buf`` to ``values`` (``(N, width, ...)``, or a scalar for numpy)."""
        if isinstance(buf, np.ndarray):
            if self.p0 >= 0:
                buf[self.slots, self._cut()] = values
            else:
                buf[self.slots[:, None], self.ring] = values
        elif self.p0 >= 0 and len(self.slots) == 1:
            buf[int(self.slots[0]), self._cut()] = values[0]
        elif self.p0 >= 0:
            buf[:, self._cut()].index_copy_(0, self.idx, values)
        else:
            buf[self._gather_index()] = values

    def write_masked(self, buf: Tensor, mask: Tensor, values: Tensor) -> None:
        """Set the entries of the span of device buffer ``buf`` where ``mask`` holds."""
        rowi = self.idx.unsqueeze(1).expand(mask.shape)
        ring = self._gather_index()[1] if self.p0 < 0 else (
            torch.arange(self.p0, self.p0 + self.width, device=mask.device).expand(mask.shape))
        buf[rowi[mask], ring[mask]] = values[mask]
