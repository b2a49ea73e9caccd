"""Audio front end: the one compiled fast path (a live push in one numba call, its FFT
``numpy.fft.rfft`` through rocket-fft) against the reference (``functional.log_mel``).

The kernel equals ``offline`` (the reference on the whole signal) over random chunkings
that mix it with large pushes, to the streaming tolerance of test_audio_streaming.py,
for every FFT size (pocketfft has no size it cannot do); for every bad input a push it
declines changes nothing; and the one non-numba fallback (the reference for every push)
gives the same features.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamrnn.adapters.audio import AudioFeatures
from streamrnn.adapters.audio import _features as _audio_features
from streamrnn.adapters.audio import _frames as _audio_frames
from streamrnn.adapters.audio import _fused as _audio_fused

pytestmark = pytest.mark.skipif(not _audio_frames.HAVE_NUMBA, reason="needs numba")

SR = 16000
RTOL = ATOL = 1e-5
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _speechy(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    x = 0.3 * np.sin(2 * np.pi * (300 + 50 * np.sin(2 * np.pi * 3 * t)) * t)
    x += 0.1 * np.sin(2 * np.pi * 2300 * t) + 0.05 * rng.standard_normal(n)
    x[n // 3 : n // 3 + n // 10] = 0.0
    return x.astype(np.float32)


SIGNAL = _speechy(12000)


# --------------------------------------------------------------------------- the fused kernel

CONFIGS = {
    "logmel": {},
    "mfcc": {"kind": "mfcc", "n_mfcc": 13},
    "nfft512-hamming-pad-slaney": {
        "n_fft": 512, "window": "hamming", "tail": "pad", "mel_scale": "slaney",
        "mel_norm": "slaney", "n_mels": 64,
    },  # fmt: skip
    "odd-win-nfft480": {"win_length": 401, "hop_length": 37, "n_fft": 480, "n_mels": 23},
    "nfft-3x-fmin": {"win_length": 300, "hop_length": 100, "n_fft": 384, "f_min": 60.0},
    "preemph-mfcc": {"kind": "mfcc", "preemphasis": 0.97},  # via FrameStream.push
    "resampled": {"input_rate": 24000, "tail": "pad"},  # via FrameStream.push
    "norm": {"kind": "mfcc", "normalize": "running"},  # via FrameStream.push
}


def _split(x, cuts):
    chunks, i = [], 0
    for n in cuts:
        chunks.append(x[i : i + n])
        i = min(i + n, len(x))
    return chunks + [x[i:]]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_configs_take_the_fused_kernel(name):
    fe = AudioFeatures(SR, **CONFIGS[name])
    assert fe._framer.fused is not None
    assert (fe._fused is not None) == (name not in ("preemph-mfcc", "resampled", "norm"))


@pytest.mark.parametrize("n_fft", [123, 401, 14 * 8, 2 * 11 * 13])
def test_every_fft_size_takes_the_kernel_and_equals_offline(n_fft):
    """Odd sizes and sizes with large prime factors (the hand-written FFT had no plan for
    them and fell back to numpy): pocketfft does them all."""
    win = min(n_fft, 123)
    fe = AudioFeatures(SR, win_length=win, hop_length=37, n_fft=n_fft, n_mels=23)
    assert fe._framer.fused is not None and fe._fused is not None
    got = torch.cat([fe.push(SIGNAL[i : i + 320]) for i in range(0, len(SIGNAL), 320)])
    torch.testing.assert_close(got, fe.offline(SIGNAL)[: len(got)], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", list(CONFIGS))
@FAST
@given(
    cuts=st.lists(
        st.one_of(st.just(0), st.just(1), st.integers(0, 700), st.integers(2500, 4000)),
        max_size=16,
    )
)
def test_fused_and_large_pushes_in_any_mix_equal_offline(name, cuts):
    fe = AudioFeatures(SR, **CONFIGS[name])
    outs = [fe.push(c) for c in _split(SIGNAL, cuts)] + [fe.flush()]
    for out in outs:
        assert out.dtype == torch.float32 and out.shape[1] == fe.n_features
    want = fe.offline(SIGNAL)
    got = torch.cat(outs)
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, rtol=RTOL, atol=ATOL)


def test_band_limited_loud_audio_equals_offline():
    """Upsampled audio has an empty top band: float32 FFTs of different libraries disagree
    there by ~1e-4 after the log (~1e-7 of the loud bins); every path's FFT is float64."""
    import soxr

    rng = np.random.default_rng(1)
    t = np.arange(16000) / 8000
    x8 = 0.9 * np.sin(2 * np.pi * 440 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    x8 = (0.5 * x8 + 0.2 * rng.standard_normal(len(t))).clip(-1, 1)
    x = soxr.resample(x8, 8000, SR).astype(np.float32)  # nothing above ~3.7 kHz
    for cfg in ({}, {"kind": "mfcc", "normalize": "running"}):
        fe = AudioFeatures(SR, n_mels=64, **cfg)
        got = torch.cat([fe.push(x[i : i + 320]) for i in range(0, len(x), 320)] + [fe.flush()])
        torch.testing.assert_close(got, fe.offline(x), rtol=RTOL, atol=ATOL)


@FAST
@given(cuts=st.lists(st.integers(0, 900), max_size=30))
def test_int16_bytes_reach_the_fused_kernel_through_the_framer(cuts):
    pcm = (SIGNAL * 32767).astype(np.int16).tobytes()
    fe = AudioFeatures(SR, "mfcc")
    got = torch.cat([fe.push(c) for c in _split(pcm, cuts)] + [fe.flush()])
    torch.testing.assert_close(got, fe.offline(pcm), rtol=RTOL, atol=ATOL)


def test_the_kernel_does_the_common_push(monkeypatch):
    calls = []
    kernel = _audio_features.push_frames

    def counting(*args):
        out = kernel(*args)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(_audio_features, "push_frames", counting)
    fe = AudioFeatures(SR)
    assert fe.push(SIGNAL[:320]).shape == (0, 40)
    assert fe.push(SIGNAL[320:640]).shape == (2, 40)
    assert fe._push(SIGNAL[640:960], None).shape == (2, 40)  # DigitRecognizer's entry
    assert fe.push(SIGNAL[960:8000]).shape[0] == 44  # too large: declined, batched
    assert calls == [True, True, True, False]


def _state(fe: AudioFeatures):
    fused = fe._framer.fused
    return fe._framer._buf.copy(), fused.ints.copy(), fe.n_nonfinite


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1.5e6, -2e6])
@pytest.mark.parametrize("where", [0, 150, 319])
def test_bad_sample_raises_and_changes_nothing(bad, where):
    fe, clean = AudioFeatures(SR), AudioFeatures(SR)
    for f in (fe, clean):
        f.push(SIGNAL[:500])
    before = _state(fe)
    chunk = SIGNAL[500:820].copy()
    chunk[where] = bad
    with pytest.raises(ValueError, match="finite samples"):
        fe.push(chunk)
    after = _state(fe)
    assert all(np.array_equal(a, b) for a, b in zip(before[:2], after[:2], strict=True))
    rest = SIGNAL[500:]
    torch.testing.assert_close(fe.push(rest), clean.push(rest), rtol=0, atol=0)


