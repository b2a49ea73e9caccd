"""Audio front end: chunk invariance (streaming == offline), framing rule, parity with torchaudio.

Tolerance: float32 features of a signal pushed in any chunking equal ``offline`` on the
whole signal to rtol = atol = 1e-5 (observed: ~5e-7 on log-mel, ~2e-6 on MFCC c0 whose
magnitude is ~100; every path computes its FFT in float64); the number of frames is
always exact.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchaudio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamrnn.adapters.audio import AudioFeatures

SR = 16000
RTOL = ATOL = 1e-5


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Small per-push ops are slowed down, not sped up, by threads on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _speechy(n: int, seed: int = 0, sr: int = SR) -> np.ndarray:
    """Tones with a vibrato, noise and a stretch of digital silence: float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    x = 0.3 * np.sin(2 * np.pi * (300 + 50 * np.sin(2 * np.pi * 3 * t)) * t)
    x += 0.1 * np.sin(2 * np.pi * 2300 * t) + 0.05 * rng.standard_normal(n)
    x[n // 3 : n // 3 + n // 10] = 0.0
    return x.astype(np.float32)


SIGNAL = _speechy(8000)  # 0.5 s

# Chunk sizes: empty and one-sample chunks are drawn often, plus anything up to 0.1 s.
sizes = st.lists(st.one_of(st.just(0), st.just(1), st.integers(0, 1700)), min_size=0, max_size=40)
FAST = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def split(x, cuts):
    """Chunks of ``x`` of the given sizes, then the rest (``x`` indexed on its first axis)."""
    chunks, i = [], 0
    for n in cuts:
        chunks.append(x[i : i + n])
        i = min(i + n, len(x))
    chunks.append(x[i:])
    return chunks


def stream(fe: AudioFeatures, chunks, **push_kw) -> torch.Tensor:
    outs = [fe.push(c, **push_kw) for c in chunks]
    for out in outs:
        assert out.dtype == torch.float32 and out.ndim == 2 and out.shape[1] == fe.n_features
    return torch.cat(outs + [fe.flush()])


def assert_same(streamed: torch.Tensor, offline: torch.Tensor, rtol=RTOL, atol=ATOL) -> None:
    assert streamed.shape == offline.shape
    torch.testing.assert_close(streamed, offline, rtol=rtol, atol=atol)


# --------------------------------------------------------------------------- chunk invariance

CONFIGS = {
    "logmel": {},
    "mfcc": {"kind": "mfcc", "n_mfcc": 13},
    "nfft512-hamming-pad": {"n_fft": 512, "window": "hamming", "tail": "pad"},
    "preemph-norm": {"preemphasis": 0.97, "normalize": "running"},
    "mfcc-norm-pad": {"kind": "mfcc", "normalize": "running", "tail": "pad", "preemphasis": 0.5},
    "odd-frames": {"win_length": 123, "hop_length": 37, "n_mels": 23, "f_min": 50.0},
}


@pytest.mark.parametrize("name", list(CONFIGS))
@FAST
@given(cuts=sizes)
def test_float_chunks_equal_offline(name, cuts):
    fe = AudioFeatures(SR, **CONFIGS[name])
    assert_same(stream(fe, split(SIGNAL, cuts)), fe.offline(SIGNAL))


@FAST
@given(cuts=st.lists(st.integers(0, 900), max_size=30))
def test_int16_bytes_split_anywhere_equal_offline(cuts):
    """Byte chunks of any length, odd ones included: a dangling byte waits for the next push."""
    pcm = (SIGNAL * 32767).astype(np.int16)
    fe = AudioFeatures(SR, preemphasis=0.97)
    assert_same(stream(fe, split(pcm.tobytes(), cuts)), fe.offline(pcm))


@FAST
@given(cuts=st.lists(st.integers(0, 900), max_size=30))
def test_stereo_bytes_mean_split_anywhere(cuts):
    pcm = (np.stack([SIGNAL, -0.5 * SIGNAL], axis=1) * 32767).astype(np.int16)  # (T, 2)
    fe = AudioFeatures(SR, channels="mean", in_channels=2)
    streamed = stream(fe, split(pcm.tobytes(), cuts))
    assert_same(streamed, fe.offline(pcm))
    mono = pcm.astype(np.float32).mean(axis=1) / 32768
    assert_same(streamed, AudioFeatures(SR).offline(mono))


@FAST
@given(cuts=sizes)
def test_torch_channels_first_tensors(cuts):
    """torchaudio-style ``(C, T)`` tensors with ``channel_axis=0``, keeping the first channel."""
    wave = torch.from_numpy(np.stack([SIGNAL, np.zeros_like(SIGNAL)]))  # (2, T)
    fe = AudioFeatures(SR, channels="first", channel_axis=0)
    chunks = [c.T for c in split(wave.T, cuts)]  # split along time, keep (C, T)
    streamed = stream(fe, chunks)
    assert_same(streamed, fe.offline(wave))
    assert_same(streamed, AudioFeatures(SR).offline(SIGNAL))


def test_input_types_agree():
    """int16 / int32 / float32 / float64, numpy or torch, bytes: the same signal, same frames."""
    pcm = (SIGNAL * 32767).astype(np.int16)
    fe = AudioFeatures(SR, "mfcc")
    ref = fe.offline(pcm.astype(np.float32) / 32768)
    for x in (
        pcm,
        pcm.tobytes(),
        bytearray(pcm.tobytes()),
        memoryview(pcm.tobytes()),
        torch.from_numpy(pcm),
        pcm.astype(np.int32) << 16,
        pcm.astype(np.float64) / 32768,
        torch.from_numpy(pcm.astype(np.float32) / 32768),
    ):
        assert_same(fe.offline(x), ref)
        assert_same(stream(fe, split(x, [333, 1, 0, 4000])), ref)


def test_single_sample_pushes():
    fe = AudioFeatures(
        8000, win_length=64, hop_length=16, n_mels=8, preemphasis=0.9, normalize="running"
    )
    x = _speechy(700, seed=3, sr=8000)
    assert_same(stream(fe, [x[i : i + 1] for i in range(len(x))]), fe.offline(x))


def test_empty_signal_and_empty_pushes():
    fe = AudioFeatures(SR, tail="pad")
    assert fe.push(np.zeros(0, np.float32)).shape == (0, 40)
    assert fe.push(b"").shape == (0, 40)
    assert fe.push(torch.zeros(0, 1)).shape == (0, 40)
    assert fe.flush().shape == (0, 40)
    assert fe.offline(np.zeros(0, np.float32)).shape == (0, 40)


# --------------------------------------------------------------------------- framing rule


def test_frames_emitted_when_their_last_sample_arrives():
    """center=False: frame k covers [k*hop, k*hop + win), emitted by the push completing it."""
    fe = AudioFeatures(SR)  # win 400, hop 160
    total, seen = 0, 0
    for n in [399, 1, 159, 1, 160, 319, 1]:
        total += n
        seen += len(fe.push(np.zeros(n, np.float32)))
        assert seen == (0 if total < 400 else (total - 400) // 160 + 1)


def test_impulse_touches_only_the_frames_covering_it():
    x = np.zeros(3000, np.float32)
    x[1000] = 1.0
    feats = AudioFeatures(SR).offline(x)
    touched = {k for k in range(len(feats)) if not torch.all(feats[k] == feats[0])}
    assert touched == {k for k in range(len(feats)) if k * 160 <= 1000 < k * 160 + 400}


def test_tail_rule():
    """drop: no partial frame; pad: zero-pad until every sample lies in a frame."""
    win, hop = 400, 160
    for n in [1, 399, 400, 401, 560, 561, 1000]:
        x = _speechy(n)
        dropped = AudioFeatures(SR).offline(x)
        padded_fe = AudioFeatures(SR, tail="pad")
        padded = padded_fe.offline(x)
        assert len(dropped) == (0 if n < win else (n - win) // hop + 1)
        assert len(padded) == (1 if n <= win else -(-(n - win) // hop) + 1)
        manual = AudioFeatures(SR).offline(np.pad(x, (0, (len(padded) - 1) * hop + win - n)))
        assert_same(padded, manual)
        assert_same(stream(padded_fe, split(x, [n // 3, 1])), padded)


def test_flush_resets_the_stream():
    fe = AudioFeatures(SR, normalize="running", preemphasis=0.97)
    first = stream(fe, split(SIGNAL, [1000]))
    second = stream(fe, split(SIGNAL, [3000, 17]))
    assert_same(first, second)


# --------------------------------------------------------------------------- definitions


def test_preemphasis_definition():
    x = SIGNAL
    emphasised = x - 0.97 * np.concatenate(([0.0], x[:-1])).astype(np.float32)
    assert_same(
        AudioFeatures(SR, preemphasis=0.97).offline(x), AudioFeatures(SR).offline(emphasised)
    )


def test_running_normalisation_definition():
    plain = AudioFeatures(SR).offline(SIGNAL).double().numpy()
    normed = AudioFeatures(SR, normalize="running", norm_eps=1e-5).offline(SIGNAL)
    t = np.arange(1, len(plain) + 1)[:, None]
    mean = np.cumsum(plain, 0) / t
    var = np.array([plain[: i + 1].var(axis=0) for i in range(len(plain))])
    assert_same(normed, torch.from_numpy((plain - mean) / np.sqrt(var + 1e-5)).float())
    assert torch.all(normed[0] == 0)


def test_one_batched_fft_call_per_push(monkeypatch):
    """All frames completed by a large push come from one batched FFT call (per FFT_BLOCK)."""
    calls = []
    real = torch.fft.rfft

    def counting(frames, *args, **kwargs):
        calls.append(frames.shape)
        return real(frames, *args, **kwargs)

    monkeypatch.setattr(torch.fft, "rfft", counting)
    fe = AudioFeatures(SR, "mfcc")
    assert fe.push(SIGNAL).shape == (48, 13)
    assert calls == [(48, 400)]
    assert fe.push(SIGNAL[:10]).shape == (0, 13) and len(calls) == 1  # no frame, no call


# --------------------------------------------------------------------------- parity


def test_logmel_matches_torchaudio_melspectrogram():
    ref = torchaudio.transforms.MelSpectrogram(
        SR, n_fft=400, win_length=400, hop_length=160, n_mels=40, center=False
    )(torch.from_numpy(SIGNAL))
    assert_same(AudioFeatures(SR).offline(SIGNAL), torch.log(ref + 1e-6).T)


def test_nfft_padding_matches_torchaudio_centred_window():
    """n_fft > win_length: torch centres the window in the FFT frame; ours sits at its start."""
    ref = torchaudio.transforms.MelSpectrogram(
        SR, n_fft=512, win_length=400, hop_length=160, n_mels=64, center=False,
        mel_scale="slaney", norm="slaney",
    )(torch.from_numpy(np.pad(SIGNAL, (56, 56))))  # fmt: skip
    ours = AudioFeatures(SR, n_fft=512, n_mels=64, mel_scale="slaney", mel_norm="slaney")
    assert_same(ours.offline(SIGNAL), torch.log(ref + 1e-6).T, rtol=1e-4, atol=1e-4)


def test_mfcc_matches_torchaudio_mfcc():
    ref = torchaudio.transforms.MFCC(
        SR, n_mfcc=13, log_mels=True,
        melkwargs={"n_fft": 400, "hop_length": 160, "n_mels": 40, "center": False},
    )(torch.from_numpy(SIGNAL))  # fmt: skip
    assert_same(AudioFeatures(SR, "mfcc").offline(SIGNAL), ref.T, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- small and large pushes


@pytest.mark.parametrize("name", ["logmel", "mfcc", "nfft512-hamming-pad", "preemph-norm"])
@FAST
@given(cuts=st.lists(st.one_of(st.integers(0, 400), st.integers(2800, 5000)), max_size=12))
def test_switching_between_small_and_large_pushes(name, cuts):
    """Pushes completing <= SMALL_FRAMES frames take the compiled path, bigger ones the
    reference; any mix of the two, in any order, still equals offline."""
    fe = AudioFeatures(SR, **CONFIGS[name])
    x = np.concatenate([SIGNAL, SIGNAL[::-1]])  # 1 s: room for several large pushes
    assert_same(stream(fe, split(x, cuts)), fe.offline(x))


def _without_fused(fe: AudioFeatures) -> AudioFeatures:
    """Switch the compiled kernel off on ``fe``: every push then takes the reference."""
    fe._fused = fe._framer.fused = fe._framer.fused_args = None
    return fe


@pytest.mark.parametrize("fused", [True, False])
def test_both_paths_are_taken_and_agree_frame_by_frame(monkeypatch, fused):
    from streamrnn.adapters.audio import _features as _audio_features
    from streamrnn.adapters.audio import _frames as _audio_frames

    taken = []
    real = _audio_frames.FrameStream._push_reference

    def counting(self, *args):
        taken.append("reference")
        return real(self, *args)

    monkeypatch.setattr(_audio_frames.FrameStream, "_push_reference", counting)
    for module in (_audio_features, _audio_frames):
        kernel = module.push_frames

        def counting_kernel(*args, _kernel=kernel):
            out = _kernel(*args)
            taken.append("fused" if out is not None else "declined")
            return out

        monkeypatch.setattr(module, "push_frames", counting_kernel)
    fe = AudioFeatures(SR, "mfcc")
    if not fused:
        _without_fused(fe)
    cap = fe.win_length + _audio_frames.SMALL_FRAMES * fe.hop_length - 1  # largest small push
    cuts = [320, 320, cap, 5000, 1, 160, 3000]
    assert_same(stream(fe, split(SIGNAL, cuts)), fe.offline(SIGNAL))
    assert "reference" in taken
    assert ("fused" in taken) == (fused and _audio_frames.HAVE_NUMBA)
    if not fused:
        assert taken.count("reference") == len(cuts) + 1  # every push
