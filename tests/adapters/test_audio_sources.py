"""Audio sources: WAV of every PCM width, soundfile formats, raw PCM from a stream / stdin /
TCP, real-time pacing, the lazy microphone, and a real FSDD recording end to end."""

from __future__ import annotations

import ast
import importlib.util
import os
import socket
import subprocess
import sys
import threading
import time
import wave

import numpy as np
import pytest
import torch
from _data import DATA

from streamrnn.adapters.audio import (
    AudioFeatures,
    MicrophoneSource,
    RawPCMSource,
    SoundFileSource,
    TcpSource,
    WavSource,
    write_wav,
)

FSDD = DATA / "fsdd"
FULL = {1: 128, 2: 32768, 3: 8388608, 4: 2147483648}


def _codes(width: int, n: int, channels: int, seed: int = 0) -> np.ndarray:
    """Random integer sample codes covering the full range of ``width`` bytes, (T, C)."""
    rng = np.random.default_rng(seed)
    lo, hi = (0, 255) if width == 1 else (-FULL[width], FULL[width] - 1)
    codes = rng.integers(lo, hi, size=(n, channels), endpoint=True)
    codes[:2] = [[lo] * channels, [hi] * channels]
    return codes


def _pack(codes: np.ndarray, width: int) -> bytes:
    """Little-endian interleaved PCM, packed sample by sample (independent of the reader)."""
    flat = codes.reshape(-1)
    if width == 1:
        return bytes(int(v) for v in flat)
    return b"".join(int(v).to_bytes(width, "little", signed=True) for v in flat)


def _expected(codes: np.ndarray, width: int) -> np.ndarray:
    x = (codes - 128) / 128 if width == 1 else codes / FULL[width]
    x = x.astype(np.float32)
    return x[:, 0] if x.shape[1] == 1 else x


def _write_stdlib_wav(path, codes, width, rate):
    with wave.open(os.fspath(path), "wb") as w:
        w.setnchannels(codes.shape[1])
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(_pack(codes, width))


# --------------------------------------------------------------------------- WAV files


@pytest.mark.parametrize("channels", [1, 2])
@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_wav_every_pcm_width(tmp_path, width, channels):
    codes = _codes(width, 1001, channels)
    path = tmp_path / f"pcm{8 * width}.wav"
    _write_stdlib_wav(path, codes, width, 8000)
    src = WavSource(path, chunk_ms=20)
    assert (src.sample_rate, src.channels, src.sample_width, src.n_frames) == (
        8000, channels, width, 1001,
    )  # fmt: skip
    chunks = list(src)
    assert [len(c) for c in chunks] == [160] * 6 + [41]
    assert all(c.dtype == np.float32 and c.shape[1:] == (() if channels == 1 else (2,))
               for c in chunks)  # fmt: skip
    np.testing.assert_array_equal(np.concatenate(chunks), _expected(codes, width))
    np.testing.assert_array_equal(src.read(), np.concatenate(list(src)))  # re-iterable


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_write_wav_round_trip(tmp_path, width):
    x = np.linspace(-1, 1, 999)
    write_wav(tmp_path / "w.wav", x, 22050, sample_width=width)
    back = WavSource(tmp_path / "w.wav").read()
    step = 1 / FULL[width] + 2**-24  # one code, plus float32 rounding of the result
    assert np.abs(back - x).max() <= step  # rounding plus the +1.0 -> largest code rule
    with wave.open(os.fspath(tmp_path / "w.wav")) as w:
        assert (w.getsampwidth(), w.getframerate(), w.getnframes()) == (width, 22050, 999)


def test_float_wav_falls_back_to_soundfile(tmp_path):
    sf = pytest.importorskip("soundfile")
    x = np.linspace(-0.5, 0.5, 500, dtype=np.float32)
    sf.write(tmp_path / "f.wav", x, 16000, subtype="FLOAT")
    src = WavSource(tmp_path / "f.wav")
    assert (src.sample_rate, src.sample_width, src.n_frames) == (16000, None, 500)
    np.testing.assert_array_equal(src.read(), x)