def test_bad_sample_zeroed_by_policy_equals_offline_of_the_zeroed_signal():
    fe = AudioFeatures(SR, nonfinite="zero")
    x = SIGNAL.copy()
    x[[10, 700, 701]] = [np.nan, np.inf, 3e6]
    got = torch.cat([fe.push(x[i : i + 320]) for i in range(0, len(x), 320)] + [fe.flush()])
    assert fe.n_nonfinite == 3
    x[[10, 700, 701]] = 0.0
    torch.testing.assert_close(got, fe.offline(x), rtol=RTOL, atol=ATOL)


def test_largest_allowed_sample_is_taken_by_the_kernel():
    fe = AudioFeatures(SR)
    x = np.zeros(400, dtype=np.float32)
    x[7] = -1e6  # |x| <= MAX_ABS_SAMPLE: a good sample
    out = _audio_fused.push_frames(x, *fe._fused)
    assert out is not None and out.shape == (1, 40) and np.isfinite(out).all()


def test_declined_push_leaves_buffer_and_counters_alone():
    fe = AudioFeatures(SR)
    fe.push(SIGNAL[:250])
    before = _state(fe)
    big = SIGNAL[: fe._framer.cap]  # 250 + cap samples cannot fit
    assert _audio_fused.push_frames(big, *fe._fused) is None
    after = _state(fe)
    assert all(np.array_equal(a, b) for a, b in zip(before[:2], after[:2], strict=True))


