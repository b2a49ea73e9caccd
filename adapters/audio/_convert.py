"""PCM decoding, channel and non-finite policies, config checks for the audio adapter (private).

Everything here is a pure function of its arguments: callers validate a whole chunk first
and commit their state only when nothing raised, so a bad chunk never half-updates a stream.
"""

from __future__ import annotations

import numpy as np
import torch

from streamrnn.utils import check_choice, check_number, check_positive_int

__all__ = [
    "CHANNEL_POLICIES",
    "MAX_ABS_SAMPLE",
    "MAX_CHANNELS",
    "MAX_N_FFT",
    "MAX_N_MELS",
    "NONFINITE_POLICIES",
    "RESAMPLE_QUALITIES",
    "SAMPLE_FORMATS",
    "array_to_frames",
    "check_frame_config",
    "check_input_config",
    "decode_chunk",
    "decode_pcm",
    "nonfinite_count",
    "split_frames",
    "to_mono",
]

#: Raw PCM layouts understood by :func:`decode_pcm`: name -> (bytes per sample, numpy dtype).
SAMPLE_FORMATS: dict[str, tuple[int, str]] = {
    "u8": (1, "u1"),
    "s16le": (2, "<i2"),
    "s24le": (3, "u1"),
    "s32le": (4, "<i4"),
    "f32le": (4, "<f4"),
}
CHANNEL_POLICIES = ("raise", "mean", "first")
#: Most channels a chunk may have: more almost always means a (channels, samples) array
#: read as (samples, channels), e.g. a torchaudio waveform without ``channel_axis=0``.
MAX_CHANNELS = 32
NONFINITE_POLICIES = ("raise", "zero")
#: Largest FFT (and frame) accepted: 4 s at 16 kHz; the filterbank is (n_fft / 2 + 1, n_mels).
MAX_N_FFT = 1 << 16
#: Most mel bands accepted.
MAX_N_MELS = 2048
RESAMPLE_QUALITIES = ("QQ", "LQ", "MQ", "HQ", "VHQ")

# --------------------------------------------------------------------------- config checks


def check_frame_config(
    sample_rate, kind, win_length, hop_length, n_fft, n_mels, n_mfcc, f_min, f_max,
    mel_scale, mel_norm,
) -> tuple:  # fmt: skip
    """Validate the framing and filterbank settings of ``AudioFeatures``; fill the defaults.

    ``sample_rate`` and ``kind`` are already valid. Returns ``(win_length, hop_length,
    n_fft, n_mels, n_mfcc, f_min, f_max, mel_scale, mel_norm)``.
    """
    if win_length is None:
        win_length = max(1, round(0.025 * sample_rate))
    win_length = check_positive_int("win_length", win_length)
    if win_length > MAX_N_FFT:
        raise ValueError(f"win_length must be <= {MAX_N_FFT} samples, got {win_length}")
    if hop_length is None:
        hop_length = min(win_length, max(1, round(0.010 * sample_rate)))
    hop_length = check_positive_int("hop_length", hop_length)
    if hop_length > win_length:
        raise ValueError(f"hop_length must be <= win_length={win_length}, got {hop_length}")
    n_fft = check_positive_int("n_fft", win_length if n_fft is None else n_fft)
    if n_fft < win_length:
        raise ValueError(f"n_fft must be >= win_length={win_length}, got {n_fft}")
    if n_fft > MAX_N_FFT:
        raise ValueError(f"n_fft must be <= {MAX_N_FFT}, got {n_fft}")
    n_mels = check_positive_int("n_mels", n_mels)
    if n_mels > MAX_N_MELS:
        raise ValueError(f"n_mels must be <= {MAX_N_MELS}, got {n_mels}")
    n_mfcc = check_positive_int("n_mfcc", n_mfcc)
    if kind == "mfcc" and n_mfcc > n_mels:
        raise ValueError(f"n_mfcc must be <= n_mels={n_mels}, got {n_mfcc}")
    nyquist = sample_rate / 2
    f_min = check_number("f_min", f_min, low=0)
    f_max = nyquist if f_max is None else check_number("f_max", f_max, low=0, low_open=True)
    if not f_min < f_max <= nyquist:
        raise ValueError(
            f"f_min and f_max must satisfy 0 <= f_min < f_max <= {nyquist} (Nyquist), "
            f"got f_min={f_min}, f_max={f_max}"
        )
    mel_scale = check_choice("mel_scale", mel_scale, ("htk", "slaney"))
    if mel_norm is not None:
        check_choice("mel_norm", mel_norm, ("slaney",))
    return win_length, hop_length, n_fft, n_mels, n_mfcc, f_min, f_max, mel_scale, mel_norm


