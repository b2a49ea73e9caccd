"""Audio file sources: WAV through the stdlib, FLAC / OGG / ... through soundfile (private)."""

from __future__ import annotations

import os
import time
import wave

import numpy as np

from streamrnn.utils import check_bool, check_choice, check_number

from ._convert import decode_pcm

__all__ = ["FULL_SCALE", "ChunkSource", "SoundFileSource", "WavSource"]

_WAV_FORMATS = {1: "u8", 2: "s16le", 3: "s24le", 4: "s32le"}
#: Integer PCM full scale by sample width in bytes.
FULL_SCALE = {1: 128, 2: 32768, 3: 8388608, 4: 2147483648}


def import_soundfile(who: str):
    """Import the optional ``soundfile`` package, or raise an ``ImportError`` saying how."""
    try:
        import soundfile
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            f"{who} needs the optional dependency soundfile: pip install soundfile "
            "(or pip install 'streamrnn[audio]')"
        ) from exc
    return soundfile


class ChunkSource:
    """Base of the sources: chunking and optional real-time pacing (not public).

    Subclasses set ``sample_rate``, ``channels``, ``chunk_ms``, ``realtime`` and implement
    ``_chunks()``, a generator of float32 chunks ``(T,)`` (mono) or ``(T, C)``.
    """

    sample_rate: int
    channels: int
    chunk_ms: float
    realtime: bool = False

    @property
    def chunk_frames(self) -> int:
        """Samples per channel in each chunk (the last one may be shorter)."""
        return max(1, round(self.sample_rate * self.chunk_ms / 1000))

    def __iter__(self):
        chunks = self._chunks()
        if not self.realtime:
            yield from chunks
            return
        # A chunk is handed out when its last sample would have been captured live.
        start, played = time.perf_counter(), 0
        for chunk in chunks:
            played += len(chunk)
            delay = start + played / self.sample_rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            yield chunk

    def read(self) -> np.ndarray:
        """All remaining samples at once, without pacing.

        Shape
        -----
        -> ``(samples,)`` float32 for mono, ``(samples, channels)`` otherwise.
        """
        parts = list(self._chunks())
        if parts:
            return np.concatenate(parts)
        shape = (0,) if self.channels == 1 else (0, self.channels)
        return np.zeros(shape, dtype=np.float32)

    def _chunks(self):  # pragma: no cover - abstract
        raise NotImplementedError


