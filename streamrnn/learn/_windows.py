"""TBPTT(k1, k2)'s windows: the one place the window rule is written (private).

Everything here is arithmetic on a stream's step count ``n`` (steps seen). It takes
Python ints or numpy int arrays alike (``due``: bools or bool arrays).

- a *window end* is a count that is a multiple of ``k1``; reaching one makes an update
  *due*, and the update at end ``n`` learns the window of steps ``[max(0, n - k2), n)``;
- a target of step ``t`` is learned by the stream's next update if ``t`` is inside that
  update's window, i.e. ``t >= next_end - k2``;
- the live state after ``n`` steps *enters* the window that ends at ``n + k2`` when that
  is a window end; it is kept until then in slot ``ring_slot(n)`` of a ring of
  ``k2 // k1 + 1`` states;
- step ``t``'s input and target live at position ``t % k2`` of the stream's window rings.
"""

from __future__ import annotations

import numpy as np

__all__ = ["Windows"]


class Windows:
    """The window rule of TBPTT(k1, k2) (``k1 <= k2``, validated by the learner).

    Examples
    --------
    >>> w = Windows(4, 10)
    >>> w.next_end(5, False), w.next_end(8, True), w.next_end(8, False)
    (8, 8, 12)
    >>> w.first_kept(5, False), w.width(np.array([8, 20])).tolist()  # steps 0..7, 10..19
    (-2, [8, 10])
    >>> w.enters(2), w.ring_slot(2), w.ring                  # 2 + 10 = 12 is an end
    (True, 0, 3)
    >>> w.segment(np.array([0, 3]), 20)                       # stream 2 ends a window at 4
    1
    """

    def __init__(self, k1: int, k2: int) -> None:
        self.k1, self.k2 = k1, k2
        self.ring = k2 // k1 + 1  # entering states kept per stream

    def ends(self, count):
        """Whether ``count`` steps end a window (``count > 0`` where it matters)."""
        return count % self.k1 == 0

    def next_end(self, count, due):
        """The count at which the stream's next update happens: ``count`` itself when an
        update is due (then ``count`` ends a window), else the next window end."""
        return (count // self.k1 + 1 - due) * self.k1

    def first_kept(self, count, due):
        """The oldest step whose target the stream's next update still learns."""
        return self.next_end(count, due) - self.k2

    def width(self, ends: np.ndarray) -> np.ndarray:
        """Steps learned by the updates at window ends ``ends``: the windows are
        ``[ends - width, ends)``."""
        return np.minimum(ends, self.k2)

    def enters(self, count):
        """Whether the live state after ``count`` steps enters a future window."""
        return (count + self.k2) % self.k1 == 0

    def ring_slot(self, start):
        """The ring slot of the state entering step ``start`` (the state after ``start``
        steps; kept while ``enters(start)``, read by the update that ends at
        ``start + k2``)."""
        return (start + self.k2) // self.k1 % self.ring

    def segment(self, counts: np.ndarray, remaining: int) -> int:
        """Steps (at most ``remaining``) the streams at ``counts`` can take together
        before one of them reaches a window end or a state that enters a window."""
        k1 = self.k1
        seg = min(remaining, int((k1 - counts % k1).min()))
        if self.k2 % k1:
            gap = (-(counts + self.k2)) % k1
            seg = min(seg, int(np.where(gap == 0, k1, gap).min()))
        return seg
