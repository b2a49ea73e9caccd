"""numba's on-disk cache under several processes: every cached kernel's loads and saves
hold the lock of streamrnn.utils.lock_cache (two processes compiling at once can
otherwise leave an index entry naming another specialization's machine code:
numba/numba#4807; seen here as wrong weights and a segfault in the river engine's tests
after two pytest runs compiled side by side in one checkout)."""

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
