"""Recurrent cells: the Cell protocol, its registry, and the built-in RNN / LSTM / GRU.

Everything that steps, stores or learns a recurrent network (Stream, StreamBank,
OnlineLearner, the shapes, the river estimators, checkpoints) depends on the cell
protocol defined here and nothing else.
"""

from .classic import GRU, LSTM, RNN, RecurrentLayer

__all__ = ["GRU", "LSTM", "RNN", "RecurrentLayer"]