def check_input_config(
    sample_rate, input_rate, resample_quality, channels, channel_axis, in_channels, nonfinite
) -> tuple[int, str, str, int, int, str]:
    """Validate the input settings of ``AudioFeatures``: ``(input_rate, resample_quality,
    channels, channel_axis, in_channels, nonfinite)``, ``input_rate=None`` filled in."""
    in_rate = check_positive_int("input_rate", sample_rate if input_rate is None else input_rate)
    quality = check_choice("resample_quality", resample_quality, RESAMPLE_QUALITIES)
    channels = check_choice("channels", channels, CHANNEL_POLICIES)
    if isinstance(channel_axis, bool) or channel_axis not in (-2, -1, 0, 1):
        raise ValueError(f"channel_axis must be one of -2, -1, 0, 1, got {channel_axis!r}")
    in_channels = check_positive_int("in_channels", in_channels)
    if in_channels > MAX_CHANNELS:
        raise ValueError(f"in_channels must be <= {MAX_CHANNELS}, got {in_channels}")
    nonfinite = check_choice("nonfinite", nonfinite, NONFINITE_POLICIES)
    return in_rate, quality, channels, int(channel_axis), in_channels, nonfinite


# --------------------------------------------------------------------------- decoding


def decode_pcm(data: bytes, sample_format: str, channels: int) -> np.ndarray:
    """Decode interleaved little-endian PCM bytes to float32 samples in [-1, 1).

    ``data`` must hold whole sample frames (``channels * width`` bytes each). Integer
    formats are scaled by their full range (``u8`` is offset by 128), ``f32le`` is taken
    as is.

    Shape
    -----
    bytes -> ``(T, C)`` float32 with ``C = channels``.
    """
    width, dtype = SAMPLE_FORMATS[sample_format]
    raw = np.frombuffer(data, dtype=dtype)
    if sample_format == "u8":
        x = (raw.astype(np.float32) - 128.0) / 128.0
    elif sample_format == "s16le":
        x = raw.astype(np.float32) / 32768.0
    elif sample_format == "s24le":
        b = raw.reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = (v << 8) >> 8  # sign-extend the 24-bit value held in an int32
        x = v.astype(np.float32) / 8388608.0
    elif sample_format == "s32le":
        x = (raw.astype(np.float64) / 2147483648.0).astype(np.float32)
    else:
        x = raw.astype(np.float32)
    return x.reshape(-1, channels)


def split_frames(data: bytes, frame_bytes: int) -> tuple[bytes, bytes]:
    """Split ``data`` into its whole ``frame_bytes``-byte frames and the dangling remainder."""
    usable = len(data) - len(data) % frame_bytes
    return data[:usable], data[usable:]


_SCALE = {np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2147483648.0}
_ACCEPTED = "int16, int32, float32 or float64"


def array_to_frames(pcm, channel_axis: int) -> np.ndarray:
    """Convert a numpy array or torch tensor of PCM to float32 sample frames.

    int16 and int32 are scaled by their full range; float32 is kept; float64 is rounded
    to float32. A 1-D input is one channel; a 2-D input has its channels on
    ``channel_axis`` (``-1``/``1``: ``(T, C)``, ``0``/``-2``: ``(C, T)``).

    Shape
    -----
    ``(T,)``, ``(T, C)`` or ``(C, T)`` -> ``(T, C)`` float32.
    """
    if isinstance(pcm, torch.Tensor):
        if pcm.dtype not in (torch.int16, torch.int32, torch.float32, torch.float64):
            raise ValueError(f"pcm must have dtype {_ACCEPTED}, got torch {pcm.dtype}")
        pcm = pcm.detach().cpu().numpy()
    dtype = pcm.dtype
    if dtype in _SCALE:
        x = pcm.astype(np.float64 if dtype == np.int32 else np.float32) / _SCALE[dtype]
        x = x.astype(np.float32, copy=False)
    elif dtype == np.float32 or dtype == np.float64:
        x = pcm.astype(np.float32, copy=False)
    else:
        raise ValueError(f"pcm must have dtype {_ACCEPTED}, got numpy {dtype}")
    if x.ndim == 1:
        return x[:, None]
    if x.ndim == 2:
        frames = x.T if channel_axis in (0, -2) else x
        if frames.shape[1] > MAX_CHANNELS:
            raise ValueError(
                f"pcm must have at most {MAX_CHANNELS} channels on channel_axis={channel_axis}, "
                f"got {frames.shape[1]} (shape {tuple(x.shape)}); for (channels, samples) "
                "input such as torchaudio's pass channel_axis=0"
            )
        return frames
    raise ValueError(
        f"pcm must be 1-D (T,) or 2-D with channels on channel_axis={channel_axis}, "
        f"got shape {tuple(x.shape)}"
    )


