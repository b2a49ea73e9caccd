"""Framing buffer of the streaming audio front end: the fast path or the reference (private).

A live push is 10-20 ms of audio: one or two frames. For so few frames the fixed cost
of the torch calls of the reference (:func:`.functional.log_mel`, ~45 us) is 10-20x
the arithmetic, so a push completing at most ``max_small`` frames takes the compiled
fast path, :func:`._fused.push_frames` (~4 us for two frames at 16 kHz / 25 ms /
40 mels), on a preallocated buffer. Every other push (a large one, a sample the kernel
declines, or any push without numba: the one non-numba fallback) runs the reference on
the buffered samples plus the push, exactly as :meth:`AudioFeatures.offline` does.
"""

from __future__ import annotations

import numpy as np

from ._dsp import FrameFeatures
from ._fused import FILL, HAVE_NUMBA, TOTAL, FusedPlan, push_frames

__all__ = ["HAVE_NUMBA", "SMALL_FRAMES", "FrameStream"]

#: Most frames a push may complete to take the fast path (the reference wins beyond, and
#: the kernel's memory grows with the push; this bounds the preallocated buffer).
SMALL_FRAMES = 16


class FrameStream:
    """Samples waiting for their frames, and the features of the frames a push completes.

    ``push(x)`` appends samples and returns the features of every frame they complete
    (frame ``k`` of the stream covers samples ``[k * hop, k * hop + win)``): with the
    compiled kernel if the buffer then holds at most ``max_small`` frames' worth of
    samples, else with ``compute`` (the reference). Both give the features of
    :class:`~._dsp.FrameFeatures` on the same frames to float32 rounding. ``fused=False``
    (or no numba) keeps every push on the reference.

    Shape
    -----
    ``(samples,)`` float32 -> ``(T, F)`` float32 numpy, a new array (``T`` may be 0).
    """

    def __init__(
        self, compute: FrameFeatures, win_length: int, max_small: int = SMALL_FRAMES,
        fused: bool = True,
    ) -> None:  # fmt: skip
        self.compute, self.win, self.hop = compute, win_length, compute.hop_length
        self.n_features = compute.n_features
        # Up to cap samples, a push completes at most max_small frames.
        self.cap = win_length + max_small * self.hop - 1
        self._buf = np.zeros(self.cap, dtype=np.float32)
        self.fused = None
        if HAVE_NUMBA and fused:
            dct = compute.dct.numpy() if compute.kind == "mfcc" else None
            self.fused = FusedPlan.build(
                win_length, self.hop, self.cap, compute.n_fft, compute.window.numpy(),
                compute.fb.numpy(), dct, compute.log_offset,
            )  # fmt: skip
        # fill and n_samples live in an int64 array that the kernel updates in place
        self._ints = np.zeros(2, dtype=np.int64) if self.fused is None else self.fused.ints
        #: push_frames(x, *fused_args) is the whole small push (None without a plan)
        self.fused_args = None
        if self.fused is not None:
            self.fused_args = (self._buf, self.fused.ints, self.fused.real)
        self.reset()

    @property
    def fill(self) -> int:
        """Samples in the buffer: from the start of the next frame on."""
        return int(self._ints[FILL])

    @property
    def n_samples(self) -> int:
        """Samples pushed since the last :meth:`reset`."""
        return int(self._ints[TOTAL])

    def reset(self) -> None:
        """Drop the buffered samples."""
        self._ints[FILL] = 0
        self._ints[TOTAL] = 0

    def push(self, x: np.ndarray) -> np.ndarray:
        """Append ``x`` (float32, 1-D); return the features of the frames it completes."""
        if self.fused_args is not None and x.dtype == np.float32 and x.flags.c_contiguous:
            out = push_frames(x, *self.fused_args)
            if out is not None:  # else nothing changed: too large (or a sample too big)
                return out
        return self._push_reference(x)

    def _push_reference(self, x: np.ndarray) -> np.ndarray:
        """Every frame of buffer + ``x`` in one call of the reference."""
        seg = np.concatenate((self._buf[: self.fill], np.asarray(x, dtype=np.float32)))
        self._ints[TOTAL] += len(x)
        n, win, hop = len(seg), self.win, self.hop
        t = 0 if n < win else (n - win) // hop + 1
        if t:
            feats = self.compute(seg[: (t - 1) * hop + win]).numpy()
        else:
            feats = np.zeros((0, self.n_features), dtype=np.float32)
        rest = seg[t * hop :]  # fewer than win samples: fits the buffer
        self._buf[: len(rest)] = rest
        self._ints[FILL] = len(rest)
        return feats