class WavSource(ChunkSource):
    """Chunks of a WAV file as float32 numpy arrays, optionally paced in real time.

    Integer PCM of 8 (unsigned), 16, 24 and 32 bits is read with the stdlib ``wave``
    module and scaled to [-1, 1); other WAV encodings the stdlib rejects (float,
    WAVE_FORMAT_EXTENSIBLE) are read through soundfile when it is installed.

    Parameters
    ----------
    path
        The file (``str`` or ``os.PathLike``); the header is read at construction, the
        samples on each iteration (so a source can be iterated again).
    chunk_ms
        Chunk duration in milliseconds (> 0): ``round(sample_rate * chunk_ms / 1000)``
        samples, at least one; the last chunk may be shorter.
    realtime
        Hand out each chunk only when its last sample would have been captured by a live
        microphone started at the first ``next()`` (stands in for :class:`MicrophoneSource`).
    truncated
        A file whose data chunk declares more frames than the file holds: ``"raise"`` a
        ``ValueError`` at construction, or ``"count"`` the missing frames in
        :attr:`n_missing_frames` and read the complete frames that are there (a trailing
        partial frame is dropped). Checked on the stdlib path only.

    Attributes
    ----------
    sample_rate, channels : int
        From the header.
    sample_width : int or None
        Bytes per sample of integer PCM (``None`` when read through soundfile).
    n_frames : int
        Sample frames that iteration yields.
    n_missing_frames : int
        Frames declared by the header but absent from a truncated file.

    Shape
    -----
    each chunk ``(T,)`` float32 for mono, ``(T, C)`` otherwise, ``T <= chunk_frames``.

    Threads
    -------
    An iterator: iterate it from one thread at a time (not locked).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from streamrnn.adapters.audio import write_wav
    >>> path = os.path.join(tempfile.mkdtemp(), "tone.wav")
    >>> tone = np.sin(np.linspace(0, 200 * np.pi, 8000)).astype(np.float32) * 0.5
    >>> write_wav(path, tone, 8000, sample_width=3)
    >>> src = WavSource(path, chunk_ms=20)
    >>> src.sample_rate, src.channels, src.sample_width, src.n_frames
    (8000, 1, 3, 8000)
    >>> chunks = list(src)
    >>> len(chunks), chunks[0].shape, chunks[0].dtype
    (50, (160,), dtype('float32'))
    >>> bool(np.abs(np.concatenate(chunks) - tone).max() < 1e-6)
    True
    """

    def __init__(
        self, path, chunk_ms: float = 20.0, realtime: bool = False, *, truncated: str = "raise"
    ) -> None:
        self.path = path
        self.chunk_ms = check_number("chunk_ms", chunk_ms, low=0, low_open=True)
        self.realtime = check_bool("realtime", realtime)
        self.truncated = check_choice("truncated", truncated, ("raise", "count"))
        self.sample_width: int | None = None
        self.n_missing_frames = 0
        self._soundfile = False
        with open(path, "rb") as f:
            try:
                w = wave.open(f)
            except wave.Error as exc:
                if "unknown format" not in str(exc):
                    raise ValueError(
                        f"path {path!r} is not a readable WAV file: {exc} "
                        "(SoundFileSource reads FLAC, OGG and other formats)"
                    ) from exc
                self._open_with_soundfile()
                return
            except EOFError as exc:
                raise ValueError(
                    f"path {path!r} is not a readable WAV file: the header ends early"
                ) from exc
            self.sample_rate = w.getframerate()
            self.channels = w.getnchannels()
            self.sample_width = w.getsampwidth()
            declared = w.getnframes()
            data_start = f.tell()
            size = os.fstat(f.fileno()).st_size
        if self.sample_width not in _WAV_FORMATS:
            raise ValueError(
                f"path {path!r}: WAV sample width must be 1, 2, 3 or 4 bytes, "
                f"got {self.sample_width}"
            )
        present = (size - data_start) // (self.sample_width * self.channels)
        self.n_frames = min(declared, present)
        if present < declared:
            if self.truncated == "raise":
                raise ValueError(
                    f"path {path!r}: WAV file is truncated: its header declares {declared} "
                    f"frames but only {present} complete frames are present; pass "
                    "truncated='count' to read them and count the missing ones"
                )
            self.n_missing_frames = declared - present

    def _open_with_soundfile(self) -> None:
        sf = import_soundfile("WavSource for non-integer WAV encodings")
        self._soundfile = True
        info = sf.info(os.fspath(self.path))
        self.sample_rate, self.channels, self.n_frames = info.samplerate, info.channels, info.frames

    def _chunks(self):
        if self._soundfile:
            yield from _soundfile_chunks(self.path, self.chunk_frames)
            return
        fmt, frame_bytes = _WAV_FORMATS[self.sample_width], self.sample_width * self.channels
        with open(self.path, "rb") as f, wave.open(f) as w:
            left = self.n_frames
            while left > 0:
                data = w.readframes(min(self.chunk_frames, left))
                got = len(data) // frame_bytes
                if got == 0:
                    raise ValueError(
                        f"path {self.path!r}: WAV file shrank while being read: "
                        f"{left} frames expected are missing"
                    )
                left -= got
                x = decode_pcm(data[: got * frame_bytes], fmt, self.channels)
                yield x[:, 0] if self.channels == 1 else x


def _soundfile_chunks(path, chunk_frames: int):
    sf = import_soundfile("reading this file")
    with sf.SoundFile(os.fspath(path)) as f:
        yield from f.blocks(blocksize=chunk_frames, dtype="float32", always_2d=False)


class SoundFileSource(ChunkSource):
    """Chunks of any file libsndfile reads (FLAC, OGG/Vorbis, WAV, AIFF, ...), via soundfile.

    soundfile is imported on construction (an ``ImportError`` says how to install it).

    Parameters
    ----------
    path
        The file; its header is read at construction.
    chunk_ms, realtime
        As for :class:`WavSource`.

    Attributes
    ----------
    sample_rate, channels, n_frames : int
        From the file's header.

    Shape
    -----
    each chunk ``(T,)`` float32 for mono, ``(T, C)`` otherwise.

    Threads
    -------
    An iterator: iterate it from one thread at a time (not locked).

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np, soundfile
    >>> path = os.path.join(tempfile.mkdtemp(), "noise.flac")
    >>> soundfile.write(path, np.zeros((1600, 2), dtype=np.float32), 16000)
    >>> src = SoundFileSource(path, chunk_ms=20)
    >>> src.sample_rate, src.channels, [c.shape for c in src][:2]
    (16000, 2, [(320, 2), (320, 2)])
    """

    def __init__(self, path, chunk_ms: float = 20.0, realtime: bool = False) -> None:
        sf = import_soundfile("SoundFileSource")
        self.path = path
        self.chunk_ms = check_number("chunk_ms", chunk_ms, low=0, low_open=True)
        self.realtime = check_bool("realtime", realtime)
        try:
            info = sf.info(os.fspath(path))
        except sf.LibsndfileError as exc:
            raise ValueError(f"path {path!r} is not an audio file soundfile reads: {exc}") from exc
        self.sample_rate, self.channels, self.n_frames = info.samplerate, info.channels, info.frames

    def _chunks(self):
        yield from _soundfile_chunks(self.path, self.chunk_frames)