@pytest.mark.parametrize(("ext", "exact"), [("flac", True), ("ogg", False)])
def test_soundfile_formats(tmp_path, ext, exact):
    sf = pytest.importorskip("soundfile")
    codes = _codes(2, 4000, 2)
    x = (codes / 32768).astype(np.float32)
    sf.write(tmp_path / f"a.{ext}", x, 16000, subtype="PCM_16" if exact else None)
    src = SoundFileSource(tmp_path / f"a.{ext}", chunk_ms=20)
    assert (src.sample_rate, src.channels) == (16000, 2)
    chunks = list(src)
    assert chunks[0].shape == (320, 2) and chunks[0].dtype == np.float32
    got = np.concatenate(chunks)
    if exact:
        np.testing.assert_array_equal(got, x)
    else:  # lossy: only the length and the rough level are kept
        assert abs(len(got) - len(x)) < 2000 and np.isfinite(got).all()


def test_soundfile_source_refuses_a_non_audio_file(tmp_path):
    pytest.importorskip("soundfile")
    (tmp_path / "x.flac").write_bytes(b"not audio")
    with pytest.raises(ValueError, match="is not an audio file soundfile reads"):
        SoundFileSource(tmp_path / "x.flac")


def test_realtime_pacing(tmp_path, monkeypatch):
    """Each 20 ms chunk is released when a live microphone would have finished it.

    Time is a fake clock (no wall-clock assertion): the source must sleep until each
    chunk's end, and a source without ``realtime`` must not sleep at all.
    """
    import streamrnn.adapters.audio._files as files

    write_wav(tmp_path / "r.wav", np.zeros(1600), 8000)  # 200 ms
    now = [100.0]
    sleeps = []

    def sleep(seconds):
        sleeps.append(seconds)
        now[0] += max(seconds, 0.0)

    monkeypatch.setattr(files.time, "perf_counter", lambda: now[0])
    monkeypatch.setattr(files.time, "sleep", sleep)
    src = WavSource(tmp_path / "r.wav", chunk_ms=20, realtime=True)
    start = now[0]
    arrivals = [now[0] - start for _ in src]
    assert len(arrivals) == 10
    for i, t in enumerate(arrivals):
        assert t == pytest.approx(0.020 * (i + 1), abs=1e-9)
    sleeps.clear()
    list(WavSource(tmp_path / "r.wav", chunk_ms=20))
    assert sleeps == []  # not paced


# --------------------------------------------------------------------------- raw PCM


class _Trickle:
    """A binary stream that hands out at most a few bytes per read, like a slow pipe."""

    def __init__(self, data: bytes, seed: int = 0) -> None:
        self.data, self.pos = data, 0
        self.rng = np.random.default_rng(seed)

    def read(self, n: int) -> bytes:
        n = min(n, int(self.rng.integers(1, 50)))
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out


@pytest.mark.parametrize(
    ("fmt", "width", "channels"),
    [("s16le", 2, 1), ("s24le", 3, 2), ("s32le", 4, 1), ("u8", 1, 2)],
)
def test_raw_pcm_formats_and_partial_reads(fmt, width, channels):
    codes = _codes(width, 700, channels)
    data = _pack(codes, width) + b"\x07" * (width * channels - 1)  # an incomplete last frame
    src = RawPCMSource(_Trickle(data), 16000, sample_format=fmt, channels=channels)
    chunks = list(src)
    assert [len(c) for c in chunks] == [320, 320, 60]
    np.testing.assert_array_equal(np.concatenate(chunks), _expected(codes, width))
    assert src.n_dropped_bytes == width * channels - 1


def test_raw_f32le():
    x = np.linspace(-1, 1, 100, dtype=np.float32)
    got = np.concatenate(list(RawPCMSource(_Trickle(x.astype("<f4").tobytes()), 8000,
                                           sample_format="f32le")))  # fmt: skip
    np.testing.assert_array_equal(got, x)


