"""numba's on-disk cache made safe for several processes at once (private; public as
:func:`streamrnn.utils.lock_cache`).

numba saves a compiled specialization by reading its index file, adding an entry that
names a data file, and writing both; two processes compiling at once (pytest runs side by
side, Ray actors, server workers starting together) can each pick the same data file for
different specializations, and a later load then runs the wrong machine code: wrong
results or a segfault (numba/numba#4807, open). :func:`lock_cache` holds an exclusive
lock file beside the cache around every load and save of a dispatcher's cache, so each
read-modify-write of the index and its data file is whole.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: numba's own behaviour
    fcntl = None

__all__ = ["lock_cache"]

LOCK_NAME = ".streamrnn-numba.lock"


def lock_cache(dispatcher):
    """Serialise ``dispatcher``'s cache loads and saves across processes; returns it.

    A dispatcher without an on-disk cache is returned as it is.
    """
    cache = getattr(dispatcher, "_cache", None)
    folder = getattr(cache, "cache_path", None)
    if fcntl is None or folder is None:
        return dispatcher
    lock = Path(folder) / LOCK_NAME
    for name in ("load_overload", "save_overload"):
        method = getattr(cache, name)
        if not isinstance(method, functools.partial):  # not wrapped twice
            setattr(cache, name, functools.partial(_locked, lock, method))
    return dispatcher


def _locked(lock: Path, method, *args):
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:  # a read-only cache folder: numba falls back on its own
        return method(*args)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return method(*args)
    finally:
        os.close(fd)  # closing releases the lock
