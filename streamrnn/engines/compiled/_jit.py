"""numba settings of the compiled engine's kernels, and the key of their on-disk cache.

Every kernel is compiled with the same options (:data:`OPTIONS`): ``cache=True`` (compiled
once, then loaded from ``__pycache__``), numpy's error model (a division by zero gives
inf, not an exception) and fused multiply-adds (``fastmath={"contract"}``: no
reassociation, so sums run in the order written).

numba keys a function's cache to the timestamp of its own file only: a kernel that calls a
function from another file would keep running the old callee after that file changed
(numba/numba#1833). The kernels here are therefore built by factories that take a
*stamp* (:func:`stamp`: a digest of this package's sources and of the files that define
the cell forms a kernel calls) as a closure variable, and numba puts closure variables
into the cache key: any edit of a file a kernel depends on selects another cache entry.
No digest is kept by hand.
"""

from __future__ import annotations

import hashlib
import inspect
from functools import cache
from pathlib import Path

from numba import njit, types
from numba.extending import overload, register_jitable

__all__ = ["OPTIONS", "helper", "kernel", "stamp", "typed"]

OPTIONS = {"error_model": "numpy", "fastmath": {"contract"}}

#: Decorator of a compiled function called from kernels (compiled into its callers).
helper = register_jitable(**OPTIONS)

#: Decorator of a kernel called from Python (compiled once, cached on disk).
kernel = njit(cache=True, nogil=True, **OPTIONS)

_HERE = Path(__file__).resolve().parent


@cache
def _file_digest(path: str) -> bytes:
    return hashlib.sha256(Path(path).read_bytes()).digest()


def stamp(*functions) -> str:
    """A digest of this package's sources and of the files defining ``functions``, and the
    functions' names: kernels built around different functions get different keys even
    where numba's pickling of their closures would not tell them apart."""
    files = {str(p) for p in _HERE.glob("*.py")}
    files.update(str(Path(inspect.getsourcefile(f)).resolve()) for f in functions)
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(_file_digest(f))
    names = ",".join(f"{f.__module__}.{f.__qualname__}" for f in functions)
    return f"{h.hexdigest()[:16]}:{names}"


def typed(like, value):
    """``value`` as a scalar of ``like``'s dtype (float32 arithmetic stays float32)."""
    return like.dtype.type(value)


@overload(typed, jit_options=OPTIONS)
def _typed(like, value):
    if like.dtype == types.float32:
        return lambda like, value: types.float32(value)  # noqa: ARG005
    return lambda like, value: types.float64(value)  # noqa: ARG005
