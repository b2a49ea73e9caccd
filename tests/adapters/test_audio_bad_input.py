"""Audio adapter: bad input gets a clear ValueError naming parameter, rule and value, and a
rejected chunk leaves the front end exactly as it was (the next good chunk continues the
stream as if the bad one never came)."""

from __future__ import annotations

import io
import re
import wave

import numpy as np
import pytest
import torch

from streamrnn.adapters.audio import (
    AudioFeatures,
    RawPCMSource,
    TcpSource,
    WavSource,
    write_wav,
)

SR = 16000


def _signal(n: int = 4000) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (0.1 * rng.standard_normal(n)).astype(np.float32)


# --------------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sample_rate": 0}, "sample_rate must be a positive int, got 0"),
        ({"sample_rate": 16000.5}, "sample_rate must be a positive int, got 16000.5"),
        ({"sample_rate": True}, "sample_rate must be a positive int, got True"),
        ({"kind": "mel"}, "kind must be one of 'logmel' | 'mfcc', got 'mel'"),
        ({"hop_length": 500}, "hop_length must be <= win_length=400, got 500"),
        ({"n_fft": 256}, "n_fft must be >= win_length=400, got 256"),
        ({"kind": "mfcc", "n_mfcc": 41}, "n_mfcc must be <= n_mels=40, got 41"),
        ({"f_max": 9000}, "f_max must satisfy 0 <= f_min < f_max <= 8000.0"),
        ({"f_min": 8000.0}, "f_min and f_max must satisfy"),
        ({"f_min": float("nan")}, "f_min must be a finite number >= 0, got nan"),
        ({"preemphasis": 1.0}, "preemphasis must be in [0, 1), got 1.0"),
        ({"preemphasis": -0.1}, "preemphasis must be a finite number >= 0"),
        ({"normalize": "global"}, "normalize must be one of 'none' | 'running'"),
        ({"norm_eps": 0}, "norm_eps must be a finite number > 0, got 0"),
        ({"tail": "zero"}, "tail must be one of 'drop' | 'pad', got 'zero'"),
        ({"input_rate": -48000}, "input_rate must be a positive int, got -48000"),
        ({"resample_quality": "best"}, "resample_quality must be one of"),
        ({"channels": "left"}, "channels must be one of 'raise' | 'mean' | 'first'"),
        ({"channel_axis": 2}, "channel_axis must be one of -2, -1, 0, 1, got 2"),
        ({"in_channels": 0}, "in_channels must be a positive int, got 0"),
        ({"in_channels": 33}, "in_channels must be <= 32, got 33"),
        ({"nonfinite": "hold"}, "nonfinite must be one of 'raise' | 'zero', got 'hold'"),
        ({"window": "kaiser"}, "window must be one of 'hann' | 'hamming'"),
        ({"mel_norm": "l2"}, "mel_norm must be one of 'slaney'"),
        ({"log_offset": 0.0}, "log_offset must be a finite number > 0"),
    ],
)
def test_bad_configuration(kwargs, message):
    kwargs = {"sample_rate": SR, **kwargs}
    with pytest.raises(ValueError, match=_literal(message)):
        AudioFeatures(**kwargs)


def _literal(text: str) -> str:
    return re.escape(text)


def test_configuration_is_stored_resolved():
    fe = AudioFeatures(8000, "mfcc", n_mfcc=20, preemphasis=0.97)
    assert (fe.sample_rate, fe.kind, fe.win_length, fe.hop_length, fe.n_fft) == (
        8000, "mfcc", 200, 80, 200,
    )  # fmt: skip
    assert (fe.n_mfcc, fe.n_features, fe.f_max, fe.input_rate, fe.preemphasis) == (
        20, 20, 4000.0, 8000, 0.97,
    )  # fmt: skip


# --------------------------------------------------------------------------- bad chunks


