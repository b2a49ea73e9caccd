"""Frame posteriors -> digit emissions: model-segmented posterior voting (private).

The rule (documented on :mod:`streamrnn.apps.speech`): a word is a run of frames in
which blank has posterior ``< 0.5`` (blank runs shorter than ``release_frames`` inside it
do not end it). At the ``release_frames``-th blank frame after it, the digit with the
largest summed posterior over the word's frames is emitted (each frame's vote weighted
``decay`` times the next frame's: with ``decay < 1`` the end of the word, where the
causal model has heard the most of it, counts most), if the word has at least
``min_frames`` frames, that digit's weighted mean posterior is ``>= threshold``, the
frame energy from the word's first frame to this one spans ``>= min_range_db`` (a word
rises and falls; a noise that starts and stays does not), and the endpointer heard a
voiced frame within the last ``voice_frames`` frames.
"""

from __future__ import annotations

import math

import numpy as np

from streamrnn.utils import check_number, check_positive_int

__all__ = [
    "DECODER_DEFAULTS",
    "FrameDecoder",
    "check_decoder_config",
    "frames_since",
    "softmax",
]

#: The decoder settings and their defaults.
DECODER_DEFAULTS = {
    "threshold": 0.2,
    "min_frames": 4,
    "release_frames": 6,
    "voice_frames": 60,
    "min_range_db": 10.0,
    "decay": 0.8,
}


def check_decoder_config(config: dict) -> dict:
    """Validate decoder settings (unknown names and bad values raise ``ValueError``)."""
    unknown = set(config) - set(DECODER_DEFAULTS)
    if unknown:
        raise ValueError(
            f"decoder settings must be among {sorted(DECODER_DEFAULTS)}, got {sorted(unknown)}"
        )
    out = {**DECODER_DEFAULTS, **config}
    out["threshold"] = check_number("threshold", out["threshold"], low=0, high=1, low_open=True)
    out["min_range_db"] = check_number("min_range_db", out["min_range_db"], low=0)
    out["decay"] = check_number("decay", out["decay"], low=0, high=1, low_open=True)
    for name in ("min_frames", "release_frames", "voice_frames"):
        out[name] = check_positive_int(name, out[name])
    return out


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax (float32 in, float32 out).

    Shape
    -----
    ``(T, C)`` -> ``(T, C)``.
    """
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    z /= z.sum(axis=1, keepdims=True)
    return z


class FrameDecoder:
    """The emission rule over frame posteriors whose last class is blank."""

    def __init__(
        self,
        *,
        threshold: float,
        min_frames: int,
        release_frames: int,
        voice_frames: int,
        min_range_db: float,
        decay: float = DECODER_DEFAULTS["decay"],
    ) -> None:
        cfg = check_decoder_config(
            {
                "threshold": threshold,
                "min_frames": min_frames,
                "release_frames": release_frames,
                "voice_frames": voice_frames,
                "min_range_db": min_range_db,
                "decay": decay,
            }
        )
        self.min_range_db = cfg["min_range_db"]
        self.decay = cfg["decay"]
        self.threshold = cfg["threshold"]
        self.min_frames = cfg["min_frames"]
        self.release_frames = cfg["release_frames"]
        self.voice_frames = cfg["voice_frames"]
        self.reset()

    def reset(self) -> None:
        """Forget the word in progress."""
        self._votes = np.zeros(10)
        self._weight = 0.0  # the sum of the votes' weights (the frames, for decay 1)
        self._frames = 0  # non-blank frames of the word in progress
        self._blank_run = 0
        self._lo, self._hi = math.inf, -math.inf  # energy range since the word began

    def update(self, p: np.ndarray, frames_since_voice: float, energy_db: float) -> int | None:
        """Take one frame's posteriors ``(C,)`` and energy; return the digit emitted, if any."""
        blank = len(p) - 1
        if p[blank] < 0.5:
            self._votes *= self.decay  # earlier frames count decay times less per frame
            self._votes += p[:blank]
            self._weight = self._weight * self.decay + 1.0
            self._frames += 1
            self._blank_run = 0
        elif self._frames:
            self._blank_run += 1
        if self._frames == 0:
            return None
        self._lo, self._hi = min(self._lo, energy_db), max(self._hi, energy_db)
        if self._blank_run < self.release_frames:
            return None
        d = int(np.argmax(self._votes))
        ok = (
            self._frames >= self.min_frames
            and self._votes[d] / self._weight >= self.threshold
            and self._hi - self._lo >= self.min_range_db
            and frames_since_voice < self.voice_frames
        )
        self.reset()
        return d if ok else None


def frames_since(last: int, now: int) -> float:
    """Frames from frame ``last`` to frame ``now`` (infinite if ``last`` is -1, never)."""
    return math.inf if last < 0 else float(now - last)
