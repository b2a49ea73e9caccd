"""OnlineLearner: prequential predict-then-learn on live streams with TBPTT(k1, k2).

The semantics it implements are written once, in :mod:`streamrnn.learn` (the package
docstring: the contract the tests check).
"""

from __future__ import annotations

import os
import threading
from operator import attrgetter

import numpy as np
import torch
from torch import Tensor

from ..state import State
from ._config import build, learner_config
from ._core import Stepper
from ._inputs import Inputs
from ._state import Checkpoint

__all__ = ["OnlineLearner"]


def _view(where: str, doc: str) -> property:
    # A read-only attribute of the learner that one of its parts holds.
    return property(attrgetter(where), doc=doc)


class OnlineLearner:
    """Predict, then learn, on one or many live streams with TBPTT(k1, k2).

    Parameters
    ----------
    model : RecurrentModel or recurrent model
        Shared by all streams: ``forward(x, state) -> (y, state)``, ``initial_state``,
        ``input_size``, ``output_size`` (e.g. :class:`~streamrnn.heads.RecurrentModel`).
    loss : callable or None
        ``loss(pred, target)``; default ``nn.MSELoss()`` for value targets and
        ``nn.CrossEntropyLoss()`` for class targets. A per-term result is averaged.
    optimizer : None, Optimizer class, Optimizer instance or callable
        ``None``: Adam. A class is built as ``cls(params, lr=lr)``; a callable as
        ``factory(params)``; an instance must hold the model's parameters.
    lr : float or None
        Learning rate for a ``None`` or class optimizer (default 1e-3).
    k1, k2 : int
        Learn every ``k1`` steps, backpropagating through the last ``k2 >= k1`` steps
        (``k2=None`` means ``k1``).
    clip : float or None
        Clip the gradient norm to this value; ``None`` disables clipping.
    horizon : int or None
        Targets come from the inputs: the target of step t is the input of step t + h.
    horizon_column : int, list of int or None
        Input columns that form the horizon target (``None``: all).
    horizon_path : bool
        With ``horizon``, the target of step t is the inputs of steps t+1 .. t+h,
        ``(h, C)`` (for sequence outputs, e.g. :class:`~streamrnn.shapes.Seq2Seq`).
    target_kind : {"values", "classes"} or None
        Float targets shaped like the output, or int64 class indices (the output's last
        dimension holds the logits). ``None``: classes for token models and
        cross-entropy / NLL losses, values otherwise.
    max_streams : int
        Most live streams; a new key at the limit evicts the least recently used one.

    Attributes
    ----------
    model, loss, optimizer
        The parts given (or made from) the parameters above.
    k1, k2, clip, horizon, horizon_column, horizon_path, target_kind, max_streams, lr
        The validated configuration (read-only).
    counts : dict
        ``steps``, ``updates``, ``learned`` (loss terms learned from), ``late_dropped``,
        ``duplicate_dropped``, ``skipped_nonfinite``, ``nonfinite_resets``, ``evicted``,
        ``lost_pending`` (pending targets of reset, dropped or evicted streams).
    last_loss : float or None
        Loss of the last update.
    last_reset : list
        Keys of the streams the last push reset because their state became non-finite.
    rows, windows, updater, stepper, checkpoint, inputs
        Its parts (``streamrnn.learn._store``, ``._windows``, ``._update``, ``._core``,
        ``._state``, ``._inputs``; the package docstring's Parts says what each does).

    Shape
    -----
    push: ``(T, F)`` or ids ``(T,)`` -> ``(T, O)``; push_many: ``(B, T, F)`` or
    ``(B, T)`` -> ``(B, T, O)``; targets ``(T, O)`` / ``(B, T, O)`` for values,
    ``(T,)`` / ``(B, T)`` for classes.

    Threads
    -------
    Safe under concurrent calls: every public method holds the learner's lock (one
    ``threading.RLock``), so calls from several threads run one after another, each
    whole. A model or optimizer it shares with other objects is not guarded against
    them.

    Examples
    --------
    >>> import torch
    >>> from streamrnn.cells import GRU
    >>> from streamrnn.heads import Readout, RecurrentModel
    >>> model = RecurrentModel(GRU(1, 16, seed=0), Readout(16, 1, seed=1))
    >>> learner = OnlineLearner(model, k1=8, k2=16, lr=1e-2, horizon=1)
    >>> wave = torch.sin(torch.arange(400.0) / 5).unsqueeze(1)
    >>> pred = learner.push(wave)              # predictions of the next value
    >>> pred.shape, learner.counts["updates"], learner.steps_seen()
    (torch.Size([400, 1]), 49, 400)
    >>> bool((pred[-50:-1] - wave[-49:]).abs().mean() < (pred[:49] - wave[1:50]).abs().mean())
    True
    >>> before = learner.state().h.clone()
    >>> learner.rollout(3).shape                 # one-to-many, live state untouched
    torch.Size([3, 1])
    >>> torch.equal(before, learner.state().h)
    True
    >>> late = OnlineLearner(model, k1=4, k2=8, optimizer=torch.optim.SGD, lr=0.1)
    >>> _ = late.push(torch.zeros(10, 1))      # no targets yet; next update at 12
    >>> late.learn(5, [0.5]), late.learn(3, [0.5])  # that window is steps 4 .. 11
    (True, False)
    >>> late.counts["late_dropped"]
    1
    """

    def __init__(
        self,
        model,
        *,
        loss=None,
        optimizer=None,
        lr: float | None = None,
        k1: int = 10,
        k2: int | None = None,
        clip: float | None = 1.0,
        horizon: int | None = None,
        horizon_column: int | list[int] | None = None,
        horizon_path: bool = False,
        target_kind: str | None = None,
        max_streams: int = 10_000,
    ) -> None:
        c = build(model, loss=loss, optimizer=optimizer, lr=lr, k1=k1, k2=k2, clip=clip,
                  horizon=horizon, horizon_column=horizon_column, horizon_path=horizon_path,
                  target_kind=target_kind, max_streams=max_streams)
        self.model, self.lr, self.horizon_column = model, c["lr"], horizon_column
        self.target_kind, self.num_tokens = c["target_kind"], c["num_tokens"]
        self.counts, self.windows, spec = c["counts"], c["windows"], c["spec"]
        self.rows, self.updater = c["rows"], c["updater"]  # made with the counts
        self.stepper = Stepper(model=model, spec=spec, windows=self.windows, rows=self.rows,
                               updater=self.updater, counts=self.counts,
                               out_shape=c["out_shape"], horizon=c["horizon"],
                               horizon_path=horizon_path, columns=c["columns"])
        self.checkpoint = Checkpoint(model=model, rows=self.rows, updater=self.updater,
                                     stepper=self.stepper, counts=self.counts,
                                     config=self.config)
        self.inputs = Inputs(spec=spec, rows=self.rows, horizon=c["horizon"])
        self._lock = threading.RLock()

    # -- configuration: each value is held once, by the part that uses it ----------
    k1 = _view("windows.k1", "Learn every ``k1`` steps.")
    k2 = _view("windows.k2", "Backpropagate through the last ``k2`` steps.")
    max_streams = _view("rows.table.max_streams", "Most live streams (then LRU eviction).")
    optimizer = _view("updater.optimizer", "The optimizer.")
    loss = _view("updater.loss", "``loss(pred, target)``.")
    clip = _view("updater.clip", "The gradient-norm clip, or None.")
    last_loss = _view("updater.last_loss", "Loss of the last update.")
    horizon = _view("stepper.horizon", "Targets from the inputs h steps ahead, or None.")
    horizon_path = _view("stepper.horizon_path", "Whether a horizon target is a path.")
    last_reset = _view("stepper.last_reset", "Keys of the streams the last push reset.")

    def config(self) -> dict:
        """The learner's configuration; checkpoints refuse a learner it does not match."""
        return learner_config(self)

    def __getstate__(self) -> dict:  # pickle / deepcopy: a new lock for the copy
        return {k: v for k, v in self.__dict__.items() if k != "_lock"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    # -- predicting ----------------------------------------------------------------
    def push(self, chunk, targets=None, *, key=None, mask=None) -> Tensor:
        """Predict every step of one stream's chunk, then learn as windows end.

        Parameters
        ----------
        chunk : Tensor, numpy array or list
            ``(T, F)`` values (or one step ``(F,)``), or token ids ``(T,)`` (or one id).
        targets : Tensor, numpy array, list or None
            The targets of these steps (``(T, *target)``), arriving with them.
        key : str, int, tuple or None
            The stream (``None``: the default stream).
        mask : bool Tensor or None
            ``(T,)``: which of ``targets`` are given.

        Returns
        -------
        Tensor
            Predictions, made before each step's target was learned from.

        Shape
        -----
        ``(T, F)`` -> ``(T, O)``; one step ``(F,)`` -> ``(O,)``.
        """
        with self._lock:
            x, tg, m, one = self.inputs.one(key, chunk, targets, mask)
            y = self.stepper.push([key], x, tg, m)
            return y[0, 0] if one else y[0]

    def step(self, x, target=None, *, key=None) -> Tensor:
        """One step of one stream: :meth:`push` of a single step.

        Shape
        -----
        ``(F,)`` or one id -> ``(O,)``.
        """
        return self.push(x, target, key=key)

    def push_many(self, keys, x, targets=None, *, mask=None) -> Tensor:
        """Predict T steps of B streams in one batched call per window segment.

        Parameters
        ----------
        keys : list
            B distinct stream keys; row i of ``x`` belongs to ``keys[i]``.
        x : Tensor
            Inputs in the model's dtype, or int token ids.
        targets : Tensor or None
            Targets of these steps.
        mask : bool Tensor or None
            ``(B, T)``: which targets are given.

        Shape
        -----
        ``(B, T, F)`` or ids ``(B, T)`` -> ``(B, T, O)``; targets ``(B, T, *target)``.
        """
        with self._lock:
            stepper = self.stepper
            if targets is not None and mask is None and stepper.lane.applies():
                y = stepper.lane.push_windows(keys, x, targets, self.inputs.targets)
                if y is not None:  # the classic loop's pushes
                    return y
            return stepper.push(*self.inputs.many(keys, x, targets, mask))

    # -- late targets --------------------------------------------------------------
    def learn(self, step_index: int, target, *, key=None) -> bool:
        """Give the target of an earlier step of a stream; return whether it was accepted.

        Parameters
        ----------
        step_index : int
            The step (0-based) the target belongs to; it must have been pushed.
        target : Tensor, numpy array, list or int
            Its target (``target`` shape, or a class index).
        key : str, int, tuple or None
            The stream.

        Returns
        -------
        bool
            ``True`` if it will be learned by the stream's next update; ``False`` if it was
            dropped (too late, counted in ``late_dropped``; or a second target for the step,
            counted in ``duplicate_dropped``).
        """
        with self._lock:
            return self.stepper.late_target(*self.inputs.late(key, step_index, target))

    def learn_many(self, keys, step_index, targets) -> np.ndarray:
        """:meth:`learn` for N distinct streams in one call: the targets of steps
        ``step_index[i]`` of streams ``keys[i]``. Takes exactly what N calls of
        :meth:`learn` in key order take, with the same counts; returns ``(N,)`` bools, as
        :meth:`learn` returns. A refused call (``ValueError``) takes none.

        Shape
        -----
        step_index ``(N,)`` ints; targets ``(N, *target)`` (``(N,)`` when the target has
        one value), or ``(N,)`` class ids.
        """
        with self._lock:
            slots, steps, tg = self.inputs.late_many(keys, step_index, targets)
            if not len(slots):
                return np.zeros(0, dtype=bool)
            return self.stepper.late_targets(slots, steps, tg)

    # -- learning ------------------------------------------------------------------
    def flush(self) -> None:
        """Perform the due updates now (otherwise they run before the next step)."""
        with self._lock:
            self.stepper.update_due()

    # -- per-stream views ----------------------------------------------------------
    def state(self, *, key=None) -> State:
        """A copy of one stream's live state (B = 1)."""
        with self._lock:
            rows = self.rows
            return rows.live.select(rows.index((rows.table.slot(key),)))

    def steps_seen(self, *, key=None) -> int:
        """Steps pushed on one stream since it started or was reset."""
        with self._lock:
            return int(self.rows.count[self.rows.table.slot(key)])

    def readout(self, *, key=None) -> Tensor:
        """Many-to-one on demand: the model's readout of the stream's current state.

        Shape
        -----
        ``(O,)``.
        """
        if not callable(getattr(self.model, "readout", None)):
            raise ValueError(f"model {type(self.model).__name__} has no readout(state)")
        with self._lock, torch.no_grad():
            return self.model.readout(self.state(key=key))[0]

    def rollout(self, steps: int, *, key=None, feedback=None, sample: bool = False,
                temperature: float = 1.0, seed: int | None = None) -> Tensor:
        """One-to-many: roll the stream's state forward, feeding outputs back as inputs.

        The live state, the weights and the learning buffers are untouched; see
        :func:`streamrnn.shapes.rollout` for the parameters.

        Shape
        -----
        ``(steps, O)`` values, or ``(steps,)`` token ids for token models.
        """
        from ..shapes import rollout

        with self._lock:
            return rollout(self.model, self.state(key=key), steps, feedback=feedback,
                           sample=sample, temperature=temperature, seed=seed)[0]

    def keys(self) -> list:
        """Live stream keys in slot order."""
        with self._lock:
            return self.rows.table.keys_by_slot()

    def __len__(self) -> int:
        return len(self.rows.table)

    def __contains__(self, key) -> bool:
        with self._lock:
            return key in self.rows.table

    def reset(self, key=None) -> None:
        """Restart one stream at step 0 (its pending targets are dropped and counted)."""
        with self._lock:
            self.rows.zero_rows([self.rows.table.slot(key)])
            self.stepper.forget_graph()

    def drop(self, key=None) -> None:
        """Forget one stream and free its slot."""
        with self._lock:
            self.rows.table.release(self.rows.table.slot(key))
            self.stepper.forget_graph()

    # -- checkpoints (all-or-nothing loads; see the package docstring) --------------
    def state_dict(self) -> dict:
        """Weights, optimizer state, every stream and the counters (copies; JSON-able)."""
        with self._lock:
            return self.checkpoint.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        """Replace everything with ``state_dict``'s; ``ValueError`` naming the field (and
        nothing changed) if it does not fit."""
        with self._lock:
            self.checkpoint.load_state_dict(state_dict)

    def save(self, path: str | os.PathLike) -> None:
        """Write :meth:`state_dict` to a safetensors file with a JSON header, atomically."""
        with self._lock:
            self.checkpoint.save(path)

    def load(self, path: str | os.PathLike) -> None:
        """Read a file of :meth:`save` (version 2 or 1); ``ValueError`` naming the file
        and the field (and nothing changed) if it is truncated, foreign or does not fit."""
        with self._lock:
            self.checkpoint.load(path)
