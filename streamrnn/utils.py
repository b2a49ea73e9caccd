"""Shared helpers for adapters, applications and users: files, checks, running statistics.

The one implementation of each, public so that ``streamrnn.adapters`` and
``streamrnn.apps`` (which import only public names) use the same code as the core:

Files
    :func:`atomic_write` (and :func:`atomic_write_bytes`, :func:`atomic_write_text`):
    a temp file in the target's folder, fsync, ``os.replace``, fsync of the folder; the
    new file's mode follows the umask (``0o666`` less it, as for any new file); this
    library's orphaned temp files in the folder are removed at the next write.
    :func:`read_header` reads and checks a safetensors header (format name, version,
    declared shapes against the file size) without reading a tensor, so a caller can
    bound its configuration by the declared shapes before allocating anything;
    :func:`read_tensors` then reads them.
Checks
    :func:`check_int`, :func:`check_positive_int`, :func:`check_nonneg_int`,
    :func:`check_number`, :func:`check_positive_float`, :func:`check_bool`,
    :func:`check_choice`: each returns the value or raises
    ``ValueError("<name> must be <rule>, got <value>")``.
Statistics
    :class:`RunningMoments`: running count, mean and variance per channel (Welford, with
    Chan's merge for a block of steps), float64.

Examples
--------
>>> import os, tempfile
>>> from streamrnn.utils import atomic_write_text, check_positive_int
>>> path = os.path.join(tempfile.mkdtemp(), "note.txt")
>>> atomic_write_text(path, "saved\\n")
>>> open(path).read(), check_positive_int("k1", 4)
('saved\\n', 4)
"""

from ._io import (
    FileHeader,
    TensorInfo,
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    read_header,
    read_tensors,
    remove_orphans,
)
from ._moments import RunningMoments
from ._validate import (
    check_bool,
    check_choice,
    check_int,
    check_nonneg_int,
    check_number,
    check_positive_float,
    check_positive_int,
)

__all__ = [
    "FileHeader",
    "RunningMoments",
    "TensorInfo",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_bool",
    "check_choice",
    "check_int",
    "check_nonneg_int",
    "check_number",
    "check_positive_float",
    "check_positive_int",
    "read_header",
    "read_tensors",
    "remove_orphans",
]
