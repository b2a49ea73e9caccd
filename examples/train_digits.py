"""Train the streaming spoken-digit recogniser on the Free Spoken Digit Dataset (FSDD).

Per-step (many-to-many) training of ``LSTM(40, 128) + Readout(128, 11)`` on 40 log-mel
bands (25 ms window, 10 ms hop, 100-4000 Hz, 8 kHz) from the streaming
:class:`~streamrnn.adapters.audio.AudioFeatures`; 11 classes: the digits and blank.

Data. Each training sequence is 3 s of background (digital silence, or white / pink /
brown noise at -85 to -35 dBFS) holding FSDD clips at random times, 0.15-0.7 s apart; each
clip gets a random speed (0.85-1.15, by resampling), a random "microphone" (smooth EQ of
+-6 dB tilt and +-3 dB ripples, 50-300 Hz high-pass), a random level (-42 to -15 dBFS
RMS, >= 15 dB above the noise) and 5 ms fades. 8 % of the sequences are noise only (up to
-15 dBFS, some amplitude-modulated). In a quarter of the sequences the background
switches on at a random time; clicks and bursts of noise (5-80 ms, -40 to -10 dBFS) are
sprinkled in (0.6 per sequence on average). Up to 4 mel bands per sequence are masked.

Labels. Energy endpointing of each clip (``streamrnn.apps.speech.word_bounds``)
gives its word; frames (centres) from 40 % into the word to 50 ms after it are labelled
with the digit, the first 40 % of the word is left out of the loss, every other frame is
blank. The decoder (``DigitRecognizer``) votes over the frames the model calls non-blank
and emits one digit per word after 6 blank frames (see ``streamrnn.apps.speech``).

Training. Adam (5e-3, cosine to 5 %), gradient clipping at 1, batches of 32 sequences,
truncated BPTT in windows of 100 frames with the state carried (detached) between them,
14 epochs, fused LSTM calls. All randomness comes from ``--seed``: a local
``torch.Generator`` (initialisation, shuffling, masks) and a numpy ``Generator``
(augmentation); the global RNGs are never seeded or used.

Evaluation streams each test clip alone through ``DigitRecognizer`` in 20 ms chunks (160
samples) and calls ``flush()``; a clip is correct when the first digit emitted is the
spoken one. Also reported: clips with no digit or more than one, the mean endpointer
latency, and false detections in 80 s of silence and noise.

Usage (from the repository root)::

    python examples/train_digits.py --folds --threads 1   # leave-one-speaker-out, 5 folds
    python examples/train_digits.py --final --threads 1   # all speakers -> apps/speech/data/
    python examples/train_digits.py --make-demo           # apps/speech/data/digits_demo.wav

On a 2-core machine shared with other work, one thread trained about twice as fast as two
(the cores were already busy; measured: 14 epochs in ~280 s vs ~900 s).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import time
from pathlib import Path

import numpy as np
import soxr
import torch
import torch.nn.functional as F

import streamrnn
from streamrnn.adapters.audio import AudioFeatures, WavSource, write_wav
from streamrnn.apps.speech import LABELS, DigitRecognizer, word_bounds
from streamrnn.heads import Readout, RecurrentModel

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "fsdd"
OUT = ROOT / "apps" / "speech" / "data"
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
IGNORE, EARLY = -100, 0.4
LABEL_RULE = (
    "frames (centres) from 40% into the endpointed word to 50 ms after it: the digit; "
    "the word's first 40%: not in the loss; all other frames: blank"
)
HANG_S, SEQ_S, SPEEDS = 0.05, 3.0, (0.85, 0.92, 1.0, 1.08, 1.15)
# The demo recording: official-test-set takes (0-4), one per speaker, chosen before any
# model was trained; they are left out of the --final training set.
DEMO_CLIPS = ("2_george_1", "7_jackson_2", "5_lucas_3", "0_nicolas_4", "9_yweweler_0")
DEMO_GAPS_S = (0.6, 0.8, 0.6, 1.0, 0.7, 0.8)  # before, between and after the clips


def load_clips(root: Path) -> list[dict]:
    """Every clip with its digit, speaker, take and three speed variants with word bounds."""
    fe = AudioFeatures(**FEATURES)
    clips = []
    for path in sorted(root.glob("*.wav")):
        digit, speaker, take = path.stem.split("_")
        audio = WavSource(path).read()
        variants = []
        bounds = word_bounds(audio, fe)
        if bounds is None:  # no voiced frame: nothing to label
            continue
        for speed in SPEEDS:  # resampling by 1/speed scales the word bounds by it
            x = audio if speed == 1.0 else soxr.resample(audio, round(SR * speed), SR)
            variants.append((x.astype(np.float32), (bounds[0] / speed, bounds[1] / speed)))
        clips.append({"name": path.stem, "digit": int(digit), "speaker": speaker,
                      "take": int(take), "audio": audio, "variants": variants})  # fmt: skip
    return clips


def noise(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise: ``white``, ``pink`` (1/f power) or ``brown`` (1/f^2), ``n`` samples."""
    w = rng.standard_normal(n)
    if kind != "white":
        spec = np.fft.rfft(w)
        f = np.maximum(np.fft.rfftfreq(n, 1 / SR), 20.0)
        spec /= f ** (0.5 if kind == "pink" else 1.0)
        w = np.fft.irfft(spec, n)
    return w / (np.sqrt(np.mean(w * w)) + 1e-12)


