"""numba settings of the compiled engine's kernels, and the key of their on-disk cache.

Every kernel is compiled with the same options (:data:`OPTIONS`): ``cache=True`` (compiled
once, then loaded from ``__pycache__``), numpy's error model (a division by zero gives
inf, not an exception) and fused multiply-adds (``fastmath={"contract"}``: no
reassociation, so sums run in the order written), but for the few sums marked
:func:`reduction`, which run in the vectoriser's order.

numba keys a function's cache to the timestamp of its own file only: a kernel that calls a
function from another file would keep running the old callee after that file changed
(numba/numba#1833). The kernels here are therefore built by factories that take a
*stamp* (:func:`stamp`: a digest of this package's modules and of those that define the
cell forms a kernel calls, their files and their code as imported) as a closure variable,
and numba puts closure variables into the cache key: any edit of a file a kernel depends
on selects another cache entry, and a process still running the code of before an edit
does not store it under the new sources' key. No digest is kept by hand.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import pickle
import sys
from functools import cache
from pathlib import Path

import numpy as np
from numba import carray, njit, types
from numba.core import cgutils
from numba.core.serialize import dumps
from numba.extending import intrinsic, overload, register_jitable

from ..._numba import lock_cache

__all__ = ["OPTIONS", "at_address", "helper", "kernel", "reduction", "stamp", "typed"]

OPTIONS = {"error_model": "numpy", "fastmath": {"contract"}}

_jitable = register_jitable(**OPTIONS)
_reassociable = register_jitable(error_model="numpy", fastmath={"contract", "reassoc"})
_njit = njit(cache=True, nogil=True, **OPTIONS)


def _own_name(function):
    """Give a closure a name of its own: its qualified name plus a digest of what it
    closes over (what numba keys its cache entry to).

    numba names a compiled function's machine code by its qualified name and a counter
    of the process that compiled it. The factories here build one closure per cell form
    under one qualified name (``build.<locals>.push``), so two processes that compiled
    the forms in different orders cache different closures under the same symbol; a
    third process that loads both from the cache links one name to two bodies and runs
    the wrong one (seen: LSTM learning on the GRU's code, and a crash). With the digest
    in the name, closures over different values never share a symbol.
    """
    cells = function.__closure__
    if cells:
        try:
            values = tuple(c.cell_contents for c in cells)
            digest = hashlib.sha256(dumps(values)).hexdigest()[:12]
        except (ValueError, TypeError, AttributeError, pickle.PicklingError) as err:
            raise TypeError(f"cannot name the compiled closure {function.__qualname__}: "
                            f"its closure variables are not picklable ({err})") from err
        function.__qualname__ = f"{function.__qualname__}_{digest}"
    return function


def helper(function):
    """Decorator of a compiled function called from kernels (compiled into its callers)."""
    return _jitable(_own_name(function))


def reduction(function):
    """Decorator of a compiled sum whose terms may be added in any order (``reassoc``, for
    this function's own arithmetic only): the vectoriser splits it over vector lanes.
    For sums whose last bit nothing depends on, such as a clipping norm."""
    return _reassociable(_own_name(function))


def kernel(function):
    """Decorator of a kernel called from Python: compiled once, cached on disk, its cache
    locked across processes (:func:`streamrnn.utils.lock_cache`)."""
    return lock_cache(_njit(_own_name(function)))

_HERE = Path(__file__).resolve().parent


@cache
def _file_digest(path: str) -> bytes:
    return hashlib.sha256(Path(path).read_bytes()).digest()


def _stable(value) -> str | None:
    """``repr`` of a plain constant, the same in every process (set members sorted: their
    order follows the per-process string hash); ``None`` for anything else."""
    if isinstance(value, bool | int | float | complex | str | bytes | np.generic | type(None)):
        return repr(value)
    if isinstance(value, tuple | frozenset | set):
        items = [_stable(v) for v in value]
        if None in items:
            return None
        return repr(items if isinstance(value, tuple) else sorted(items))
    if isinstance(value, dict):
        items = [(_stable(k), _stable(v)) for k, v in value.items()]
        return None if any(None in kv for kv in items) else repr(items)
    return None


def _code(code) -> bytes:
    """The bytecode, names and constants of ``code`` and of the code nested in it."""
    out = [code.co_code, repr((code.co_names, code.co_varnames)).encode()]
    for c in code.co_consts:
        out.append(_code(c) if inspect.iscode(c) else str(_stable(c)).encode())
    return b"\0".join(out)


def _loaded_digest(module) -> bytes:
    """A digest of what ``module`` runs: its functions' code and its plain constants. A
    file edited after its module was imported (a test run while the sources change) has a
    new file digest but old code; without this part the old code would be cached under
    the new sources' key, and every later process would load it."""
    h = hashlib.sha256()
    for name, value in sorted(vars(module).items()):
        value = getattr(value, "py_func", value)  # a numba dispatcher: its Python function
        if inspect.isfunction(value) and value.__module__ == module.__name__:
            h.update(f"{name}:".encode() + _code(value.__code__))
        elif (text := _stable(value)) is not None:
            h.update(f"{name}={text}".encode())
    return h.digest()


def stamp(*functions) -> str:
    """A digest of this package's modules and of those defining ``functions`` (their files
    and their code as imported), and the functions' names: kernels built around different
    functions get different keys even where numba's pickling of their closures would not
    tell them apart."""
    package = __name__.rpartition(".")[0]
    modules = {f"{package}.{p.stem}" for p in _HERE.glob("*.py") if p.stem != "__init__"}
    modules.add(package)
    own = set()  # functions of a script, a notebook or a module without a file
    for f in functions:
        module = sys.modules.get(f.__module__)
        if f.__module__ == "__main__" or not isinstance(getattr(module, "__file__", None), str):
            own.add(f)
        else:
            modules.add(f.__module__)
    h = hashlib.sha256()
    for name in sorted(modules):
        module = importlib.import_module(name)
        h.update(_file_digest(str(Path(module.__file__).resolve())))
        h.update(_loaded_digest(module))
    for f in sorted(own, key=lambda f: f.__qualname__):  # the function itself, and its file
        source = inspect.getsourcefile(f)
        h.update(_code(f.__code__) + (_file_digest(source) if source else b""))
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


@intrinsic
def _void_pointer(typingctx, address):  # noqa: ARG001 - numba's intrinsic signature
    if not isinstance(address, types.Integer):
        return None

    def codegen(context, builder, signature, args):  # noqa: ARG001
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return types.voidptr(address), codegen


def at_address(address, rows, cols, like):
    """The C-contiguous ``(rows, cols)`` array of ``like``'s dtype whose data start at
    the integer ``address`` (a CPU tensor's ``data_ptr()``: the kernel reads a tensor
    without the ~0.7 us of ``Tensor.numpy()``). The caller keeps the memory alive and
    checks that it is contiguous, of that dtype and that size (compiled code only)."""
    raise TypeError("at_address is called from compiled code")


@overload(at_address, jit_options=OPTIONS)
def _at_address(address, rows, cols, like):
    dtype = np.float32 if like.dtype == types.float32 else np.float64
    return lambda address, rows, cols, like: carray(  # noqa: ARG005
        _void_pointer(address), (rows, cols), dtype)
