"""Energy endpointing of log-mel frames: offline word bounds and a streaming tracker (private).

Both work on the frame energy in dB relative to a full-scale signal, read off the log-mel
features themselves (:func:`frame_energy_db`), so they see exactly the frames the model
sees and are as chunk-invariant as the features.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import torch

from streamrnn.utils import check_number, check_positive_int

__all__ = ["Endpointer", "energy_reference_db", "frame_energy_db", "word_bounds"]


def energy_reference_db(features) -> float:
    """The frame energy, in dB of mel power, of white noise with unit variance.

    For a window ``w`` zero-padded to ``n_fft``, the one-sided power spectrum of white noise
    of variance ``s**2`` sums to about ``n_fft / 2 * sum(w**2) * s**2`` (Parseval), and the
    mel filters (peak 1, overlapping so they sum to about 1) keep about all of it.
    Subtracting this reference turns mel energy into dB relative to full-scale RMS.
    """
    windows = {"hann": torch.hann_window, "hamming": torch.hamming_window}
    w = windows[features.window](features.win_length, dtype=torch.float64)
    return 10.0 * math.log10(0.5 * features.n_fft * float((w * w).sum()))


def frame_energy_db(logmel, reference_db: float) -> np.ndarray:
    """Frame energies in dB relative to full-scale RMS, from natural-log mel powers.

    Shape
    -----
    ``(T, F)`` -> ``(T,)`` float64.
    """
    # log-mel values are log(power + offset) of bounded samples (|x| <= 1e6 is enforced
    # by the front end), at most ~40: exp in float64 cannot overflow, no max-shift needed
    power = np.exp(np.asarray(logmel, dtype=np.float64)).sum(axis=1)
    return np.log10(power) * 10.0 - reference_db


def word_bounds(
    energy_db, *, relative_db: float = 30.0, min_db: float = -55.0
) -> tuple[int, int] | None:
    """First and last frame of the spoken word of a clip that holds one word.

    A frame is voiced when its energy is within ``relative_db`` of the clip's loudest frame
    and above ``min_db`` (dB re full-scale RMS). The word runs from the first to the last
    voiced frame, pauses included; ``None`` if no frame is voiced.

    Shape
    -----
    ``(T,)`` -> ``(first, last)`` frame indices.
    """
    e = np.asarray(energy_db, dtype=np.float64)
    if e.size == 0:
        return None
    voiced = np.flatnonzero(e > max(float(e.max()) - relative_db, min_db))
    if voiced.size == 0:
        return None
    return int(voiced[0]), int(voiced[-1])


class Endpointer:
    """Streaming energy endpointer: is each frame voiced, and when did speech last end?

    A frame is voiced when its energy exceeds ``max(floor + margin_db, min_db)``, where the
    noise floor is the lowest energy of the last ``floor_frames`` frames. At the start of a
    stream the window is filled with ``init_db``, so speech from the very first frame is
    found and a steady noise is learnt within ``floor_frames`` frames.

    Parameters
    ----------
    margin_db
        How far above the noise floor a voiced frame is (dB, > 0).
    min_db
        Energy a voiced frame exceeds in any case (dB re full-scale RMS).
    floor_frames
        Frames of the noise-floor window (>= 1).
    init_db
        The floor assumed before any frame is seen.
    """

    def __init__(
        self,
        *,
        margin_db: float = 12.0,
        min_db: float = -55.0,
        floor_frames: int = 150,
        init_db: float = -60.0,
    ) -> None:
        self.margin_db = check_number("margin_db", margin_db, low=0, low_open=True)
        self.min_db = check_number("min_db", min_db)
        self.floor_frames = check_positive_int("floor_frames", floor_frames)
        self.init_db = check_number("init_db", init_db)
        self.reset()

    def reset(self) -> None:
        """Start a new stream."""
        self._window: deque[tuple[int, float]] = deque([(-1, self.init_db)])  # increasing
        self.frames = 0
        self.last_voiced = -1  # index of the last voiced frame, -1 if none yet

    @property
    def floor_db(self) -> float:
        """The current noise floor."""
        return self._window[0][1]

    def update(self, energy_db: float) -> bool:
        """Take the next frame's energy; return whether it is voiced."""
        k = self.frames
        voiced = energy_db > max(self.floor_db + self.margin_db, self.min_db)
        # Sliding minimum over the last floor_frames frames (monotonic deque); the prefill
        # counts as frame -1 and leaves once real frames fill the window.
        window = self._window
        while window and window[-1][1] >= energy_db:
            window.pop()
        window.append((k, energy_db))
        while window[0][0] <= k - self.floor_frames:
            window.popleft()
        if k < self.floor_frames - 1 and window[0][1] > self.init_db:
            window.appendleft((-1, self.init_db))
        if voiced:
            self.last_voiced = k
        self.frames = k + 1
        return voiced
