"""iter_csv: records from a CSV file, optionally followed while it grows (private)."""

from __future__ import annotations

import csv
import os
import time

from streamrnn.utils import check_bool

from .._parse import to_seconds
from ._base import RecordIterator, check_source_args, stopped

__all__ = ["iter_csv"]


def iter_csv(
    path,
    *,
    time_column: str,
    columns=None,
    delimiter: str = ",",
    follow: bool = False,
    poll: float = 0.1,
    timeout: float | None = None,
    stop=None,
    on_error: str = "raise",
) -> RecordIterator:
    """Records from a CSV file with a header row, optionally following it as it grows.

    Parameters
    ----------
    path : str or os.PathLike
        The file (UTF-8). With ``follow=True`` it may not exist yet.
    time_column : str
        Header name of the timestamp column (float seconds or ISO-8601).
    columns : list of str or None
        Value columns to read; ``None`` reads every other column. A name missing from
        the header raises ``ValueError``.
    delimiter : str
        Field separator.
    follow : bool
        Keep reading as lines are appended (``tail -f``); a partial last line waits
        for its newline. A file that shrinks is re-read from its start (counted).
    poll : float
        Seconds between checks for new data when following.
    timeout : float or None
        Following: stop after this many seconds without new data (``None``: never).
    stop : threading.Event or callable or None
        Following: stop once it is set / returns true and the file is drained.
    on_error : {"raise", "skip"}
        A malformed line (wrong field count, bad timestamp, bad UTF-8) or an empty file
        raises ``ValueError`` with the line number, or is skipped and counted. A
        non-numeric field is parsed (once) to an :class:`~streamrnn.adapters.sensor.Invalid`
        naming its line and column, for the adapter's ``invalid_policy``.

    Returns
    -------
    RecordIterator
        ``(timestamp, {column: float or Invalid})``; empty cells are left out (the
        channel is not observed then) and counted in ``counts["empty_cells"]``.

    Examples
    --------
    >>> import os, tempfile
    >>> from streamrnn.adapters.sensor import iter_csv
    >>> path = os.path.join(tempfile.mkdtemp(), "log.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("t,temp,hum\\n0,20.5,40\\n1.5,,41\\n2,oops,42\\n")
    >>> it = iter_csv(path, time_column="t", on_error="skip")
    >>> list(it)
    [(0.0, {'temp': 20.5, 'hum': 40.0}), (1.5, {'hum': 41.0}),
     (2.0, {'temp': Invalid('oops'), 'hum': 42.0})]
    >>> it.counts["empty_cells"]
    1
    >>> from streamrnn.adapters.sensor import SensorAdapter
    >>> ad = SensorAdapter(["temp", "hum"], period=1.0, invalid_policy="raise")
    >>> ad.push(iter_csv(path, time_column="t"))
    Traceback (most recent call last):
    ...
    ValueError: invalid_policy='raise': ...log.csv:4: field 'temp' must be a number, got 'oops'
    """
    if not isinstance(time_column, str):
        raise ValueError(f"time_column must be a column name, got {time_column!r}")
    if columns is not None:
        columns = list(columns)
        if not all(isinstance(c, str) for c in columns):
            raise ValueError(f"columns must be a list of column names, got {columns!r}")
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise ValueError(f"delimiter must be one character, got {delimiter!r}")
    check_bool("follow", follow)
    check_source_args(on_error, poll, timeout, stop)
    path = os.fspath(path)

    def run(src: RecordIterator):
        counts = src.counts
        header = None
        for lineno, raw in _file_lines(path, follow, poll, timeout, stop, counts):
            if raw is None:  # the file was truncated: expect a header again
                header = None
                continue
            where = f"{path}:{lineno}"
            try:
                text = raw.decode("utf-8-sig" if lineno == 1 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError as err:
                src.bad_line(f"{where}: not UTF-8 ({err.reason})")
                continue
            if not text.strip():
                counts["blank"] += 1
                continue
            fields = next(csv.reader([text], delimiter=delimiter))
            if header is None:
                header = _csv_header(fields, time_column, columns, path)
                continue
            if len(fields) != len(header[0]):
                src.bad_line(f"{where}: expected {len(header[0])} fields, got {len(fields)}")
                continue
            row = dict(zip(header[0], fields, strict=True))
            try:
                ts = to_seconds(row[time_column], name=f"{where}: column {time_column!r}")
            except ValueError as err:
                src.bad_line(str(err))
                continue
            present = {c: row[c] for c in header[1] if row[c].strip()}
            if len(present) < len(header[1]):
                counts["empty_cells"] += len(header[1]) - len(present)
            values = src.values(present, where)
            counts["records"] += 1
            yield ts, values
        if header is None and not follow:
            src.bad_line(f"{path} is empty: expected a header row")

    return RecordIterator(run, on_error=on_error)


def _csv_header(fields, time_column, columns, path) -> tuple:
    names = [f.strip() for f in fields]
    if time_column not in names:
        raise ValueError(f"time_column {time_column!r} is not in the header of {path}: {names}")
    wanted = [c for c in names if c != time_column] if columns is None else columns
    missing = [c for c in wanted if c not in names]
    if missing:
        raise ValueError(f"columns {missing} are not in the header of {path}: {names}")
    return names, wanted


def _file_lines(path, follow, poll, timeout, stop, counts):
    """``(lineno, bytes)`` of complete lines; ``(0, None)`` after a truncation."""
    handle, lineno, partial = None, 0, b""
    idle_since = time.monotonic()
    try:
        while handle is None:
            try:
                handle = open(path, "rb")
            except FileNotFoundError:
                if (
                    not follow
                    or stopped(stop)
                    or (timeout is not None and time.monotonic() - idle_since >= timeout)
                ):
                    raise
                time.sleep(poll)
        draining = False
        while True:
            chunk = handle.readline()
            if chunk:
                idle_since = time.monotonic()
                partial += chunk
                if partial.endswith(b"\n"):
                    lineno += 1
                    counts["lines"] += 1
                    yield lineno, partial
                    partial = b""
                continue
            if follow and os.stat(path).st_size < handle.tell():
                handle.seek(0)
                partial, lineno = b"", 0
                counts["truncated"] += 1
                yield 0, None
                continue
            if not follow or draining:
                break
            if stopped(stop) or (timeout is not None and time.monotonic() - idle_since >= timeout):
                draining = True  # one more pass: lines written before the stop signal
                continue
            time.sleep(poll)
        if partial:
            counts["lines"] += 1
            yield lineno + 1, partial
    finally:
        if handle is not None:
            handle.close()
