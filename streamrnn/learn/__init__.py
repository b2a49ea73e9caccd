"""Online learning: :class:`OnlineLearner`, prequential TBPTT(k1, k2) on live streams.

Semantics (the contract the tests check)
----------------------------------------
Steps of a stream are numbered 0, 1, 2, ... . A *window end* is a step count ``n`` that
is a multiple of ``k1``; every stream's window ends are its own.

* **Prediction.** Step ``t`` runs the model once from the stream's live state with the
  weights of that moment and returns its output: the prediction is made before the
  step's target is learned from. The live state is the only trajectory of states; it is
  never rewritten by learning.
* **When learning happens.** When a stream reaches a window end, an update is *due*. Due
  updates are performed lazily, just before the learner next runs any step (of any
  stream), or by :meth:`OnlineLearner.flush`; a chunk that crosses a window end is split
  there. All streams due at that moment are learned in **one** optimizer step.
* **What is learned.** The update of a stream at window end ``n`` recomputes the window
  of steps ``[max(0, n - k2), n)`` with the current weights, starting from the *entering
  state*: the live state that entered step ``n - k2`` (the initial state if ``n <= k2``),
  detached. Its loss terms are the steps of that window whose targets are pending; with
  targets given with their steps these are the last ``k1`` steps. The loss is the loss
  function applied once to all terms of all due streams (``(N, *out)`` predictions and
  ``(N, *target)`` targets, step-major: by step, and within a step by stream in slot
  order, as word_language_model flattens its time-first outputs; streams whose windows
  differ in width, which happens only near a stream's start, come in groups of equal
  width, widest first); a loss that returns one value per term (``reduction='none'``) is
  averaged. Then: zero gradients, backward, clip the gradient norm to ``clip``, optimizer
  step (bit for bit ``optimizer.step()``; plain SGD on the CPU with nothing hooked to its
  step runs as one ``_foreach_add_``, so profilers see no ``Optimizer.step`` scope). The
  entering state of later windows advances with the live trajectory (it is a stored copy
  of the live state, every state part, kept in a ring of ``k2 // k1 + 1`` states per
  stream).
* **k1 == k2** is the classic detach-every-k loop: when a push covers a whole window of
  its streams, their live forward is one fused call with autograd on, and if exactly
  those streams are due at the update (and no optimizer step came between), that graph
  is the update's graph (no recompute; the recompute would give the same bits). When
  such a push also brings every target of its window (no mask, no ``horizon``), nothing
  of that window can still arrive, so its update runs at the end of that same push,
  while the forward's activations are still in cache, instead of before the next step;
  the weights and predictions are the same either way. The weights are then exactly
  those of the canonical loop (repackage hidden, zero_grad, forward, loss, backward,
  clip, step).
* **Late targets.** :meth:`OnlineLearner.learn` gives the target of an earlier step
  ``t``. It is accepted while ``t`` is inside the window of the stream's next update
  (``t >= n_next - k2``) and learned by that update; otherwise it is dropped and counted
  in ``counts['late_dropped']``. A second target for the same step is dropped and counted
  in ``counts['duplicate_dropped']``. With ``horizon=h`` the target of step ``t`` is the
  input of step ``t + h`` (or chosen columns of it; or with ``horizon_path=True`` the
  inputs of steps ``t+1 .. t+h``), which arrives ``h`` steps late: use ``k2 >= k1 + h``
  to learn from every one of them.
* **Guards.** Non-finite inputs or targets raise ``ValueError`` before any state changes;
  inputs and targets are data, so a tensor that requires grad is detached (nothing is
  backpropagated into them).
  A non-finite loss or gradient norm skips the update (weights and optimizer state stay
  bitwise as they were; the window's targets are consumed) and is counted in
  ``counts['skipped_nonfinite']``. A stream whose live state becomes non-finite is reset
  (``counts['nonfinite_resets']``, keys in ``last_reset``).

* **Streams.** A stream is named by its key: ``None`` (the default stream), or exactly a
  str, an int or a tuple of them nested at most 8 deep (the rule of the slot table that
  :class:`~streamrnn.StreamBank` uses too; a str ``Enum`` or a bool is refused). At most
  ``max_streams`` live; a new key at the limit evicts the least recently used stream
  (its pending targets counted in ``counts['lost_pending']``). The keys of a push are
  used in the order given, so its first key is the least recent of them; checkpoints
  keep the order.

The model runs in whatever mode it is in (``model.train()`` / ``model.eval()``); the
learner does not toggle it. With dropout active, a recomputed window draws new masks
(torch's global RNG), so exact resume and the brute-force equality hold without dropout.

**Threads.** Every public method holds the learner's lock (one ``threading.RLock``), so
calls from several threads run one at a time, each whole, in the order they take the
lock. The lock guards this learner only: a model or optimizer it shares with other
objects is not guarded against them.

**Checkpoints** (:meth:`OnlineLearner.save`, :meth:`OnlineLearner.state_dict`) hold the
weights, the optimizer state and every stream (its states one tensor per state part, by
name), version 2; version-1 files (LSTM / GRU / RNN learners of earlier releases) still
load. A load is all-or-nothing: a file or state that does not fit, or holds a malformed
or non-finite field, is refused with a ``ValueError`` naming it and changes nothing.

Parts
-----
The learner (``learner.py``) holds its parts, each in its own module:

- ``_windows``: :class:`Windows`, the window rule (when windows end, what the next update
  learns, which live states enter a window): the one place ``k1`` and ``k2`` live;
- ``_store``: :class:`StreamRows`, every stream's live state, ring of entering states
  (one ring per state part), inputs and targets, on the slot table shared with
  :class:`~streamrnn.StreamBank` (``streamrnn._slots``: one key rule, one LRU rule);
- ``_core``: :class:`Stepper`, pushes cut at window ends and the TBPTT update, with its
  two lanes (``_lane``: one step of one stream; ``_window``: whole k1 == k2 windows);
- ``_update``: :class:`Updater`, loss, zero_grad, clip and optimizer step;
- ``_inputs``: :class:`Inputs`, the arguments of each call (chunks, keys, targets,
  masks, step indices) checked before anything changes;
- ``_state`` and ``_load``: :class:`Checkpoint`, state_dict / save / load, validating a
  whole checkpoint into new objects before swapping them in.
"""

from .learner import OnlineLearner

__all__ = ["OnlineLearner"]
