"""streamrnn: recurrent networks that live on streams.

Stateful RNN / LSTM / GRU layers keep their hidden state across the chunks of a stream
(:class:`Stream`) or of thousands of keyed streams stepped as one batch
(:class:`StreamBank`).

Examples
--------
>>> import torch, streamrnn
>>> stream = streamrnn.Stream(streamrnn.LSTM(3, 8, seed=0))
>>> stream.push(torch.zeros(5, 3)).shape
torch.Size([5, 8])
"""

from streamrnn._version import __version__
from streamrnn.bank import StreamBank
from streamrnn.cells import GRU, LSTM, RNN, RecurrentLayer
from streamrnn.state import State
from streamrnn.stream import Stream

__all__ = [
    "GRU",
    "LSTM",
    "RNN",
    "RecurrentLayer",
    "State",
    "Stream",
    "StreamBank",
    "__version__",
]
