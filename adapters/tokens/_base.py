"""Shared base of the token codecs and their streaming encoder and decoder.

Re-exported by :mod:`streamrnn.adapters.tokens`; import from there.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from ._text import (
    CONFIG_VERSION,
    Utf8Reader,
    as_ids,
    check_errors,
    new_counts,
    read_utf8,
)

__all__ = ["StreamDecoder", "StreamEncoder", "TokenCodec"]


def _add(total: dict[str, int], more: dict[str, int]) -> None:
    for key, value in more.items():
        total[key] += value


class TokenCodec:
    """Base of the token codecs: text to integer ids and back, offline and streaming.

    A codec is a fixed vocabulary of ``vocab_size`` ids. :meth:`encode` and :meth:`decode`
    work on a whole text; :meth:`encoder` and :meth:`decoder` make a fresh
    :class:`StreamEncoder` / :class:`StreamDecoder` for one live stream whose pushes give
    the same ids and text as the offline call on everything pushed.

    Text may come as ``str`` or as UTF-8 ``bytes``. Invalid UTF-8 (and lone surrogates in
    a ``str``) follow the ``errors`` policy: ``"replace"`` substitutes one U+FFFD per
    invalid sequence, as ``bytes.decode(..., "replace")`` does, and counts it;
    ``"strict"`` raises ``ValueError`` naming the byte offset. Use :class:`ByteCodec`,
    :class:`CharCodec` or :class:`HFCodec`; this class only holds what they share.

    Parameters
    ----------
    errors : {"replace", "strict"}
        Policy for invalid UTF-8.

    Attributes
    ----------
    counts : dict of str to int
        What the offline :meth:`encode` / :meth:`decode` calls of this codec replaced or
        mapped, by key: ``invalid_sequences`` (U+FFFD substituted), ``invalid_bytes``
        (bytes of the invalid UTF-8 sequences; a lone surrogate counts as a sequence of
        no byte), ``unknown`` (characters or tokens mapped to the unknown id),
        ``forced_cuts`` (streaming only, see :class:`HFCodec`). Each streaming encoder or
        decoder keeps its own counts.

    Threads
    -------
    Keeps nothing between calls (built once, then only read): safe to share between
    threads.

    Examples
    --------
    >>> from streamrnn.adapters.tokens import ByteCodec, TokenCodec
    >>> codec = ByteCodec()
    >>> isinstance(codec, TokenCodec), codec.vocab_size
    (True, 256)
    >>> codec.decode(codec.encode("naïve"))
    'naïve'
    >>> codec.encode(b"a\\xffb"), codec.counts["invalid_sequences"]
    ([97, 239, 191, 189, 98], 1)
    """

    kind: ClassVar[str] = ""
    _vocab_keys: ClassVar[tuple[str, ...]] = ("kind",)

    def __init__(self, *, errors: str = "replace") -> None:
        self.errors = check_errors(errors)
        self._counts = new_counts()

    @property
    def vocab_size(self) -> int:
        """Number of ids: every id is in ``[0, vocab_size)``."""
        raise NotImplementedError

    @property
    def counts(self) -> dict[str, int]:
        """A copy of this codec's counts (see the class docstring)."""
        return dict(self._counts)

    def encode(self, text: str | bytes) -> list[int]:
        """The ids of a whole text.

        Parameters
        ----------
        text : str or bytes
            Text, or its UTF-8 encoding.

        Returns
        -------
        list of int
            Token ids.

        Shape
        -----
        Returns ``(T,)`` for T tokens.
        """
        counts = new_counts()
        ids = self._encode_text(read_utf8(text, self.errors, counts), counts)
        _add(self._counts, counts)
        return ids

    def decode(self, ids: Any) -> str:
        """The text of a whole sequence of ids.

        Parameters
        ----------
        ids : iterable of int
            Token ids, each in ``[0, vocab_size)``; a list, ``bytes``, array or tensor.

        Returns
        -------
        str
            The text; a ``ValueError`` names the first id that is not an int in range.

        Shape
        -----
        ``ids``: ``(T,)`` for T tokens.
        """
        counts = new_counts()
        text = self._decode_ids(as_ids(ids, self.vocab_size, self._holes), counts)
        _add(self._counts, counts)
        return text

    def encoder(self) -> StreamEncoder:
        """A fresh :class:`StreamEncoder` for one stream of text."""
        return StreamEncoder(self)

    def decoder(self) -> StreamDecoder:
        """A fresh :class:`StreamDecoder` for one stream of ids."""
        return StreamDecoder(self)

    def config(self) -> dict[str, Any]:
        """A JSON-able dict that rebuilds this codec with ``from_config`` (store it in
        checkpoints and check it with :meth:`check_compatible`)."""
        return {"kind": self.kind, "version": CONFIG_VERSION, "errors": self.errors}

    def check_compatible(self, other_config: Mapping[str, Any]) -> None:
        """Raise ``ValueError`` unless ``other_config`` has this codec's vocabulary.

        Only the id mapping is compared (kind, alphabet, vocabulary hash); the ``errors``
        policy and other settings may differ.

        Parameters
        ----------
        other_config : dict
            A ``config()`` of another codec, e.g. read from a checkpoint.
        """
        if not isinstance(other_config, Mapping):
            raise ValueError(
                "other_config must be a mapping made by a codec's config(), "
                f"got {type(other_config).__name__}"
            )
        mine = self.config()
        if other_config.get("kind") != self.kind:
            raise ValueError(
                f"vocabulary does not match: the given config is of kind "
                f"{other_config.get('kind')!r}, this codec is {self.kind!r}"
            )
        if any(other_config.get(key) != mine[key] for key in self._vocab_keys):
            raise ValueError(f"vocabulary does not match: {self._mismatch(other_config)}")

    # -- hooks for the subclasses ------------------------------------------------------
    _holes: frozenset[int] = frozenset()

    def _mismatch(self, other: Mapping[str, Any]) -> str:
        mine = self.config()
        return "; ".join(
            f"{key} is {other.get(key)!r} in the given config, {mine[key]!r} here"
            for key in self._vocab_keys
            if other.get(key) != mine[key]
        )

    def _encode_text(self, text: str, counts: dict[str, int]) -> list[int]:
        raise NotImplementedError

    def _decode_ids(self, ids: list[int], counts: dict[str, int]) -> str:
        raise NotImplementedError

    def _decode_step(self, ids: list[int], reader: Utf8Reader, final: bool) -> str:
        """Streaming decode of validated ids; the reader holds incomplete characters."""
        raise NotImplementedError


