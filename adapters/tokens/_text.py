"""Private helpers of :mod:`streamrnn.adapters.tokens`: UTF-8 reading, id and config checks.

Nothing here is public API. The UTF-8 work is the standard library's: the incremental
decoder of :mod:`codecs` finds complete characters and invalid sequences; this module only
adds the policy (``"replace"`` or ``"strict"``), counting, stream offsets for messages, and
an all-or-nothing push.
"""

from __future__ import annotations

import codecs
import operator
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__: list[str] = []

ERRORS = ("replace", "strict")
COUNT_KEYS = ("invalid_sequences", "invalid_bytes", "unknown", "forced_cuts")
CONFIG_VERSION = 1

# Unicode's White_Space property (25 code points, stable since Unicode 6.3): what Rust's
# regex ``\s`` matches, so what tokenizers' pre-tokenizers split on. ``str.isspace`` also
# accepts U+001C..U+001F, which pre-tokenizers treat as punctuation, hence the explicit set.
_WS = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
# a non-space character followed by a space character: the cut goes between them
SPACE_CUT = re.compile(f"[^{_WS}](?=[{_WS}])")
SPACE = re.compile(f"[{_WS}]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def new_counts() -> dict[str, int]:
    """A zeroed counts dict with every key of :data:`COUNT_KEYS`.

    Examples
    --------
    >>> new_counts()
    {'invalid_sequences': 0, 'invalid_bytes': 0, 'unknown': 0, 'forced_cuts': 0}
    """
    return dict.fromkeys(COUNT_KEYS, 0)


def check_errors(errors: Any) -> str:
    """Validate the ``errors`` policy keyword ("replace" or "strict").

    Examples
    --------
    >>> check_errors("strict")
    'strict'
    >>> check_errors("ignore")
    Traceback (most recent call last):
    ...
    ValueError: errors must be 'replace' or 'strict', got 'ignore'
    """
    if not isinstance(errors, str) or errors not in ERRORS:
        raise ValueError(f"errors must be 'replace' or 'strict', got {errors!r}")
    return errors


def char_repr(ch: str) -> str:
    """``'x' (U+0078)``: a character and its code point, for messages."""
    return f"{ch!r} (U+{ord(ch):04X})"


class Utf8Reader:
    """Turns a stream of ``str`` and ``bytes`` pieces into complete characters.

    ``bytes`` pieces go through :func:`codecs.getincrementaldecoder` (``"utf-8"``), which
    keeps an incomplete trailing sequence for the next piece. A ``str`` piece is text whose
    UTF-8 encoding follows the bytes before it: a multi-byte character left incomplete by
    a ``bytes`` piece cannot be finished by a ``str`` piece (UTF-8 never starts a character
    with a continuation byte), so it is invalid. A lone surrogate in a ``str`` piece is
    invalid too (one U+FFFD each, as the WHATWG UTF-8 encoder does).

    Under ``"replace"`` each invalid sequence becomes one U+FFFD, exactly as
    ``bytes.decode("utf-8", "replace")`` does, and is counted in ``counts`` (shared with
    the owner). Under ``"strict"`` a ``ValueError`` names the byte offset in the stream and
    the reader is left as it was before the piece.
    """

    __slots__ = ("_counts", "_decoder", "_errors", "_fed", "_what")

    def __init__(self, errors: str, counts: dict[str, int], what: str) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self._errors = errors
        self._counts = counts
        self._what = what  # "input" or "decoded ids", for messages
        self._fed = 0  # bytes of the stream seen so far, including the pending ones

    @property
    def pending(self) -> bytes:
        """Bytes of an incomplete character held for the next piece."""
        return self._decoder.getstate()[0]

    def save(self) -> tuple[Any, ...]:
        return self._decoder.getstate(), self._fed

    def load(self, saved: tuple[Any, ...]) -> None:
        self._decoder.setstate(saved[0])
        self._fed = saved[1]

    def reset(self) -> None:
        self._decoder.reset()
        self._fed = 0

    def feed(self, piece: Any, final: bool = False) -> str:
        """Complete characters of ``piece`` (and of what was pending before it)."""
        if isinstance(piece, str):
            return self._feed_text(piece, final)
        if isinstance(piece, (bytes, bytearray, memoryview)):
            return self._feed_bytes(bytes(piece), final)
        raise ValueError(f"piece must be str or bytes, got {type(piece).__name__}")

    def _feed_text(self, text: str, final: bool) -> str:
        if not text:  # an empty piece is nothing, even in the middle of a character
            return self._feed_bytes(b"", final) if final else ""
        head = ""
        if self.pending:
            try:
                head = self._feed_bytes(b"", True)
            except ValueError as exc:
                raise ValueError(
                    f"{exc} (a str piece arrived while a multi-byte character was incomplete)"
                ) from None
        if not text.isascii():
            match = _SURROGATE.search(text)
            if match is not None:
                if self._errors == "strict":
                    raise ValueError(
                        f"lone surrogate U+{ord(match.group()):04X} at character "
                        f"{match.start()} of a str piece is not valid text (errors='strict' "
                        "refuses it, errors='replace' would substitute U+FFFD)"
                    )
                text, n = _SURROGATE.subn("\ufffd", text)
                self._counts["invalid_sequences"] += n
            self._fed += len(text.encode("utf-8"))
        else:
            self._fed += len(text)
        return head + text

    def _feed_bytes(self, piece: bytes, final: bool) -> str:
        saved = self.save()
        base = self._fed - len(saved[0][0])  # stream offset of the first pending byte
        self._fed += len(piece)
        data, out = piece, []
        while True:
            try:
                out.append(self._decoder.decode(data, final))
                return "".join(out)
            except UnicodeDecodeError as exc:
                # exc.object is pending + data: the stdlib decoder's own buffer
                whole: bytes = exc.object
                if self._errors == "strict":
                    self.load(saved)
                    raise ValueError(
                        f"invalid UTF-8 at byte {base + exc.start} of the {self._what} "
                        f"({whole[exc.start : exc.end].hex(' ')}: {exc.reason}); "
                        "errors='strict' refuses it, errors='replace' would substitute U+FFFD"
                    ) from None
                out.append(whole[: exc.start].decode("utf-8"))  # valid up to the error
                out.append("\ufffd")
                self._counts["invalid_sequences"] += 1
                self._counts["invalid_bytes"] += exc.end - exc.start
                base += exc.end
                data = whole[exc.end :]
                self._decoder.reset()


def read_utf8(text: Any, errors: str, counts: dict[str, int], what: str = "input") -> str:
    """All of ``text`` (str or bytes) as valid text under the ``errors`` policy."""
    if isinstance(text, str) and text.isascii():
        return text
    return Utf8Reader(errors, counts, what).feed(text, final=True)


def decode_text(data: Any, *, errors: str = "replace", what: str = "input"
                ) -> tuple[str, dict[str, int]]:
    """``data`` (str or UTF-8 bytes) as text under the ``errors`` policy, and the counts.

    ``"replace"``: one U+FFFD per invalid sequence, counted in ``invalid_sequences`` /
    ``invalid_bytes``; ``"strict"``: ``ValueError`` naming the byte offset.

    Examples
    --------
    >>> from streamrnn.adapters.tokens import decode_text
    >>> text, counts = decode_text(b"ok\\xff!")
    >>> text == "ok\\ufffd!", counts["invalid_sequences"]
    (True, 1)
    """
    check_errors(errors)
    counts = new_counts()
    return read_utf8(data, errors, counts, what), counts


def as_ids(ids: Any, vocab_size: int, holes: frozenset[int] = frozenset()) -> list[int]:
    """``ids`` as a list of ints, each checked to be a token id in ``[0, vocab_size)``.

    Accepts any ordered iterable of integers, including ``bytes``, NumPy arrays and
    tensors (read with ``tolist``). ``bool`` is refused: ``True`` as a token id is a bug,
    not a 1; so are sets, which have no order.
    """
    if hasattr(ids, "tolist") and not isinstance(ids, (bytes, bytearray)):
        ids = ids.tolist()
    if isinstance(ids, (str, Mapping, set, frozenset)) or not isinstance(ids, Iterable):
        raise ValueError(f"ids must be an iterable of integer token ids, got {type(ids).__name__}")
    out = list(ids)
    for pos, value in enumerate(out):
        if type(value) is not int:
            if isinstance(value, bool):
                index = None
            else:
                try:
                    index = operator.index(value)
                except TypeError:
                    index = None
            if index is None:
                raise ValueError(
                    f"ids[{pos}] must be an integer token id, got {value!r} "
                    f"({type(value).__name__})"
                )
            out[pos] = value = index
        if not 0 <= value < vocab_size or value in holes:
            rule = f"in [0, {vocab_size})" + (" and assigned to a token" if holes else "")
            raise ValueError(f"ids[{pos}] = {value} is not a token id: ids must be {rule}")
    return out


def check_config(config: Any, kind: str, required: tuple[str, ...]) -> Mapping[str, Any]:
    """Check a codec ``config()`` mapping: its kind, version and required keys."""
    if not isinstance(config, Mapping):
        raise ValueError(
            f"config must be a mapping made by a codec's config(), got {type(config).__name__}"
        )
    if config.get("kind") != kind:
        raise ValueError(f"config['kind'] must be {kind!r}, got {config.get('kind')!r}")
    if config.get("version") != CONFIG_VERSION:
        raise ValueError(
            f"config['version'] must be {CONFIG_VERSION} (the codec config format this "
            f"streamrnn reads), got {config.get('version')!r}"
        )
    missing = [key for key in required if key not in config]
    if missing:
        raise ValueError(f"config is missing the key(s) {missing} needed for kind {kind!r}")
    return config
