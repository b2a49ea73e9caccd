"""The character language model on a live stream, and its checkpoint file (private).

Public through :mod:`streamrnn.apps.lm`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

from streamrnn.adapters.tokens import TokenCodec, codec_from_config
from streamrnn.cells import LSTM
from streamrnn.heads import Readout, RecurrentModel
from streamrnn.utils import check_int, check_positive_float, check_positive_int

from ._io import check_vocabulary, read_checkpoint

__all__ = ["CharLM", "build_model", "draw", "stream_loss"]

_SLICE = 8192  # steps per fused call when a long chunk is streamed (bounded buffers)


def build_model(vocab: int, *, emb: int, hidden: int, layers: int, seed: int | None = 0):
    """Embedding -> ``layers``-layer LSTM -> linear readout of ``vocab`` logits.

    The weights are drawn from local generators seeded from ``seed`` (as in
    ``benchmarks/bench_tbptt.py``: LSTM ``seed``, readout ``seed + 1``, embedding
    ``seed + 2``).

    Shape
    -----
    ids ``(B, T)`` -> logits ``(B, T, vocab)``; state ``(layers, B, hidden)``.

    Examples
    --------
    >>> import torch
    >>> model = build_model(66, emb=8, hidden=16, layers=2, seed=0)
    >>> logits, state = model(torch.zeros(3, 5, dtype=torch.int64))
    >>> logits.shape, state.h.shape
    (torch.Size([3, 5, 66]), torch.Size([2, 3, 16]))
    """
    s = (None, None, None) if seed is None else (seed, seed + 1, seed + 2)
    return RecurrentModel(LSTM(emb, hidden, layers, seed=s[0]), Readout(hidden, vocab, seed=s[1]),
                          num_tokens=vocab, seed=s[2])


def stream_loss(model, ids: Tensor, *, chunk: int = 4096, streams: int = 1) -> float:
    """Mean cross-entropy (nats per token) of predicting ``ids[1:]`` from the tokens before.

    The ids are streamed through the model from the initial state in fused chunks of at
    most ``chunk`` steps with the state carried between them; nothing is learned and the
    model's mode is restored. With ``streams = S > 1`` the text is cut into S contiguous
    parts read side by side as S streams, each with its own carried state (as char-rnn
    evaluates), the last one also reading the few leftover tokens: every token but the
    first is still scored once, and only S - 1 tokens lose their context.

    Shape
    -----
    ids ``(L,)`` with L >= 2.

    Examples
    --------
    >>> import math, torch
    >>> model = build_model(5, emb=4, hidden=8, layers=1, seed=0)
    >>> ids = torch.tensor([1, 2, 3, 4] * 10)
    >>> whole, pieces = stream_loss(model, ids), stream_loss(model, ids, chunk=3)
    >>> abs(whole - pieces) < 1e-6, abs(whole - math.log(5)) < 0.3  # untrained: ~log V
    (True, True)
    >>> abs(stream_loss(model, ids, streams=3) - whole) < 0.05
    True
    """
    ids = torch.as_tensor(ids, dtype=torch.int64).reshape(-1)
    if ids.shape[0] < 2:
        raise ValueError(f"ids must hold at least 2 tokens to score, got {ids.shape[0]}")
    check_positive_int("chunk", chunk)
    check_positive_int("streams", streams)
    n = ids.shape[0] - 1
    streams = min(streams, n)
    per = n // streams
    ref = next(model.parameters())
    x, y = ids[:-1].to(ref.device), ids[1:].to(ref.device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            state = model.initial_state(streams, device=ref.device, dtype=ref.dtype)
            xs = x[: streams * per].reshape(streams, per)
            ys = y[: streams * per].reshape(streams, per)
            total, state = _score(model, xs, ys, state, chunk)
            if n > streams * per:  # the leftover tail continues the last stream
                last = state.select(torch.tensor([streams - 1], device=ref.device))
                more, _ = _score(model, x[None, streams * per :], y[None, streams * per :],
                                 last, chunk)
                total += more
    finally:
        model.train(was_training)
    return total / n


def _score(model, xs: Tensor, ys: Tensor, state, chunk: int):
    total = 0.0
    for start in range(0, xs.shape[1], chunk):
        logits, state = model(xs[:, start : start + chunk], state)
        target = ys[:, start : start + chunk]
        total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]).double(),
                                       target.reshape(-1), reduction="sum"))
    return total, state


class CharLM:
    """A trained token language model on one live stream: push text, sample text.

    Text pushed in pieces of any size (``str`` or UTF-8 ``bytes``) is encoded by the
    codec's streaming encoder and run through the model in one fused call per push; the
    state is carried between pushes (a prompt pushed in one piece gives the state of
    the same prompt pushed character by character, to float rounding). Sampling rolls the
    live state forward one token at a time (one-to-many), feeding each sampled token
    back, and yields text through the codec's streaming decoder, which never splits a
    character.

    Parameters
    ----------
    model : RecurrentModel
        A token model (``num_tokens`` equal to the codec's ``vocab_size``).
    codec : TokenCodec
        The codec the model was trained with.

    Attributes
    ----------
    steps : int
        Tokens pushed or sampled since construction or :meth:`reset`.

    Shape
    -----
    push: T tokens of text -> logits ``(T, V)``.

    Threads
    -------
    Not safe under concurrent calls, and not locked (a lock per call would cost more
    than the call): use it from one thread at a time, or hold your own lock around each
    call.

    Examples
    --------
    >>> from streamrnn.apps.lm import CharLM, build_model
    >>> from streamrnn.adapters.tokens import CharCodec
    >>> codec = CharCodec("abc ")
    >>> lm = CharLM(build_model(codec.vocab_size, emb=4, hidden=8, layers=1), codec)
    >>> lm.push("ab ").shape, lm.push("").shape, lm.push("xa").shape, lm.steps
    (torch.Size([3, 5]), torch.Size([0, 5]), torch.Size([2, 5]), 5)
    >>> lm.counts["unknown"], lm.counts["empty_pushes"]
    (1, 1)
    >>> text = lm.generate(12, temperature=0.8, top_k=3, seed=0)
    >>> len(text), set(text) <= set(codec.symbols), lm.steps
    (12, True, 17)
    >>> twin = CharLM(lm.model, codec)
    >>> _ = twin.push("ab xa")
    >>> lm.reset(); _ = lm.push("ab xa")
    >>> lm.generate(12, temperature=0.8, top_k=3, seed=0) == twin.generate(
    ...     12, temperature=0.8, top_k=3, seed=0)
    True
    """

    def __init__(self, model, codec: TokenCodec) -> None:
        if not isinstance(codec, TokenCodec):
            raise ValueError(f"codec must be a TokenCodec, got {type(codec).__name__}")
        vocab = getattr(model, "num_tokens", None)
        if vocab != codec.vocab_size:
            raise ValueError(
                f"model must read token ids of the codec's vocabulary: model.num_tokens is "
                f"{vocab!r}, codec.vocab_size is {codec.vocab_size}"
            )
        self.model, self.codec = model, codec
        ref = next(model.parameters())
        self._device, self._dtype = ref.device, ref.dtype
        self.reset()

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, *, codec: TokenCodec | None = None):
        """Load the model and codec of a checkpoint written by ``train-lm``.

        Parameters
        ----------
        path : str or path-like
            The checkpoint (a safetensors file).
        codec : TokenCodec or None
            If given, it must have the checkpoint's vocabulary (``ValueError`` naming
            both otherwise); ``None`` uses the checkpoint's codec.
        """
        tensors, _, meta = read_checkpoint(path)
        saved = codec_from_config(meta["codec"])
        if codec is not None:
            check_vocabulary(codec, meta["codec"], f"checkpoint {str(path)!r}", "the given codec")
        m = meta["model"]
        model = build_model(m["vocab"], emb=m["emb"], hidden=m["hidden"], layers=m["layers"])
        weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        live = model.state_dict()
        if set(weights) != set(live) or any(weights[k].shape != live[k].shape for k in live):
            raise ValueError(f"checkpoint {str(path)!r} model weights do not fit its "
                             f"configuration {m} (names or shapes)")
        model.load_state_dict(weights)
        model.eval()
        return cls(model, codec if codec is not None else saved)

    # -- the live stream -------------------------------------------------------------
    def reset(self) -> None:
        """Start over: the initial state, fresh encoder and decoder, zero counts."""
        self._state = self.model.initial_state(1, device=self._device, dtype=self._dtype)
        with torch.no_grad():
            self._last = self.model.readout(self._state)[0]
        self._encoder, self._decoder = self.codec.encoder(), self.codec.decoder()
        self._extra = {"empty_pushes": 0, "nonfinite_resets": 0}
        self.steps = 0

    @property
    def state(self):
        """The live state (``State``, ``(L, 1, H)``)."""
        return self._state

    @property
    def counts(self) -> dict[str, int]:
        """What the stream replaced or skipped: the encoder's counts (``unknown``
        characters, ``invalid_sequences`` / ``invalid_bytes`` of UTF-8), the decoder's
        ``invalid_bytes`` as ``decoded_invalid_bytes``, ``empty_pushes`` and
        ``nonfinite_resets``."""
        return {**self._encoder.counts,
                "decoded_invalid_bytes": self._decoder.counts["invalid_bytes"], **self._extra}

    def push(self, text: str | bytes) -> Tensor:
        """Push the next piece of text; return the logits after each of its tokens.

        An empty piece changes nothing (counted in ``counts["empty_pushes"]``); bytes of
        an incomplete UTF-8 character are held until it completes.

        Shape
        -----
        ``(T, V)`` for the T tokens the piece completed (possibly 0).
        """
        if isinstance(text, str | bytes | bytearray) and len(text) == 0:
            self._extra["empty_pushes"] += 1
            return self._last.new_zeros((0, self.codec.vocab_size))
        return self.push_ids(self._encoder.push(text))

    def push_ids(self, ids) -> Tensor:
        """Push token ids (one fused call per slice of 8192 steps).

        Shape
        -----
        ids ``(T,)`` -> logits ``(T, V)``.
        """
        x = torch.as_tensor(ids, dtype=torch.int64).reshape(-1)
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.codec.vocab_size):
            bad = int(x[(x < 0) | (x >= self.codec.vocab_size)][0])
            raise ValueError(f"ids must be in [0, {self.codec.vocab_size}), got {bad}")
        if x.numel() == 0:
            return self._last.new_zeros((0, self.codec.vocab_size))
        parts, state = [], self._state
        with torch.no_grad():
            for start in range(0, x.shape[0], _SLICE):
                y, state = self.model(x[None, start : start + _SLICE].to(self._device), state)
                parts.append(y[0])
        out = parts[0] if len(parts) == 1 else torch.cat(parts)
        self.steps += x.shape[0]
        if bool(state.is_finite().all()):
            self._state, self._last = state, out[-1]
        else:  # never keep a poisoned state: start over, and say so
            self._extra["nonfinite_resets"] += 1
            self._state = self.model.initial_state(1, device=self._device, dtype=self._dtype)
            with torch.no_grad():
                self._last = self.model.readout(self._state)[0]
        return out

    # -- one-to-many -----------------------------------------------------------------
    def sample(self, n: int, *, temperature: float = 1.0, top_k: int | None = None,
               seed: int | None = None) -> Iterator[str]:
        """Sample ``n`` tokens from the live state, yielding text as it becomes final.

        Each token is drawn from ``softmax(logits / temperature)`` restricted to the
        ``top_k`` most likely tokens, with a local generator seeded with ``seed``
        (``None``: a fresh random seed), then pushed, so the live state moves on with
        the text. The decoder never yields part of a character (pieces may be empty).
        Arguments are checked when this is called, not when the iterator starts.
        """
        check_positive_int("n", n)
        check_positive_float("temperature", temperature)
        check_positive_int("top_k", top_k, none_ok=True)
        check_int("seed", seed, none_ok=True)
        gen = torch.Generator(device="cpu")
        if seed is None:
            gen.seed()
        else:
            gen.manual_seed(seed)
        return self._sample(n, temperature, top_k, gen)

    def _sample(self, n: int, temperature: float, top_k, gen) -> Iterator[str]:
        for _ in range(n):
            token = draw(self._last, temperature, top_k, gen)
            self.push_ids([token])
            yield self._decoder.push([token])

    def generate(self, n: int, *, temperature: float = 1.0, top_k: int | None = None,
                 seed: int | None = None) -> str:
        """:meth:`sample` ``n`` tokens and return the text (held bytes flushed)."""
        text = "".join(self.sample(n, temperature=temperature, top_k=top_k, seed=seed))
        return text + self._decoder.flush()

    def flush(self) -> str:
        """Text of any sampled bytes still held by the decoder (an incomplete character
        is invalid: the codec's ``errors`` policy)."""
        return self._decoder.flush()

    def evaluate(self, text: str | bytes, *, chunk: int = 4096) -> float:
        """Nats per token of predicting each token of ``text`` from the ones before it,
        streamed from the initial state (the live state is not touched)."""
        ids = self.codec.encode(text)
        return stream_loss(self.model, torch.tensor(ids, dtype=torch.int64), chunk=chunk)


def draw(logits: Tensor, temperature: float, top_k: int | None, gen) -> int:
    """One token id from ``softmax(logits / temperature)`` over the ``top_k`` best."""
    scaled = logits.detach().double().cpu() / temperature
    if top_k is not None and top_k < scaled.shape[0]:
        kth = torch.topk(scaled, top_k).values[-1]
        scaled = scaled.masked_fill(scaled < kth, -math.inf)
    return int(torch.multinomial(torch.softmax(scaled, -1), 1, generator=gen))