def to_mono(frames: np.ndarray, policy: str) -> np.ndarray:
    """Reduce ``(T, C)`` frames to one channel by ``policy`` (``raise``, ``mean``, ``first``).

    Shape
    -----
    ``(T, C)`` -> ``(T,)`` float32.
    """
    n_channels = frames.shape[1]
    if n_channels == 1:
        return frames[:, 0]
    if n_channels == 0:
        raise ValueError("pcm must have at least one channel, got 0 channels")
    if policy == "raise":
        raise ValueError(
            f"pcm must be mono (channels='raise'), got {n_channels} channels; "
            "pass channels='mean' or channels='first' to mix or select (and channel_axis=0 "
            "if they are (channels, samples))"
        )
    if policy == "first":
        return np.ascontiguousarray(frames[:, 0])
    with np.errstate(invalid="ignore", over="ignore"):
        return frames.mean(axis=1, dtype=np.float32)


#: Largest float sample magnitude accepted. Float PCM is nominally in [-1, 1]; beyond this
#: the float32 power spectrum of a long window could overflow to inf.
MAX_ABS_SAMPLE = 1e6


def nonfinite_count(x: np.ndarray, policy: str) -> tuple[np.ndarray, int]:
    """Apply the non-finite ``policy`` to mono samples; return the samples and how many were bad.

    Bad samples are NaN, +-inf and magnitudes above :data:`MAX_ABS_SAMPLE`. ``raise``
    raises ``ValueError`` naming the count and the first index; ``zero`` returns a copy
    with the bad samples set to 0.

    Shape
    -----
    ``(T,)`` -> ``(T,)``.
    """
    if x.size == 0:
        return x, 0
    magnitude = np.abs(x)
    if magnitude.max() <= MAX_ABS_SAMPLE:  # False for NaN as well
        return x, 0
    bad = ~(magnitude <= MAX_ABS_SAMPLE)
    n_bad = int(bad.sum())
    if policy == "raise":
        first = int(np.argmax(bad))
        raise ValueError(
            f"pcm must hold finite samples with |x| <= {MAX_ABS_SAMPLE:g} (nonfinite='raise'), "
            f"got {n_bad} NaN/inf/huge sample(s), the first at index {first}; pass "
            "nonfinite='zero' to zero and count them"
        )
    x = x.copy()
    x[bad] = 0.0
    return x, n_bad


def decode_chunk(
    pcm,
    pending: bytes,
    *,
    in_channels: int,
    channel_axis: int,
    channels: str,
    nonfinite: str,
) -> tuple[np.ndarray, bytes, int]:
    """Validate and convert one pushed chunk to mono float32, touching no state.

    Returns the samples, the bytes of an incomplete int16 frame still waiting, and the
    number of non-finite samples zeroed.

    Shape
    -----
    bytes, ``(samples,)``, ``(samples, channels)`` or ``(channels, samples)`` -> ``(samples,)``.
    """
    if isinstance(pcm, bytes | bytearray | memoryview):
        whole, rest = split_frames(pending + bytes(pcm), 2 * in_channels)
        return to_mono(decode_pcm(whole, "s16le", in_channels), channels), rest, 0
    if not isinstance(pcm, np.ndarray | torch.Tensor):
        raise ValueError(
            f"pcm must be int16 bytes, a numpy array or a torch tensor, got {type(pcm).__name__}"
        )
    if pending:
        raise ValueError(
            f"pcm must be bytes while {len(pending)} byte(s) of an incomplete int16 sample "
            f"frame wait from an earlier bytes push, got {type(pcm).__name__}"
        )
    if isinstance(pcm, np.ndarray) and pcm.ndim == 1 and pcm.dtype == np.float32:
        mono, n_bad = nonfinite_count(pcm, nonfinite)  # the common case, kept short
        return mono, pending, n_bad
    is_float = pcm.is_floating_point() if isinstance(pcm, torch.Tensor) else pcm.dtype.kind == "f"
    mono = to_mono(array_to_frames(pcm, channel_axis), channels)
    n_bad = 0
    if is_float:
        mono, n_bad = nonfinite_count(mono, nonfinite)
    return mono, pending, n_bad
