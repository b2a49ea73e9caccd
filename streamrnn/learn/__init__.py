"""Online learning: :class:`OnlineLearner`, prequential TBPTT(k1, k2) on live streams.

The semantics are written once, in :mod:`streamrnn.learn.learner` (the contract the tests
check). The learner holds its parts, each in its own module:

- ``_windows``: :class:`Windows`, the window rule (when windows end, what the next update
  learns, which live states enter a window): the one place ``k1`` and ``k2`` live;
- ``_store``: :class:`StreamRows`, every stream's live state, ring of entering states
  (one ring per state part), inputs and targets, on the slot table shared with
  :class:`~streamrnn.StreamBank` (``streamrnn._slots``: one key rule, one LRU rule);
- ``_core``: :class:`Stepper`, pushes cut at window ends and the TBPTT update, with its
  two lanes (``_lane``: one step of one stream; ``_window``: whole k1 == k2 windows);
- ``_update``: :class:`Updater`, loss, zero_grad, clip and optimizer step;
- ``_state`` and ``_load``: :class:`Checkpoint`, state_dict / save / load, validating a
  whole checkpoint into new objects before swapping them in.
"""

from .learner import OnlineLearner

__all__ = ["OnlineLearner"]
