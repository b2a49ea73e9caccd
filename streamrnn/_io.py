"""State files: safetensors with a versioned JSON header, written atomically (private).

No pickle anywhere: tensors are safetensors, everything else is JSON in its metadata.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import safetensors
import safetensors.torch
from torch import Tensor

__all__ = [
    "atomic_write_bytes",
    "check_config",
    "decode_key",
    "encode_key",
    "read_state_file",
    "write_state_file",
]


def encode_key(key):
    """A JSON value for a stream key: str and int as they are, tuples tagged."""
    if isinstance(key, tuple):
        return {"t": [encode_key(k) for k in key]}
    return key


def decode_key(value):
    """Inverse of :func:`encode_key`."""
    if isinstance(value, dict):
        return tuple(decode_key(v) for v in value["t"])
    return value


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same folder, fsync, rename."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_state_file(
    path: str | os.PathLike, tensors: dict[str, Tensor], *, kind: str, version: int, header: dict
) -> None:
    """Save tensors and a JSON header as one safetensors file, atomically."""
    metadata = {"format": kind, "version": str(version), "header": json.dumps(header)}
    data = safetensors.torch.save({k: v.contiguous() for k, v in tensors.items()}, metadata)
    atomic_write_bytes(path, data)


def read_state_file(
    path: str | os.PathLike, *, kind: str, version: int
) -> tuple[dict[str, Tensor], dict]:
    """Load a file written by :func:`write_state_file`, refusing anything else.

    Raises ``ValueError`` for a missing, truncated or foreign file, or one of another
    format version.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path {str(path)!r} is not a file")
    try:
        with safetensors.safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (safetensors.SafetensorError, OSError, ValueError) as err:
        raise ValueError(
            f"path {str(path)!r} is not a readable {kind} file (truncated or foreign?): {err}"
        ) from None
    if metadata.get("format") != kind:
        raise ValueError(
            f"path {str(path)!r} holds format {metadata.get('format')!r}, expected {kind!r}"
        )
    if metadata.get("version") != str(version):
        raise ValueError(
            f"path {str(path)!r} has format version {metadata.get('version')!r}, "
            f"this streamrnn reads version {version}"
        )
    try:
        header = json.loads(metadata["header"])
    except (KeyError, json.JSONDecodeError) as err:
        raise ValueError(f"path {str(path)!r} has a damaged header: {err}") from None
    return tensors, header


def check_config(saved: dict, current: dict, what: str = "model") -> None:
    """Raise ``ValueError`` listing every field where ``saved`` and ``current`` differ."""
    if saved == current:
        return
    fields = sorted(set(saved) | set(current))
    diffs = [f"{k}: file has {saved.get(k)!r}, {what} has {current.get(k)!r}"
             for k in fields if saved.get(k) != current.get(k)]
    raise ValueError(f"state does not fit this {what}: " + "; ".join(diffs))
