"""Detections, a stream's lead of silence, the demo recording and clip endpointing
(private; public in ``speech``)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from importlib import resources

from streamrnn.adapters.audio import AudioFeatures

from ._endpoint import energy_reference_db, frame_energy_db
from ._endpoint import word_bounds as _frame_bounds

__all__ = ["LABELS", "Detection", "demo_path", "word_bounds"]

#: Class names by index: the digits, then blank (silence, noise, between words).
LABELS = ("0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "blank")


@dataclass(frozen=True)
class Detection:
    """One recognised digit.

    Attributes
    ----------
    digit : int
        0 to 9.
    time_s : float
        Stream time (seconds from the first sample) at which it was emitted.
    latency_ms : float
        Emission time minus the end of the word as the energy endpointer saw it (>= 0).

    Threads
    -------
    Not changed after it is built: safe to read from several threads at once.

    Examples
    --------
    >>> d = Detection(7, 1.235, 40.0)
    >>> d.as_dict()
    {'digit': 7, 'time_s': 1.235, 'latency_ms': 40.0}
    """

    digit: int
    time_s: float
    latency_ms: float

    @classmethod
    def at(cls, digit: int, k: int, last: int, hop: int, win: int, lead: int,
           rate: int) -> Detection:
        """The detection emitted at frame ``k`` when the endpointer's last voiced frame is
        ``last``: ``time_s`` is the end of frame ``k`` in stream time (frame 0 starts
        ``lead`` samples before the stream; see :func:`framing`), ``latency_ms`` the frames
        since ``last``.

        Examples
        --------
        >>> Detection.at(3, 10, 4, 80, 200, 160, 8000)
        Detection(digit=3, time_s=0.105, latency_ms=60.0)
        """
        return cls(digit, (k * hop + win - lead) / rate, (k - last) * hop / rate * 1000.0)

    def as_dict(self) -> dict:
        """The fields as a JSON-ready dict (times rounded to 0.1 ms)."""
        out = asdict(self)
        out["time_s"] = round(self.time_s, 4)
        out["latency_ms"] = round(self.latency_ms, 1)
        return out


def lead_samples(features) -> int:
    """``P``, the samples of digital silence every stream starts with (model rate): the
    multiple of ``hop_length`` in ``[win_length - hop_length, win_length)``.

    A stream's first frames then span its start, and every chunk of ``n`` hops makes
    exactly ``n`` frames, from the first chunk on: what lets the exported graph carry
    ``P`` samples as its whole framing state, for every stream of a batch alike.

    Examples
    --------
    >>> fe = AudioFeatures(8000, n_mels=40, win_length=200, hop_length=80)
    >>> lead_samples(fe)
    160
    """
    hop, win = features.hop_length, features.win_length
    return hop * math.ceil((win - hop) / hop)


def start_stream(features) -> None:
    """Reset ``features`` for a new stream and feed it the stream's lead of silence
    (:func:`lead_samples`, at its input rate; shorter than a frame, so no frame yet)."""
    features.reset()
    n = round(lead_samples(features) * features.input_rate / features.sample_rate)
    # int16 zero bytes: any later push (array or bytes) may follow them
    features._push(bytes(2 * features.in_channels * n), None)


def framing(features) -> tuple[int, int, int, int]:
    """``(hop, win, lead, rate)`` of a front end: what :meth:`Detection.at` needs."""
    return (features.hop_length, features.win_length, lead_samples(features),
            features.sample_rate)


def demo_path() -> str:
    """Path of the shipped demo recording ``data/digits_demo.wav`` (8 kHz, 16-bit mono).

    Its source clips are listed in ``data/digits_demo.json`` and ``data/ATTRIBUTION.md``.

    Examples
    --------
    >>> demo_path().endswith("digits_demo.wav")
    True
    """
    return str(resources.files("streamrnn.apps.speech").joinpath("data", "digits_demo.wav"))


def word_bounds(
    signal, features: AudioFeatures, *, relative_db: float = 30.0, min_db: float = -55.0
) -> tuple[float, float] | None:
    """Start and end (seconds) of the one word in a short clip, by energy endpointing.

    Frames whose energy (from ``features.offline(signal)``) is within ``relative_db`` of
    the loudest frame and above ``min_db`` dB re full-scale RMS are voiced; the word runs
    from the start of the first voiced frame to the end of the last. ``None`` if none is.

    Shape
    -----
    signal ``(samples,)`` at ``features.input_rate`` -> ``(start_s, end_s)``.

    Examples
    --------
    >>> import numpy as np
    >>> fe = AudioFeatures(8000, n_mels=40, win_length=200, hop_length=80)
    >>> x = np.zeros(8000, dtype=np.float32)
    >>> x[2000:4000] = 0.3 * np.sin(np.arange(2000) * 0.3)
    >>> word_bounds(x, fe)
    (0.23, 0.515)
    """
    feats = features.offline(signal).numpy()
    energy = frame_energy_db(feats, energy_reference_db(features))
    bounds = _frame_bounds(energy, relative_db=relative_db, min_db=min_db)
    if bounds is None:
        return None
    hop, win, sr = features.hop_length, features.win_length, features.sample_rate
    return bounds[0] * hop / sr, (bounds[1] * hop + win) / sr
