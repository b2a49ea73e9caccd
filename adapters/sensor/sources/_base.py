"""Record sources for the sensor adapter: CSV files, JSON lines, TCP sockets (private).

Every source yields ``(timestamp_seconds, {channel: float or None})`` and keeps a
``counts`` dict. Malformed input raises ``ValueError`` with its line number
(``on_error="raise"``) or is skipped and counted (``on_error="skip"``).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator

from .._parse import (
    INVALID,
    check_choice,
    check_number,
    parse_json_record,
    parse_value,
)

__all__ = ["RecordIterator", "iter_jsonl", "iter_jsonl_socket"]


class RecordIterator:
    """An iterator of records with the ``counts`` of what its source did.

    ``counts`` holds ``lines`` read, ``records`` yielded, ``malformed`` lines skipped,
    ``invalid_value`` fields dropped, ``blank`` lines, ``truncated`` (a followed file
    that shrank and was re-read from its start) and ``too_long`` (lines over a socket
    source's ``max_line``, dropped). Use as a context manager, or
    call :meth:`close`, to release the file or socket early.

    Examples
    --------
    >>> import io
    >>> from streamrnn.adapters.sensor import iter_jsonl
    >>> it = iter_jsonl(io.StringIO('{"timestamp": 1, "x": 2}\\n\\n'))
    >>> list(it), it.counts["records"], it.counts["blank"]
    ([(1.0, {'x': 2.0})], 1, 1)
    """

    def __init__(self, make: Callable[[dict], Iterator]) -> None:
        self.counts = dict.fromkeys(
            ("lines", "records", "malformed", "invalid_value", "empty_cells", "blank", "truncated",
             "too_long"),
            0,
        )
        self._gen = make(self.counts)

    def __iter__(self) -> RecordIterator:
        return self

    def __next__(self):
        return next(self._gen)

    def close(self) -> None:
        """Stop early and release the underlying file or socket."""
        self._gen.close()

    def __enter__(self) -> RecordIterator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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


def parse_fields(raw: dict, where: str, on_error: str, counts: dict) -> dict:
    """Parse raw fields to float / None; a non-number raises or is dropped and counted."""
    values = {}
    for name, text in raw.items():
        v = parse_value(text)
        if v is INVALID:
            if on_error == "raise":
                raise ValueError(f"{where}: field {name!r} must be a number, got {text!r}")
            counts["invalid_value"] += 1
            continue
        values[name] = v
    return values


def bad_line(message: str, on_error: str, counts: dict) -> None:
    if on_error == "raise":
        raise ValueError(message)
    counts["malformed"] += 1


# -- JSON lines ----------------------------------------------------------------------
def _jsonl_records(lines, time_key, values_key, on_error, counts, origin):
    for lineno, line in lines:
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError as err:
                bad_line(f"{origin}line {lineno}: not UTF-8 ({err.reason})", on_error, counts)
                continue
        if not line.strip():
            counts["blank"] += 1
            continue
        where = f"{origin}line {lineno}"
        try:
            ts, raw = parse_json_record(line, time_key=time_key, values_key=values_key)
        except ValueError as err:
            bad_line(f"{where}: {err}", on_error, counts)
            continue
        values = parse_fields(raw, where, on_error, counts)
        counts["records"] += 1
        yield ts, values


def check_keys(time_key, values_key) -> None:
    if not isinstance(time_key, str):
        raise ValueError(f"time_key must be a str, got {time_key!r}")
    if values_key is not None and not isinstance(values_key, str):
        raise ValueError(f"values_key must be a str or None, got {values_key!r}")


def iter_jsonl(
    stream,
    *,
    time_key: str = "timestamp",
    values_key: str | None = None,
    on_error: str = "raise",
) -> RecordIterator:
    """Records from JSON lines in a text (or bytes) stream such as ``sys.stdin``.

    Each line is an object ``{"timestamp": t, "temp": 21.5, ...}``: ``time_key`` holds
    the time (float seconds or ISO-8601); the values are every other key, or the
    object under ``values_key``. ``null`` is a missing value (left to the adapter's
    ``nan_policy``). Blank lines are skipped and counted.

    Parameters
    ----------
    stream : iterable of str or bytes
        Lines; read lazily, so a pipe is consumed as it arrives.
    time_key, values_key : str, str or None
        Where the time and the values are.
    on_error : {"raise", "skip"}
        Malformed JSON, a non-object, a missing / bad timestamp, or a non-numeric
        value raises ``ValueError("line N: ...")`` or is skipped and counted.

    Returns
    -------
    RecordIterator

    Examples
    --------
    >>> import io
    >>> from streamrnn.adapters.sensor import iter_jsonl
    >>> text = '{"timestamp": "2024-01-01T00:00:01Z", "v": 1}\\n{broken\\n'
    >>> it = iter_jsonl(io.StringIO(text), on_error="skip")
    >>> list(it), it.counts["malformed"]
    ([(1704067201.0, {'v': 1.0})], 1)
    >>> list(iter_jsonl(io.StringIO(text)))
    Traceback (most recent call last):
    ...
    ValueError: line 2: malformed JSON (Expecting property name ... at column 2)
    """
    check_keys(time_key, values_key)
    check_source_args(on_error, 0.1, None, None)

    def run(counts: dict):
        def numbered():
            for n, line in enumerate(stream, start=1):
                counts["lines"] += 1
                yield n, line

        yield from _jsonl_records(numbered(), time_key, values_key, on_error, counts, "")

    return RecordIterator(run)


def iter_jsonl_socket(
    host: str,
    port: int,
    *,
    time_key: str = "timestamp",
    values_key: str | None = None,
    on_error: str = "raise",
    connect_timeout: float = 5.0,
    poll: float = 0.1,
    timeout: float | None = None,
    stop=None,
    max_line: int = 1 << 20,
) -> RecordIterator:
    """Records from JSON lines sent by a TCP server (connects as a client).

    Lines are parsed as in :func:`iter_jsonl`. Iteration ends when the server closes
    the connection, after ``timeout`` seconds without data, or once ``stop`` is set
    and nothing more is waiting. The connection is made on the first ``next``.

    Parameters
    ----------
    host, port : str, int
        The server, e.g. ``"127.0.0.1"``.
    time_key, values_key, on_error
        As in :func:`iter_jsonl`.
    connect_timeout : float
        Seconds to wait for the connection (``OSError`` after that).
    poll : float
        Seconds between checks of ``stop`` / ``timeout`` while no data arrives.
    timeout : float or None
        Stop after this many seconds without data (``None``: never).
    stop : threading.Event or callable or None
        Stop once set and drained.
    max_line : int
        Longest line in bytes (default 1 MiB); a longer one is dropped unread and counted
        in ``counts["too_long"]`` (memory stays bounded whatever the peer sends).

    Returns
    -------
    RecordIterator

    Examples
    --------
    >>> import socket, threading
    >>> from streamrnn.adapters.sensor import iter_jsonl_socket
    >>> server = socket.create_server(("127.0.0.1", 0))
    >>> def serve():
    ...     conn, _ = server.accept()
    ...     conn.sendall(b'{"timestamp": 5, "x": 1.5}\\n{"timestamp": 6, "x": 2}\\n')
    ...     conn.close()
    >>> threading.Thread(target=serve).start()
    >>> list(iter_jsonl_socket("127.0.0.1", server.getsockname()[1]))
    [(5.0, {'x': 1.5}), (6.0, {'x': 2.0})]
    >>> server.close()
    """
    if not isinstance(host, str):
        raise ValueError(f"host must be a str, got {host!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ValueError(f"port must be an int in 1..65535, got {port!r}")
    check_keys(time_key, values_key)
    check_source_args(on_error, poll, timeout, stop)
    check_number("connect_timeout", connect_timeout, low=0.0, low_open=True)
    if isinstance(max_line, bool) or not isinstance(max_line, int) or max_line < 1:
        raise ValueError(f"max_line must be a positive int, got {max_line!r}")
    origin = f"{host}:{port} "

    def run(counts: dict):
        chunks = _recv_chunks(host, port, connect_timeout, poll, timeout, stop)
        lines = split_lines(chunks, max_line, counts)
        yield from _jsonl_records(lines, time_key, values_key, on_error, counts, origin)

    return RecordIterator(run)


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


def _recv_chunks(host, port, connect_timeout, poll, timeout, stop):
    sock = socket.create_connection((host, port), timeout=connect_timeout)
    try:
        sock.settimeout(poll)
        idle_since = time.monotonic()
        while True:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                if stopped(stop) or (
                    timeout is not None and time.monotonic() - idle_since >= timeout
                ):
                    break
                continue
            if not data:
                break
            idle_since = time.monotonic()
            yield data
    finally:
        sock.close()
