"""Streaming audio front end: PCM chunks -> frames -> log-mel / MFCC, plus audio sources.

:class:`AudioFeatures` turns PCM pushed in chunks of any size (int16 bytes, numpy or torch
int16 / int32 / float32 / float64) into feature frames, computing all frames a push
completes in one call. The maths is one pure function, :func:`.functional.log_mel`
(torchaudio's mel filterbank and DCT matrices, a float64 ``torch.fft.rfft``): the
reference, used offline and for a large push. A live chunk of up to 16 frames takes the
one fast path, a compiled numba call doing the same steps (its FFT ``numpy.fft.rfft``
through rocket-fft; ``_fused.py``), tested against the reference; without numba every
push runs the reference. Both take the FFT in float64, so they agree to float32 rounding
even in near-silent bands. It streams exactly: the
frames of a signal pushed in any chunking equal :meth:`AudioFeatures.offline` on the
whole signal (float32, to about 1e-5 absolute and relative; the frame count is exact).
It can resample on the fly with ``soxr.ResampleStream`` (e.g. a 48 kHz microphone into a
16 kHz model), mix or reject extra channels, pre-emphasise, and standardise by running
statistics.

Framing is ``center=False``: frame ``k`` covers samples ``[k * hop_length,
k * hop_length + win_length)``, so a frame is emitted as soon as its last sample arrives.
At the end of a stream :meth:`AudioFeatures.flush` drains the resampler and applies the
``tail`` rule (``"drop"`` samples no frame covers, or zero-``"pad"`` them into frames);
:meth:`AudioFeatures.offline` applies the same rule.

Sources yield float32 numpy chunks (``(T,)`` mono, ``(T, C)`` otherwise) and expose
``sample_rate``: :class:`WavSource` (8/16/24/32-bit PCM WAV through the stdlib, others
through soundfile), :class:`SoundFileSource` (FLAC, OGG, ... through soundfile),
:class:`RawPCMSource` (a binary stream such as stdin), :class:`TcpSource` (a socket) and
:class:`MicrophoneSource` (sounddevice, imported lazily). File sources can pace
themselves in real time (``realtime=True``) to stand in for a microphone.

Examples
--------
>>> import os, tempfile
>>> import numpy as np, torch
>>> from streamrnn.adapters.audio import AudioFeatures, WavSource, write_wav
>>> path = os.path.join(tempfile.mkdtemp(), "a.wav")
>>> write_wav(path, np.zeros(8000), 8000)  # one second of 8 kHz silence
>>> source = WavSource(path, chunk_ms=20)
>>> front = AudioFeatures(16000, "mfcc", input_rate=source.sample_rate)
>>> frames = [front.push(chunk, sample_rate=source.sample_rate) for chunk in source]
>>> torch.cat(frames + [front.flush()]).shape
torch.Size([98, 13])
"""

from __future__ import annotations

import os
import wave

import numpy as np

from streamrnn.utils import atomic_write, check_positive_int

from ._features import AudioFeatures
from ._files import FULL_SCALE, SoundFileSource, WavSource
from ._live import MicrophoneSource, RawPCMSource, TcpSource

__all__ = [
    "AudioFeatures",
    "MicrophoneSource",
    "RawPCMSource",
    "SoundFileSource",
    "TcpSource",
    "WavSource",
    "write_wav",
]


def write_wav(path, samples, sample_rate: int, sample_width: int = 2) -> None:
    """Write float samples in [-1, 1] to an integer-PCM WAV file with the stdlib, atomically.

    Samples are scaled by the full range of ``sample_width`` bytes (1: unsigned 8-bit,
    2, 3, 4: signed 16, 24, 32-bit) and rounded; +1.0 becomes the largest code.

    Shape
    -----
    samples ``(samples,)`` mono or ``(samples, channels)``.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> path = os.path.join(tempfile.mkdtemp(), "ramp.wav")
    >>> write_wav(path, np.array([-1.0, 0.0, 0.5, 1.0]), 8000, sample_width=1)
    >>> WavSource(path).read()
    array([-1.       ,  0.       ,  0.5      ,  0.9921875], dtype=float32)
    """
    check_positive_int("sample_rate", sample_rate)
    if sample_width not in FULL_SCALE:
        raise ValueError(f"sample_width must be 1, 2, 3 or 4 bytes, got {sample_width!r}")
    x = np.asarray(samples)
    if x.dtype.kind != "f" or x.ndim not in (1, 2):
        raise ValueError(
            f"samples must be a 1-D or 2-D float array, got dtype {x.dtype} and shape {x.shape}"
        )
    if x.size and not (np.isfinite(x).all() and np.abs(x).max() <= 1.0):
        raise ValueError("samples must be finite and within [-1, 1], got values outside")
    x2 = x.reshape(len(x), -1)
    scale = FULL_SCALE[sample_width]
    q = np.minimum(np.round(x2.astype(np.float64) * scale), scale - 1).astype(np.int64)
    if sample_width == 1:
        data = (q + 128).astype(np.uint8).tobytes()
    elif sample_width == 3:
        data = q.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3].tobytes()
    else:
        data = q.astype("<i2" if sample_width == 2 else "<i4").tobytes()
    def write(f) -> None:
        with wave.open(f, "wb") as w:
            w.setnchannels(x2.shape[1])
            w.setsampwidth(sample_width)
            w.setframerate(sample_rate)
            w.writeframes(data)

    atomic_write(os.fspath(path), write)
