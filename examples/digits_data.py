"""Training data for ``train_digits.py``: FSDD clips, augmentation, sequences and frame labels.

Each training sequence is ``SEQ_S`` seconds of background (digital silence, or white /
pink / brown noise at -85 to -35 dBFS) holding FSDD clips at random times, 0.15-0.7 s
apart. Each clip is augmented as the field does for speaker independence:

- speed perturbation: resampled (soxr) by a speed drawn uniformly from ``speed``
  (pitch, formants and duration change together, as in Ko et al. 2015), then tempo
  perturbation: time-stretched by a phase vocoder by a factor drawn from ``tempo`` (the
  speaking rate alone);
- a random "microphone": smooth EQ, a spectral tilt of up to ``tilt_db`` from 0 Hz to 4 kHz
  plus three cosine ripples of up to ``+-ripple_db``, and a 50-300 Hz high-pass;
- gain: a level of -42 to -15 dBFS RMS, at least ``snr_db`` above the background noise;
- with probability ``babble``, another training clip (another speaker when there is one)
  mixed under it ``babble_snr`` dB lower (babble: speech that is not the word);
- 5 ms fades.

8 % of the sequences are noise only (up to -15 dBFS, some amplitude-modulated). In a
quarter of the sequences the background switches on at a random time; clicks and bursts
of noise (5-80 ms, -40 to -10 dBFS) are sprinkled in (0.6 per sequence on average).
SpecAugment-style masks (:func:`spec_augment`) are drawn on the standardised features.
Vocal tract length perturbation (:func:`vtlp`, off by default) warps the log-mel
features of each clip along the mel-band axis, duration and pitch kept.

Labels: frames (centres) from 40 % into the endpointed word to 50 ms after it are the
digit, the first 40 % of the word is left out of the loss, every other frame is blank.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np
import soxr
import torch
from torchaudio.functional import phase_vocoder

from streamrnn.adapters.audio import AudioFeatures, WavSource
from streamrnn.apps.speech import LABELS, word_bounds

SPEAKERS = ("george", "jackson", "lucas", "nicolas", "yweweler")
FEATURES = {
    "sample_rate": 8000,
    "n_mels": 40,
    "win_length": 200,
    "hop_length": 80,
    "f_min": 100.0,
    "log_offset": 1e-4,
}
SR, HOP, WIN, BLANK = 8000, 80, 200, len(LABELS) - 1
IGNORE, EARLY, HANG_S, SEQ_S = -100, 0.4, 0.05, 3.0
LABEL_RULE = (
    "frames (centres) from 40% into the endpointed word to {hang_ms} ms after it: the digit; "
    "the word's first 40%: not in the loss; all other frames: blank"
)  # .format(hang_ms=...)


@dataclass(frozen=True)
class Augment:
    """Augmentation settings (see the module docstring); validated at construction."""

    speed: tuple[float, float] = (0.85, 1.15)
    tempo: tuple[float, float] = (1.0, 1.0)
    tilt_db: float = 6.0
    ripple_db: float = 3.0
    snr_db: float = 15.0
    babble: float = 0.0
    babble_snr: tuple[float, float] = (10.0, 20.0)
    freq_masks: int = 1
    freq_mask: int = 4
    time_masks: float = 0.0
    time_mask: int = 0
    vtlp: tuple[float, float] = (1.0, 1.0)

    def __post_init__(self) -> None:
        for name in ("speed", "tempo"):
            lo, hi = getattr(self, name)
            if not 0.5 <= lo <= hi <= 2.0:
                raise ValueError(f"{name} must be (lo, hi) with 0.5 <= lo <= hi <= 2, got {lo, hi}")
        lo, hi = self.vtlp
        if not 0.8 <= lo <= hi <= 1.25:
            raise ValueError(f"vtlp must be (lo, hi) with 0.8 <= lo <= hi <= 1.25, got {lo, hi}")
        for name in ("tilt_db", "ripple_db", "time_masks"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if not -10.0 <= self.snr_db <= 60.0:
            raise ValueError(f"snr_db must be in [-10, 60], got {self.snr_db!r}")
        if not 0.0 <= self.babble <= 1.0:
            raise ValueError(f"babble must be a probability in [0, 1], got {self.babble!r}")
        lo, hi = self.babble_snr
        if not 0.0 <= lo <= hi <= 60.0:
            raise ValueError(f"babble_snr must be (lo, hi) with 0 <= lo <= hi <= 60, got {lo, hi}")
        for name, top in (("freq_masks", 8), ("freq_mask", 20), ("time_mask", 50)):
            v = getattr(self, name)
            if not isinstance(v, int) or not 0 <= v <= top:
                raise ValueError(f"{name} must be an integer in [0, {top}], got {v!r}")


def load_clips(root: Path) -> list[dict]:
    """Every clip with its digit, speaker, take and word bounds (seconds)."""
    fe = AudioFeatures(**FEATURES)
    clips = []
    for path in sorted(Path(root).glob("*.wav")):
        digit, speaker, take = path.stem.split("_")
        audio = WavSource(path).read()
        bounds = word_bounds(audio, fe)
        if bounds is None:  # no voiced frame: nothing to label
            continue
        clips.append({"name": path.stem, "digit": int(digit), "speaker": speaker,
                      "take": int(take), "audio": audio, "bounds": bounds})  # fmt: skip
    if not clips:
        raise SystemExit(f"no FSDD clips ({{digit}}_{{speaker}}_{{take}}.wav) found in {root}")
    return clips


def at_speed(
    clip: dict, speed: float, tempo: float = 1.0
) -> tuple[np.ndarray, tuple[float, float]]:
    """The clip played ``speed`` times as fast (resampled: pitch and formants move too),
    then ``tempo`` times as fast (phase vocoder: pitch kept), and its word bounds (s)."""
    audio, (start, end) = clip["audio"], clip["bounds"]
    if speed != 1.0:  # resampling by 1/speed scales the word bounds by it
        rate = round(SR * speed)  # played at SR: the speed is rate / SR
        audio = soxr.resample(audio, rate, SR)
        start, end = start * SR / rate, end * SR / rate
    if tempo != 1.0:
        audio = stretch(audio, tempo)
        start, end = start / tempo, end / tempo
    return audio.astype(np.float64), (start, end)


def stretch(audio: np.ndarray, tempo: float, n_fft: int = 256, hop: int = 64) -> np.ndarray:
    """Time-stretch by a phase vocoder (``torchaudio.functional.phase_vocoder``): ``tempo``
    times as fast, the pitch unchanged. Shape ``(N,)`` -> ``(round(N / tempo),)``."""
    x = torch.from_numpy(np.asarray(audio, dtype=np.float32))
    window = torch.hann_window(n_fft)
    spec = torch.stft(x, n_fft, hop, window=window, return_complex=True)
    advance = torch.linspace(0, math.pi * hop, spec.shape[0])[:, None]
    spec = phase_vocoder(spec, tempo, advance)
    n = round(len(x) / tempo)
    return torch.istft(spec, n_fft, hop, window=window, length=n).numpy()


def noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise: ``white``, ``pink`` (1/f power) or ``brown`` (1/f^2), ``n`` samples."""
    w = rng.standard_normal(n)
    if kind != "white":
        spec = np.fft.rfft(w)
        f = np.maximum(np.fft.rfftfreq(n, 1 / SR), 20.0)
        spec /= f ** (0.5 if kind == "pink" else 1.0)
        w = np.fft.irfft(spec, n)
    return w / (np.sqrt(np.mean(w * w)) + 1e-12)