def _assert_untouched_by(bad_push) -> str:
    """Push half a signal, a bad chunk (must raise ValueError), the other half: same as clean."""
    x = _signal()
    kw = {"preemphasis": 0.97, "normalize": "running", "input_rate": 48000}
    clean = AudioFeatures(SR, **kw)
    expected = torch.cat([clean.push(x[:1777]), clean.push(x[1777:]), clean.flush()])
    fe = AudioFeatures(SR, **kw)
    first = fe.push(x[:1777])
    with pytest.raises(ValueError) as err:
        bad_push(fe)
    rest = torch.cat([fe.push(x[1777:]), fe.flush()])
    assert torch.equal(torch.cat([first, rest]), expected)
    return str(err.value)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            np.array([0.1, np.nan, 0.2, np.inf], np.float32),
            "got 2 NaN/inf/huge sample(s), the first",
        ),
        (
            torch.tensor([0.0, -float("inf")]),
            "pcm must hold finite samples with |x| <= 1e+06 (nonfinite='raise')",
        ),
        (np.zeros((10, 2), np.float32), "pcm must be mono (channels='raise'), got 2 channels"),
        (np.zeros(10, np.uint8), "pcm must have dtype int16, int32, float32 or float64, got numpy"),
        (torch.zeros(10, dtype=torch.float16), "got torch torch.float16"),
        (np.zeros((2, 3, 4), np.float32), "pcm must be 1-D (T,) or 2-D"),
        (torch.zeros(1, 320), "at most 32 channels on channel_axis=-1, got 320 (shape (1, 320))"),
        ([0.0, 0.1], "pcm must be int16 bytes, a numpy array or a torch tensor, got list"),
        ("abc", "got str"),
    ],
)
def test_bad_chunk_raises_and_leaves_state_untouched(bad, message):
    text = _assert_untouched_by(lambda fe: fe.push(bad))
    assert message in text


def test_wrong_declared_sample_rate():
    text = _assert_untouched_by(lambda fe: fe.push(_signal(10), sample_rate=44100))
    assert "sample_rate must equal the input rate this front end expects (48000 Hz)" in text
    assert "got 44100 Hz" in text


def test_wrong_sample_rate_without_resampling_points_to_input_rate():
    fe = AudioFeatures(16000)
    with pytest.raises(ValueError, match=r"AudioFeatures\(16000, input_rate=48000"):
        fe.push(np.zeros(10, np.float32), sample_rate=48000)
    with pytest.raises(ValueError, match="got 8000 Hz"):
        fe.offline(np.zeros(10, np.float32), sample_rate=8000)
    assert fe.push(np.zeros(10, np.float32), sample_rate=16000).shape == (0, 40)


def test_array_while_a_byte_dangles():
    fe = AudioFeatures(SR)
    fe.push(b"\x01\x02\x03")
    with pytest.raises(ValueError, match=r"1 byte\(s\) of an incomplete int16 sample frame"):
        fe.push(np.zeros(4, np.float32))
    fe.push(b"\x04")  # completes the second sample: the stream goes on
    assert fe._pending == b""


def test_dangling_byte_dropped_at_flush_is_counted():
    fe = AudioFeatures(SR)
    fe.push(bytes(801))
    fe.flush()
    assert fe.n_dropped_bytes == 1
    fe.push(bytes(3))
    fe.reset()
    assert fe.n_dropped_bytes == 2


def test_nonfinite_zero_policy_counts():
    x = _signal()
    bad = x.copy()
    bad[[5, 900, 3001]] = [np.nan, np.inf, -np.inf]
    fe = AudioFeatures(SR, nonfinite="zero")
    streamed = torch.cat([fe.push(bad[:1000]), fe.push(bad[1000:]), fe.flush()])
    assert fe.n_nonfinite == 3
    zeroed = np.where(np.isfinite(bad), bad, 0).astype(np.float32)
    # small pushes take the numpy path: equal to offline up to float32 rounding
    torch.testing.assert_close(streamed, AudioFeatures(SR).offline(zeroed), rtol=1e-5, atol=1e-5)
    assert torch.isfinite(streamed).all()
    torch.testing.assert_close(fe.offline(bad), streamed, rtol=1e-5, atol=1e-5)
    assert fe.n_nonfinite == 3  # offline does not count


def test_stereo_nonfinite_in_an_unused_channel_is_ignored_by_first():
    x = np.zeros((500, 2), np.float32)
    x[3, 1] = np.nan
    assert AudioFeatures(SR, channels="first").push(x).shape == (1, 40)
    with pytest.raises(ValueError, match="NaN/inf"):
        AudioFeatures(SR, channels="mean").push(x)


