"""Parts of the online forecaster: floored scales, the skip model (private)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from streamrnn.heads import RecurrentModel
from streamrnn.utils import RunningMoments

__all__ = ["FLOOR", "MeanAbs", "SkipModel", "floored_std"]


#: Floor of the scales, relative to the level: ``floor * (|mean| + 1)``.
FLOOR = 1e-6


def floored_std(moments: RunningMoments, floor: float = FLOOR) -> np.ndarray:
    """Running (population) standard deviation of each channel, never below
    ``floor * (|mean| + 1)``: a channel constant so far scales to 0, not to infinity.

    Examples
    --------
    >>> import numpy as np
    >>> m = RunningMoments(2)
    >>> for row in ([1.0, 10.0], [3.0, 10.0]):
    ...     m.update(row)
    >>> m.mean, np.round(floored_std(m), 6).tolist()
    ([2.0, 10.0], [1.0, 1.1e-05])
    """
    mean = np.asarray(moments.mean)
    return np.maximum(np.sqrt(moments.var()), floor * (np.abs(mean) + 1.0))


class SkipModel(nn.Module):
    """A recurrent model plus a linear map of each step's inputs, added to its readout.

    The map starts at zero. It follows the recurrent-model protocol, so the learner takes
    it as it takes a :class:`~streamrnn.heads.RecurrentModel`.

    Shape
    -----
    x: ``(B, T, F)`` -> y: ``(B, T, O)``.

    Examples
    --------
    >>> import torch
    >>> from streamrnn.cells import GRU
    >>> from streamrnn.heads import Readout
    >>> model = SkipModel(RecurrentModel(GRU(3, 4, seed=0), Readout(4, 1, seed=1)))
    >>> y, state = model(torch.ones(2, 5, 3))
    >>> y.shape, model.input_size, model.output_size
    (torch.Size([2, 5, 1]), 3, 1)
    """

    def __init__(self, inner: RecurrentModel) -> None:
        super().__init__()
        self.inner = inner
        self.skip = nn.Linear(inner.input_size, inner.output_size, bias=False)
        with torch.no_grad():
            self.skip.weight.zero_()

    input_size = property(lambda self: self.inner.input_size)
    output_size = property(lambda self: self.inner.output_size)

    def initial_state(self, batch_size, *, device=None, dtype=None):
        """The inner model's initial state."""
        return self.inner.initial_state(batch_size, device=device, dtype=dtype)

    def forward(self, x, state=None):
        """The inner model's outputs plus the linear map of ``x``; the new state."""
        y, state = self.inner(x, state)
        return y + self.skip(x), state

    def config(self) -> dict:
        """The configuration (the inner model's nested)."""
        return {"type": "SkipModel", "inner": self.inner.config()}


class MeanAbs:
    """Running mean of absolute changes, floored like :func:`floored_std`.

    Examples
    --------
    >>> m = MeanAbs(1e-6)
    >>> m.scale(100.0)                 # nothing seen: the floor
    0.000101
    >>> for change in (1.0, 3.0):
    ...     m.update(change)
    >>> m.scale(100.0)
    2.0
    """

    def __init__(self, floor: float) -> None:
        self.floor, self.moments = floor, RunningMoments(1)

    def update(self, value: float) -> None:
        """Add one absolute change."""
        self.moments.add(0, value)

    def scale(self, level: float) -> float:
        """The running mean, at least ``floor * (|level| + 1)``."""
        return max(self.moments.mean[0], self.floor * (abs(level) + 1.0))