class StreamEncoder:
    """Incremental encoder of one text stream, made by a codec's ``encoder()``.

    :meth:`push` takes the next piece of text as ``str`` or UTF-8 ``bytes`` (mixed
    freely, any size, empty included) and returns the ids that are final; :meth:`flush`
    ends the stream and returns the rest. The concatenation of all returned ids equals
    ``codec.encode`` of everything pushed (the pieces' UTF-8 bytes, joined). A multi-byte
    character split across pushes is held until it is complete. A push that raises
    ``ValueError`` (invalid input under ``errors="strict"``) leaves the encoder exactly
    as it was. Not thread-safe: one encoder per stream.

    Attributes
    ----------
    counts : dict of str to int
        What this stream replaced or mapped (keys as in :class:`TokenCodec`).

    Threads
    -------
    Not safe under concurrent calls, and not locked (a lock per call would cost more
    than the call): use it from one thread at a time, or hold your own lock around each
    call.

    Examples
    --------
    >>> from streamrnn.adapters.tokens import CharCodec
    >>> enc = CharCodec("abc€").encoder()
    >>> euro = "€".encode()
    >>> enc.push(b"ab" + euro[:1]), enc.push(euro[1:]), enc.push("ca"), enc.flush()
    ([1, 2], [4], [3, 1], [])
    >>> enc.push(b"\\xe2\\x82"), enc.flush(), enc.counts["invalid_sequences"]
    ([], [0], 1)
    """

    def __init__(self, codec: TokenCodec) -> None:
        self.codec = codec
        self._counts = new_counts()
        self._reader = Utf8Reader(codec.errors, self._counts, "input")

    @property
    def counts(self) -> dict[str, int]:
        """A copy of this stream's counts."""
        return dict(self._counts)

    def push(self, piece: str | bytes) -> list[int]:
        """Feed the next piece of text; return the ids that are now final.

        Shape
        -----
        Returns ``(T,)`` for T tokens (possibly 0).
        """
        saved = self._save()
        try:
            return self._step(self._reader.feed(piece), final=False)
        except ValueError:
            self._load(saved)
            raise

    def flush(self) -> list[int]:
        """End the stream: return the ids of everything held back, and start afresh.

        An incomplete character left at the end is invalid input (``errors`` policy).
        """
        saved = self._save()
        try:
            ids = self._step(self._reader.feed(b"", final=True), final=True)
        except ValueError:
            self._load(saved)
            raise
        self._reader.reset()
        return ids

    def reset(self) -> None:
        """Drop anything held back and zero the counts."""
        self._reader.reset()
        self._counts.update(new_counts())

    def _save(self) -> tuple[Any, ...]:
        return self._reader.save(), dict(self._counts)

    def _load(self, saved: tuple[Any, ...]) -> None:
        self._reader.load(saved[0])
        self._counts.update(saved[1])

    def _step(self, text: str, final: bool) -> list[int]:
        return self.codec._encode_text(text, self._counts) if text else []


