"""The classic recurrent shapes built from the same parts.

- many-to-many, equal length: :class:`~streamrnn.heads.RecurrentModel` (a readout at
  every step), learned online by :class:`~streamrnn.learn.OnlineLearner`;
- many-to-one: :class:`ManyToOne` (a readout of the last state or of the mean output of a
  segment) and :class:`PooledStream`, the same readout on a live stream, chunk by chunk;
- one-to-many: :func:`rollout`, which rolls a state forward feeding each output back in,
  without touching the caller's state;
- many-to-many, different lengths: :class:`Seq2Seq`, an encoder whose state starts a
  decoder that emits M outputs at every step (learned online with ``horizon_path``);
- bidirectional and bounded lookahead: :mod:`streamrnn.lookahead`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._checks import as_chunk, model_device, model_dtype
from ._validate import check_choice, check_positive_int
from .heads import RecurrentModel, _head_output_size, pool
from .state import State

__all__ = ["ManyToOne", "PooledStream", "Seq2Seq", "rollout"]


def rollout(model, state: State, steps: int, *, feedback=None, sample: bool = False,
            temperature: float = 1.0, seed: int | None = None) -> Tensor:
    """Roll ``state`` forward ``steps`` times, feeding each output back as the next input.

    The first output is ``model.readout(state)``, the prediction the last step made;
    each next output comes from running the model one step on the previous output. The
    given state is not modified (states are values) and no gradient is recorded.

    Parameters
    ----------
    model : RecurrentModel or compatible
        Needs ``readout(state)`` and ``forward(x, state)``.
    state : State
        The state to start from (for example a learner's or a stream's live state).
    steps : int
        Outputs to produce.
    feedback : callable or None
        ``feedback(output) -> next input`` (``(B, O)`` -> ``(B, F)``); ``None`` feeds the
        output itself (needs O == F) or, for token models, the argmax or a sample.
    sample : bool
        Token models: sample the next id from softmax(logits / temperature) instead of
        taking the argmax.
    temperature : float
        Softmax temperature for sampling.
    seed : int or None
        Seed of the local generator used for sampling.

    Returns
    -------
    Tensor
        Outputs ``(B, steps, O)``, or token ids ``(B, steps)`` for token models.

    Examples
    --------
    >>> import torch
    >>> from streamrnn.cells import GRU
    >>> from streamrnn.heads import Readout, RecurrentModel
    >>> model = RecurrentModel(GRU(2, 8, seed=0), Readout(8, 2, seed=1))
    >>> _, state = model(torch.ones(1, 5, 2))
    >>> kept = state.h.clone()
    >>> rollout(model, state, 4).shape
    torch.Size([1, 4, 2])
    >>> torch.equal(kept, state.h)
    True
    """
    check_positive_int("steps", steps)
    if not callable(getattr(model, "readout", None)):
        raise ValueError(f"model {type(model).__name__} needs readout(state) for a rollout")
    tokens = getattr(model, "num_tokens", None) is not None
    gen = None if seed is None else torch.Generator(device="cpu").manual_seed(seed)
    if not tokens and feedback is None and model.output_size != model.input_size:
        raise ValueError(
            f"feedback is needed: the model outputs {model.output_size} features per step "
            f"but takes {model.input_size}"
        )
    outs = []
    with torch.no_grad():
        out = model.readout(state)
        for i in range(steps):
            if tokens:
                if sample:
                    probs = torch.softmax(out.double() / temperature, dim=-1).cpu()
                    ids = torch.multinomial(probs, 1, generator=gen)[:, 0].to(out.device)
                else:
                    ids = out.argmax(dim=-1)
                outs.append(ids)
                nxt = ids[:, None]
            else:
                outs.append(out)
                nxt = (out if feedback is None else feedback(out))[:, None]
            if i + 1 < steps:
                y, state = model(nxt, state)
                out = y[:, 0]
    return torch.stack(outs, 1)


class ManyToOne(nn.Module):
    """Many-to-one: a recurrent layer read out once per segment.

    Parameters
    ----------
    cell : RecurrentLayer
        The recurrent layer.
    head : nn.Module
        Readout of the pooled H features (e.g. :class:`~streamrnn.heads.Readout`).
    pool : {"last", "mean"}
        Read the segment's last output (the current state) or the mean output.

    Shape
    -----
    x: ``(B, T, F)`` -> ``(B, O)``; state ``(L, B, H)``.

    Threads
    -------
    As a torch module: ``forward`` keeps nothing between calls (the state goes in and
    comes out), so several threads may run it at once, each with its own state. Changing
    the weights (training, ``load_state_dict``) while another thread runs it is not
    safe.

    Examples
    --------
    >>> import torch
    >>> from streamrnn.cells import LSTM
    >>> from streamrnn.heads import Readout
    >>> clf = ManyToOne(LSTM(3, 8, seed=0), Readout(8, 4, seed=1), pool="mean")
    >>> logits, state = clf(torch.zeros(2, 20, 3))
    >>> logits.shape, state.h.shape
    (torch.Size([2, 4]), torch.Size([1, 2, 8]))
    """

    def __init__(self, cell: nn.Module, head: nn.Module, *, pool: str = "last") -> None:
        super().__init__()
        check_choice("pool", pool, ("last", "mean"))
        self.model = RecurrentModel(cell, None)
        self.head = head
        self.pool = pool
        self.output_size = _head_output_size(head)

    @property
    def input_size(self) -> int:
        return self.model.input_size

    def initial_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        """The layer's zero state, ``(L, B, H)``."""
        return self.model.initial_state(batch_size, device=device, dtype=dtype)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Read out a whole segment.

        Shape
        -----
        x: ``(B, T, F)`` with T >= 1 -> ``(B, O)``.
        """
        y, state = self.model(x, state)
        return self.head(pool(y, self.pool)), state

    def config(self) -> dict:
        head = self.head.config() if callable(getattr(self.head, "config", None)) else None
        return {"type": "ManyToOne", "cell": self.model.config()["cell"], "head": head,
                "pool": self.pool}


class PooledStream:
    """A :class:`ManyToOne` on a live stream: push chunks, read the segment out any time.

    The pooled value is kept as a running sum (mean) or the last output (last), so the
    readout is the same for any split of the segment into chunks.

    Parameters
    ----------
    model : ManyToOne
        The classifier.

    Attributes
    ----------
    steps : int
        Steps in the current segment.

    Shape
    -----
    push: ``(T, F)`` -> None; readout: ``(O,)``.

    Threads
    -------
    Not safe under concurrent calls, and not locked (a lock per call would cost more
    than the call): use it from one thread at a time, or hold your own lock around each
    call.

    Examples
    --------
    >>> import torch
    >>> from streamrnn.cells import GRU
    >>> from streamrnn.heads import Readout
    >>> clf = ManyToOne(GRU(3, 8, seed=0), Readout(8, 2, seed=1), pool="mean")
    >>> x = torch.randn(30, 3, generator=torch.Generator().manual_seed(0))
    >>> live = PooledStream(clf)
    >>> for part in (x[:7], x[7:8], x[8:]):
    ...     live.push(part)
    >>> torch.allclose(live.end_segment(), clf(x[None])[0][0], atol=1e-5), live.steps
    (True, 0)
    """

    def __init__(self, model: ManyToOne) -> None:
        if not isinstance(model, ManyToOne):
            raise ValueError(f"model must be a ManyToOne, got {type(model).__name__}")
        self.model = model
        self._dtype, self._device = model_dtype(model), model_device(model)
        self.reset()

    def reset(self) -> None:
        """Start over: initial state and an empty segment."""
        self.state = self.model.initial_state(1, device=self._device, dtype=self._dtype)
        self._start_segment()

    def _start_segment(self) -> None:
        self._sum = None
        self._last = None
        self.steps = 0

    def push(self, chunk) -> None:
        """Run a chunk from the live state and add its outputs to the segment's pool."""
        x, _ = as_chunk(chunk, features=self.model.input_size, dtype=self._dtype,
                        device=self._device)
        if x.shape[0] == 0:
            return
        with torch.no_grad():
            y, self.state = self.model.model(x[None], self.state)
        part = y[0].sum(0)
        self._sum = part if self._sum is None else self._sum + part
        self._last = y[0, -1]
        self.steps += x.shape[0]

    def readout(self) -> Tensor:
        """The pooled readout of the segment so far (``(O,)``)."""
        if self.steps == 0:
            raise ValueError("the segment is empty: push at least one step before a readout")
        pooled = self._last if self.model.pool == "last" else self._sum / self.steps
        with torch.no_grad():
            return self.model.head(pooled[None])[0]

    def end_segment(self, *, reset_state: bool = True) -> Tensor:
        """The segment's readout; then start a new segment (from zeros if ``reset_state``)."""
        out = self.readout()
        if reset_state:
            self.reset()
        else:
            self._start_segment()
        return out


