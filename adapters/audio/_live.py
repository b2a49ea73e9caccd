"""Live audio sources: raw PCM from a binary stream or a TCP socket, a microphone (private)."""

from __future__ import annotations

import socket

import numpy as np

from streamrnn.utils import (
    check_bool,
    check_choice,
    check_int,
    check_number,
    check_positive_int,
)

from ._convert import SAMPLE_FORMATS, decode_pcm, split_frames
from ._files import ChunkSource

__all__ = ["MicrophoneSource", "RawPCMSource", "TcpSource"]


def _raw_chunks(read, owner, sample_format: str, channels: int, chunk_frames: int):
    """Read ``read(n) -> bytes`` until it returns nothing; yield whole chunks of samples.

    Chunks hold ``chunk_frames`` frames (the last one may be shorter) whatever sizes the
    transport delivers; the bytes of an incomplete last frame are added to
    ``owner.n_dropped_bytes``.
    """
    frame_bytes = SAMPLE_FORMATS[sample_format][0] * channels
    want = chunk_frames * frame_bytes
    buf = b""
    while True:
        data = read(want - len(buf))
        if not data:
            break
        if not isinstance(data, bytes | bytearray):
            raise ValueError(
                f"stream must be a binary stream whose read() returns bytes, got "
                f"{type(data).__name__} (for standard input use sys.stdin.buffer)"
            )
        buf += data
        if len(buf) >= want:
            x = decode_pcm(buf[:want], sample_format, channels)
            buf = buf[want:]
            yield x[:, 0] if channels == 1 else x
    whole, rest = split_frames(buf, frame_bytes)
    owner.n_dropped_bytes += len(rest)
    if whole:
        x = decode_pcm(whole, sample_format, channels)
        yield x[:, 0] if channels == 1 else x


class _RawConfig(ChunkSource):
    def _configure(self, sample_rate, sample_format, channels, chunk_ms) -> None:
        self.sample_rate = check_positive_int("sample_rate", sample_rate)
        self.sample_format = check_choice("sample_format", sample_format, tuple(SAMPLE_FORMATS))
        self.channels = check_positive_int("channels", channels)
        self.chunk_ms = check_number("chunk_ms", chunk_ms, low=0, low_open=True)
        self.n_dropped_bytes = 0


class RawPCMSource(_RawConfig):
    """Chunks of headerless interleaved PCM read from a blocking binary stream (e.g. stdin).

    The stream is read until end of file and is not closed (its opener owns it). A
    trailing incomplete sample frame is dropped and counted in :attr:`n_dropped_bytes`.

    Parameters
    ----------
    stream
        Anything with ``read(n) -> bytes``: ``sys.stdin.buffer``, an ``open(..., "rb")``
        file, ``io.BytesIO``, a subprocess pipe.
    sample_rate
        Rate of the stream in Hz (raw PCM carries none).
    sample_format
        ``"s16le"`` (default), ``"s24le"``, ``"s32le"``, ``"u8"`` or ``"f32le"``.
    channels
        Interleaved channels.
    chunk_ms, realtime
        As for :class:`WavSource` (``realtime`` paces a file piped in faster than live).

    Shape
    -----
    each chunk ``(T,)`` float32 for mono, ``(T, C)`` otherwise.

    Threads
    -------
    An iterator: iterate it from one thread at a time (not locked).

    Examples
    --------
    >>> import io
    >>> import numpy as np
    >>> pcm = (np.arange(800, dtype=np.int16) * 8).tobytes() + b"\\x01"  # 800 samples + 1 byte
    >>> src = RawPCMSource(io.BytesIO(pcm), 16000, chunk_ms=20)
    >>> [c.shape for c in src], src.n_dropped_bytes
    ([(320,), (320,), (160,)], 1)

    From the shell, ``arecord -f S16_LE -r 16000 -c 1 | python app.py`` with
    ``RawPCMSource(sys.stdin.buffer, 16000)``.
    """

    def __init__(
        self,
        stream,
        sample_rate: int,
        *,
        sample_format: str = "s16le",
        channels: int = 1,
        chunk_ms: float = 20.0,
        realtime: bool = False,
    ) -> None:
        if not callable(getattr(stream, "read", None)):
            raise ValueError(
                f"stream must have a read(n) method returning bytes, got {type(stream).__name__}"
            )
        self.stream = stream
        self._configure(sample_rate, sample_format, channels, chunk_ms)
        self.realtime = check_bool("realtime", realtime)

    def _chunks(self):
        yield from _raw_chunks(
            self.stream.read, self, self.sample_format, self.channels, self.chunk_frames
        )