def test_empty_pushes_return_no_frames():
    fe = AudioFeatures(SR, "mfcc")
    empty = np.zeros(0, dtype=np.float32)
    assert fe.push(empty).shape == (0, 13)
    fe.push(SIGNAL[:399])
    assert fe.push(empty).shape == (0, 13)
    assert fe.push(SIGNAL[399:400]).shape == (1, 13)


def test_strided_input_is_taken_as_well():
    fe, ref = AudioFeatures(SR), AudioFeatures(SR)
    x2 = np.repeat(SIGNAL, 2)[::2]  # a non-contiguous view of the same samples
    got = torch.cat([fe.push(x2[i : i + 320]) for i in range(0, 4000, 320)])
    want = torch.cat([ref.push(SIGNAL[i : i + 320]) for i in range(0, 4000, 320)])
    torch.testing.assert_close(got, want, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["logmel", "mfcc", "odd-win-nfft480", "norm"])
def test_without_numba_the_one_fallback_is_the_reference(monkeypatch, name):
    calls = []
    real = _audio_frames.FrameStream._push_reference

    def counting(self, x):
        calls.append(len(x))
        return real(self, x)

    fast = AudioFeatures(SR, **CONFIGS[name])  # the kernel
    monkeypatch.setattr(_audio_frames, "HAVE_NUMBA", False)
    monkeypatch.setattr(_audio_frames.FrameStream, "_push_reference", counting)
    fe = AudioFeatures(SR, **CONFIGS[name])
    assert fe._framer.fused is None and fe._fused is None
    pushes = [SIGNAL[i : i + 320] for i in range(0, len(SIGNAL), 320)]
    got = torch.cat([fe.push(c) for c in pushes] + [fe.flush()])
    assert len(calls) >= len(pushes)  # every push went through the reference
    torch.testing.assert_close(got, fe.offline(SIGNAL), rtol=RTOL, atol=ATOL)
    calls.clear()
    want = torch.cat([fast.push(c) for c in pushes] + [fast.flush()])
    assert len(calls) <= 1  # the kernel did the pushes (the flush may pad)
    torch.testing.assert_close(got, want, rtol=RTOL, atol=ATOL)


def test_kernel_spectra_are_the_reference_spectra():
    """Both paths take a float64 real FFT of the same windowed frames, so the kernel differs
    from the reference only by the order of the float32 mel sum (observed: identical)."""
    from streamrnn.adapters.audio.functional import log_mel

    fe = AudioFeatures(SR, n_fft=512, kind="mfcc")
    feats = fe._framer.push(SIGNAL[:1999])  # 10 frames: the kernel
    assert len(feats) == 10
    c = fe._compute
    want = log_mel(SIGNAL[: 9 * 160 + 400], win_length=400, hop_length=160, window=c.window,
                   fb=c.fb, log_offset=c.log_offset, dct=c.dct)
    torch.testing.assert_close(torch.from_numpy(feats), want, rtol=1e-6, atol=1e-6)