class Seq2Seq(nn.Module):
    """Many-to-many of different lengths: at every step, decode M outputs from the state.

    The encoder reads the stream (one fused call per chunk). At every step its top-layer
    hidden state starts a decoder, copied into each decoder layer (``c`` starts at zero
    for an LSTM decoder; for a one-layer GRU / RNN encoder this is its whole state). The
    decoder emits M outputs, feeding each back as its next input (the first input is
    zeros). With ``OnlineLearner(..., horizon=M, horizon_path=True)`` it learns online to
    forecast the next M values as one sequence.

    Parameters
    ----------
    encoder : RecurrentLayer
        Reads the inputs.
    decoder : RecurrentLayer
        ``input_size`` = O, ``hidden_size`` = the encoder's output size.
    head : nn.Module
        Maps decoder outputs to O features.
    horizon : int
        Outputs per step (M).

    Shape
    -----
    x: ``(B, T, F)`` -> y: ``(B, T, M, O)``; state: the encoder's ``(L, B, H)``.

    Threads
    -------
    As a torch module: ``forward`` keeps nothing between calls (the state goes in and
    comes out), so several threads may run it at once, each with its own state. Changing
    the weights (training, ``load_state_dict``) while another thread runs it is not
    safe.

    Examples
    --------
    >>> import torch
    >>> from streamrnn.cells import GRU
    >>> from streamrnn.heads import Readout
    >>> model = Seq2Seq(GRU(2, 8, seed=0), GRU(1, 8, seed=1), Readout(8, 1, seed=2), horizon=5)
    >>> y, state = model(torch.zeros(3, 10, 2))
    >>> y.shape, model.output_shape
    (torch.Size([3, 10, 5, 1]), (5, 1))
    >>> torch.allclose(model.readout(state), y[:, -1], atol=1e-6)
    True
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, head: nn.Module, *,
                 horizon: int) -> None:
        super().__init__()
        self.horizon = check_positive_int("horizon", horizon)
        self.encoder, self.decoder, self.head = encoder, decoder, head
        self.output_size = _head_output_size(head)
        if decoder.input_size != self.output_size:
            raise ValueError(f"decoder.input_size must equal the head's output size "
                             f"{self.output_size} (outputs are fed back), got {decoder.input_size}")
        if decoder.hidden_size != encoder.output_size:
            raise ValueError(f"decoder.hidden_size must equal encoder.output_size = "
                             f"{encoder.output_size}, got {decoder.hidden_size}")

    @property
    def input_size(self) -> int:
        return self.encoder.input_size

    @property
    def output_shape(self) -> tuple:
        """Per-step output shape ``(M, O)``."""
        return (self.horizon, self.output_size)

    def initial_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        """The encoder's zero state, ``(L, B, H)``."""
        return self.encoder.initial_state(batch_size, device=device, dtype=dtype)

    def decode(self, top: Tensor) -> Tensor:
        """M outputs from each encoder top-layer state.

        Shape
        -----
        ``(N, H)`` -> ``(N, M, O)``.
        """
        n = top.shape[0]
        zero = self.decoder.initial_state(n, device=top.device, dtype=top.dtype)
        # The decoder starts from its initial state with h set, in every layer, to the
        # encoder's top state (its other parts, an LSTM's c, stay at their initial value).
        h = top.unsqueeze(0).expand(zero.h.shape).contiguous()
        state = State(**{**dict(zero.items()), "h": h})
        inp, outs = top.new_zeros(n, 1, self.output_size), []
        for _ in range(self.horizon):
            y, state = self.decoder(inp, state)
            inp = self.head(y)
            outs.append(inp)
        return torch.cat(outs, 1)

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """Encode a chunk and decode M outputs at each of its steps.

        Shape
        -----
        x: ``(B, T, F)`` -> ``(B, T, M, O)``.
        """
        y, state = self.encoder(x, state)
        b, t, hidden = y.shape
        return self.decode(y.reshape(b * t, hidden)).reshape(b, t, *self.output_shape), state

    def readout(self, state: State) -> Tensor:
        """The M outputs decoded from a state (``(B, M, O)``)."""
        return self.decode(state.h[-1])

    def config(self) -> dict:
        return {
            "type": "Seq2Seq",
            "encoder": self.encoder.config(),
            "decoder": self.decoder.config(),
            "head": self.head.config() if callable(getattr(self.head, "config", None)) else None,
            "horizon": self.horizon,
        }