def equalise(audio: np.ndarray, rng: np.random.Generator, aug: Augment) -> np.ndarray:
    """A random microphone: smooth EQ (tilt, ripples) and a 50-300 Hz high-pass."""
    spec = np.fft.rfft(audio)
    f = np.fft.rfftfreq(len(audio), 1 / SR) / (SR / 2)  # 0 .. 1
    db = rng.uniform(-aug.tilt_db, aug.tilt_db) * (f - 0.5)  # tilt_db from 0 Hz to Nyquist
    for k in (1, 2, 3):
        db += rng.uniform(-aug.ripple_db, aug.ripple_db) * np.cos(
            np.pi * k * f + rng.uniform(0, 2 * np.pi)
        )
    cut = rng.uniform(50, 300) / (SR / 2)
    gain = 10 ** (db / 20) / np.sqrt(1 + (cut / np.maximum(f, 1e-6)) ** 4)  # 2nd-order HP
    return np.fft.irfft(spec * gain, len(audio))


def _rms_db(x: np.ndarray) -> float:
    return 10 * math.log10(float(np.mean(x * x)) + 1e-12)


def _events_of_the_world(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Blank things a stream meets: a background that starts mid-way, clicks and bursts."""
    n = len(x)
    if rng.random() < 0.25:  # the noise switches on (after digital silence) at a random time
        x = x * (np.arange(n) >= rng.integers(0, n // 2))
    for _ in range(rng.poisson(0.6)):  # 5-80 ms bursts of noise, -40 to -10 dBFS
        m = rng.integers(40, 640)
        at = rng.integers(0, n - m)
        burst = noise(rng.choice(["white", "pink"]), m, rng) * 10 ** (rng.uniform(-40, -10) / 20)
        x[at : at + m] += burst * np.hanning(m)
    return x


def _background(n: int, rng: np.random.Generator, lo_db: float, hi_db: float):
    if rng.random() < 0.1:
        return np.zeros(n), -math.inf
    level = rng.uniform(lo_db, hi_db)
    kind = rng.choice(["white", "pink", "brown"], p=[0.4, 0.4, 0.2])
    return noise(kind, n, rng) * 10 ** (level / 20), level


def _babble(clips, clip, n: int, rng: np.random.Generator, aug: Augment) -> np.ndarray:
    """Another clip (another speaker if there is one), ``n`` samples, unit RMS, random speed."""
    others = [i for i in rng.integers(0, len(clips), 8) if clips[i]["speaker"] != clip["speaker"]]
    other = clips[others[0] if others else int(rng.integers(0, len(clips)))]
    b, _ = at_speed(other, rng.uniform(*aug.speed))
    b = np.resize(b, n)  # repeated if shorter
    return b / (np.sqrt(np.mean(b * b)) + 1e-12)


def _fade(n: int) -> np.ndarray:
    k = np.arange(n)
    return np.minimum(1.0, np.minimum(k, k[::-1]) / (0.005 * SR))


def compose(clips: list[dict], order, rng: np.random.Generator, aug: Augment):
    """Training sequences: (samples, [(word start, word end (samples), digit, speaker)])."""
    n, seqs, queue = round(SEQ_S * SR), [], list(order)
    while queue:
        x, level = _background(n, rng, -85.0, -35.0)
        events = []
        pos = rng.uniform(0.0, 0.05) if rng.random() < 0.2 else rng.uniform(0.1, 0.8)
        pos = round(pos * SR)
        while queue:
            clip = clips[queue[0]]
            speed, tempo = rng.uniform(*aug.speed), rng.uniform(*aug.tempo)
            audio, (start_s, end_s) = at_speed(clip, speed, tempo)
            if pos + len(audio) + round(0.1 * SR) > n:
                break
            queue.pop(0)
            audio = equalise(audio, rng, aug)
            target = rng.uniform(min(max(-42.0, level + aug.snr_db), -15.0), -15.0)
            audio = audio * 10 ** ((target - _rms_db(audio)) / 20)
            if rng.random() < aug.babble:
                under = _babble(clips, clip, len(audio), rng, aug)
                audio = audio + under * 10 ** ((target - rng.uniform(*aug.babble_snr)) / 20)
            audio *= min(1.0, 0.95 / (np.abs(audio).max() + 1e-9))
            x[pos : pos + len(audio)] += audio * _fade(len(audio))
            events.append((pos + start_s * SR, pos + end_s * SR, clip["digit"], clip["speaker"]))
            pos += len(audio) + round(rng.uniform(0.15, 0.7) * SR)
        seqs.append((_events_of_the_world(x, rng), events))
    for _ in range(round(0.08 * len(seqs))):  # noise only, louder, sometimes modulated
        x, _ = _background(n, rng, -70.0, -15.0)
        if rng.random() < 0.3:
            env = np.repeat(rng.uniform(0.1, 1.0, n // 800 + 1), 800)[:n]
            x = x * np.convolve(env, np.ones(400) / 400, mode="same")
        seqs.append((x, []))
    return seqs


def frame_labels(
    n_frames: int, events, speakers=(), onset_blank: float = 0.0, hang_s: float = HANG_S
) -> tuple[np.ndarray, np.ndarray]:
    """Per frame: the digit from 40 % into its word to ``hang_s`` after it (the word is
    endpointed on voicing, so the hang covers an unvoiced tail: six's "ks"), blank outside;
    and the speaker's index in ``speakers`` over the whole word (-100 elsewhere).

    The first 40 % of a word is left out of the digit loss (-100): whether the model
    already names the digit there ("s..." may be six or seven) or still says blank, both
    are fine. With ``onset_blank`` > 0 (at most 0.4), the word's first ``onset_blank``
    is labelled blank instead: the model is taught to wait for the part of the word that
    tells digits apart, so the decoder's vote (summed posteriors) counts less of the
    shared onsets.
    """
    if not 0.0 <= onset_blank <= EARLY:
        raise ValueError(f"onset_blank must be in [0, {EARLY}], got {onset_blank!r}")
    y = np.full(n_frames, BLANK, dtype=np.int64)
    who = np.full(n_frames, IGNORE, dtype=np.int64)
    centres = np.arange(n_frames) * HOP + WIN / 2
    for start, end, digit, speaker in events:
        word = (centres >= start) & (centres <= end + hang_s * SR)
        y[word] = IGNORE
        y[(centres >= start + EARLY * (end - start)) & (centres <= end + hang_s * SR)] = digit
        if onset_blank:
            y[(centres >= start) & (centres < start + onset_blank * (end - start))] = BLANK
        if speaker in speakers:
            who[word] = speakers.index(speaker)
    return y, who


def batch_tensors(
    seqs, fe: AudioFeatures, speakers=(), onset_blank: float = 0.0, hang_s: float = HANG_S
):
    """Log-mel features ``(N, T, F)``, frame labels ``(N, T)`` and speaker labels ``(N, T)``
    of composed sequences (``onset_blank``, ``hang_s``: see :func:`frame_labels`)."""
    feats = [fe.offline(np.clip(x, -1.0, 1.0).astype(np.float32)) for x, _ in seqs]
    labels = [
        frame_labels(len(f), ev, speakers, onset_blank, hang_s)
        for f, (_, ev) in zip(feats, seqs, strict=True)
    ]
    y = torch.from_numpy(np.stack([a for a, _ in labels]))
    who = torch.from_numpy(np.stack([b for _, b in labels]))
    return torch.stack(feats), y, who


def spec_augment(x: torch.Tensor, aug: Augment, gen: torch.Generator) -> None:
    """SpecAugment masks, in place, on standardised features (0 is the training mean).

    Per sequence: ``freq_masks`` bands of up to ``freq_mask`` mel bands each, and
    ``time_masks`` per second (Poisson) spans of up to ``time_mask`` frames.

    Shape
    -----
    x: ``(B, T, F)``.
    """
    n_seq, n_frames, n_feat = x.shape

    def draw(hi: int) -> int:
        return int(torch.randint(0, hi + 1, (1,), generator=gen))

    for row in x:
        for _ in range(aug.freq_masks if aug.freq_mask else 0):
            w = draw(aug.freq_mask)
            f0 = draw(n_feat - w)
            row[:, f0 : f0 + w] = 0.0
        if aug.time_mask and aug.time_masks:
            rate = torch.tensor(aug.time_masks * n_frames * HOP / SR, dtype=torch.float64)
            for _ in range(int(torch.poisson(rate, generator=gen))):
                w = draw(aug.time_mask)
                t0 = draw(n_frames - w)
                row[t0 : t0 + w] = 0.0


def mel_centres(
    n_mels: int = FEATURES["n_mels"], f_min: float = FEATURES["f_min"], f_max: float = SR / 2
) -> np.ndarray:
    """Centre frequencies (Hz) of the HTK mel bands of :data:`FEATURES`, shape ``(n_mels,)``."""
    mel = np.linspace(*(2595.0 * np.log10(1.0 + np.array([f_min, f_max]) / 700.0)), n_mels + 2)
    return 700.0 * (10 ** (mel[1:-1] / 2595.0) - 1.0)  # fmt: skip


def vtlp_matrix(alpha: float, centres: np.ndarray, knee: float = 0.8) -> np.ndarray:
    """The linear map of one frame's log-mel bands warped by ``alpha`` (VTLP).

    The warp of Jaitly and Hinton (2013), piecewise linear in Hz, here anchored at the
    lowest and the highest band centre ``c0`` and ``c1`` so both bands stay as they are:
    ``f -> c0 + alpha (f - c0)`` up to the knee (``knee`` of the span, times
    ``min(alpha, 1) / alpha``), then a straight line to ``c1``. ``alpha > 1`` moves the
    spectral envelope (formants) up, as a shorter vocal tract does. Output band ``k``
    takes the input's value at ``warp^-1(centres[k])``, linearly interpolated between the
    two nearest bands.

    Parameters
    ----------
    alpha : float
        The warp factor, > 0 (1: the identity).
    centres : numpy.ndarray
        The bands' centre frequencies in Hz, increasing, shape ``(F,)``.
    knee : float
        Where the warp turns, as a fraction of ``c1 - c0``, in (0, 1).

    Returns
    -------
    numpy.ndarray
        ``M`` of shape ``(F, F)``: the warped frame is ``M @ frame``; each row sums to 1.
    """
    c0, span = centres[0], centres[-1] - centres[0]
    u_b = knee * span * min(alpha, 1.0) / alpha  # the knee, before the warp
    # the inverse warp: output frequency -> the input frequency it takes its value from
    src = c0 + np.interp(centres - c0, [0.0, alpha * u_b, span], [0.0, u_b, span])
    pos = np.interp(src, centres, np.arange(len(centres), dtype=np.float64))
    pos = np.where(np.abs(pos - np.round(pos)) < 1e-9, np.round(pos), pos)  # exact copies
    lo = np.minimum(np.floor(pos).astype(np.int64), len(centres) - 2)
    frac = pos - lo
    m = np.zeros((len(centres), len(centres)))
    rows = np.arange(len(centres))
    m[rows, lo] = 1.0 - frac
    m[rows, lo + 1] += frac
    return m


def vtlp(x: torch.Tensor, seqs, aug: Augment, rng: np.random.Generator) -> None:
    """Vocal tract length perturbation, in place, of raw log-mel features of ``compose``'s
    sequences: each clip's frames warped by :func:`vtlp_matrix` with its own factor drawn
    uniformly from ``aug.vtlp``.

    A clip's frames run from half-way after the previous word to half-way before the
    next (the gaps are background only); a sequence without words gets one factor.
    Draws nothing from ``rng`` when ``aug.vtlp`` is ``(1, 1)``.

    Shape
    -----
    x: ``(B, T, F)``, ``seqs``: ``B`` pairs (samples, events) as :func:`compose` gives.
    """
    if aug.vtlp == (1.0, 1.0):
        return
    n_seq, n_frames, n_feat = x.shape
    centres = mel_centres(n_feat)
    frame_at = np.arange(n_frames) * HOP + WIN / 2
    for row, (_, events) in zip(x, seqs, strict=True):
        cuts = [0.5 * (a[1] + b[0]) for a, b in pairwise(events)]
        edges = [0, *np.searchsorted(frame_at, cuts).tolist(), n_frames]
        for a, b in pairwise(edges):
            m = torch.from_numpy(vtlp_matrix(rng.uniform(*aug.vtlp), centres)).to(x.dtype)
            row[a:b] = row[a:b] @ m.T
