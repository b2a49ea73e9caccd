"""JSON-lines sources: a text stream (``iter_jsonl``) or a TCP server (``iter_jsonl_socket``)
(private; public in :mod:`streamrnn.adapters.sensor`)."""

from __future__ import annotations

import socket
import time

from streamrnn.utils import check_number, check_positive_int

from .._parse import parse_json_record
from ._base import RecordIterator, check_keys, check_source_args, split_lines, stopped

__all__ = ["iter_jsonl", "iter_jsonl_socket"]


def _jsonl_records(src: RecordIterator, lines, time_key, values_key, origin):
    counts = src.counts
    for lineno, line in lines:
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError as err:
                src.bad_line(f"{origin}line {lineno}: not UTF-8 ({err.reason})")
                continue
        if not line.strip():
            counts["blank"] += 1
            continue
        where = f"{origin}line {lineno}"
        try:
            ts, raw = parse_json_record(line, time_key=time_key, values_key=values_key)
        except ValueError as err:
            src.bad_line(f"{where}: {err}")
            continue
        values = src.values(raw, where)
        counts["records"] += 1
        yield ts, values



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
        Malformed JSON, a non-object or a missing / bad timestamp raises
        ``ValueError("line N: ...")`` or is skipped and counted. A non-numeric value is
        yielded as an :class:`~streamrnn.adapters.sensor.Invalid` for the adapter's
        ``invalid_policy`` (which names its line when it raises).

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

    def run(src: RecordIterator):
        def numbered():
            for n, line in enumerate(stream, start=1):
                src.counts["lines"] += 1
                yield n, line

        yield from _jsonl_records(src, numbered(), time_key, values_key, "")

    return RecordIterator(run, on_error=on_error)


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
    check_positive_int("max_line", max_line)
    origin = f"{host}:{port} "

    def run(src: RecordIterator):
        chunks = _recv_chunks(host, port, connect_timeout, poll, timeout, stop)
        lines = split_lines(chunks, max_line, src.counts)
        yield from _jsonl_records(src, lines, time_key, values_key, origin)

    return RecordIterator(run, on_error=on_error)


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
