"""Framing buffer of the streaming audio front end, and its small-push paths (private).

A live push is 10-20 ms of audio: one or two frames. For so few frames the fixed cost
of the torch calls (``torchaudio.functional.spectrogram`` alone is ~30 us, the whole
batched path ~45 us) is 10-20x the arithmetic, so a push completing at most
``max_small`` frames takes a small path on preallocated buffers instead:

- with numba, and an ``n_fft`` whose half has no prime factor but 2, 3 and 5: the fused
  kernel of :mod:`._audio_fused`, the whole push in one compiled call (~4 us for two
  frames at 16 kHz / 25 ms / 40 mels; ``AudioFeatures.push`` of float32 mono calls it
  directly, skipping even this class);
- otherwise a handful of numpy calls (``_small``, ~10-13 us for the same push):

  1. the samples are appended to a preallocated buffer; the frames are rows of a fixed
     strided view of it (frame ``k`` is ``buffer[k * hop : k * hop + win]``);
  2. the frames are windowed into a preallocated ``(T, n_fft)`` array whose last
     ``n_fft - win`` columns stay zero (the right zero-padding of the batched path);
  3. ``torch.fft.rfft`` (float64) writes the spectra into a preallocated complex tensor
     shared with numpy: the same FFT as the batched path's, so the two paths differ only
     in the rounding of the mel product;
  4. the interleaved real and imaginary parts are squared in place and multiplied by
     torchaudio's mel filterbank with every row repeated twice (so the power sum
     ``re**2 + im**2`` and the mel product are one matrix product); then
     ``log(mel + log_offset)`` and, for MFCC, torchaudio's DCT matrix.

  With numba, steps 2 and 4 are compiled calls (:mod:`._audio_fastmel`, the mel product
  over each filter's nonzero bins only).

A push completing more frames goes through :class:`~._audio_dsp.FrameFeatures`, one
batched call, exactly as :meth:`AudioFeatures.offline` does. Every path computes its FFT
in float64, so all agree to float32 rounding (float32 FFTs of different libraries do
not: ~1e-4 apart after the log in a near-silent band of a loud frame).
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.lib.stride_tricks import as_strided

from ._dsp import FrameFeatures
from ._fastmel import HAVE_NUMBA, SparseMel, window_into
from ._fused import FILL, TOTAL, FusedPlan, push_frames

__all__ = ["SMALL_FRAMES", "FrameStream"]

#: Most frames a push may complete to take the numpy path (the torch path wins beyond,
#: and its memory grows with the push; this bounds the preallocated buffers).
SMALL_FRAMES = 16


class FrameStream:
    """Samples waiting for their frames, and the features of the frames a push completes.

    ``push(x)`` appends samples and returns the features of every frame they complete
    (frame ``k`` of the stream covers samples ``[k * hop, k * hop + win)``): with the
    fused kernel (or the numpy path) if the buffer then holds at most ``max_small``
    frames' worth of samples, else with ``compute`` (one batched call). All
    give the features of :class:`~._audio_dsp.FrameFeatures` on the same frames to
    float32 rounding. ``fused=False`` keeps the numpy path.

    Shape
    -----
    ``(samples,)`` float32 -> ``(T, F)`` float32 numpy, a new array (``T`` may be 0).
    """

    def __init__(
        self, compute: FrameFeatures, win_length: int, max_small: int = SMALL_FRAMES,
        fused: bool = True,
    ) -> None:  # fmt: skip
        hop, n_fft = compute.hop_length, compute.n_fft
        self.compute, self.win, self.hop = compute, win_length, hop
        n_feat = compute.dct.shape[1] if compute.kind == "mfcc" else compute.fb.shape[1]
        self.n_features = n_feat
        # Up to cap samples, a push completes at most max_small frames.
        self.cap = win_length + max_small * hop - 1
        self._buf = np.zeros(self.cap, dtype=np.float32)
        self._rows = as_strided(self._buf, shape=(max_small, win_length), strides=(4 * hop, 4))
        self._window = compute.window[:win_length].numpy().copy()  # (win,)
        self._window64 = self._window.astype(np.float64)  # float32 sample * it: exact
        # float64 FFT, as in every path (see FrameFeatures): its input and output
        self._windowed = np.zeros((max_small, n_fft), dtype=np.float64)  # right cols stay 0
        n_bins = n_fft // 2 + 1
        self._spec = torch.zeros(max_small, n_bins, dtype=torch.complex128)
        # Per frame count T: the input and output tensors of the FFT (slicing a tensor
        # costs more than the FFT's arithmetic), and the float64 view of the spectra.
        windowed_t = torch.from_numpy(self._windowed)
        self._fft_in = [windowed_t[:t] for t in range(max_small + 1)]
        self._fft_out = [self._spec[:t] for t in range(max_small + 1)]
        spec_f = torch.view_as_real(self._spec).numpy().reshape(max_small, 2 * n_bins)
        self._power = [spec_f[:t] for t in range(max_small + 1)]
        fb = compute.fb.numpy()  # (n_bins, n_mels): torchaudio's melscale_fbanks
        self._fb2 = np.repeat(fb, 2, axis=0).astype(np.float64)  # (2 * n_bins, n_mels)
        self._offset = [
            np.full((t, fb.shape[1]), compute.offset[0, 0].item(), dtype=np.float32)
            for t in range(max_small + 1)
        ]
        self._dct = compute.dct.numpy() if compute.kind == "mfcc" else None
        # with numba: steps 2 and 4 compiled, the mel product over the filters' nonzero bins
        self._mel = SparseMel(fb, compute.offset[0, 0].item()) if HAVE_NUMBA else None
        # with numba and an n_fft the compiled FFT handles: the whole push in one call
        self.fused = None
        if HAVE_NUMBA and fused:
            self.fused = FusedPlan.build(
                win_length, hop, self.cap, n_fft, self._window, fb, self._dct,
                compute.offset[0, 0].item(),
            )  # fmt: skip
        # fill and n_samples live in an int64 array that the fused kernel updates in place
        self._ints = np.zeros(2, dtype=np.int64) if self.fused is None else self.fused.ints
        #: push_frames(x, *fused_args) is the whole small push (None without a plan)
        self.fused_args = None
        if self.fused is not None:
            self.fused_args = (self._buf, self.fused.ints, self.fused.real, self.fused.cplx)
        self.reset()

    @property
    def fill(self) -> int:
        """Samples in the buffer: from the start of the next frame on."""
        return int(self._ints[FILL])

    @fill.setter
    def fill(self, value: int) -> None:
        self._ints[FILL] = value

    @property
    def n_samples(self) -> int:
        """Samples pushed since the last :meth:`reset`."""
        return int(self._ints[TOTAL])

    def reset(self) -> None:
        """Drop the buffered samples."""
        self._ints[FILL] = 0
        self._ints[TOTAL] = 0

    def push(self, x: np.ndarray) -> np.ndarray:
        """Append ``x`` (float32, 1-D); return the features of the frames it completes."""
        fused = self.fused
        if fused is not None and x.dtype == np.float32 and x.flags.c_contiguous:
            out = push_frames(x, *self.fused_args)
            if out is not None:  # else nothing changed: too large (or a sample too big)
                return out
        start = self.fill
        end = start + len(x)
        win = self.win
        self._ints[TOTAL] += len(x)
        if end > self.cap:
            return self._push_large(x)
        buf = self._buf
        buf[start:end] = x
        if end < win:
            self.fill = end
            return np.zeros((0, self.n_features), dtype=np.float32)
        hop = self.hop
        t = (end - win) // hop + 1
        feats = self._small(t)
        used = t * hop
        buf[: end - used] = buf[used:end]  # numpy copies overlapping ranges correctly
        self.fill = end - used
        return feats

    def _small(self, t: int) -> np.ndarray:
        """Features of the first ``t`` frames of the buffer, in numpy (or numba)."""
        if self._mel is not None:
            window_into(self._buf, self._window64, self.hop, t, self._windowed)
            torch.fft.rfft(self._fft_in[t], out=self._fft_out[t])
            mel = self._mel(self._power[t])  # (t, n_mels), a new array
        else:
            np.multiply(self._rows[:t], self._window64, out=self._windowed[:t, : self.win])
            torch.fft.rfft(self._fft_in[t], out=self._fft_out[t])
            power = self._power[t]  # (t, 2 * n_bins): re, im interleaved
            np.multiply(power, power, out=power)
            mel = (power @ self._fb2).astype(np.float32)  # (t, n_mels), a new array
            mel += self._offset[t]
            np.log(mel, out=mel)
        if self._dct is not None:
            return mel @ self._dct
        return mel

    def _push_large(self, x: np.ndarray) -> np.ndarray:
        """Every frame of buffer + ``x`` in one batched torchaudio call."""
        seg = np.concatenate((self._buf[: self.fill], x))
        n = len(seg)
        win, hop = self.win, self.hop
        t = 0 if n < win else (n - win) // hop + 1
        feats = (
            self.compute(seg[: (t - 1) * hop + win]).numpy()
            if t
            else np.zeros((0, self.n_features), dtype=np.float32)
        )
        rest = seg[t * hop :]  # fewer than win samples: fits the buffer
        self._buf[: len(rest)] = rest
        self.fill = len(rest)
        return feats
