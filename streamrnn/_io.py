"""Files: one atomic writer of our safetensors files; the reader lives in ``_read`` and is
re-exported here (private).

Public through :mod:`streamrnn.utils`. No pickle anywhere: tensors are safetensors,
everything else is JSON in its metadata.

The writer (:func:`atomic_write`) puts the data in a temp file in the target's folder,
flushes and fsyncs it, renames it over the target (``os.replace``) and fsyncs the folder.
The temp file is created with mode ``0o666`` less the process umask, so the file keeps
the mode any new file of the user gets. Before writing, it removes this library's
orphaned temp files in that folder (left by a writer killed midway): only names of
the library's own pattern, ``.<target name>.<pid>.<8 hex>.streamrnn-tmp``, whose
process has ended (a concurrent writer's temp file is left alone), and the temp files
``.<target name>.<8 chars>.tmp`` of earlier streamrnn versions.

The reader (:func:`read_header`, in ``_read.py``) parses the safetensors header itself (the 8-byte
length, then the JSON) with bounds, checks the format name and version in its
metadata and the tensors' declared shapes against the file's size, verifies the file's
checksum, and reads no tensor: a caller validates its configuration against the
declared shapes before anything is allocated, then :func:`read_tensors`.

Checksums: :func:`safetensors_bytes` (the one serializer of every file streamrnn
writes) stores ``"checksum": "xxh3_64:<16 hex>"`` in the metadata, the 64-bit XXH3
(the maintained ``xxhash`` package) of the whole file from its JSON header on, with
those 16 hex digits read as zeros. It covers every tensor's bytes, every header field
and the tensors' dtypes, shapes and offsets: a file with any flipped byte, a truncated
file or a forged field is refused. A file written before checksums (an older format
version) has none; its reader says so by ``checksum=False``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import safetensors
import safetensors.torch
import xxhash
from torch import Tensor

from ._read import (  # the reader, re-exported: one module to import files from
    CHECKSUM_BLANK,
    CHECKSUM_KEY,
    CHECKSUM_TAG,
    MAX_HEADER_BYTES,
    FileHeader,
    TensorInfo,
    check_config,
    checksum_at,
    read_header,
    read_state_file,
    read_tensors,
)
from ._slots import MAX_KEY_DEPTH, show_key

__all__ = [
    "MAX_HEADER_BYTES",
    "FileHeader",
    "TensorInfo",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_config",
    "decode_key",
    "encode_key",
    "read_header",
    "read_state_file",
    "read_tensors",
    "remove_orphans",
    "safetensors_bytes",
    "write_state_file",
]

TEMP_SUFFIX = ".streamrnn-tmp"
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}" + re.escape(TEMP_SUFFIX) + "$")
_ACTIVE: set[str] = set()  # temp files this process is writing now
_ACTIVE_LOCK = threading.Lock()


def encode_key(key):
    """A JSON value for a stream key: str and int as they are, tuples tagged."""
    if isinstance(key, tuple):
        return {"t": [encode_key(k) for k in key]}
    return key


def decode_key(value, depth: int = 0):
    """Inverse of :func:`encode_key`; ``ValueError`` for a tag that is not ``{"t": [...]}``
    or tags nested deeper than a key may be (the key rule itself is the caller's)."""
    if isinstance(value, dict):
        parts = value.get("t")
        if len(value) != 1 or type(parts) is not list or depth >= MAX_KEY_DEPTH:
            raise ValueError(
                f"a stored key must be a str, an int or {{'t': [keys]}} nested at most "
                f"{MAX_KEY_DEPTH} deep, got {show_key(value)}"
            )
        return tuple(decode_key(v, depth + 1) for v in parts)
    return value


# -- writing -----------------------------------------------------------------------------
def _alive(pid: int) -> bool:
    """Whether process ``pid`` exists (unknown counts as alive: its file is kept)."""
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists, owned by another user
        return True
    return True


def remove_orphans(folder: str | os.PathLike, name: str | None = None) -> list[str]:
    """Remove this library's orphaned temp files in ``folder``; return their names.

    Only names of the library's temp pattern count, and only those whose writing
    process has ended (or this process's own that it is no longer writing). With
    ``name``, also the ``.<name>.XXXXXXXX.tmp`` temp files of earlier versions.

    Examples
    --------
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> for stale in (".a.safetensors.999999999.0123abcd.streamrnn-tmp", "keep.tmp"):
    ...     open(os.path.join(folder, stale), "w").close()
    >>> remove_orphans(folder)
    ['.a.safetensors.999999999.0123abcd.streamrnn-tmp']
    >>> os.listdir(folder)
    ['keep.tmp']
    """
    folder = os.fspath(folder) or "."
    legacy = re.compile(r"^\." + re.escape(name) + r"\.[a-z0-9_]{8}\.tmp$") if name else None
    me = os.getpid()
    removed = []
    with os.scandir(folder) as entries:
        candidates = [e for e in entries if e.is_file(follow_symlinks=False)]
    for entry in candidates:
        match = _TEMP.match(entry.name)
        if match:
            pid = int(match["pid"])
            with _ACTIVE_LOCK:
                busy = entry.path in _ACTIVE
            if busy or (pid != me and _alive(pid)):
                continue
        elif legacy is None or not legacy.match(entry.name):
            continue
        try:
            os.unlink(entry.path)
        except FileNotFoundError:  # removed by another writer meanwhile
            continue
        removed.append(entry.name)
    return sorted(removed)


def fsync_folder(folder: str | os.PathLike) -> None:
    """fsync a folder, so a rename in it survives a power cut (a no-op where unsupported)."""
    try:
        fd = os.open(os.fspath(folder) or ".", os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open a folder
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> None:
    """Write a file atomically: ``write(f)`` fills a binary temp file in the same folder.

    Then flush, fsync, ``os.replace`` over ``path``, fsync of the folder. A reader sees
    the old file or the new one, never a part; a crash leaves at most a temp file, which
    the next write to that folder removes. If ``write`` raises, the temp file is removed
    and ``path`` is untouched. The new file's mode is ``0o666`` less the umask.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "hello.bin")
    >>> atomic_write(path, lambda f: f.write(b"hello"))
    >>> open(path, "rb").read(), os.listdir(os.path.dirname(path))
    (b'hello', ['hello.bin'])
    """
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        raise ValueError(f"path {str(path)!r} is a folder, not a file")
    remove_orphans(folder, path.name)
    tmp = os.path.join(folder, f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    fd = os.open(tmp, flags, 0o666)  # the umask applies, as to any new file
    with _ACTIVE_LOCK:
        _ACTIVE.add(tmp)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    finally:
        with _ACTIVE_LOCK:
            _ACTIVE.discard(tmp)
    fsync_folder(folder)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(
    path: str | os.PathLike, text: str, *, encoding: str = "utf-8"
) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write`); no newline translation.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "a.csv")
    >>> atomic_write_text(path, "x,y\\r\\n1,2\\r\\n")
    >>> open(path, "rb").read()
    b'x,y\\r\\n1,2\\r\\n'
    """
    atomic_write_bytes(path, text.encode(encoding))


def safetensors_bytes(tensors: dict[str, Tensor], metadata: dict[str, str]) -> bytes:
    """A safetensors file's bytes, its metadata sealed by a checksum of the whole file.

    Every file streamrnn writes is made here; :func:`read_header` verifies the checksum.

    Examples
    --------
    >>> import os, tempfile, torch
    >>> path = os.path.join(tempfile.mkdtemp(), "t.safetensors")
    >>> atomic_write_bytes(path, safetensors_bytes({"w": torch.ones(3)}, {"format": "demo"}))
    >>> sorted(read_header(path).metadata)
    ['checksum', 'format']
    >>> raw = bytearray(open(path, "rb").read()); raw[-1] ^= 1  # flip one bit of a weight
    >>> atomic_write_bytes(path, bytes(raw))
    >>> read_header(path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: path '...t.safetensors' fails its checksum (damaged or edited): ...
    """
    if CHECKSUM_KEY in metadata:
        raise ValueError(f"metadata key {CHECKSUM_KEY!r} is reserved for the checksum")
    sealed = {**metadata, CHECKSUM_KEY: CHECKSUM_TAG + CHECKSUM_BLANK.decode()}
    data = bytearray(safetensors.torch.save(
        {k: v.detach().contiguous().cpu() for k, v in tensors.items()}, sealed))
    (n,) = struct.unpack("<Q", data[:8])
    at = checksum_at(bytes(data[8:8 + n]), CHECKSUM_BLANK)
    digest = xxhash.xxh3_64_hexdigest(memoryview(data)[8:]).encode()
    data[at:at + 16] = digest
    return bytes(data)


def write_state_file(
    path: str | os.PathLike, tensors: dict[str, Tensor], *, kind: str, version: int, header: dict
) -> None:
    """Save tensors and a JSON header as one safetensors file, atomically, with a checksum."""
    metadata = {"format": kind, "version": str(version), "header": json.dumps(header)}
    atomic_write_bytes(path, safetensors_bytes(tensors, metadata))
