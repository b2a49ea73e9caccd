"""Text to token ids and back, offline and on live streams.

Three codecs share one interface (:class:`TokenCodec`):

- :class:`ByteCodec` — 256 ids, the UTF-8 bytes of the text;
- :class:`CharCodec` — one id per character of an alphabet, plus an unknown id;
- :class:`HFCodec` — a Hugging Face ``tokenizers.Tokenizer`` (optional dependency).

Each has ``vocab_size``, ``encode(text)`` and ``decode(ids)`` for whole texts, and
``encoder()`` / ``decoder()`` for one live stream: a :class:`StreamEncoder` takes text in
pieces of any size, as ``str`` or UTF-8 ``bytes`` mixed, and a :class:`StreamDecoder`
takes ids in chunks of any size. Streaming is exact: the ids (text) of all pushes and the
flush equal the offline ``encode`` (``decode``) of everything pushed, and a character is
never split — bytes of an incomplete UTF-8 sequence are held until it completes (see
:class:`HFCodec` for what a subword tokenizer needs on top).

Invalid UTF-8 follows the ``errors`` keyword of every codec: ``"replace"`` substitutes
one U+FFFD per invalid sequence (as ``bytes.decode(..., "replace")``) and counts it in
``counts``; ``"strict"`` raises ``ValueError`` naming the byte offset, and the failed push
changes nothing. Bad ids raise ``ValueError`` naming the position and the value.

A codec's ``config()`` is a JSON-able dict to store with a model checkpoint;
:func:`codec_from_config` rebuilds the codec and ``check_compatible(config)`` refuses a
checkpoint made with another vocabulary.

Examples
--------
>>> from streamrnn.adapters.tokens import ByteCodec, CharCodec
>>> enc = CharCodec("abcdefghijklmnopqrstuvwxyz ").encoder()
>>> enc.push("hello wo") + enc.push(b"rld") + enc.flush()
[9, 6, 13, 13, 16, 1, 24, 16, 19, 13, 5]
>>> dec = ByteCodec().decoder()
>>> [dec.push([b]) for b in "é!".encode()]
['', 'é', '!']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ._base import StreamDecoder, StreamEncoder, TokenCodec
from ._hf import HFCodec
from ._text import Utf8Reader, char_repr, check_config, decode_text, read_utf8

__all__ = [
    "ByteCodec",
    "CharCodec",
    "HFCodec",
    "StreamDecoder",
    "StreamEncoder",
    "TokenCodec",
    "codec_from_config",
    "decode_text",
]



class ByteCodec(TokenCodec):
    """Byte-level codec: the ids of a text are its UTF-8 bytes (``vocab_size`` 256).

    Input ``bytes`` are read as UTF-8 like any text: under ``errors="replace"`` an
    invalid sequence is encoded as the three bytes of U+FFFD, so that ``decode(encode(x))``
    is always valid text. Decoding ids that are not valid UTF-8 (a model can emit any
    byte) follows the same policy; the streaming decoder holds the bytes of an incomplete
    character until the next push.

    Parameters
    ----------
    errors : {"replace", "strict"}
        Policy for invalid UTF-8, in text to encode and in ids to decode.

    Threads
    -------
    Keeps nothing between calls (built once, then only read): safe to share between
    threads.

    Examples
    --------
    >>> codec = ByteCodec()
    >>> codec.encode("hé"), codec.decode([104, 195, 169])
    ([104, 195, 169], 'hé')
    >>> codec.decode([104, 0xFF]), codec.counts["invalid_bytes"]
    ('h�', 1)
    >>> ByteCodec(errors="strict").decode([104, 0xFF])
    Traceback (most recent call last):
    ...
    ValueError: invalid UTF-8 at byte 1 of the decoded ids (ff: invalid start byte); ...
    >>> codec.decode([104, 256])
    Traceback (most recent call last):
    ...
    ValueError: ids[1] = 256 is not a token id: ids must be in [0, 256)
    >>> ByteCodec.from_config(codec.config()).check_compatible(codec.config())
    """

    kind = "byte"

    @property
    def vocab_size(self) -> int:
        """256: one id per byte value."""
        return 256

    def __repr__(self) -> str:
        return f"ByteCodec(errors={self.errors!r})"

    def config(self) -> dict[str, Any]:
        """A JSON-able dict: ``kind``, ``version``, ``errors``, ``vocab_size``."""
        return {**super().config(), "vocab_size": 256}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ByteCodec:
        """Rebuild a codec from its :meth:`config`."""
        check_config(config, cls.kind, ())
        return cls(errors=config.get("errors", "replace"))

    def _encode_text(self, text: str, counts: dict[str, int]) -> list[int]:
        return list(text.encode("utf-8"))

    def _decode_ids(self, ids: list[int], counts: dict[str, int]) -> str:
        return read_utf8(bytes(ids), self.errors, counts, "decoded ids")

    def _decode_step(self, ids: list[int], reader: Utf8Reader, final: bool) -> str:
        return reader.feed(bytes(ids), final)


class CharCodec(TokenCodec):
    """Character-level codec over a fixed alphabet, with an unknown id.

    The vocabulary is the set of characters (Unicode code points, without
    normalisation: ``"é"`` and ``"e\\u0301"`` differ) of ``alphabet_or_corpus``, sorted
    by code point. The ``unknown`` symbol takes id 0 and the alphabet ids 1, 2, ...;
    every character outside the alphabet is encoded as id 0 and counted in
    ``counts["unknown"]``, and id 0 decodes to the unknown symbol. The unknown symbol
    itself is in the vocabulary, so it is not counted; with the default U+FFFD, invalid
    UTF-8 replaced under ``errors="replace"`` lands on id 0 and is counted as invalid.

    Parameters
    ----------
    alphabet_or_corpus : str or iterable of str
        A corpus whose distinct characters make the alphabet, or an iterable of single
        characters. Order and repeats do not matter.
    unknown : str or None
        One character standing for everything outside the alphabet (default U+FFFD
        REPLACEMENT CHARACTER), or ``None`` to refuse such characters with a
        ``ValueError`` (then there is no unknown id).
    errors : {"replace", "strict"}
        Policy for invalid UTF-8 in ``bytes`` input.

    Attributes
    ----------
    alphabet : str
        The alphabet characters in id order (without the unknown symbol).
    symbols : str
        The symbol of every id: ``symbols[i]`` is what id ``i`` decodes to.
    unknown_id : int or None
        0, or ``None`` when ``unknown=None``.

    Threads
    -------
    Keeps nothing between calls (built once, then only read): safe to share between
    threads.

    Examples
    --------
    >>> codec = CharCodec("hello world")
    >>> codec.symbols, codec.vocab_size
    ('� dehlorw', 9)
    >>> codec.encode("hold up!")
    [4, 6, 5, 2, 1, 0, 0, 0]
    >>> codec.counts["unknown"], codec.decode([4, 3, 0])
    (3, 'he�')
    >>> CharCodec("ab", unknown=None).encode("abc")
    Traceback (most recent call last):
    ...
    ValueError: character 'c' (U+0063) at index 2 of the text is not in the alphabet ...
    >>> other = CharCodec("hello")
    >>> CharCodec.from_config(other.config()).check_compatible(other.config())
    >>> codec.check_compatible(other.config())
    Traceback (most recent call last):
    ...
    ValueError: vocabulary does not match: the given config has 4 alphabet characters, ...
    """

    kind = "char"
    _vocab_keys = ("kind", "alphabet", "unknown")

    def __init__(
        self,
        alphabet_or_corpus: str | Iterable[str],
        *,
        unknown: str | None = "\ufffd",
        errors: str = "replace",
    ) -> None:
        super().__init__(errors=errors)
        if unknown is not None and not _is_char(unknown):
            raise ValueError(
                f"unknown must be one character (not a surrogate) or None, got {unknown!r}"
            )
        chars = _alphabet(alphabet_or_corpus)
        chars.discard(unknown)
        self.unknown = unknown
        self.alphabet = "".join(sorted(chars))
        self.symbols = (unknown or "") + self.alphabet
        self.unknown_id = None if unknown is None else 0
        if not self.symbols:
            raise ValueError(
                "alphabet_or_corpus must hold at least one character when unknown=None, "
                "got an empty alphabet"
            )
        self._index = {ch: i for i, ch in enumerate(self.symbols)}

    @property
    def vocab_size(self) -> int:
        """Number of symbols: the alphabet, plus one for the unknown symbol."""
        return len(self.symbols)

    def __repr__(self) -> str:
        shown = self.alphabet if len(self.alphabet) <= 40 else self.alphabet[:40] + "..."
        return f"CharCodec({shown!r}, unknown={self.unknown!r}, errors={self.errors!r})"

    def config(self) -> dict[str, Any]:
        """A JSON-able dict: ``kind``, ``version``, ``errors``, ``alphabet``, ``unknown``."""
        return {**super().config(), "alphabet": self.alphabet, "unknown": self.unknown}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> CharCodec:
        """Rebuild a codec from its :meth:`config`."""
        check_config(config, cls.kind, ("alphabet", "unknown"))
        return cls(
            config["alphabet"],
            unknown=config["unknown"],
            errors=config.get("errors", "replace"),
        )

    def _encode_text(self, text: str, counts: dict[str, int]) -> list[int]:
        index = self._index
        if self.unknown is None:
            try:
                return [index[ch] for ch in text]
            except KeyError:
                pos = next(i for i, ch in enumerate(text) if ch not in index)
                raise ValueError(
                    f"character {char_repr(text[pos])} at index {pos} of the text is not in "
                    "the alphabet of this CharCodec (unknown=None refuses it)"
                ) from None
        ids = [index.get(ch, 0) for ch in text]
        counts["unknown"] += ids.count(0) - text.count(self.unknown)
        return ids

    def _decode_ids(self, ids: list[int], counts: dict[str, int]) -> str:
        symbols = self.symbols
        return "".join([symbols[i] for i in ids])

    def _decode_step(self, ids: list[int], reader: Utf8Reader, final: bool) -> str:
        return self._decode_ids(ids, {})

    def _mismatch(self, other: Mapping[str, Any]) -> str:
        theirs_unknown, theirs_alphabet = other.get("unknown"), other.get("alphabet")
        parts = []
        if theirs_unknown != self.unknown:
            parts.append(
                f"the unknown symbol is {theirs_unknown!r} in the given config, "
                f"{self.unknown!r} here"
            )
        if not isinstance(theirs_alphabet, str):
            parts.append(f"the given config's alphabet is {type(theirs_alphabet).__name__}")
        elif theirs_alphabet != self.alphabet:
            common = min(len(theirs_alphabet), len(self.alphabet))
            first = next(
                (i for i in range(common) if theirs_alphabet[i] != self.alphabet[i]), common
            )
            a = theirs_alphabet[first : first + 1] or "(end)"
            b = self.alphabet[first : first + 1] or "(end)"
            parts.append(
                f"the given config has {len(theirs_alphabet)} alphabet characters, this "
                f"codec has {len(self.alphabet)}; they first differ at alphabet position "
                f"{first}: {a!r} vs {b!r}"
            )
        return "; ".join(parts)


def codec_from_config(
    config: Mapping[str, Any], *, tokenizer: Any = None
) -> ByteCodec | CharCodec | HFCodec:
    """Rebuild any codec from its ``config()``, e.g. the one stored in a checkpoint.

    Parameters
    ----------
    config : dict
        A codec's ``config()``.
    tokenizer : tokenizers.Tokenizer, optional
        Required for ``kind == "hf"`` (a config holds the vocabulary's hash, not the
        tokenizer); it is checked against the config.

    Returns
    -------
    TokenCodec
        A :class:`ByteCodec`, :class:`CharCodec` or :class:`HFCodec`.

    Examples
    --------
    >>> codec = codec_from_config({"kind": "char", "version": 1, "alphabet": "ab",
    ...                            "unknown": "?"})
    >>> codec, codec.encode("abc")
    (CharCodec('ab', unknown='?', errors='replace'), [1, 2, 0])
    >>> codec_from_config({"kind": "wordpiece"})
    Traceback (most recent call last):
    ...
    ValueError: config['kind'] must be one of 'byte', 'char', 'hf', got 'wordpiece'
    """
    kind = config.get("kind") if isinstance(config, Mapping) else None
    if kind == "byte":
        return ByteCodec.from_config(config)
    if kind == "char":
        return CharCodec.from_config(config)
    if kind == "hf":
        if tokenizer is None:
            raise ValueError(
                "a config of kind 'hf' needs its tokenizer: "
                "codec_from_config(config, tokenizer=...)"
            )
        return HFCodec.from_config(config, tokenizer)
    if not isinstance(config, Mapping):
        raise ValueError(
            f"config must be a mapping made by a codec's config(), got {type(config).__name__}"
        )
    raise ValueError(f"config['kind'] must be one of 'byte', 'char', 'hf', got {kind!r}")


def _is_char(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 1 and not "\ud800" <= value <= "\udfff"


def _alphabet(source: Any) -> set[str]:
    if isinstance(source, str):
        chars = set(source)
        bad = [ch for ch in chars if not _is_char(ch)]
        if bad:
            raise ValueError(
                f"alphabet_or_corpus must be valid text, got the lone surrogate "
                f"U+{ord(min(bad)):04X}"
            )
        return chars
    if isinstance(source, (bytes, bytearray, Mapping)) or not isinstance(source, Iterable):
        raise ValueError(
            "alphabet_or_corpus must be a str corpus or an iterable of single characters, "
            f"got {type(source).__name__}"
        )
    chars = set()
    for pos, item in enumerate(source):
        if not _is_char(item):
            raise ValueError(
                f"alphabet_or_corpus item {pos} must be a single character (not a "
                f"surrogate), got {item!r}"
            )
        chars.add(item)
    return chars
