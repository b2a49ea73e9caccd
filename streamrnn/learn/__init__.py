"""Online learning: :class:`OnlineLearner`, prequential TBPTT(k1, k2) on live streams.

The learner holds its parts (stream rows and window rings, the update, the checkpoint
codec); the semantics it implements are written once, in :mod:`streamrnn.learn.learner`.
"""

from .learner import OnlineLearner

__all__ = ["OnlineLearner"]
