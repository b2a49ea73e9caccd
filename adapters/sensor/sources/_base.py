"""The Source base class of the sensor record sources, and their shared steps (private).

Every source yields ``(timestamp_seconds, {channel: value})`` (MQTT with the topic
first) where each value has been parsed once (:func:`~.._parse.parse_value`): a float,
``None`` (missing) or an :class:`~.._parse.Invalid` for the adapter's one value policy.
A source judges only the shape of its input: a malformed line (bad JSON, a missing or
bad timestamp, a wrong field count, bad UTF-8) raises ``ValueError`` naming it
(``on_error="raise"``) or is skipped and counted (``"skip"``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from streamrnn.utils import check_choice, check_number

from .._parse import Invalid, parse_value

__all__ = ["RecordIterator", "Source", "check_keys", "check_source_args", "split_lines",
           "stopped"]


class Source:
    """Base of the record sources: ``counts``, the malformed-input policy, ``close``, ``with``.

    A subclass sets :attr:`COUNTS` (the names its ``counts`` holds), implements
    ``__iter__`` and, if it holds a file, socket or connection, ``close``. It reports a
    malformed line with :meth:`bad_line` and parses a record's values with
    :meth:`values`, once.

    Parameters
    ----------
    on_error : {"raise", "skip"}
        A malformed line or message raises ``ValueError`` naming it, or is skipped and
        counted in ``counts["malformed"]``.

    Threads
    -------
    An iterator: iterate it from one thread at a time (not locked).

    Examples
    --------
    >>> from streamrnn.adapters.sensor import Source
    >>> class Pairs(Source):
    ...     def __init__(self, pairs):
    ...         super().__init__(on_error="skip")
    ...         self.pairs = pairs
    ...     def __iter__(self):
    ...         for n, (t, v) in enumerate(self.pairs, 1):
    ...             if t is None:
    ...                 self.bad_line(f"pair {n}: no time")
    ...                 continue
    ...             self.counts["records"] += 1
    ...             yield t, self.values({"x": v}, f"pair {n}")
    >>> src = Pairs([(1.0, "2.5"), (None, 3), (2.0, "hot")])
    >>> list(src), src.counts["malformed"]
    ([(1.0, {'x': 2.5}), (2.0, {'x': Invalid('hot')})], 1)
    """

    COUNTS: tuple[str, ...] = ("lines", "records", "malformed", "blank")

    def __init__(self, *, on_error: str = "raise") -> None:
        check_choice("on_error", on_error, ("raise", "skip"))
        self.on_error = on_error
        self.counts = dict.fromkeys(self.COUNTS, 0)

    def __iter__(self):
        raise NotImplementedError

    def close(self) -> None:
        """Release what the source holds (idempotent); the base holds nothing."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def bad_line(self, message: str) -> None:
        """A malformed line: raise ``ValueError(message)`` or count it, by ``on_error``."""
        if self.on_error == "raise":
            raise ValueError(message)
        self.counts["malformed"] += 1

    @staticmethod
    def values(raw: Mapping, where: str) -> dict:
        """Parse each raw value once: a float, ``None`` or an ``Invalid`` naming ``where``
        and the field (the adapter's ``invalid_policy`` judges and counts it)."""
        out = {}
        for name, v in raw.items():
            v = parse_value(v)
            if type(v) is Invalid:
                v.where = f"{where}: field {name!r}"
            out[name] = v
        return out


class RecordIterator(Source):
    """A line-based source: an iterator of records with the ``counts`` of what it read.

    ``counts`` holds ``lines`` read, ``records`` yielded, ``malformed`` lines skipped,
    ``blank`` lines, ``empty_cells`` (CSV cells left out), ``truncated`` (a followed file
    that shrank and was re-read from its start) and ``too_long`` (lines over a socket
    source's ``max_line``, dropped). Use as a context manager, or call :meth:`close`, to
    release the file or socket early.

    Threads
    -------
    An iterator: iterate it from one thread at a time (not locked).

    Examples
    --------
    >>> import io
    >>> from streamrnn.adapters.sensor import iter_jsonl
    >>> it = iter_jsonl(io.StringIO('{"timestamp": 1, "x": 2}\\n\\n'))
    >>> list(it), it.counts["records"], it.counts["blank"]
    ([(1.0, {'x': 2.0})], 1, 1)
    """

    COUNTS = ("lines", "records", "malformed", "empty_cells", "blank", "truncated", "too_long")

    def __init__(self, make: Callable[[RecordIterator], Iterator], *,
                 on_error: str = "raise") -> None:
        super().__init__(on_error=on_error)
        self._gen = make(self)

    def __iter__(self) -> RecordIterator:
        return self

    def __next__(self):
        return next(self._gen)

    def close(self) -> None:
        """Stop early and release the underlying file or socket."""
        self._gen.close()


def check_source_args(on_error, poll, timeout, stop) -> None:
    check_choice("on_error", on_error, ("raise", "skip"))
    check_number("poll", poll, low=0.0, low_open=True)
    if timeout is not None:
        check_number("timeout", timeout, low=0.0)
    if stop is not None and not (callable(stop) or callable(getattr(stop, "is_set", None))):
        raise ValueError(f"stop must be a threading.Event or a callable, got {stop!r}")


def stopped(stop) -> bool:
    if stop is None:
        return False
    return bool(stop.is_set() if hasattr(stop, "is_set") else stop())


def check_keys(time_key, values_key) -> None:
    if not isinstance(time_key, str):
        raise ValueError(f"time_key must be a str, got {time_key!r}")
    if values_key is not None and not isinstance(values_key, str):
        raise ValueError(f"values_key must be a str or None, got {values_key!r}")


def split_lines(chunks, max_line: int, counts: dict):
    """``(lineno, bytes)`` of the newline-terminated lines in a stream of byte chunks.

    A line longer than ``max_line`` bytes is dropped and counted (``too_long``) without
    being buffered: at most ``max_line`` bytes are ever held, and every byte is looked at
    once (no rescan of a growing buffer). The last line may lack its newline.
    """
    buf, lineno, skipping = bytearray(), 0, False
    for data in chunks:
        start = 0
        while True:
            nl = data.find(b"\n", start)
            end = len(data) if nl < 0 else nl
            if not skipping and len(buf) + end - start > max_line:
                skipping = True  # drop what was held and the rest of this line
                buf.clear()
                counts["too_long"] += 1
            if nl < 0:
                if not skipping:
                    buf += data[start:]
                break
            lineno += 1
            counts["lines"] += 1
            if not skipping:
                yield lineno, bytes(buf) + data[start:nl]
            buf.clear()
            skipping, start = False, nl + 1
    if buf:
        counts["lines"] += 1
        yield lineno + 1, bytes(buf)
