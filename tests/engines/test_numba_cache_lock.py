"""numba's on-disk cache under several processes: every cached kernel's loads and saves
hold the lock of streamrnn.utils.lock_cache (two processes compiling at once can
otherwise leave an index entry naming another specialization's machine code:
numba/numba#4807; seen here as wrong weights and a segfault in the river engine's tests
after two pytest runs compiled side by side in one checkout); and every compiled
closure has a name of its own (``_jit._own_name``), since numba's symbol names alone let
closures cached by different processes run each other's code."""

from __future__ import annotations

from streamrnn.utils import lock_cache


def test_the_compiled_engine_and_the_audio_kernel_lock_their_caches():
    from streamrnn.adapters.audio import _fused
    from streamrnn.engines.compiled._jit import kernel

    def add(x):
        return x + 1

    for dispatcher in (kernel(add), _fused.push_frames):
        cache = dispatcher._cache
        assert cache.save_overload.func.__name__ == "_locked"
        assert cache.load_overload.func.__name__ == "_locked"
    assert lock_cache(add) is add  # not a numba dispatcher: returned as it is


FACTORY = '''
import numpy as np
from streamrnn.engines.compiled._jit import helper, kernel


def build(k):  # one closure per k, all under the qualified name build.<locals>.run
    @helper
    def scale(x, out):
        for i in range(x.shape[0]):
            v = x[i]
            for _ in range(k):
                v = np.tanh(v * 1.0001 + 0.5) + np.exp(-v * v) * np.sin(v)
            out[i] = v + k
        return out

    @kernel
    def run(x):
        out = np.empty_like(x)
        scale(x, out)
        scale(out, out)
        return out[0]

    return run
'''


def test_closures_compiled_by_different_processes_keep_their_own_code(tmp_path):
    # numba names machine code by qualified name and a per-process counter: the closure
    # for k = 2 compiled first by one process and the one for k = 3 compiled first by
    # another get one symbol, and a process loading both from the cache ran the first
    # one loaded for both (with plain numba.njit / register_jitable this prints the same
    # number twice). The compiled engine's factories build such closures per cell form.
    import subprocess
    import sys

    (tmp_path / "factory.py").write_text(FACTORY)

    def run(code: str) -> list[float]:
        out = subprocess.run([sys.executable, "-c", "import numpy as np, factory\n" + code],
                             cwd=tmp_path, capture_output=True, text=True, timeout=300,
                             check=True)
        return [float(v) for v in out.stdout.split()]

    two = run("print(factory.build(2)(np.ones(3)))")  # compiled and cached alone
    three = run("print(factory.build(3)(np.ones(3)))")
    assert two != three
    assert run("print(factory.build(2)(np.ones(3)), factory.build(3)(np.ones(3)))") == \
        two + three
    assert run("print(factory.build(3)(np.ones(3)), factory.build(2)(np.ones(3)))") == \
        three + two
