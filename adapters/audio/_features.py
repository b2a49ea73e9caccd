"""Streaming log-mel / MFCC front end (private; public as ``streamrnn.adapters.audio``)."""

from __future__ import annotations

import numpy as np
import soxr
import torch
from torch import Tensor

from streamrnn.utils import RunningMoments, check_choice, check_number, check_positive_int

from ._convert import MAX_ABS_SAMPLE, check_frame_config, check_input_config, decode_chunk
from ._dsp import FrameFeatures, padded_length, preemphasize, running_normalize
from ._frames import FrameStream
from ._fused import push_frames
from .functional import WINDOWS

__all__ = ["AudioFeatures"]

_KINDS = ("logmel", "mfcc")
_EMPTY = np.zeros(0, dtype=np.float32)
_F32 = np.dtype(np.float32)
_DECODE_KEYS = ("in_channels", "channel_axis", "channels", "nonfinite")
#: A float32 chunk whose sum of squares is at most this has every |x| <= MAX_ABS_SAMPLE
#: (with room for the rounding of the sum); NaN, inf and larger sums take the full check.
_SAFE_SUM_SQ = 0.1 * MAX_ABS_SAMPLE**2


class AudioFeatures:
    """Streaming log-mel or MFCC features of PCM audio pushed in chunks of any size.

    Every frame completed by a push is computed in one call: a compiled (numba) kernel
    for a push of up to 16 frames (a live 10-20 ms chunk: window, real FFT, mel, log and
    DCT in one call), else :func:`~streamrnn.adapters.audio.functional.log_mel`, the
    reference (batched ``torch.fft.rfft``, what ``torchaudio.functional.spectrogram``
    with ``center=False`` does); every path's FFT
    is float64, so they agree to float32 rounding even in near-silent bands. Both use the
    ``torchaudio.functional.melscale_fbanks`` filterbank and, for MFCC, the
    ``torchaudio.functional.create_dct`` matrix. Frame ``k`` covers the samples
    ``[k * hop_length, k * hop_length + win_length)`` of the (resampled, pre-emphasised)
    signal, windowed and zero-padded on the right to ``n_fft``; features are
    ``log(mel_power + log_offset)`` (the same as ``torchaudio.transforms.MFCC(log_mels=True)``
    for MFCC). Pushing a signal in any chunking gives the same frames as :meth:`offline` on
    the whole signal (float32, to about 1e-5; exactly the same frame count).

    Parameters
    ----------
    sample_rate
        Rate of the signal the features are computed at, in Hz (the model's rate).
    kind
        ``"logmel"`` (``F = n_mels``) or ``"mfcc"`` (``F = n_mfcc``).
    win_length
        Samples per frame; ``None`` is 25 ms at ``sample_rate``.
    hop_length
        Samples between frame starts, ``1 <= hop_length <= win_length``; ``None`` is 10 ms.
    n_fft
        FFT size, ``>= win_length``; ``None`` is ``win_length``.
    n_mels, n_mfcc
        Mel bands, and cepstral coefficients kept (``n_mfcc <= n_mels``, used by ``"mfcc"``).
    f_min, f_max
        Filterbank edges in Hz, ``0 <= f_min < f_max <= sample_rate / 2``; ``None`` is Nyquist.
    mel_scale, mel_norm
        ``"htk"`` or ``"slaney"``, and ``None`` or ``"slaney"``, as in torchaudio.
    window
        ``"hann"`` or ``"hamming"`` (periodic, as torch builds them).
    log_offset
        Added to the mel power before the natural log (> 0).
    preemphasis
        ``y[n] = x[n] - preemphasis * x[n - 1]`` with ``x[-1] = 0`` at the start of a stream;
        ``0 <= preemphasis < 1``, ``0`` turns it off. The last sample is carried across pushes.
    normalize
        ``"none"``, or ``"running"``: each frame is standardised by the mean and (population)
        variance of all frames of the stream up to and including itself,
        ``(f_t - mean_t) / sqrt(var_t + norm_eps)``, so it does not depend on the chunking
        (the first frame of a stream is therefore all zeros).
    norm_eps
        Variance floor of ``"running"`` normalisation (> 0).
    tail
        What :meth:`flush` does with samples not covered by a complete frame: ``"drop"``
        them, or ``"pad"`` the signal with zeros to the shortest length at which every sample
        is covered by a frame (``1`` frame for ``0 < N <= win_length`` samples, else
        ``ceil((N - win_length) / hop_length) + 1``). :meth:`offline` applies the same rule.
    input_rate
        Rate of the incoming PCM in Hz; ``None`` is ``sample_rate``. Otherwise it is
        resampled on the fly with ``soxr.ResampleStream`` (``soxr.resample`` offline).
    resample_quality
        soxr quality: ``"QQ"``, ``"LQ"``, ``"MQ"``, ``"HQ"`` or ``"VHQ"``.
    channels
        Multi-channel input: ``"raise"`` a ``ValueError``, take the ``"mean"`` of the
        channels, or keep the ``"first"``.
    channel_axis
        Axis holding the channels of a 2-D array or tensor: ``-1``/``1`` for
        ``(samples, channels)`` (soundfile, sounddevice), ``0``/``-2`` for
        ``(channels, samples)`` (torchaudio). More than 32 channels is refused as a likely
        mix-up of the two.
    in_channels
        Channels interleaved in raw ``bytes`` input (arrays carry theirs in their shape).
    nonfinite
        Bad samples of float input (NaN, +-inf, or magnitude above 1e6, which could
        overflow the float32 power spectrum): ``"raise"`` a ``ValueError`` (the front end is
        left untouched) or ``"zero"`` them and add them to :attr:`n_nonfinite`. Checked on
        the mono samples after the ``channels`` rule.

    Attributes
    ----------
    n_features : int
        ``F``, the features per frame.
    n_nonfinite : int
        Samples zeroed by ``nonfinite="zero"`` over the object's lifetime (not reset).
    n_dropped_bytes : int
        Bytes of an incomplete int16 sample frame discarded by :meth:`flush` or :meth:`reset`.

    Shape
    -----
    pcm ``(samples,)``, ``(samples, channels)`` or ``(channels, samples)`` -> ``(T, F)``
    float32, where ``T`` is the number of frames completed by the call.

    Notes
    -----
    Accepted PCM: little-endian int16 ``bytes`` / ``bytearray`` / ``memoryview`` (an
    incomplete trailing sample frame, e.g. an odd byte, waits for the next push), numpy
    arrays and torch tensors of int16 or int32 (scaled by their full range), float32 or
    float64 (taken as is, rounded to float32). ``push(pcm, sample_rate=sr)`` checks the
    rate the source declares against ``input_rate``. With resampling, the last few
    milliseconds held back by soxr come out at :meth:`flush`; ``soxr.ResampleStream`` fed in
    any chunking matches ``soxr.resample`` of the whole signal (tested to 1e-6, observed
    bit-identical), so :meth:`offline` still matches the stream to about 1e-5.

    A 20 ms push of float32 at 16 kHz costs ~5 us (2 frames; ~1.5x the per-frame cost of
    offline torchaudio on a whole signal). Small ops gain nothing from threads and lose
    much when cores are contended: a live pipeline does well to ``torch.set_num_threads(1)``.

    Threads
    -------
    Not safe under concurrent calls, and not locked (a lock per call would cost more
    than the call): use it from one thread at a time, or hold your own lock around each
    call.

    Examples
    --------
    >>> import numpy as np, torch
    >>> fe = AudioFeatures(16000, n_mels=40)
    >>> (fe.win_length, fe.hop_length, fe.n_features)
    (400, 160, 40)
    >>> t = np.arange(16000) / 16000
    >>> signal = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    >>> parts = [fe.push(signal[i:i + 320]) for i in range(0, 16000, 320)]  # 20 ms chunks
    >>> streamed = torch.cat(parts + [fe.flush()])
    >>> streamed.shape
    torch.Size([98, 40])
    >>> torch.allclose(streamed, fe.offline(signal), atol=1e-5)
    True

    MFCC from a 48 kHz stereo source, mixed to mono and resampled to 16 kHz:

    >>> mfcc = AudioFeatures(16000, "mfcc", n_mfcc=13, input_rate=48000, channels="mean")
    >>> stereo = np.zeros((4800, 2), dtype=np.int16)  # 100 ms of (T, C) int16 silence
    >>> mfcc.push(stereo, sample_rate=48000).shape[1]
    13
    """

    def __init__(
        self,
        sample_rate: int,
        kind: str = "logmel",
        *,
        win_length: int | None = None,
        hop_length: int | None = None,
        n_fft: int | None = None,
        n_mels: int = 40,
        n_mfcc: int = 13,
        f_min: float = 0.0,
        f_max: float | None = None,
        mel_scale: str = "htk",
        mel_norm: str | None = None,
        window: str = "hann",
        log_offset: float = 1e-6,
        preemphasis: float = 0.0,
        normalize: str = "none",
        norm_eps: float = 1e-5,
        tail: str = "drop",
        input_rate: int | None = None,
        resample_quality: str = "HQ",
        channels: str = "raise",
        channel_axis: int = -1,
        in_channels: int = 1,
        nonfinite: str = "raise",
    ) -> None:
        self.sample_rate = check_positive_int("sample_rate", sample_rate)
        self.kind = check_choice("kind", kind, _KINDS)
        (
            self.win_length, self.hop_length, self.n_fft, self.n_mels, self.n_mfcc,
            self.f_min, self.f_max, self.mel_scale, self.mel_norm,
        ) = check_frame_config(
            self.sample_rate, self.kind, win_length, hop_length, n_fft, n_mels, n_mfcc,
            f_min, f_max, mel_scale, mel_norm,
        )  # fmt: skip
        self.window = check_choice("window", window, tuple(WINDOWS))
        self.log_offset = check_number("log_offset", log_offset, low=0, low_open=True)
        self.preemphasis = check_number("preemphasis", preemphasis, low=0)
        if self.preemphasis >= 1.0:
            raise ValueError(f"preemphasis must be in [0, 1), got {self.preemphasis}")
        self.normalize = check_choice("normalize", normalize, ("none", "running"))
        self.norm_eps = check_number("norm_eps", norm_eps, low=0, low_open=True)
        self.tail = check_choice("tail", tail, ("drop", "pad"))
        (
            self.input_rate, self.resample_quality, self.channels, self.channel_axis,
            self.in_channels, self.nonfinite,
        ) = check_input_config(
            self.sample_rate, input_rate, resample_quality, channels, channel_axis, in_channels,
            nonfinite,
        )  # fmt: skip

        self.n_features = self.n_mfcc if self.kind == "mfcc" else self.n_mels
        self._compute = FrameFeatures(
            self.sample_rate, self.kind, self.win_length, self.hop_length, self.n_fft,
            self.n_mels, self.n_mfcc, self.f_min, self.f_max, self.mel_scale, self.mel_norm,
            self.window, self.log_offset,
        )  # fmt: skip
        self._framer = FrameStream(self._compute, self.win_length)
        plain = self.input_rate == self.sample_rate and not self.preemphasis
        plain = plain and self.normalize == "none"
        self._fused = self._framer.fused_args if plain else None  # float32 mono as is
        self.n_nonfinite = 0
        self.n_dropped_bytes = 0
        self.reset()

    def __repr__(self) -> str:
        return (
            f"AudioFeatures(sample_rate={self.sample_rate}, kind={self.kind!r}, "
            f"win_length={self.win_length}, hop_length={self.hop_length}, n_fft={self.n_fft}, "
            f"n_features={self.n_features}, input_rate={self.input_rate})"
        )

    # ------------------------------------------------------------------ public API

    def push(self, pcm, sample_rate: int | None = None) -> Tensor:
        """Feed one chunk of PCM and return the frames it completes.

        Shape
        -----
        pcm ``(samples,)`` / ``(samples, channels)`` / ``(channels, samples)`` or bytes
        -> ``(T, F)`` float32 (``T`` may be 0).

        Examples
        --------
        >>> fe = AudioFeatures(8000, win_length=200, hop_length=80)
        >>> fe.push(bytes(399)).shape, fe.push(b"\\x00").shape  # the odd byte waits
        (torch.Size([0, 40]), torch.Size([1, 40]))
        """
        fused = self._fused  # float32 mono as is (no resampling, pre-emphasis, normalising)
        if fused is not None and type(pcm) is np.ndarray and pcm.dtype is _F32:
            if pcm.ndim == 1 and sample_rate is None and not self._pending:
                # One compiled call. None (nothing changed) for a bad sample, which the
                # decode in _push raises on or zeroes, or a push too large to be small.
                out = push_frames(pcm, *fused)
                if out is not None:
                    return torch.from_numpy(out)
        return torch.from_numpy(self._push(pcm, sample_rate, fused=False))

    def flush(self) -> Tensor:
        """End the stream: drain the resampler, apply the ``tail`` rule, then :meth:`reset`.

        Shape
        -----
        -> ``(T, F)`` float32, the last frames of the stream.

        Examples
        --------
        >>> import numpy as np
        >>> fe = AudioFeatures(8000, win_length=200, hop_length=80, tail="pad")
        >>> fe.push(np.zeros(250, dtype=np.float32)).shape[0], fe.flush().shape[0]
        (1, 1)
        """
        parts = [np.zeros((0, self.n_features), dtype=np.float32)]
        if self._resampler is not None:
            rest = self._resampler.resample_chunk(_EMPTY, last=True)
            parts.append(self._frames(self._emphasize(rest)))
        n_samples = self._framer.n_samples
        total = padded_length(n_samples, self.win_length, self.hop_length, self.tail)
        if total > n_samples:
            parts.append(self._frames(np.zeros(total - n_samples, dtype=np.float32)))
        self.reset()
        return torch.from_numpy(np.concatenate(parts))

    def reset(self) -> None:
        """Forget the current stream (buffered samples, carried sample, resampler, statistics).

        The lifetime counters :attr:`n_nonfinite` and :attr:`n_dropped_bytes` are kept.

        Examples
        --------
        >>> import numpy as np
        >>> fe = AudioFeatures(8000, win_length=200, hop_length=80)
        >>> _ = fe.push(np.ones(150, dtype=np.float32))
        >>> fe.reset()
        >>> fe.push(np.ones(150, dtype=np.float32)).shape[0]  # 150 samples: no frame yet
        0
        """
        if getattr(self, "_pending", b""):
            self.n_dropped_bytes += len(self._pending)
        self._pending = b""
        self._resampler = None
        if self.input_rate != self.sample_rate:
            rates = (self.input_rate, self.sample_rate)
            q = self.resample_quality
            self._resampler = soxr.ResampleStream(*rates, 1, dtype="float32", quality=q)
        self._prev = 0.0  # last sample before pre-emphasis
        self._framer.reset()  # samples from the start of the next frame on, and their count
        self._stats = RunningMoments(self.n_features)  # running-normalisation statistics

    def offline(self, signal, sample_rate: int | None = None) -> Tensor:
        """Features of a whole signal in one pass: what ``push(signal)`` + :meth:`flush` give.

        Uses ``soxr.resample`` instead of the streaming resampler; does not touch the
        stream state or the counters. An incomplete trailing byte frame is ignored.

        Shape
        -----
        signal ``(samples,)`` / ``(samples, channels)`` / ``(channels, samples)`` or bytes
        -> ``(T, F)`` float32.

        Examples
        --------
        >>> import numpy as np
        >>> fe = AudioFeatures(8000, "mfcc", win_length=200, hop_length=80)
        >>> fe.offline(np.zeros(8000, dtype=np.float32)).shape
        torch.Size([98, 13])
        """
        self._check_rate(sample_rate)
        x, _, _ = self._decode(signal, b"")
        if self.input_rate != self.sample_rate:
            rates = (self.input_rate, self.sample_rate)
            x = soxr.resample(np.ascontiguousarray(x), *rates, quality=self.resample_quality)
            x = x.astype(np.float32, copy=False)
        x = preemphasize(x, self.preemphasis, 0.0)
        total = padded_length(len(x), self.win_length, self.hop_length, self.tail)
        if total > len(x):
            x = np.concatenate((x, np.zeros(total - len(x), dtype=np.float32)))
        n = 0 if len(x) < self.win_length else (len(x) - self.win_length) // self.hop_length + 1
        if n == 0:
            return torch.zeros(0, self.n_features)
        feats = self._compute(x[: (n - 1) * self.hop_length + self.win_length])
        if self.normalize == "running":
            moments = RunningMoments(self.n_features)
            feats = torch.from_numpy(running_normalize(feats.numpy(), moments, self.norm_eps))
        return feats

    # ------------------------------------------------------------------ internals

    def _push(self, pcm, sample_rate, fused: bool = True) -> np.ndarray:
        """:meth:`push` returning numpy (``(T, F)`` float32); ``fused=False``: not the kernel."""
        if sample_rate is not None:
            self._check_rate(sample_rate)
        plain = type(pcm) is np.ndarray and pcm.dtype is _F32 and pcm.ndim == 1
        if fused and plain and not self._pending and self._fused is not None:
            out = push_frames(pcm, *self._fused)  # as in push
            if out is not None:
                return out
        if plain and not self._pending and np.dot(pcm, pcm) <= _SAFE_SUM_SQ:
            mono = pcm  # all finite and in range (False for NaN): validated by one reduction
        else:
            mono, pending, n_bad = self._decode(pcm, self._pending)  # raises before any change
            self._pending = pending
            self.n_nonfinite += n_bad
        if self._resampler is not None:
            mono = self._resampler.resample_chunk(np.ascontiguousarray(mono), last=False)
        if self.preemphasis:
            mono = self._emphasize(mono)
        return self._frames(mono)

    def _check_rate(self, sample_rate) -> None:
        if sample_rate is not None and sample_rate != self.input_rate:
            raise ValueError(
                f"sample_rate must equal the input rate this front end expects "
                f"({self.input_rate} Hz), got {sample_rate!r} Hz; build "
                f"AudioFeatures({self.sample_rate}, input_rate={sample_rate}, ...) to resample "
                f"it to {self.sample_rate} Hz"
            )

    def _decode(self, pcm, pending: bytes) -> tuple[np.ndarray, bytes, int]:
        cfg = (self.in_channels, self.channel_axis, self.channels, self.nonfinite)
        return decode_chunk(pcm, pending, **dict(zip(_DECODE_KEYS, cfg, strict=True)))

    def _emphasize(self, x: np.ndarray) -> np.ndarray:
        if self.preemphasis and len(x):
            y = preemphasize(x, self.preemphasis, self._prev)
            self._prev = float(x[-1])
            return y
        return x

    def _frames(self, x: np.ndarray) -> np.ndarray:
        """Frame (pre-emphasised) samples: the features of every frame they complete."""
        feats = self._framer.push(x)  # a new array, never a view of the caller's data
        if self.normalize == "running" and len(feats):
            return running_normalize(feats, self._stats, self.norm_eps)
        return feats