class StreamDecoder:
    """Incremental decoder of one stream of ids, made by a codec's ``decoder()``.

    :meth:`push` takes the next ids (any number, none included) and returns the text
    that is final; it never returns part of a character: bytes of an incomplete UTF-8
    sequence (``ByteCodec``) or tokens that end inside one (``HFCodec``) are held until
    the character is complete. The concatenation of all pushes and :meth:`flush` equals
    ``codec.decode`` of all ids. "Character" means code point: a grapheme cluster (an
    emoji ZWJ sequence, a flag, a letter with combining marks) can still be split across
    pushes, each piece being valid text. Not thread-safe: one decoder per stream.

    Attributes
    ----------
    counts : dict of str to int
        What this stream replaced (keys as in :class:`TokenCodec`).

    Threads
    -------
    Not safe under concurrent calls, and not locked (a lock per call would cost more
    than the call): use it from one thread at a time, or hold your own lock around each
    call.

    Examples
    --------
    >>> from streamrnn.adapters.tokens import ByteCodec
    >>> dec = ByteCodec().decoder()
    >>> ids = list("h€".encode())
    >>> dec.push(ids[:2]), dec.push(ids[2:3]), dec.push(ids[3:]), dec.flush()
    ('h', '', '€', '')
    >>> dec.push([0xE2]), dec.flush(), dec.counts["invalid_bytes"]
    ('', '�', 1)
    """

    def __init__(self, codec: TokenCodec) -> None:
        self.codec = codec
        self._counts = new_counts()
        self._reader = Utf8Reader(codec.errors, self._counts, "decoded ids")

    @property
    def counts(self) -> dict[str, int]:
        """A copy of this stream's counts."""
        return dict(self._counts)

    def push(self, ids: Any) -> str:
        """Feed the next ids; return the text that is now final (never a partial character).

        Shape
        -----
        ``ids``: ``(T,)`` for T tokens (possibly 0).
        """
        return self._step(as_ids(ids, self.codec.vocab_size, self.codec._holes), final=False)

    def flush(self) -> str:
        """End the stream: return the text of everything held back, and start afresh.

        Bytes of a character that never completed are invalid (``errors`` policy).
        """
        text = self._step([], final=True)
        self._reset_state()
        return text

    def reset(self) -> None:
        """Drop anything held back and zero the counts."""
        self._reset_state()
        self._counts.update(new_counts())

    def _reset_state(self) -> None:
        self._reader.reset()

    def _step(self, ids: list[int], final: bool) -> str:
        return self.codec._decode_step(ids, self._reader, final)