def test_stdin_pipe(tmp_path):
    """A real pipe into ``sys.stdin.buffer`` of a child process."""
    codes = _codes(2, 5000, 1)
    script = (
        "import sys\n"
        "from streamrnn.adapters.audio import RawPCMSource\n"
        "src = RawPCMSource(sys.stdin.buffer, 16000, chunk_ms=20)\n"
        "print(([len(c) for c in src], src.n_dropped_bytes))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], input=_pack(codes, 2) + b"\x01",
        capture_output=True, check=True, timeout=60,
    )  # fmt: skip
    assert ast.literal_eval(out.stdout.decode()) == ([320] * 15 + [200], 1)


def _serve(server: socket.socket, data: bytes) -> None:
    conn, _ = server.accept()
    with conn:
        for i in range(0, len(data), 777):  # odd-sized pieces with pauses
            conn.sendall(data[i : i + 777])
            time.sleep(0.001)


def test_tcp_client():
    codes = _codes(2, 3000, 1)
    with socket.create_server(("127.0.0.1", 0)) as server:
        sender = threading.Thread(target=_serve, args=(server, _pack(codes, 2)))
        sender.start()
        src = TcpSource(server.getsockname()[1], 16000, timeout=10.0)
        got = list(src)
        sender.join()
    assert [len(c) for c in got] == [320] * 9 + [120]
    np.testing.assert_array_equal(np.concatenate(got), _expected(codes, 2))


def test_tcp_listen_serves_one_connection_per_iteration():
    codes = _codes(2, 1000, 2)
    with TcpSource(0, 8000, listen=True, channels=2, timeout=10.0) as src:
        assert src.port > 0
        for _ in range(2):

            def send():
                with socket.create_connection(("127.0.0.1", src.port)) as peer:
                    peer.sendall(_pack(codes, 2))

            sender = threading.Thread(target=send)
            sender.start()
            got = np.concatenate(list(src))
            sender.join()
            np.testing.assert_array_equal(got, _expected(codes, 2))
    with pytest.raises(ValueError, match="TcpSource is closed"):
        list(src)


@pytest.mark.skipif(importlib.util.find_spec("sounddevice") is not None,
                    reason="sounddevice is installed")  # fmt: skip
def test_microphone_imports_sounddevice_lazily():
    mic = MicrophoneSource(48000, channels=2, chunk_ms=10)
    assert (mic.sample_rate, mic.channels, mic.chunk_frames) == (48000, 2, 480)
    with pytest.raises(ImportError, match="pip install sounddevice"):
        next(iter(mic))


# --------------------------------------------------------------------------- end to end


def test_file_to_features_matches_offline(tmp_path):
    rng = np.random.default_rng(1)
    write_wav(tmp_path / "s.wav", 0.3 * np.tanh(rng.standard_normal((12345, 2))), 44100, 3)
    src = WavSource(tmp_path / "s.wav", chunk_ms=20)
    fe = AudioFeatures(16000, "mfcc", input_rate=src.sample_rate, channels="mean",
                       preemphasis=0.97, normalize="running")  # fmt: skip
    streamed = torch.cat([fe.push(c, sample_rate=src.sample_rate) for c in src] + [fe.flush()])
    torch.testing.assert_close(streamed, fe.offline(src.read()), rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not FSDD.is_dir(), reason=f"FSDD not present at {FSDD}")
@pytest.mark.parametrize("name", ["0_george_0.wav", "7_jackson_12.wav", "9_yweweler_49.wav"])
def test_fsdd_recording(name):
    path = FSDD / name
    if not path.exists():
        pytest.skip(f"{name} not in FSDD")
    src = WavSource(path, chunk_ms=20)
    assert (src.sample_rate, src.channels, src.sample_width) == (8000, 1, 2)
    with wave.open(os.fspath(path)) as w:
        raw = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    signal = src.read()
    np.testing.assert_array_equal(signal, raw / np.float32(32768))
    for fe in (AudioFeatures(8000, "mfcc", preemphasis=0.97, normalize="running"),
               AudioFeatures(16000, input_rate=8000, tail="pad")):  # fmt: skip
        streamed = torch.cat([fe.push(c, sample_rate=8000) for c in src] + [fe.flush()])
        offline = fe.offline(raw, sample_rate=8000)  # int16 straight from the file
        assert len(streamed) == len(offline) > 0
        torch.testing.assert_close(streamed, offline, rtol=1e-5, atol=1e-5)
