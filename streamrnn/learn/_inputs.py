"""The arguments of the online learner's calls, checked before it changes anything (private).

:class:`Inputs` takes what one public call of :class:`~streamrnn.learn.OnlineLearner`
was given (a chunk, keys, targets, a mask, step indices) and returns it in the form the
:class:`~._core.Stepper` takes: a batch of streams. Every check is one of
:mod:`._checks`, made in the order the call documents, and raises ``ValueError`` naming
the parameter before any state changes.
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

from ._checks import (
    as_chunk_of,
    as_inputs,
    as_mask,
    as_step_indices,
    as_targets,
    check_keys,
    check_targets,
    live_slots,
)

__all__ = ["Inputs"]


class Inputs:
    """Checks the arguments of pushes and late targets against the learner's
    :class:`~._checks.Spec` and its streams (``rows``: the
    :class:`~._store.StreamRows`, for keys and steps pushed)."""

    def __init__(self, *, spec, rows, horizon) -> None:
        self.spec, self.rows, self.horizon = spec, rows, horizon

    def one(self, key, chunk, targets, mask) -> tuple:
        """``push``'s arguments as ``(x, targets, mask, one)`` of one stream; ``one``:
        the chunk was a single step given without its step dimension.

        Shape
        -----
        x ``(1, T, *in)``, targets ``(1, T, *target)`` or None, mask ``(1, T)`` or None.
        """
        self.rows.table.check_key(key)
        x, one = as_chunk_of(self.spec, chunk)
        lead = (x.shape[0],)
        tg = self.targets(targets, lead, one)
        m = None if mask is None else as_mask(mask, lead, self.spec.device).unsqueeze(0)
        return x.unsqueeze(0), None if tg is None else tg.unsqueeze(0), m, one

    def many(self, keys, x, targets, mask) -> tuple:
        """``push_many``'s arguments as ``(keys, x, targets, mask)``.

        Shape
        -----
        x ``(N, T, *in)``, targets ``(N, T, *target)`` or None, mask ``(N, T)`` or None.
        """
        keys = check_keys(keys, self.rows.table)
        xs = as_inputs(self.spec, x, len(keys))
        lead = tuple(xs.shape[:2])
        tg = self.targets(targets, lead)
        m = None if mask is None else as_mask(mask, lead, self.spec.device)
        return keys, xs, tg, m

    def targets(self, targets, lead: tuple, one: bool = False) -> Tensor | None:
        """Targets given with the steps of a push, as ``(*lead, *target)`` (or None)."""
        return check_targets(self.spec, targets, lead, one, horizon=self.horizon)

    def late(self, key, step_index, target) -> tuple[int, int, Tensor]:
        """``learn``'s arguments as ``(slot, step, target)``: the step must have been
        pushed on the live stream ``key``."""
        self._no_horizon()
        slot = self.rows.table.slot(key)
        count = int(self.rows.count[slot])
        if isinstance(step_index, bool) or not isinstance(
                step_index, int | np.integer) or not 0 <= step_index < count:
            raise ValueError(
                f"step_index must be an int step already pushed on stream {key!r}, "
                f"0 <= step_index < {count}, got {step_index!r}"
            )
        return slot, int(step_index), as_targets(self.spec, target, (), name="target")

    def late_many(self, keys, step_index, targets) -> tuple:
        """``learn_many``'s arguments as ``(slots, steps, targets)`` (targets None, and
        unchecked, when there are no keys).

        Shape
        -----
        slots and steps ``(N,)``; targets ``(N, *target)``.
        """
        self._no_horizon()
        slots = live_slots(self.rows.table, keys)
        steps = as_step_indices(step_index, self.rows.count[slots], keys)
        if not len(slots):
            return slots, steps, None
        return slots, steps, as_targets(self.spec, targets, (len(keys),), name="targets")

    def _no_horizon(self) -> None:
        if self.horizon is not None:
            raise ValueError("learn() does not apply in horizon mode (targets come from inputs)")
