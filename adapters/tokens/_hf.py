"""The Hugging Face ``tokenizers`` codec. Re-exported by :mod:`streamrnn.adapters.tokens`."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

from streamrnn.utils import check_bool, check_positive_int

from ._base import StreamDecoder, StreamEncoder, TokenCodec
from ._text import SPACE, SPACE_CUT, check_config

__all__ = ["HFCodec"]

_BYTE_TOKEN = re.compile("<0x[0-9A-Fa-f]{2}>")


def _tokenizer_class() -> type:
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:  # pragma: no cover - tokenizers is in the test extras
        raise ImportError(
            "HFCodec needs the optional dependency 'tokenizers': pip install 'streamrnn[hf]'"
        ) from exc
    return Tokenizer


class HFCodec(TokenCodec):
    """Codec of a Hugging Face ``tokenizers.Tokenizer`` (optional dependency).

    The codec works on a private copy of ``tokenizer`` with truncation and padding off (a
    stream has no length limit), and encodes without special tokens (a stream has no
    natural start or end: add BOS / EOS ids yourself). ``vocab_size`` is one more than the
    largest id, so it sizes an embedding; ids that no token holds are refused on decode.

    **Streaming encoding.** The ids of a whole text are not prefix-stable: ``"hel"`` and
    ``"hello"`` tokenize differently. The stream encoder holds back the text after the
    last *cut* and encodes the text before it, so its ids lag by the last word;
    :meth:`StreamEncoder.flush` encodes the rest. A cut is a position where (1) a
    non-space character is followed by a Unicode ``White_Space`` character, (2) the
    pre-tokenizer puts no piece across it, (3) the normalised text after it still starts
    with whitespace, and (4) on the pending text ``encode(a + b) == encode(a) +
    encode(b)``. Rules (1) to (3) make the two sides independent whatever text follows,
    for pipelines built from pre-tokenizers that split at whitespace (ByteLevel with its
    regex, Whitespace, WhitespaceSplit, BertPreTokenizer, Metaspace, Digits, Punctuation)
    and normalizers that act per character (NFC / NFKC / NFD / NFKD, Lowercase,
    StripAccents, BertNormalizer); rule (4) catches what the pending text shows (an added
    token with ``rstrip`` that absorbs the spaces after it, ``add_prefix_space`` before a
    line break, a Strip normalizer); and (5) the text before the cut does not end with an
    added token with ``rstrip``: whether the spaces it absorbs become tokens depends on
    what follows them (``"<mask> <"`` vs ``"<mask> <|endoftext|>"``). Guarantee: for such
    tokenizers the ids of all pushes and the flush equal ``encode`` of all the text. Not
    covered: added tokens that contain whitespace, BPE dropout, custom pre-tokenizers
    that join words across whitespace. Without a pre-tokenizer nothing is cut before the
    flush. One exception bounds memory: when more than ``max_pending`` characters are held
    with no cut (a long run without spaces), they are encoded as if the stream ended there
    and ``counts["forced_cuts"]`` records it; only then may the ids differ from ``encode``.

    **Streaming decoding.** The decoder re-decodes a window of the last tokens and emits
    the new text once it is longer, extends the window's previous text unchanged, and
    does not end in U+FFFD (the bytes of an incomplete character, as byte-level and
    byte-fallback tokens make). The window starts at the previously emitted tokens, so
    decoders that treat the first or last token specially (Metaspace, WordPiece, BPE
    suffixes) see the same context as a whole decode. A run of ``<0xXX>`` tokens under a
    ByteFallback decoder is held until a token that is not a byte ends it: that decoder
    decides a run at once, one invalid byte turning every byte of the run into U+FFFD.
    Guarantee: the concatenation of the pushes and the flush equals :meth:`decode` of
    all ids for decoders where a token's text depends on its neighbours only (checked
    for ByteLevel, WordPiece, Metaspace, BPEDecoder, ByteFallback with Fuse, and CTC).
    The tokenizer's decoder substitutes U+FFFD for invalid bytes itself, so ``errors``
    applies to the text given to encode, not to decoding.

    Parameters
    ----------
    tokenizer : tokenizers.Tokenizer
        The tokenizer (copied).
    errors : {"replace", "strict"}
        Policy for invalid UTF-8 in ``bytes`` input.
    skip_special_tokens : bool
        Whether decoding drops special tokens (the default of ``Tokenizer.decode``).
    max_pending : int
        Most characters a stream encoder holds back before it forces a cut (>= 1).

    Attributes
    ----------
    tokenizer : tokenizers.Tokenizer
        The codec's copy of the tokenizer.
    unknown_id : int or None
        Id of the model's ``unk_token`` if it declares one (BPE, WordPiece, WordLevel);
        its occurrences in encoded ids are counted in ``counts["unknown"]``.

    Threads
    -------
    Keeps nothing between calls (built once, then only read): safe to share between
    threads.

    Examples
    --------
    >>> from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    >>> tok = Tokenizer(models.BPE())
    >>> tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    >>> tok.decoder = decoders.ByteLevel()
    >>> trainer = trainers.BpeTrainer(vocab_size=300, show_progress=False,
    ...                               initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    >>> tok.train_from_iterator(["a tiny test of a tiny tokenizer"] * 8, trainer)
    >>> codec = HFCodec(tok)
    >>> enc = codec.encoder()
    >>> pushed = [enc.push(piece) for piece in ["a ti", "ny", " te", "st"]] + [enc.flush()]
    >>> [[codec.tokenizer.id_to_token(i) for i in ids] for ids in pushed]
    [['a'], [], ['Ġtiny'], [], ['Ġtest']]
    >>> sum(pushed, []) == codec.encode("a tiny test")
    True
    >>> dec = codec.decoder()
    >>> "".join(dec.push([i]) for i in codec.encode("a tiny ✓")) + dec.flush()
    'a tiny ✓'
    >>> HFCodec.from_config(codec.config(), tok).vocab_size == codec.vocab_size
    True
    """

    kind = "hf"
    _vocab_keys = ("kind", "vocab_size", "vocab_sha256")

    def __init__(
        self,
        tokenizer: Any,
        *,
        errors: str = "replace",
        skip_special_tokens: bool = True,
        max_pending: int = 16384,
    ) -> None:
        super().__init__(errors=errors)
        tokenizer_class = _tokenizer_class()
        if not isinstance(tokenizer, tokenizer_class):
            raise ValueError(
                f"tokenizer must be a tokenizers.Tokenizer, got {type(tokenizer).__name__}"
            )
        self.skip_special_tokens = check_bool("skip_special_tokens", skip_special_tokens)
        self.max_pending = check_positive_int("max_pending", max_pending)
        try:
            serialised = tokenizer.to_str()
        except Exception as exc:  # tokenizers raises a bare Exception for custom parts
            raise ValueError(
                f"tokenizer must be serialisable, as HFCodec keeps a copy made with "
                f"to_str(); it raised: {exc}"
            ) from exc
        self.tokenizer = tokenizer_class.from_str(serialised)
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        if hasattr(tokenizer, "encode_special_tokens"):  # tokenizers >= 0.19
            self.tokenizer.encode_special_tokens = tokenizer.encode_special_tokens
        vocab = self.tokenizer.get_vocab(with_added_tokens=True)
        if not vocab:
            raise ValueError("tokenizer must have a vocabulary, got an empty one")
        taken = set(vocab.values())
        self._vocab_size = max(taken) + 1
        if len(taken) != self._vocab_size:
            self._holes = frozenset(range(self._vocab_size)) - taken
        listing = json.dumps(sorted((i, t) for t, i in vocab.items()), ensure_ascii=False)
        self._sha256 = hashlib.sha256(listing.encode("utf-8")).hexdigest()
        # ByteFallback decodes a run of <0xXX> tokens at once (one invalid byte turns the
        # whole run into U+FFFD), so a stream decoder holds such a run until it ends
        # (tokens that decoding skips do not end a run)
        self._byte_run_ids: frozenset[int] = frozenset()
        self._skipped_ids: frozenset[int] = frozenset()
        added = self.tokenizer.get_added_tokens_decoder()
        if skip_special_tokens:
            self._skipped_ids = frozenset(i for i, t in added.items() if t.special)
        # An added token with rstrip absorbs the spaces after it, or not, depending on
        # what follows them (another added token takes no prefix space): no cut after one.
        self._rstrip_tokens = tuple(t.content for t in added.values() if t.rstrip)
        if "ByteFallback" in json.dumps(json.loads(serialised).get("decoder")):
            self._byte_run_ids = frozenset(i for t, i in vocab.items() if _BYTE_TOKEN.fullmatch(t))
        unk = getattr(self.tokenizer.model, "unk_token", None)
        self.unknown_id = self.tokenizer.token_to_id(unk) if unk else None

    @property
    def vocab_size(self) -> int:
        """One more than the largest id of the vocabulary (added tokens included)."""
        return self._vocab_size

    def __repr__(self) -> str:
        return (
            f"HFCodec(<tokenizers.Tokenizer, vocab_size={self._vocab_size}>, "
            f"errors={self.errors!r}, skip_special_tokens={self.skip_special_tokens!r}, "
            f"max_pending={self.max_pending!r})"
        )

    def config(self) -> dict[str, Any]:
        """A JSON-able dict: ``kind``, ``version``, the settings, ``vocab_size`` and
        ``vocab_sha256`` (a hash of every ``(id, token)`` pair). It does not hold the
        tokenizer; save that with ``tokenizer.save(path)``."""
        return {
            **super().config(),
            "skip_special_tokens": self.skip_special_tokens,
            "max_pending": self.max_pending,
            "vocab_size": self._vocab_size,
            "vocab_sha256": self._sha256,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any], tokenizer: Any) -> HFCodec:
        """Rebuild a codec from its :meth:`config` and the tokenizer, checking that the
        tokenizer has the config's vocabulary."""
        check_config(config, cls.kind, ("vocab_size", "vocab_sha256"))
        codec = cls(
            tokenizer,
            errors=config.get("errors", "replace"),
            skip_special_tokens=config.get("skip_special_tokens", True),
            max_pending=config.get("max_pending", 16384),
        )
        codec.check_compatible(config)
        return codec

    def encoder(self) -> StreamEncoder:
        """A fresh :class:`StreamEncoder` that holds back the last word (see above)."""
        return _HFStreamEncoder(self)

    def decoder(self) -> StreamDecoder:
        """A fresh :class:`StreamDecoder` that holds back incomplete characters."""
        return _HFStreamDecoder(self)

    def _mismatch(self, other: Mapping[str, Any]) -> str:
        return (
            f"the given config has vocab_size {other.get('vocab_size')!r} and vocab_sha256 "
            f"{str(other.get('vocab_sha256'))[:12]!r}..., this tokenizer has "
            f"{self._vocab_size} and {self._sha256[:12]!r}..."
        )

    def _ids(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def _encode_text(self, text: str, counts: dict[str, int]) -> list[int]:
        return self._count_unknown(self._ids(text) if text else [], counts)

    def _count_unknown(self, ids: list[int], counts: dict[str, int]) -> list[int]:
        if self.unknown_id is not None:
            counts["unknown"] += ids.count(self.unknown_id)
        return ids

    def _decode_ids(self, ids: list[int], counts: dict[str, int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=self.skip_special_tokens)

    def _can_cut(self, text: str, cut: int) -> bool:
        """Whether the pre-tokenizer splits ``text`` at ``cut`` and the text after the cut
        still starts with whitespace once normalised (BERT's normaliser, for one, deletes
        control characters such as U+000C, which would glue the words around it)."""
        pre, norm = self.tokenizer.pre_tokenizer, self.tokenizer.normalizer
        if pre is None or (self._rstrip_tokens and text[:cut].endswith(self._rstrip_tokens)):
            return False
        if norm is not None and not SPACE.match(norm.normalize_str(text[cut:])):
            return False
        return not any(start < cut < end for _, (start, end) in pre.pre_tokenize_str(text))


class _HFStreamEncoder(StreamEncoder):
    """Holds the text after the last verified cut (see :class:`HFCodec`)."""

    codec: HFCodec

    def __init__(self, codec: HFCodec) -> None:
        super().__init__(codec)
        self._pending = ""  # text not encoded yet
        self._scanned = 0  # cuts before this index of _pending were already tried

    def reset(self) -> None:
        super().reset()
        self._pending, self._scanned = "", 0

    def _save(self) -> tuple[Any, ...]:
        return (*super()._save(), self._pending, self._scanned)

    def _load(self, saved: tuple[Any, ...]) -> None:
        super()._load(saved)
        self._pending, self._scanned = saved[-2], saved[-1]

    def _step(self, text: str, final: bool) -> list[int]:
        codec = self.codec
        pending = self._pending + text
        if final:
            self._pending, self._scanned = "", 0
            return codec._encode_text(pending, self._counts)
        cut = 0
        for match in SPACE_CUT.finditer(pending, max(self._scanned - 1, 0)):
            cut = match.end()
        self._pending, self._scanned = pending, len(pending)
        if cut:
            head = codec._ids(pending[:cut])
            if codec._can_cut(pending, cut) and codec._ids(pending) == head + codec._ids(
                pending[cut:]
            ):
                self._pending, self._scanned = pending[cut:], len(pending) - cut
                return codec._count_unknown(head, self._counts)
        if len(pending) > codec.max_pending:  # no cut in sight: bound the memory
            self._counts["forced_cuts"] += 1
            self._pending, self._scanned = "", 0
            return codec._encode_text(pending, self._counts)
        return []


class _HFStreamDecoder(StreamDecoder):
    """Re-decodes a window of recent ids and emits the settled new text."""

    codec: HFCodec

    def __init__(self, codec: HFCodec) -> None:
        super().__init__(codec)
        self._window: list[int] = []  # ids from the start of the last emitted chunk
        self._read = 0  # ids of the window whose text was emitted

    def _reset_state(self) -> None:
        super()._reset_state()
        self._window, self._read = [], 0

    def _step(self, ids: list[int], final: bool) -> str:
        if not ids and not final:
            return ""
        self._window.extend(ids)
        if not final and self.codec._byte_run_ids:
            skipped = self.codec._skipped_ids
            last = next((i for i in reversed(self._window) if i not in skipped), None)
            if last in self.codec._byte_run_ids:
                return ""
        decode = self.codec.tokenizer.decode
        skip = self.codec.skip_special_tokens
        before = decode(self._window[: self._read], skip_special_tokens=skip)
        after = decode(self._window, skip_special_tokens=skip)
        if final:
            return after[len(before) :]
        if len(after) > len(before) and after.startswith(before) and after[-1] != "\ufffd":
            self._window = self._window[self._read :]
            self._read = len(self._window)
            return after[len(before) :]
        return ""