def test_huge_samples_that_would_overflow_the_spectrum_are_bad_samples():
    x = np.full(500, 1e6, np.float32)  # the largest magnitude accepted: finite features
    assert torch.isfinite(AudioFeatures(SR).push(x)).all()
    x[7] = 3e38  # finite, but its power spectrum would overflow float32 to inf
    with pytest.raises(ValueError, match="got 1 NaN/inf/huge sample"):
        AudioFeatures(SR).push(x)
    fe = AudioFeatures(SR, nonfinite="zero")
    assert torch.isfinite(fe.push(x)).all() and fe.n_nonfinite == 1


# --------------------------------------------------------------------------- sources


def test_truncated_wav_raises_or_counts(tmp_path):
    path = tmp_path / "cut.wav"
    write_wav(path, np.zeros(1000), 8000)
    data = path.read_bytes()
    path.write_bytes(data[:-301])  # 150 whole frames and half a frame gone
    with pytest.raises(ValueError, match="declares 1000 frames but only 849 complete frames"):
        WavSource(path)
    src = WavSource(path, truncated="count")
    assert (src.n_frames, src.n_missing_frames) == (849, 151)
    assert src.read().shape == (849,)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "header ends early"), (b"RIFF\x00\x00", "header ends early"),
     (b"ID3 not a wav file at all", "not a readable WAV file")],
)  # fmt: skip
def test_not_a_wav(tmp_path, content, message):
    path = tmp_path / "x.wav"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        WavSource(path)


def test_wav_with_unsupported_compression(tmp_path):
    path = tmp_path / "alaw.wav"
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setparams((1, 2, 8000, 0, "NONE", "not compressed"))
        w.writeframes(bytes(10))
    raw = bytearray(buf.getvalue())
    raw[20:22] = (6).to_bytes(2, "little")  # WAVE_FORMAT_ALAW; soundfile would decode it
    path.write_bytes(bytes(raw))
    src = WavSource(path)  # read through soundfile
    assert src.sample_width is None and src.sample_rate == 8000


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"chunk_ms": 0}, "chunk_ms must be a finite number > 0, got 0"),
        ({"realtime": 1}, "realtime must be a bool, got 1"),
        ({"truncated": "ignore"}, "truncated must be one of 'raise' | 'count'"),
    ],
)
def test_bad_source_configuration(tmp_path, kwargs, message):
    path = tmp_path / "a.wav"
    write_wav(path, np.zeros(10), 8000)
    with pytest.raises(ValueError, match=_literal(message)):
        WavSource(path, **kwargs)


def test_bad_raw_and_tcp_configuration():
    with pytest.raises(ValueError, match="stream must have a read"):
        RawPCMSource(b"abc", 16000)
    with pytest.raises(ValueError, match="sample_format must be one of"):
        RawPCMSource(io.BytesIO(), 16000, sample_format="s16be")
    with pytest.raises(ValueError, match="port must be a positive int, got 0"):
        TcpSource(0, 16000)
    with pytest.raises(ValueError, match=r"port must be in \[1, 65535\], got 70000"):
        TcpSource(70000, 16000)


def test_text_stream_is_refused():
    with pytest.raises(ValueError, match=r"binary stream .* got str .*sys.stdin.buffer"):
        list(RawPCMSource(io.StringIO("abcd"), 16000))


@pytest.mark.parametrize(
    ("samples", "kwargs", "message"),
    [
        (np.array([0.0, 1.5]), {}, "samples must be finite and within [-1, 1]"),
        (np.array([0.0, np.nan]), {}, "samples must be finite and within [-1, 1]"),
        (np.zeros(3, np.int16), {}, "samples must be a 1-D or 2-D float array"),
        (np.zeros(3), {"sample_width": 5}, "sample_width must be 1, 2, 3 or 4 bytes, got 5"),
    ],
)
def test_write_wav_refuses(tmp_path, samples, kwargs, message):
    with pytest.raises(ValueError, match=_literal(message)):
        write_wav(tmp_path / "w.wav", samples, 8000, **kwargs)