class TcpSource(_RawConfig):
    """Chunks of headerless PCM received over TCP, as a client or as a one-peer server.

    With ``listen=False`` each iteration connects to ``(host, port)`` and reads until the
    peer closes. With ``listen=True`` the socket is bound at construction (``port=0``
    picks a free port, see :attr:`port`) and each iteration accepts one connection and
    reads it to its end; :meth:`close` (or a ``with`` block) releases the port.

    Parameters
    ----------
    port
        TCP port (``0`` only with ``listen=True``).
    sample_rate, sample_format, channels, chunk_ms
        As for :class:`RawPCMSource`.
    host
        Address to connect to or bind, ``"127.0.0.1"`` by default (loopback only).
    listen
        Serve instead of connecting.
    timeout
        Seconds to wait for a connection or for data before ``TimeoutError``; ``None``
        waits forever.

    Shape
    -----
    each chunk ``(T,)`` float32 for mono, ``(T, C)`` otherwise.

    Threads
    -------
    An iterator: iterate it from one thread at a time (not locked).

    Examples
    --------
    >>> import socket, threading
    >>> import numpy as np
    >>> with TcpSource(0, 16000, listen=True, timeout=5.0) as src:
    ...     def send():
    ...         with socket.create_connection(("127.0.0.1", src.port)) as peer:
    ...             peer.sendall(np.zeros(1000, dtype=np.int16).tobytes())
    ...     sender = threading.Thread(target=send)
    ...     sender.start()
    ...     sizes = [len(chunk) for chunk in src]
    ...     sender.join()
    >>> sizes
    [320, 320, 320, 40]
    """

    def __init__(
        self,
        port: int,
        sample_rate: int,
        *,
        host: str = "127.0.0.1",
        listen: bool = False,
        sample_format: str = "s16le",
        channels: int = 1,
        chunk_ms: float = 20.0,
        timeout: float | None = None,
    ) -> None:
        self.listen = check_bool("listen", listen)
        self.port = check_int("port", port, minimum=0 if self.listen else 1)
        if self.port > 65535:
            raise ValueError(f"port must be in [{0 if listen else 1}, 65535], got {port}")
        if not isinstance(host, str) or not host:
            raise ValueError(f"host must be a non-empty string, got {host!r}")
        self.host = host
        self.timeout = check_number("timeout", timeout, low=0, low_open=True, none_ok=True)
        self._configure(sample_rate, sample_format, channels, chunk_ms)
        self._server: socket.socket | None = None
        if self.listen:
            self._server = socket.create_server((host, self.port))
            self._server.settimeout(self.timeout)
            self.port = self._server.getsockname()[1]

    def close(self) -> None:
        """Release the listening socket (no-op for a client)."""
        if self._server is not None:
            self._server.close()
            self._server = None

    def __enter__(self) -> TcpSource:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _chunks(self):
        if self.listen:
            if self._server is None:
                raise ValueError("TcpSource is closed: build a new one to listen again")
            conn, _ = self._server.accept()
        else:
            conn = socket.create_connection((self.host, self.port), timeout=self.timeout)
        with conn:
            conn.settimeout(self.timeout)
            yield from _raw_chunks(
                conn.recv, self, self.sample_format, self.channels, self.chunk_frames
            )


class MicrophoneSource(ChunkSource):
    """Live chunks from an input device through sounddevice (PortAudio), forever.

    sounddevice is imported when iteration starts, so building one (e.g. in a
    configuration) needs no audio stack. Stop by breaking out of the loop; the device is
    closed then. Input overflows (chunks not read in time) are counted in
    :attr:`n_overflows`.

    Parameters
    ----------
    sample_rate
        Capture rate in Hz (the device may have to support it natively).
    channels
        Channels to capture.
    chunk_ms
        Chunk duration in milliseconds.
    device
        sounddevice device index or name; ``None`` is the default input.

    Shape
    -----
    each chunk ``(T,)`` float32 for mono, ``(T, C)`` otherwise.

    Threads
    -------
    An iterator: iterate it from one thread at a time (not locked).

    Examples
    --------
    >>> mic = MicrophoneSource(16000, chunk_ms=20)
    >>> mic.sample_rate, mic.chunk_frames
    (16000, 320)
    >>> for chunk in mic:  # doctest: +SKIP
    ...     features = front_end.push(chunk, sample_rate=mic.sample_rate)
    """

    def __init__(
        self,
        sample_rate: int = 16000,
        *,
        channels: int = 1,
        chunk_ms: float = 20.0,
        device: int | str | None = None,
    ) -> None:
        self.sample_rate = check_positive_int("sample_rate", sample_rate)
        self.channels = check_positive_int("channels", channels)
        self.chunk_ms = check_number("chunk_ms", chunk_ms, low=0, low_open=True)
        if device is not None and (isinstance(device, bool) or not isinstance(device, int | str)):
            raise ValueError(f"device must be None, an index or a name, got {device!r}")
        self.device = device
        self.n_overflows = 0

    def _chunks(self):
        try:
            import sounddevice
        except ImportError as exc:
            raise ImportError(
                "MicrophoneSource needs the optional dependency sounddevice: "
                "pip install sounddevice (or pip install 'streamrnn[audio]')"
            ) from exc
        n = self.chunk_frames
        with sounddevice.InputStream(
            samplerate=self.sample_rate,
            channels=self.channels,
            dtype="float32",
            blocksize=n,
            device=self.device,
        ) as stream:
            while True:
                data, overflowed = stream.read(n)
                self.n_overflows += bool(overflowed)
                chunk = np.array(data, dtype=np.float32)
                yield chunk[:, 0] if self.channels == 1 else chunk
