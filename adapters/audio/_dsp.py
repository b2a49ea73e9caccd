"""Chunk-invariant signal steps of the audio front end (private).

Each step is written once and used by both the streaming path (with carried state) and
the offline path (with the initial state), which is what makes them agree.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torchaudio.functional as taf
from torch import Tensor

from streamrnn.utils import RunningMoments

__all__ = [
    "FFT_BLOCK", "WINDOWS", "FrameFeatures", "padded_length", "preemphasize", "running_normalize",
]  # fmt: skip

WINDOWS = {"hann": torch.hann_window, "hamming": torch.hamming_window}

#: Frames per float64 FFT call of the batched path (a long signal takes several calls).
FFT_BLOCK = 256

def preemphasize(x: np.ndarray, coef: float, prev: float) -> np.ndarray:
    """``y[n] = x[n] - coef * x[n - 1]``, with ``prev`` standing for ``x[-1]``.

    Element-wise in float32, so any chunking gives bit-identical samples.

    Shape
    -----
    ``(samples,)`` -> ``(samples,)`` float32.
    """
    if coef == 0.0 or len(x) == 0:
        return x
    shifted = np.empty_like(x)
    shifted[0] = prev
    shifted[1:] = x[:-1]
    return (x - np.float32(coef) * shifted).astype(np.float32, copy=False)


def padded_length(n_samples: int, win_length: int, hop_length: int, tail: str) -> int:
    """Length of a stream of ``n_samples`` after the ``tail`` rule.

    ``"drop"`` keeps it; ``"pad"`` extends it with zeros to the shortest length at which
    every sample lies in some frame: ``win_length`` for ``0 < n <= win_length``, else
    ``(ceil((n - win_length) / hop_length)) * hop_length + win_length``.
    """
    if tail == "drop" or n_samples == 0:
        return n_samples
    if n_samples <= win_length:
        return win_length
    frames = math.ceil((n_samples - win_length) / hop_length) + 1
    return (frames - 1) * hop_length + win_length


def running_normalize(feats: np.ndarray, moments: RunningMoments, eps: float) -> np.ndarray:
    """Standardise each frame by the statistics of all frames up to and including it.

    ``out_t = (f_t - mean_t) / sqrt(var_t + eps)`` with the population variance, from
    ``moments`` (a :class:`~streamrnn.utils.RunningMoments` of the stream's frames so
    far, float64), which the chunk's frames then continue.

    Shape
    -----
    ``(T, F)`` float32 -> ``(T, F)`` float32.
    """
    f = np.asarray(feats, dtype=np.float64)
    mean, var = moments.extend(f)
    return ((f - mean) / np.sqrt(var + eps)).astype(np.float32)


class FrameFeatures:
    """Log-mel or MFCC of every frame of a segment, in one batched call.

    Frame ``k`` of a segment covers ``seg[k * hop : k * hop + win]``; it is windowed and
    zero-padded on the right to ``n_fft`` (the window is padded, and ``n_fft - win`` zeros
    are appended to the segment), then float64 ``torch.fft.rfft`` (one call per
    :data:`FFT_BLOCK` frames) gives their power spectra (what
    ``torchaudio.functional.spectrogram`` with ``center=False`` computes, in float64),
    which torchaudio's ``melscale_fbanks`` filterbank and ``create_dct`` matrix turn into
    features in float32.

    Shape
    -----
    segment ``((T - 1) * hop + win,)`` float32 numpy -> ``(T, F)`` float32 tensor.
    """

    def __init__(
        self, sample_rate, kind, win_length, hop_length, n_fft, n_mels, n_mfcc,
        f_min, f_max, mel_scale, mel_norm, window, log_offset,
    ) -> None:  # fmt: skip
        self.kind, self.hop_length, self.n_fft = kind, hop_length, n_fft
        self.offset = torch.full((1, n_mels), float(log_offset))  # (1, n_mels)
        win = WINDOWS[window](win_length, dtype=torch.float32)
        self.window = torch.nn.functional.pad(win, (0, n_fft - win_length))  # (n_fft,)
        self.window64 = self.window.to(torch.float64)
        self.fb = taf.melscale_fbanks(
            n_fft // 2 + 1, f_min, f_max, n_mels, sample_rate, norm=mel_norm, mel_scale=mel_scale
        )  # (n_fft // 2 + 1, n_mels)
        self.dct = taf.create_dct(n_mfcc, n_mels, norm="ortho")  # (n_mels, n_mfcc)
        self.fft_pad = np.zeros(n_fft - win_length, dtype=np.float32)

    def __call__(self, seg: np.ndarray) -> Tensor:
        if len(self.fft_pad):
            seg = np.concatenate((seg, self.fft_pad))
        # The FFT runs in float64, as in every path of the front end: float32 FFTs of
        # different libraries disagree by ~1e-7 of a frame's loudest bin, which the log
        # turns into ~1e-4 in a near-silent band (the empty top of upsampled audio).
        # No autograd context needed: nothing here requires grad, and entering one costs
        # more than the ops of a 20 ms chunk.
        frames = torch.from_numpy(seg).unfold(0, self.n_fft, self.hop_length)  # (T, n_fft)
        power = torch.empty(len(frames), self.n_fft // 2 + 1)  # float32
        for i in range(0, len(frames), FFT_BLOCK):  # float64 temporaries that stay in cache
            spec = torch.fft.rfft(frames[i : i + FFT_BLOCK].to(torch.float64) * self.window64)
            torch.addcmul(spec.real.square(), spec.imag, spec.imag, out=power[i : i + FFT_BLOCK])
        feats = torch.addmm(self.offset, power, self.fb).log_()  # log(mel + offset): (T, n_mels)
        if self.kind == "mfcc":
            feats = torch.matmul(feats, self.dct)  # (T, n_mfcc)
        return feats
