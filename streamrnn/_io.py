"""Files: one atomic writer and one reader of our safetensors files (private).

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

The reader (:func:`read_header`) parses the safetensors header itself (the 8-byte
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
import math
import os
import re
import secrets
import struct
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import safetensors
import safetensors.torch
import xxhash
from torch import Tensor

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

#: The largest safetensors JSON header read (safetensors itself refuses above 100 MB).
MAX_HEADER_BYTES = 100_000_000
TEMP_SUFFIX = ".streamrnn-tmp"
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}" + re.escape(TEMP_SUFFIX) + "$")
_ACTIVE: set[str] = set()  # temp files this process is writing now
_ACTIVE_LOCK = threading.Lock()
CHECKSUM_KEY = "checksum"
_CHECKSUM_TAG = "xxh3_64:"
_CHECKSUM_BLANK = b"0" * 16
_HASH_BLOCK = 1 << 20
_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "I16": 2, "F16": 2,
    "BF16": 2, "U32": 4, "I32": 4, "F32": 4, "U64": 8, "I64": 8, "F64": 8,
}  # fmt: skip


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
    sealed = {**metadata, CHECKSUM_KEY: _CHECKSUM_TAG + _CHECKSUM_BLANK.decode()}
    data = bytearray(safetensors.torch.save(
        {k: v.detach().contiguous().cpu() for k, v in tensors.items()}, sealed))
    (n,) = struct.unpack("<Q", data[:8])
    at = _checksum_at(bytes(data[8:8 + n]), _CHECKSUM_BLANK)
    digest = xxhash.xxh3_64_hexdigest(memoryview(data)[8:]).encode()
    data[at:at + 16] = digest
    return bytes(data)


def _checksum_at(raw: bytes, hexdigits: bytes) -> int:
    """Offset in the file (past the 8-byte length) of the checksum's hex digits in the
    JSON header ``raw``, or -1."""
    at = raw.find(b'"' + _CHECKSUM_TAG.encode() + hexdigits + b'"')
    return -1 if at < 0 else 8 + at + 1 + len(_CHECKSUM_TAG)


def _verify_checksum(f: BinaryIO, raw: bytes, value: str, where: str) -> None:
    """Refuse the open file ``f`` (header ``raw`` read) unless it hashes to ``value``."""
    hexdigits = value[len(_CHECKSUM_TAG):].encode() if value.startswith(_CHECKSUM_TAG) else b""
    at = _checksum_at(raw, hexdigits) if len(hexdigits) == 16 else -1
    if at < 0:
        raise ValueError(f"{where} has a malformed checksum entry {value[:40]!r}")
    h = xxhash.xxh3_64()
    h.update(raw[:at - 8] + _CHECKSUM_BLANK + raw[at - 8 + 16:])
    while block := f.read(_HASH_BLOCK):
        h.update(block)
    if h.hexdigest().encode() != hexdigits:
        raise ValueError(f"{where} fails its checksum (damaged or edited): it records "
                         f"{hexdigits.decode()}, its bytes hash to {h.hexdigest()}")


def write_state_file(
    path: str | os.PathLike, tensors: dict[str, Tensor], *, kind: str, version: int, header: dict
) -> None:
    """Save tensors and a JSON header as one safetensors file, atomically, with a checksum."""
    metadata = {"format": kind, "version": str(version), "header": json.dumps(header)}
    atomic_write_bytes(path, safetensors_bytes(tensors, metadata))


# -- reading -----------------------------------------------------------------------------
@dataclass(frozen=True)
class TensorInfo:
    """A tensor as the header declares it: safetensors dtype name and shape."""

    dtype: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class FileHeader:
    """The header of a safetensors file: metadata (str -> str) and declared tensors.

    ``where`` names the file in error messages (``"path '...'"``, ``"checkpoint '...'"``).
    """

    path: str
    where: str
    metadata: dict[str, str]
    tensors: dict[str, TensorInfo]

    def field(self, key: str) -> str:
        """Metadata entry ``key``; ``ValueError`` naming the file and the field if absent."""
        if key not in self.metadata:
            raise ValueError(f"{self.where}: the header has no {key!r} entry")
        return self.metadata[key]

    def json(self, key: str) -> Any:
        """Metadata entry ``key`` decoded from JSON (``ValueError`` naming the field)."""
        text = self.field(key)
        try:
            return json.loads(text)
        except (json.JSONDecodeError, RecursionError) as err:
            raise ValueError(f"{self.where}: header entry {key!r} is not JSON: {err}") from None

    def numel(self, prefix: str = "") -> int:
        """Elements declared by the tensors whose names start with ``prefix``."""
        return sum(t.numel for k, t in self.tensors.items() if k.startswith(prefix))

    def require_checksum(self) -> None:
        """Refuse a file that records no checksum (one read with ``checksum=False`` whose
        format version is one that always has one); a recorded one was verified."""
        if CHECKSUM_KEY not in self.metadata:
            raise ValueError(f"{self.where} records no checksum: it was not written by "
                             f"this streamrnn (or its header was edited)")


def _not_readable(where: str, what: str, reason: str) -> ValueError:
    return ValueError(f"{where} is not a readable {what} (truncated or foreign?): {reason}")


def _parse_header(raw: bytes, size: int, where: str, what: str):
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise _not_readable(where, what, f"header is not JSON ({err})") from None
    if not isinstance(header, dict):
        raise _not_readable(where, what, "header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise _not_readable(where, what, "metadata must map strings to strings")
    tensors, end = {}, 0
    for name, info in header.items():
        try:
            dtype, shape, (begin, stop) = info["dtype"], info["shape"], info["data_offsets"]
            ok = dtype in _DTYPE_BYTES and all(
                type(v) is int and v >= 0 for v in (*shape, begin, stop)
            )
        except (TypeError, KeyError, ValueError):
            ok = False
        if not ok:
            raise _not_readable(where, what, f"tensor {name!r} has a bad entry {info!r}"[:300])
        shape = tuple(shape)
        if stop - begin != math.prod(shape) * _DTYPE_BYTES[dtype] or stop < begin:
            raise _not_readable(where, what, f"tensor {name!r} has {stop - begin} bytes, its "
                                             f"shape {list(shape)} of {dtype} needs more or less")
        tensors[name] = TensorInfo(dtype, shape)
        end = max(end, stop)
    if end != size:
        raise _not_readable(where, what, f"the tensors declare {end} bytes of data, the file "
                                         f"holds {size}")
    return metadata, tensors


def read_header(
    path: str | os.PathLike,
    *,
    format: str | None = None,
    versions: Iterable[str] | None = None,
    what: str = "safetensors file",
    where: str | None = None,
    checksum: bool = True,
) -> FileHeader:
    """Read and check the header of a safetensors file, reading no tensor data.

    The 8-byte length is bounded (:data:`MAX_HEADER_BYTES`) and checked against the file
    size; every tensor's byte range must fit its dtype and shape and the ranges must end
    where the file does. With ``format``, metadata ``"format"`` must equal it; with
    ``versions``, metadata ``"version"`` must be one of them. A file that records a
    checksum (:func:`safetensors_bytes`) must match it; with ``checksum`` (the default)
    a file must record one (``checksum=False`` reads the files of format versions
    written before checksums, and foreign files). Every refusal is a ``ValueError``
    naming the file (``where``, default ``"path '<path>'"``) and the field.

    Examples
    --------
    >>> import os, tempfile, torch
    >>> from safetensors.torch import save_file
    >>> path = os.path.join(tempfile.mkdtemp(), "t.safetensors")
    >>> save_file({"w": torch.zeros(2, 3)}, path, {"format": "demo", "version": "1"})
    >>> head = read_header(path, format="demo", versions=("1",), checksum=False)
    >>> head.tensors["w"], head.numel()
    (TensorInfo(dtype='F32', shape=(2, 3)), 6)
    >>> read_header(path, format="other", checksum=False)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: path '...t.safetensors' holds format 'demo', expected 'other'
    """
    name = os.fspath(path)
    where = where or f"path {name!r}"
    if not os.path.isfile(name):
        raise ValueError(f"{where} is not a file")
    try:
        with open(name, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            prefix = f.read(8)
            if len(prefix) < 8:
                raise _not_readable(where, what, f"{size} bytes, too short for a header")
            (n,) = struct.unpack("<Q", prefix)
            if n > min(MAX_HEADER_BYTES, size - 8):
                raise _not_readable(where, what, f"header length {n} does not fit the "
                                                 f"file's {size} bytes")
            raw = f.read(n)
            metadata, tensors = _parse_header(raw, size - 8 - n, where, what)
            if format is not None and metadata.get("format") != format:
                raise ValueError(f"{where} holds format {metadata.get('format')!r}, "
                                 f"expected {format!r}")
            if versions is not None:
                versions = tuple(versions)
                if metadata.get("version") not in versions:
                    listed = " or ".join(versions)
                    raise ValueError(f"{where} has format version {metadata.get('version')!r}, "
                                     f"this streamrnn reads version {listed}")
            if CHECKSUM_KEY in metadata:
                _verify_checksum(f, raw, metadata[CHECKSUM_KEY], where)
    except OSError as err:
        raise ValueError(f"{where} cannot be read: {err}") from None
    head = FileHeader(name, where, metadata, tensors)
    if checksum:
        head.require_checksum()
    return head


def read_tensors(header: FileHeader, names: Iterable[str] | None = None) -> dict[str, Tensor]:
    """The tensors of a file whose header :func:`read_header` checked (all, or ``names``).

    A name the header does not declare is a ``ValueError`` naming the file and it.
    """
    names = list(header.tensors) if names is None else list(names)
    missing = [k for k in names if k not in header.tensors]
    if missing:
        raise ValueError(f"{header.where} lacks the tensor(s) {missing}")
    try:
        with safetensors.safe_open(header.path, framework="pt") as f:
            return {k: f.get_tensor(k) for k in names}
    except (safetensors.SafetensorError, OSError, ValueError) as err:
        raise _not_readable(header.where, "safetensors file", str(err)) from None


def read_state_file(
    path: str | os.PathLike, *, kind: str, version: int, checksum: bool = True
) -> tuple[dict[str, Tensor], dict]:
    """Load a file written by :func:`write_state_file`, refusing anything else.

    Raises ``ValueError`` for a missing, truncated, damaged or foreign file, or one of
    another format version. ``checksum=False`` for the versions written before
    checksums (a checksum the file records is verified all the same).
    """
    head = read_header(path, what=f"{kind} file", checksum=False)
    metadata = head.metadata
    if metadata.get("format") != kind:
        raise ValueError(
            f"{head.where} holds format {metadata.get('format')!r}, expected {kind!r}"
        )
    if metadata.get("version") != str(version):
        raise ValueError(
            f"{head.where} has format version {metadata.get('version')!r}, "
            f"this streamrnn reads version {version}"
        )
    if checksum:
        head.require_checksum()
    try:
        header = json.loads(metadata["header"])
    except (KeyError, json.JSONDecodeError, RecursionError) as err:
        raise ValueError(f"{head.where} has a damaged header: {err!r}") from None
    if not isinstance(header, dict):
        raise ValueError(f"{head.where} has a damaged header: not a JSON object")
    return read_tensors(head), header


def check_config(saved: dict, current: dict, what: str = "model") -> None:
    """Raise ``ValueError`` listing every field where ``saved`` and ``current`` differ."""
    if saved == current:
        return
    fields = sorted(set(saved) | set(current))
    diffs = [f"{k}: file has {saved.get(k)!r}, {what} has {current.get(k)!r}"
             for k in fields if saved.get(k) != current.get(k)]
    raise ValueError(f"state does not fit this {what}: " + "; ".join(diffs))
