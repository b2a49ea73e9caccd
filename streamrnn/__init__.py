"""streamrnn: recurrent networks that live on streams.

Stateful RNN / LSTM / GRU layers keep their hidden state across the chunks of a stream
(:class:`Stream`) or of thousands of keyed streams stepped as one batch
(:class:`StreamBank`); :class:`OnlineLearner` keeps learning on them with truncated
backpropagation through time, TBPTT(k1, k2), predict-then-learn.

Examples
--------
>>> import torch, streamrnn
>>> stream = streamrnn.Stream(streamrnn.LSTM(3, 8, seed=0))
>>> stream.push(torch.zeros(5, 3)).shape
torch.Size([5, 8])
"""

from ._version import __version__
from .bank import BankOutputs, StreamBank
from .cells.classic import GRU, LSTM, RNN, RecurrentLayer
from .cells.convgru import ConvGRU
from .cells.decaygru import DecayGRU
from .cells.mingru import MinGRU
from .cells.minlstm import MinLSTM
from .heads import Readout, RecurrentModel, pool
from .learn.learner import OnlineLearner
from .lookahead import Bidirectional, Lookahead
from .shapes import ManyToOne, PooledStream, Seq2Seq, rollout
from .state import State
from .stream import Stream

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "BankOutputs",
    "Bidirectional",
    "ConvGRU",
    "DecayGRU",
    "Lookahead",
    "ManyToOne",
    "MinGRU",
    "MinLSTM",
    "OnlineLearner",
    "PooledStream",
    "Readout",
    "RecurrentLayer",
    "RecurrentModel",
    "Seq2Seq",
    "State",
    "Stream",
    "StreamBank",
    "__version__",
    "pool",
    "rollout",
]
