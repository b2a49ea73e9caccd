"""The front end's maths as pure functions: the reference every path is tested against.

As in ``torchaudio.functional``, each function computes from its arguments alone;
:class:`~streamrnn.adapters.audio.AudioFeatures` is the stateful wrapper that frames a
stream and calls :func:`log_mel` (offline and for large pushes) or, for a live push of a
few frames, the one compiled fast path (``_fused.py``: the same steps in one numba call,
its FFT ``numpy.fft.rfft`` through rocket-fft), which is tested against it.

Frame ``k`` of a segment covers ``segment[k * hop : k * hop + win]``; it is multiplied
by the window, zero-padded on the right to ``n_fft``, and its float64 real FFT's power
is multiplied by torchaudio's mel filterbank (``melscale_fbanks``), offset, logged and,
for MFCC, multiplied by torchaudio's DCT matrix (``create_dct(norm="ortho")``).

Examples
--------
>>> import numpy as np
>>> from streamrnn.adapters.audio.functional import log_mel, mel_filterbank, window
>>> w = window("hann", 200, 256)
>>> fb = mel_filterbank(8000, 256, n_mels=20, f_min=0.0, f_max=4000.0)
>>> x = np.sin(2 * np.pi * 440 * np.arange(1000) / 8000).astype(np.float32)
>>> feats = log_mel(x, win_length=200, hop_length=80, window=w, fb=fb, log_offset=1e-6)
>>> feats.shape, int(feats[0].argmax())  # (1000 - 200) // 80 + 1 frames; the peak:
(torch.Size([11, 20]), 4)

(440 Hz is 550 mel; 20 bands over 0-2146 mel are centred every 102 mel: band 4 at 511.)
"""

from __future__ import annotations

import numpy as np
import torch
import torchaudio.functional as taf
from torch import Tensor

__all__ = ["FFT_BLOCK", "WINDOWS", "dct_matrix", "log_mel", "mel_filterbank", "window"]

WINDOWS = {"hann": torch.hann_window, "hamming": torch.hamming_window}

#: Frames per float64 FFT call of :func:`log_mel` (a long signal takes several calls).
FFT_BLOCK = 256


def window(name: str, win_length: int, n_fft: int) -> Tensor:
    """A periodic ``"hann"`` or ``"hamming"`` window of ``win_length``, zero-padded on the
    right to ``n_fft``, in float64 (float32 values, as torch builds them).

    Shape
    -----
    -> ``(n_fft,)``.
    """
    w = WINDOWS[name](win_length, dtype=torch.float32)
    return torch.nn.functional.pad(w, (0, n_fft - win_length)).to(torch.float64)


def mel_filterbank(sample_rate: int, n_fft: int, *, n_mels: int, f_min: float, f_max: float,
                   mel_scale: str = "htk", mel_norm: str | None = None) -> Tensor:
    """torchaudio's triangular mel filterbank over the ``n_fft // 2 + 1`` FFT bins.

    Shape
    -----
    -> ``(n_fft // 2 + 1, n_mels)`` float32.
    """
    return taf.melscale_fbanks(n_fft // 2 + 1, f_min, f_max, n_mels, sample_rate,
                               norm=mel_norm, mel_scale=mel_scale)


def dct_matrix(n_mfcc: int, n_mels: int) -> Tensor:
    """torchaudio's orthonormal DCT-II matrix (``create_dct(norm="ortho")``).

    Shape
    -----
    -> ``(n_mels, n_mfcc)`` float32.
    """
    return taf.create_dct(n_mfcc, n_mels, norm="ortho")


def log_mel(segment, *, win_length: int, hop_length: int, window: Tensor, fb: Tensor,
            log_offset: float, dct: Tensor | None = None) -> Tensor:
    """``log(|rfft(frame * window)|^2 @ fb + log_offset)`` of every frame (``@ dct``: MFCC).

    The FFT runs in float64 (one ``torch.fft.rfft`` call per :data:`FFT_BLOCK` frames):
    float32 FFTs of different libraries disagree by ~1e-7 of a frame's loudest bin, which
    the log turns into ~1e-4 in a near-silent band; the power is then rounded to float32
    and the mel product, log and DCT are float32, as in torchaudio. ``window`` is
    ``(n_fft,)`` (:func:`window`): the frame's ``win_length`` samples times its first
    ``win_length`` values, then zeros. Frames are those whose samples all lie in
    ``segment``.

    Shape
    -----
    segment ``(S,)`` float32 -> ``(T, F)`` float32 with
    ``T = (S - win_length) // hop_length + 1`` (or 0).
    """
    n_fft, win = window.shape[0], win_length
    seg = torch.as_tensor(np.asarray(segment, dtype=np.float32))
    n_frames = 0 if len(seg) < win else (len(seg) - win) // hop_length + 1
    if n_fft > win:  # every frame's zero-padding, as n_fft - win zeros after the segment
        seg = torch.cat([seg[: max(0, (n_frames - 1) * hop_length + win)],
                         torch.zeros(n_fft - win)])
    frames = seg.unfold(0, n_fft, hop_length)[:n_frames]  # (T, n_fft)
    power = torch.empty(n_frames, n_fft // 2 + 1)  # float32
    for i in range(0, n_frames, FFT_BLOCK):  # float64 temporaries that stay in cache
        spec = torch.fft.rfft(frames[i : i + FFT_BLOCK].to(torch.float64) * window)
        torch.addcmul(spec.real.square(), spec.imag, spec.imag, out=power[i : i + FFT_BLOCK])
    offset = torch.full((1, fb.shape[1]), float(log_offset))
    feats = torch.addmm(offset, power, fb).log_()  # (T, n_mels)
    return feats if dct is None else torch.matmul(feats, dct)
