"""Chunk-invariant signal steps of the audio front end (private).

Each step is written once and used by both the streaming path (with carried state) and
the offline path (with the initial state), which is what makes them agree.
"""

from __future__ import annotations

import math

import numpy as np
from torch import Tensor

from streamrnn.utils import RunningMoments

from . import functional as F

__all__ = ["FrameFeatures", "padded_length", "preemphasize", "running_normalize"]


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
    """The front end's constants (window, filterbank, DCT) and :func:`.functional.log_mel`
    of a segment with them: the reference path (offline, and pushes of many frames).

    Shape
    -----
    segment ``((T - 1) * hop + win,)`` float32 numpy -> ``(T, F)`` float32 tensor.
    """

    def __init__(
        self, sample_rate, kind, win_length, hop_length, n_fft, n_mels, n_mfcc,
        f_min, f_max, mel_scale, mel_norm, window, log_offset,
    ) -> None:  # fmt: skip
        self.kind, self.n_fft = kind, n_fft
        self.win_length, self.hop_length = win_length, hop_length
        self.log_offset = float(log_offset)
        self.window = F.window(window, win_length, n_fft)  # (n_fft,) float64
        self.fb = F.mel_filterbank(sample_rate, n_fft, n_mels=n_mels, f_min=f_min, f_max=f_max,
                                   mel_scale=mel_scale, mel_norm=mel_norm)  # (n_bins, n_mels)
        self.dct = F.dct_matrix(n_mfcc, n_mels)  # (n_mels, n_mfcc)
        self.n_features = n_mfcc if kind == "mfcc" else n_mels

    def __call__(self, seg: np.ndarray) -> Tensor:
        return F.log_mel(seg, win_length=self.win_length, hop_length=self.hop_length,
                         window=self.window, fb=self.fb, log_offset=self.log_offset,
                         dct=self.dct if self.kind == "mfcc" else None)