def equalise(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random microphone: smooth EQ (+-6 dB tilt, +-3 dB ripples) and a 50-300 Hz high-pass."""
    spec = np.fft.rfft(audio)
    f = np.fft.rfftfreq(len(audio), 1 / SR) / (SR / 2)  # 0 .. 1
    db = rng.uniform(-6, 6) * (f - 0.5)
    for k in (1, 2, 3):
        db += rng.uniform(-3, 3) * np.cos(np.pi * k * f + rng.uniform(0, 2 * np.pi))
    cut = rng.uniform(50, 300) / (SR / 2)
    gain = 10 ** (db / 20) / np.sqrt(1 + (cut / np.maximum(f, 1e-6)) ** 4)  # 2nd-order HP
    return np.fft.irfft(spec * gain, len(audio))


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


def compose(clips: list[dict], order, rng: np.random.Generator):
    """Training sequences: (samples, [(word start, word end, digit) in samples])."""
    n, seqs, queue = round(SEQ_S * SR), [], list(order)
    while queue:
        x, level = _background(n, rng, -85.0, -35.0)
        events = []
        pos = rng.uniform(0.0, 0.05) if rng.random() < 0.2 else rng.uniform(0.1, 0.8)
        pos = round(pos * SR)
        while queue:
            clip = clips[queue[0]]
            audio, (start_s, end_s) = clip["variants"][rng.integers(len(clip["variants"]))]
            if pos + len(audio) + round(0.1 * SR) > n:
                break
            queue.pop(0)
            audio = equalise(audio, rng)
            rms_db = 10 * math.log10(float(np.mean(audio**2)) + 1e-12)
            target = rng.uniform(min(max(-42.0, level + 15.0), -15.0), -15.0)
            gain = min(10 ** ((target - rms_db) / 20), 0.95 / (np.abs(audio).max() + 1e-9))
            fade = np.minimum(1.0, np.minimum(np.arange(len(audio)), np.arange(len(audio))[::-1])
                              / (0.005 * SR))  # fmt: skip
            x[pos : pos + len(audio)] += audio * gain * fade
            events.append((pos + start_s * SR, pos + end_s * SR, clip["digit"]))
            pos += len(audio) + round(rng.uniform(0.15, 0.7) * SR)
        seqs.append((_events_of_the_world(x, rng), events))
    for _ in range(round(0.08 * len(seqs))):  # noise only, louder, sometimes modulated
        x, _ = _background(n, rng, -70.0, -15.0)
        if rng.random() < 0.3:
            env = np.repeat(rng.uniform(0.1, 1.0, n // 800 + 1), 800)[:n]
            x = x * np.convolve(env, np.ones(400) / 400, mode="same")
        seqs.append((x, []))
    return seqs


def frame_labels(n_frames: int, events) -> np.ndarray:
    """Per frame: the digit from 40 % into its word to 50 ms after it, blank outside words.

    The first 40 % of a word is left out of the loss (-100): whether the model already
    names the digit there ("s..." may be six or seven) or still says blank, both are fine.
    """
    y = np.full(n_frames, BLANK, dtype=np.int64)
    centres = np.arange(n_frames) * HOP + WIN / 2
    for start, end, digit in events:
        y[(centres >= start) & (centres <= end + HANG_S * SR)] = IGNORE
        y[(centres >= start + EARLY * (end - start)) & (centres <= end + HANG_S * SR)] = digit
    return y


def batch_tensors(seqs, fe: AudioFeatures):
    feats = [fe.offline(np.clip(x, -1.0, 1.0).astype(np.float32)) for x, _ in seqs]
    labels = [
        torch.from_numpy(frame_labels(len(f), ev)) for f, (_, ev) in zip(feats, seqs, strict=True)
    ]
    return torch.stack(feats), torch.stack(labels)


def fold_normalisation(model: RecurrentModel, mean: torch.Tensor, std: torch.Tensor):
    """A copy of ``model`` that takes raw log-mel: ``W (x - m) / s + b`` folded into W, b."""
    out = copy.deepcopy(model).eval()
    rnn = out.cell.rnn
    with torch.no_grad():
        rnn.weight_ih_l0.div_(std)
        rnn.bias_ih_l0.sub_(rnn.weight_ih_l0 @ mean)
    return out


def cosine(total: int):
    """Learning-rate factor: cosine from 1 down to 0.05 over ``total`` steps."""
    return lambda s: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s / total, 1)))


def train(clips: list[dict], args, log=print) -> RecurrentModel:
    """Train on ``clips``; returns the model taking raw log-mel (normalisation folded in)."""
    gen = torch.Generator().manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    fe = AudioFeatures(**FEATURES)
    cell = streamrnn.LSTM(40, args.hidden, args.layers, seed=args.seed)
    model = RecurrentModel(cell, Readout(args.hidden, len(LABELS), seed=args.seed + 1))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps_per_epoch = None
    mean = std = None
    start = time.perf_counter()
    for epoch in range(args.epochs):
        order = torch.randperm(len(clips), generator=gen).tolist()
        with one_thread():
            x, y = batch_tensors(compose(clips, order, rng), fe)
        if mean is None:
            mean, std = x.reshape(-1, 40).mean(0), x.reshape(-1, 40).std(0) + 1e-3
        x = (x - mean) / std
        perm = torch.randperm(len(x), generator=gen)
        if steps_per_epoch is None:
            steps_per_epoch = math.ceil(len(x) / args.batch) * math.ceil(x.shape[1] / args.window)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine(steps_per_epoch * args.epochs))
        model.train()
        losses = []
        for i in range(0, len(x), args.batch):
            idx = perm[i : i + args.batch]
            xb, yb = x[idx], y[idx]
            if args.freq_mask:  # SpecAugment-style: zero (= the mean) a few mel bands
                for row in xb:
                    w = int(torch.randint(0, args.freq_mask + 1, (1,), generator=gen))
                    f0 = int(torch.randint(0, 40 - w + 1, (1,), generator=gen))
                    row[:, f0 : f0 + w] = 0.0
            state = None  # TBPTT: windows of args.window frames, state carried, detached
            for w in range(0, xb.shape[1], args.window):
                logits, state = model(xb[:, w : w + args.window], state)
                loss = F.cross_entropy(
                    logits.reshape(-1, len(LABELS)), yb[:, w : w + args.window].reshape(-1)
                )
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                state = state.detach()
                losses.append(loss.item())
        log(f"  epoch {epoch + 1:2d}/{args.epochs}  loss {np.mean(losses):.4f}  "
            f"{len(x)} seqs  {time.perf_counter() - start:5.0f} s")  # fmt: skip
    return fold_normalisation(model, mean, std)


def recognizer(model) -> DigitRecognizer:
    return DigitRecognizer(model, AudioFeatures(**FEATURES))


@contextlib.contextmanager
def one_thread():
    """Small per-frame ops (features, 2-frame pushes): threads only synchronise (~10x)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def evaluate(rec: DigitRecognizer, clips: list[dict], rng: np.random.Generator) -> dict:
    """Clip accuracy in 20 ms chunks, plus false detections in silence and noise."""
    with one_thread():
        return _evaluate(rec, clips, rng)


def _evaluate(rec: DigitRecognizer, clips: list[dict], rng: np.random.Generator) -> dict:
    correct = none = several = 0
    latencies = []
    for clip in clips:
        rec.reset()
        x, found = clip["audio"], []
        for i in range(0, len(x), 160):
            found += rec.push(x[i : i + 160])
        found += rec.flush()
        none += not found
        several += len(found) > 1
        if found and found[0].digit == clip["digit"]:
            correct += 1
            latencies.append(found[0].latency_ms)
    false = 0
    for kind, db in (("zero", 0), ("white", -20), ("pink", -30), ("brown", -25)):
        x = np.zeros(20 * SR) if kind == "zero" else noise(kind, 20 * SR, rng) * 10 ** (db / 20)
        x = np.clip(x, -1, 1).astype(np.float32)
        rec.reset()
        for i in range(0, len(x), 160):
            false += len(rec.push(x[i : i + 160]))
        false += len(rec.flush())
    return {"clips": len(clips), "accuracy": correct / len(clips), "no_digit": none,
            "several": several, "latency_ms": float(np.mean(latencies)) if latencies else None,
            "false_in_80s_noise": false}  # fmt: skip


def run_folds(clips, args) -> None:
    rows = []
    for held in args.speakers:
        t0 = time.perf_counter()
        print(f"fold: test on {held}, train on the other {len(SPEAKERS) - 1} speakers")
        model = train([c for c in clips if c["speaker"] != held], args)
        test = [c for c in clips if c["speaker"] == held]
        rec = recognizer(model)
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            rec.save(args.keep / f"digits_without_{held}.safetensors", info={"held_out": held})
        res = evaluate(rec, test, np.random.default_rng(args.seed + 7))
        res.update(speaker=held, seconds=round(time.perf_counter() - t0))
        print(json.dumps(res))
        rows.append(res)
    print("\n| held-out speaker | clip accuracy | no digit | >1 digit | latency ms "
          "| false det. (80 s noise) | fold time |\n|---|---|---|---|---|---|---|")  # fmt: skip
    for r in rows:
        lat = "-" if r["latency_ms"] is None else f"{r['latency_ms']:.0f}"
        print(
            f"| {r['speaker']} | {100 * r['accuracy']:.1f} % ({r['clips']}) | {r['no_digit']} "
            f"| {r['several']} | {lat} | {r['false_in_80s_noise']} | {r['seconds']} s |"
        )
    mean = np.mean([r["accuracy"] for r in rows])
    print(f"| **mean** | **{100 * mean:.1f} %** | | | | | |")


def run_final(clips, args) -> None:
    train_set = [c for c in clips if c["name"] not in DEMO_CLIPS]
    print(f"final: {len(train_set)} clips of {len(SPEAKERS)} speakers (demo clips left out)")
    model = train(train_set, args)
    rec = recognizer(model)
    demo = [c for c in clips if c["name"] in DEMO_CLIPS]
    print("demo clips:", json.dumps(evaluate(rec, demo, np.random.default_rng(args.seed + 7))))
    info = {
        "data": "Free Spoken Digit Dataset (FSDD), github.com/Jakobovski/free-spoken-digit-"
        "dataset, CC BY-SA 4.0; speakers " + ", ".join(SPEAKERS),
        "license": "CC BY-SA 4.0 (the weights are a derivative of FSDD); see ATTRIBUTION.md",
        "excluded_clips": list(DEMO_CLIPS),
        "training": {k: getattr(args, k) for k in
                     ("epochs", "hidden", "layers", "lr", "batch", "window", "seed", "freq_mask",
                      "threads")},
        "labels": LABEL_RULE,
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rec.save(args.out, info=info)
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


def make_demo(clips) -> None:
    """Join the demo clips with silence and a little pink noise (-60 dBFS); write WAV + JSON."""
    rng = np.random.default_rng(2024)
    by_name = {c["name"]: c for c in clips}
    parts, entries, pos = [], [], 0
    fe = AudioFeatures(**FEATURES)
    for i, name in enumerate(DEMO_CLIPS):
        gap = np.zeros(round(DEMO_GAPS_S[i] * SR))
        audio = by_name[name]["audio"].astype(np.float64)
        start_s, end_s = word_bounds(audio.astype(np.float32), fe)
        pos += len(gap)
        entries.append({"file": name + ".wav", "start_s": pos / SR,
                        "end_s": (pos + len(audio)) / SR, "word_start_s": pos / SR + start_s,
                        "word_end_s": pos / SR + end_s})  # fmt: skip
        parts += [gap, audio]
        pos += len(audio)
    parts.append(np.zeros(round(DEMO_GAPS_S[-1] * SR)))
    x = np.concatenate(parts)
    x = np.clip(x + noise("pink", len(x), rng) * 10 ** (-60 / 20), -1, 1)
    write_wav(OUT / "digits_demo.wav", x, SR)
    meta = {"sample_rate": SR, "duration_s": len(x) / SR, "noise": "pink, -60 dBFS RMS",
            "source": "FSDD recordings/ (github.com/Jakobovski/free-spoken-digit-dataset), "
            "CC BY-SA 4.0", "clips": entries}  # fmt: skip
    (OUT / "digits_demo.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"wrote {OUT / 'digits_demo.wav'} ({len(x) / SR:.2f} s) and digits_demo.json")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--folds", action="store_true", help="leave-one-speaker-out evaluation")
    p.add_argument("--final", action="store_true", help="train on all speakers, write weights")
    p.add_argument("--make-demo", action="store_true", help="write the demo recording")
    p.add_argument("--speakers", nargs="+", default=list(SPEAKERS), help="folds to run")
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--out", type=Path, default=OUT / "digits.safetensors")
    p.add_argument("--keep", type=Path, default=None, help="save each fold's model here")
    p.add_argument("--epochs", type=int, default=14)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--window", type=int, default=100, help="TBPTT window (frames)")
    p.add_argument("--freq-mask", type=int, default=4, help="max masked mel bands (0: off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    if not (args.folds or args.final or args.make_demo):
        p.error("choose --folds, --final and/or --make-demo")
    t0 = time.perf_counter()
    torch.set_num_threads(1)  # loading and features: small ops, threads only synchronise
    clips = load_clips(args.data)
    torch.set_num_threads(args.threads)
    print(f"{len(clips)} clips loaded in {time.perf_counter() - t0:.1f} s")
    if args.make_demo:
        make_demo(clips)
    if args.folds:
        run_folds(clips, args)
    if args.final:
        run_final(clips, args)


if __name__ == "__main__":
    main()
