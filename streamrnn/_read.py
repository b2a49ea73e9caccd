"""Reading our safetensors files: the header first, then the tensors (private).

Public through :mod:`streamrnn.utils`; :mod:`streamrnn._io` (the writer) re-exports it.
:func:`read_header` parses the safetensors header itself (the 8-byte length, then the
JSON) with bounds, checks the format name and version in its metadata and the tensors'
declared shapes against the file's size, verifies the file's checksum (see
:func:`streamrnn._io.safetensors_bytes`), and reads no tensor: a caller validates its
configuration against the declared shapes before anything is allocated, then
:func:`read_tensors`.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, BinaryIO

import safetensors
import xxhash
from torch import Tensor

__all__ = ["CHECKSUM_KEY", "MAX_HEADER_BYTES", "FileHeader", "TensorInfo", "check_config",
           "checksum_at", "read_header", "read_state_file", "read_tensors"]

#: The largest safetensors JSON header read (safetensors itself refuses above 100 MB).
MAX_HEADER_BYTES = 100_000_000
CHECKSUM_KEY = "checksum"
CHECKSUM_TAG = "xxh3_64:"
CHECKSUM_BLANK = b"0" * 16
_HASH_BLOCK = 1 << 20
_DTYPE_BYTES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "I16": 2, "F16": 2,
    "BF16": 2, "U32": 4, "I32": 4, "F32": 4, "U64": 8, "I64": 8, "F64": 8,
}  # fmt: skip


def checksum_at(raw: bytes, hexdigits: bytes) -> int:
    """Offset in the file (past the 8-byte length) of the checksum's hex digits in the
    JSON header ``raw``, or -1."""
    at = raw.find(b'"' + CHECKSUM_TAG.encode() + hexdigits + b'"')
    return -1 if at < 0 else 8 + at + 1 + len(CHECKSUM_TAG)


def _verify_checksum(f: BinaryIO, raw: bytes, value: str, where: str) -> None:
    """Refuse the open file ``f`` (header ``raw`` read) unless it hashes to ``value``."""
    hexdigits = value[len(CHECKSUM_TAG):].encode() if value.startswith(CHECKSUM_TAG) else b""
    at = checksum_at(raw, hexdigits) if len(hexdigits) == 16 else -1
    if at < 0:
        raise ValueError(f"{where} has a malformed checksum entry {value[:40]!r}")
    h = xxhash.xxh3_64()
    h.update(raw[:at - 8] + CHECKSUM_BLANK + raw[at - 8 + 16:])
    while block := f.read(_HASH_BLOCK):
        h.update(block)
    if h.hexdigest().encode() != hexdigits:
        raise ValueError(f"{where} fails its checksum (damaged or edited): it records "
                         f"{hexdigits.decode()}, its bytes hash to {h.hexdigest()}")


@dataclass(frozen=True)
class TensorInfo:
    """A tensor as the header declares it: safetensors dtype name and shape.

    Threads
    -------
    Not changed after it is built: safe to read from several threads at once.
    """

    dtype: str
    shape: tuple[int, ...]

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class FileHeader:
    """The header of a safetensors file: metadata (str -> str) and declared tensors.

    ``where`` names the file in error messages (``"path '...'"``, ``"checkpoint '...'"``).

    Threads
    -------
    Not changed after it is built: safe to read from several threads at once.
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
