"""Train the streaming spoken-digit recogniser on the Free Spoken Digit Dataset (FSDD).

The shipped model (since 2026-12-08) is ``--conv 16 --conv-pool 4 --cepstra 0`` distilled
from six teachers: a :class:`streamrnn.ConvGRU` (a causal convolution over the
standardised log-mel before the GRU, see below), written by ``--final --conv 16
--conv-pool 4 --cepstra 0 --teachers T/conv T/gru --distill 0.7`` (see Distillation).
Without ``--conv`` (the defaults) it trains the GRU recipe described next, shipped before.

Per-step (many-to-many) training of ``GRU(40, 256) + Readout(256, 11)`` on 40 log-mel
bands (25 ms window, 10 ms hop, 100-4000 Hz, 8 kHz) from the streaming
:class:`~streamrnn.adapters.audio.AudioFeatures`; 11 classes: the digits and blank.
While training, the log-mel frames are standardised (mean and deviation of the first
epoch's frames) and projected on their first 20 cepstra (orthonormal DCT-II, ``--cepstra``:
drops the pitch harmonics' fine structure, the largest single gain for unseen speakers);
every step of that is linear, so it is folded into the GRU's first input weights and bias
(:func:`fold_front`) and the shipped model still takes raw log-mel: the recogniser stays
``AudioFeatures + Stream(RecurrentModel) + softmax + decoder``.

Data (``digits_data``). Each training sequence is 3 s of background (digital silence, or
white / pink / brown noise at -85 to -35 dBFS) holding FSDD clips at random times,
0.15-0.7 s apart; each clip gets a random "microphone" (smooth EQ of +-6 dB tilt and +-3 dB
ripples, 50-300 Hz high-pass), a random level (-42 to -15 dBFS RMS, >= 15 dB above the
noise), with probability 0.5 another training speaker's clip mixed under it 5-15 dB lower
(babble), and 5 ms fades. 8 % of the sequences are noise only (up to -15 dBFS, some
amplitude-modulated). In a quarter of the sequences the background switches on at a random
time; clicks and bursts of noise (5-80 ms, -40 to -10 dBFS) are sprinkled in (0.6 per
sequence on average). Up to 4 mel bands per sequence are masked. Speed and tempo
perturbation, stronger EQ, time masks and label smoothing are options (``--speed``,
``--tempo``, ``--tilt-db``, ``--time-masks``, ``--smooth``); measured leave-one-speaker-out
they did not help here (the report of issue 16 lists every run). Two more options, off by
default: vocal tract length perturbation of each clip's log-mel (``--vtlp 0.9 1.1``: on
the three worst folds 79.4 % mean over seeds 0-2 against 77.4 %, +3.5 and +4.4 points on
george and nicolas, -2.1 on jackson; all five folds, seed 0: 84.2 % against 83.6 %;
within the seed noise, not adopted; with the decoder's decay, seed 0, three worst folds:
80.0 % for 0.9-1.1 and 78.5 % for 0.85-1.15 against 81.7 %) and blank labels on the
first part of each word (``--onset-blank``: no gain; on the three worst folds, seed 0,
79.8 % against 79.3 % with the plain vote, 81.6 % against 81.7 % with the decay), nor
does labelling only from 70 % into the word (78.5 % and 80.1 % on those folds, a scratch
run). A causal convolution front before the GRU (``--conv 16 --conv-pool 4
--cepstra 0``, :class:`streamrnn.ConvGRU`: filters over 3 frames x 5 mel bands, the
largest of each 4 bands) measured 88.3 % over seeds 0-2 against 85.5 % (87.3 % pooling
band pairs, the first setting tried; 32 filters pooling 8 or 4 bands and 20 epochs, tried
on seed 0 after, were no better, nor was VTLP on top over three seeds, 88.2 %; README has
the folds). It is the shipped recipe: the standardisation stays in the cell
(:func:`fold_front`), and the compiled engine runs the front in one compiled loop before
the GRU's kernels (a 20 ms push of the recogniser ~79 us against ~52 for the GRU it
replaced). Since 2026-12-08 the shipped model is this recipe distilled (below).

Labels. Energy endpointing of each clip (``streamrnn.apps.speech.word_bounds``) gives
its word; frames (centres) from 40 % into the word to 50 ms after it (``--hang``) are
labelled with the digit, the first 40 % of the word is left out of the loss, every other
frame is blank. The word is endpointed on voicing, so a longer hang also labels an
unvoiced tail (six's "ks"): ``--hang 0.15`` gave 87.4 % on seed 0's folds against 88.6 %
(conv recipe), jackson's "six" still heard as "seven" (45 of 50), and doubled the
latency (~185 ms after the word end against ~87). The decoder (``DigitRecognizer``)
votes over the frames the model calls non-blank, each frame weighted 0.8 times the next
(``decay``: the end of the word, where the causal model has heard all of it, decides
most), and emits one digit per word after 6 blank frames (see
``streamrnn.apps.speech``). The decay was chosen on seed 0's five folds (83.2 % with the
plain vote of every frame, 85.2 % at 0.9, 85.6 % at 0.8, the same models); seeds 1 and 2
were not looked at before: see README.

Training. Adam (5e-3, cosine to 5 %), gradient clipping at 1, batches of 32 sequences,
truncated BPTT in windows of 100 frames with the state carried (detached) between them,
14 epochs, fused GRU calls; the model kept is an exponential moving average of the
weights (decay 0.99 per step, ``torch.optim.swa_utils``). All randomness comes from the
seed (``--seeds``): a local ``torch.Generator`` (initialisation, shuffling, masks) and a
numpy ``Generator`` (augmentation); the global RNGs are never seeded or used.

Distillation (``--teachers DIR... --distill D``, off by default). Averaging the logits of
several fold models (each never trained on the held-out speaker) is a better recogniser
than any of them, but K models cost K times the compute. With teachers, each window's
frame loss is ``(1 - D) * cross-entropy + D * KL(teachers || model)``, the teachers'
posterior being the softmax of their mean logits on the same augmented frames
(:func:`teacher_targets`), so one model of the usual size learns from the ensemble. A
fold's teachers are the ``--keep`` files ``digits_without_{speaker}_seed*`` of every
folder given (``--final``: ``digits_seed*``). Six teachers (conv recipe: 20 epochs seed
0, ``--vtlp 0.9 1.1`` seeds 1 and 2; GRU recipe seeds 0-2), ``--distill 0.7``: 89.6 % over
three student seeds (89.8 / 89.2 / 89.7 %) against 88.3 % for the conv recipe alone, and
90.3 % for the six teachers' ensemble itself; three conv teachers only, seed 0: 89.1 %
(README has the folds and the commands). It is the shipped recipe.

Evaluation streams each test clip alone through ``DigitRecognizer`` in 20 ms chunks (160
samples) and calls ``flush()``; a clip is correct when the first digit emitted is the
spoken one. Also reported: clips with no digit or more than one, the mean endpointer
latency, and false detections in 80 s of silence and noise.

Usage (from the repository root)::

    python examples/train_digits.py --folds --threads 1   # leave-one-speaker-out, 5 folds
    python examples/train_digits.py --folds --seeds 0 1 2 --results runs.jsonl
    python examples/train_digits.py --final --threads 1   # all speakers -> apps/speech/data/
    python examples/train_digits.py --make-demo           # apps/speech/data/digits_demo.wav

The recipe before issue 16 (LSTM 128 on standardised log-mel, speed 0.85-1.15, no babble,
no EMA) is ``--cell lstm --hidden 128 --cepstra 0 --ema 0 --speed 0.85 1.15 --babble 0``.
On a 2-core machine shared with other work, one thread trained about twice as fast as two.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from digits_data import (
    EARLY,
    FEATURES,
    HANG_S,
    LABEL_RULE,
    SPEAKERS,
    SR,
    Augment,
    batch_tensors,
    compose,
    load_clips,
    noise,
    spec_augment,
    vtlp,
)
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torchaudio.functional import create_dct

import streamrnn
from streamrnn import ConvGRU
from streamrnn.adapters.audio import AudioFeatures, write_wav
from streamrnn.apps.speech import LABELS, DigitRecognizer, word_bounds
from streamrnn.heads import Readout, RecurrentModel
from streamrnn.utils import read_header

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "fsdd"
OUT = ROOT / "apps" / "speech" / "data"
# The demo recording: official-test-set takes (0-4), one per speaker, chosen before any
# model was trained; they are left out of the --final training set.
DEMO_CLIPS = ("2_george_1", "7_jackson_2", "5_lucas_3", "0_nicolas_4", "9_yweweler_0")
DEMO_GAPS_S = (0.6, 0.8, 0.6, 1.0, 0.7, 0.8)  # before, between and after the clips
CELLS = {"lstm": streamrnn.LSTM, "gru": streamrnn.GRU}


def fold_front(model: RecurrentModel, mean, std, proj) -> RecurrentModel:
    """A model that takes raw log-mel ``x``: the trained one computes ``W P (x - m) / s + b``
    (standardised, then projected on the first cepstra if ``proj`` is not None); every
    part is linear, so it is folded into the first layer's input weights and bias. A
    :class:`ConvGRU` keeps the standardisation as its own step (its filters are shared
    across bands, a per-band scale does not fold into them)."""
    if isinstance(model.cell, ConvGRU):
        out = RecurrentModel(ConvGRU(len(mean), model.cell.hidden_size, **{
            k: getattr(model.cell, k) for k in ("channels", "kernel_time", "kernel_bands",
                                                "pool")}, seed=0),
            Readout(model.cell.hidden_size, len(LABELS), seed=0))
        out.load_state_dict({**model.state_dict(), "cell.mean": mean, "cell.std": std})
        return out.eval()
    src = model.state_dict()
    w = src["cell.rnn.weight_ih_l0"]
    if proj is not None:
        w = w @ proj
    w = w / std
    cell = model.cell
    out = RecurrentModel(
        type(cell)(len(mean), cell.hidden_size, cell.num_layers, seed=0),
        Readout(cell.hidden_size, len(LABELS), seed=0),
    )
    state = dict(src)
    state["cell.rnn.weight_ih_l0"] = w
    state["cell.rnn.bias_ih_l0"] = src["cell.rnn.bias_ih_l0"] - w @ mean
    out.load_state_dict(state)
    return out.eval()


class Reverse(torch.autograd.Function):
    """Identity forward; the gradient times ``-weight`` backward (gradient reversal)."""

    @staticmethod
    def forward(ctx, x, weight: float):
        ctx.weight = weight
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.weight * grad, None


def cosine(total: int):
    """Learning-rate factor: cosine from 1 down to 0.05 over ``total`` steps."""
    return lambda s: 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s / total, 1)))


def augment_of(args) -> Augment:
    """The augmentation settings of the command line (validated by :class:`Augment`)."""
    return Augment(
        speed=tuple(args.speed), tempo=tuple(args.tempo), tilt_db=args.tilt_db,
        ripple_db=args.ripple_db,
        snr_db=args.snr_db, babble=args.babble, babble_snr=tuple(args.babble_snr),
        freq_masks=args.freq_masks, freq_mask=args.freq_mask, time_masks=args.time_masks,
        time_mask=args.time_mask, vtlp=tuple(args.vtlp),
    )  # fmt: skip


def teacher_files(args, held: str | None) -> list[Path]:
    """The ``--teachers`` files of this fold (``digits_without_{held}_seed*``), or of the
    final recipe (``digits_seed*``), from every folder given; none without ``--teachers``."""
    pattern = "digits_seed*.safetensors" if held is None else f"digits_without_{held}_seed*"
    found = sorted(f for d in args.teachers for f in d.glob(pattern))
    if args.teachers and not found:
        raise SystemExit(f"--teachers: no {pattern} in {[str(d) for d in args.teachers]}")
    return found


def teachers_of(args, held: str | None) -> list[RecurrentModel]:
    """The models of :func:`teacher_files`, in evaluation mode."""
    return [DigitRecognizer.load(f).model.eval() for f in teacher_files(args, held)]


def training_info(path: Path) -> dict:
    """The ``info`` header of a recogniser file (its provenance), by the project's reader."""
    return read_header(path).json("info")


def teacher_targets(teachers: list, x: torch.Tensor, mean, std) -> torch.Tensor:
    """Log-softmax of the teachers' mean logits on standardised frames ``x`` ``(N, T, F)``,
    given to them as the raw log-mel they take (``x * std + mean``): ``(N, T, 11)``."""
    with torch.no_grad():
        raw = x * std + mean
        return torch.log_softmax(sum(t(raw)[0] for t in teachers) / len(teachers), -1)


def train(
    clips: list[dict], args, seed: int, log=print, teachers: list | None = None
) -> RecurrentModel:
    """Train on ``clips``; returns the model taking raw log-mel (normalisation folded in).

    With ``teachers`` (models taking raw log-mel, never trained on the held-out speaker),
    the frame loss is ``(1 - d) * cross-entropy + d * KL(teachers || model)``, ``d =
    args.distill``, the teachers' posterior being the softmax of their mean logits on the
    same (augmented) input: knowledge distillation of an ensemble into one model."""
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    aug = augment_of(args)
    fe = AudioFeatures(**FEATURES)
    n_feat = fe.n_features
    # cepstral smoothing: the first args.cepstra coefficients of the orthonormal DCT of the
    # standardised log-mel (drops the pitch harmonics' fine structure); folded in at the end
    proj = None if not args.cepstra else create_dct(args.cepstra, n_feat, "ortho").T.contiguous()
    n_in = n_feat if proj is None else args.cepstra
    if args.conv:  # a causal conv front over the standardised log-mel (ConvGRU)
        cell = ConvGRU(n_in, args.hidden, channels=args.conv, pool=args.conv_pool, seed=seed)
    else:
        cell = CELLS[args.cell](n_in, args.hidden, args.layers, dropout=args.dropout, seed=seed)
    model = RecurrentModel(cell, Readout(args.hidden, len(LABELS), seed=seed + 1))
    params = list(model.parameters())
    # speaker-adversarial training: a speaker classifier on the hidden states whose
    # gradient reaches the recurrent layers reversed (x -args.adversary); not shipped
    speakers = sorted({c["speaker"] for c in clips}) if args.adversary else []
    adversary = None
    if args.adversary:
        adversary = Readout(args.hidden, len(speakers), seed=seed + 2)
        params += list(adversary.parameters())
    opt = torch.optim.Adam(params, lr=args.lr)
    # an exponential moving average of the weights (torch.optim.swa_utils) is what is kept
    ema = None
    if args.ema:
        ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(args.ema), use_buffers=True)
    sched = None
    mean = std = None
    start = time.perf_counter()
    for epoch in range(args.epochs):
        order = torch.randperm(len(clips), generator=gen).tolist()
        with one_thread():
            seqs = compose(clips, order, rng, aug)
            x, y, who = batch_tensors(seqs, fe, speakers, args.onset_blank, args.hang)
        if mean is None:  # the statistics of unwarped features: what the model will meet
            mean, std = x.reshape(-1, n_feat).mean(0), x.reshape(-1, n_feat).std(0) + 1e-3
        vtlp(x, seqs, aug, rng)  # per clip, on raw log-mel; nothing when --vtlp is 1 1
        x = (x - mean) / std
        spec_augment(x, aug, gen)
        soft = teacher_targets(teachers, x, mean, std) if teachers else None
        if proj is not None:
            x = x @ proj.T
        perm = torch.randperm(len(x), generator=gen)
        if sched is None:  # the epoch's sequence count varies a little: sized on the first
            steps = math.ceil(len(x) / args.batch) * math.ceil(x.shape[1] / args.window)
            sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine(steps * args.epochs))
        model.train()
        losses = []
        for i in range(0, len(x), args.batch):
            idx = perm[i : i + args.batch]
            xb, yb, wb = x[idx], y[idx], who[idx]
            state = None  # TBPTT: windows of args.window frames, state carried, detached
            for w in range(0, xb.shape[1], args.window):
                win = slice(w, w + args.window)
                hidden, state = model.cell(xb[:, win], state)
                logits = model.head(hidden)  # = model(x, state)
                loss = F.cross_entropy(
                    logits.reshape(-1, len(LABELS)), yb[:, win].reshape(-1),
                    label_smoothing=args.smooth,
                )  # fmt: skip
                if soft is not None:
                    kl = F.kl_div(F.log_softmax(logits, -1), soft[idx][:, win],
                                  log_target=True, reduction="none").sum(-1).mean()
                    loss = (1 - args.distill) * loss + args.distill * kl
                if adversary is not None and (wb[:, win] >= 0).any():
                    guess = adversary(Reverse.apply(hidden, args.adversary))
                    loss = loss + F.cross_entropy(
                        guess.reshape(-1, len(speakers)), wb[:, win].reshape(-1)
                    )
                opt.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                sched.step()
                if ema is not None:
                    ema.update_parameters(model)
                state = state.detach()
                losses.append(loss.item())
        log(f"  epoch {epoch + 1:2d}/{args.epochs}  loss {np.mean(losses):.4f}  "
            f"{len(x)} seqs  {time.perf_counter() - start:5.0f} s")  # fmt: skip
    return fold_front(model if ema is None else ema.module, mean, std, proj)


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
    latencies, after_word = [], []
    confusions: dict[str, int] = {}
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
            after_word.append(1000.0 * (found[0].time_s - clip["bounds"][1]))
        else:
            key = f"{clip['digit']}->{found[0].digit if found else '-'}"
            confusions[key] = confusions.get(key, 0) + 1
    false = 0
    for kind, db in (("zero", 0), ("white", -20), ("pink", -30), ("brown", -25)):
        x = np.zeros(20 * SR) if kind == "zero" else noise(kind, 20 * SR, rng) * 10 ** (db / 20)
        x = np.clip(x, -1, 1).astype(np.float32)
        rec.reset()
        for i in range(0, len(x), 160):
            false += len(rec.push(x[i : i + 160]))
        false += len(rec.flush())
    top = dict(sorted(confusions.items(), key=lambda kv: -kv[1])[:5])
    return {"clips": len(clips), "accuracy": correct / len(clips), "no_digit": none,
            "several": several, "latency_ms": float(np.mean(latencies)) if latencies else None,
            "after_word_ms": float(np.mean(after_word)) if after_word else None,
            "false_in_80s_noise": false, "top_errors": top}  # fmt: skip


def run_folds(clips, args) -> None:
    """Leave-one-speaker-out for every seed; one JSON line per fold, then the tables."""
    rows = []
    for seed in args.seeds:
        for held in args.speakers:
            t0 = time.perf_counter()
            print(f"seed {seed}, fold: test on {held}, train on the other speakers")
            model = train([c for c in clips if c["speaker"] != held], args, seed,
                          teachers=teachers_of(args, held))  # fmt: skip
            train_s = time.perf_counter() - t0
            test = [c for c in clips if c["speaker"] == held]
            rec = recognizer(model)
            if args.keep:
                args.keep.mkdir(parents=True, exist_ok=True)
                name = f"digits_without_{held}_seed{seed}.safetensors"
                rec.save(args.keep / name, info={"held_out": held, "seed": seed})
            res = {"seed": seed, "speaker": held}
            res.update(evaluate(rec, test, np.random.default_rng(seed + 7)))
            res.update(train_s=round(train_s), seconds=round(time.perf_counter() - t0))
            print(json.dumps(res), flush=True)
            if args.results:
                with open(args.results, "a") as f:
                    f.write(json.dumps({**res, "recipe": recipe(args)}) + "\n")
            rows.append(res)
    print_tables(rows)


def print_tables(rows: list[dict]) -> None:
    """Per fold and seed, then accuracy per fold over seeds: mean and range."""
    print("\n| seed | held-out speaker | clip accuracy | no digit | >1 digit | latency ms "
          "| after word ms | false det. (80 s noise) | train time |\n"
          "|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    for r in rows:
        lat = "-" if r["latency_ms"] is None else f"{r['latency_ms']:.0f}"
        aft = "-" if r["after_word_ms"] is None else f"{r['after_word_ms']:.0f}"
        print(
            f"| {r['seed']} | {r['speaker']} | {100 * r['accuracy']:.1f} % ({r['clips']}) "
            f"| {r['no_digit']} | {r['several']} | {lat} | {aft} | {r['false_in_80s_noise']} "
            f"| {r['train_s']} s |"
        )
    seeds = sorted({r["seed"] for r in rows})
    speakers = list(dict.fromkeys(r["speaker"] for r in rows))
    acc = {(r["seed"], r["speaker"]): 100 * r["accuracy"] for r in rows}
    print("\n| held-out speaker | " + " | ".join(f"seed {s}" for s in seeds)
          + " | mean | range |\n|---|" + "---|" * (len(seeds) + 2))  # fmt: skip
    for spk in speakers:
        a = [acc[s, spk] for s in seeds if (s, spk) in acc]
        print(f"| {spk} | " + " | ".join(f"{v:.1f}" for v in a)
              + f" | {np.mean(a):.1f} | {min(a):.1f}-{max(a):.1f} |")  # fmt: skip
    means = [np.mean([acc[s, spk] for spk in speakers if (s, spk) in acc]) for s in seeds]
    print("| **LOSO mean** | " + " | ".join(f"**{m:.1f}**" for m in means)
          + f" | **{np.mean(means):.1f}** | {min(means):.1f}-{max(means):.1f} |")  # fmt: skip
    lat = [r["latency_ms"] for r in rows if r["latency_ms"] is not None]
    aft = [r["after_word_ms"] for r in rows if r["after_word_ms"] is not None]
    print(
        f"false detections: {sum(r['false_in_80s_noise'] for r in rows)} in {len(rows)} x 80 s; "
        f"mean latency {_ms(lat)} after the endpointer's word end, {_ms(aft)} after the "
        f"clip's word end; mean train time {np.mean([r['train_s'] for r in rows]):.0f} s per fold"
    )


def _ms(values: list[float]) -> str:
    return f"{np.mean(values):.0f} ms" if values else "-"


def recipe(args) -> dict:
    """The training settings, as stored in a model's header and in the results file."""
    keys = (
        "epochs", "cell", "hidden", "layers", "dropout", "ema", "smooth", "adversary", "cepstra",
        "lr", "batch", "window", "speed", "tempo", "tilt_db", "ripple_db", "snr_db", "babble",
        "babble_snr", "freq_masks", "freq_mask", "time_masks", "time_mask", "vtlp",
        "onset_blank", "hang", "conv", "conv_pool", "distill",
    )  # fmt: skip
    return {k: getattr(args, k) for k in keys}


def run_final(clips, args) -> None:
    """Train on every clip but the demo's; write the shipped recogniser."""
    (seed,) = args.seeds
    train_set = [c for c in clips if c["name"] not in DEMO_CLIPS]
    print(f"final: {len(train_set)} clips of {len(SPEAKERS)} speakers (demo clips left out)")
    t0 = time.perf_counter()
    model = train(train_set, args, seed, teachers=teachers_of(args, None))
    print(f"trained in {time.perf_counter() - t0:.0f} s")
    rec = recognizer(model)
    demo = [c for c in clips if c["name"] in DEMO_CLIPS]
    print("demo clips:", json.dumps(evaluate(rec, demo, np.random.default_rng(seed + 7))))
    info = {
        "data": "Free Spoken Digit Dataset (FSDD), github.com/Jakobovski/free-spoken-digit-"
        "dataset, CC BY-SA 4.0; speakers " + ", ".join(SPEAKERS),
        "license": "CC BY-SA 4.0 (the weights are a derivative of FSDD); see ATTRIBUTION.md",
        "excluded_clips": list(DEMO_CLIPS),
        "training": {**recipe(args), "seed": seed},
        "teachers": [
            {"file": f.name, "training": training_info(f).get("training")}
            for f in teacher_files(args, None)
        ],
        "labels": LABEL_RULE.format(hang_ms=round(args.hang * 1000))
        + (f"; except the word's first {args.onset_blank:.0%}: blank" if args.onset_blank else ""),
    }
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


def parse_args(argv=None) -> argparse.Namespace:
    """The command line, every value checked (a bad one exits with a usage error)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = p.add_argument
    add("--folds", action="store_true", help="leave-one-speaker-out evaluation")
    add("--final", action="store_true", help="train on all speakers, write weights")
    add("--make-demo", action="store_true", help="write the demo recording")
    add("--speakers", nargs="+", default=list(SPEAKERS), choices=SPEAKERS, help="folds to run")
    add("--seeds", nargs="+", type=int, default=[0], help="one LOSO run per seed (--final: one)")
    add("--data", type=Path, default=DATA, help="the FSDD recordings folder")
    add("--out", type=Path, default=OUT / "digits.safetensors")
    add("--keep", type=Path, default=None, help="save each fold's model here")
    add("--results", type=Path, default=None, help="append each fold's result (JSON line)")
    # the model and the optimiser
    add("--cell", choices=sorted(CELLS), default="gru")
    add("--hidden", type=int, default=256)
    add("--layers", type=int, default=1)
    add("--dropout", type=float, default=0.0, help="between layers, while training")
    add("--ema", type=float, default=0.99, help="keep an EMA of the weights (decay; 0: off)")
    add("--smooth", type=float, default=0.0, help="label smoothing of the frame loss")
    add("--adversary", type=float, default=0.0, help="speaker-adversarial weight (0: off)")
    add("--cepstra", type=int, default=20, help="train on this many cepstra (0: log-mel)")
    add("--conv", type=int, default=0,
        help="filters of a causal conv front before the GRU (streamrnn.ConvGRU; 0: off)")
    add("--conv-pool", type=int, default=4, help="mel bands per max-pool of the conv front")
    add("--epochs", type=int, default=14)
    add("--lr", type=float, default=5e-3)
    add("--batch", type=int, default=32)
    add("--window", type=int, default=100, help="TBPTT window (frames)")
    # augmentation (digits_data.Augment)
    add("--speed", nargs=2, type=float, default=[1.0, 1.0], metavar=("LO", "HI"))
    add("--tempo", nargs=2, type=float, default=[1.0, 1.0], metavar=("LO", "HI"))
    add("--tilt-db", type=float, default=6.0, help="max EQ tilt, 0 Hz to Nyquist")
    add("--ripple-db", type=float, default=3.0, help="max amplitude of each EQ ripple")
    add("--snr-db", type=float, default=15.0, help="least speech level over the noise")
    add("--babble", type=float, default=0.5, help="probability of another clip underneath")
    add("--babble-snr", nargs=2, type=float, default=[5.0, 15.0], metavar=("LO", "HI"))
    add("--freq-masks", type=int, default=1, help="frequency masks per sequence")
    add("--freq-mask", type=int, default=4, help="max masked mel bands per mask (0: off)")
    add("--time-masks", type=float, default=0.0, help="time masks per second (mean)")
    add("--time-mask", type=int, default=0, help="max masked frames per mask (0: off)")
    add(
        "--vtlp",
        nargs=2,
        type=float,
        default=[1.0, 1.0],
        metavar=("LO", "HI"),
        help="VTLP: warp factors of each clip's mel bands (1 1: off)",
    )
    add(
        "--onset-blank",
        type=float,
        default=0.0,
        help="label the first fraction of each word blank, not ignored (<= 0.4; 0: off)",
    )
    add("--hang", type=float, default=HANG_S,
        help="seconds after the voiced word's end still labelled with its digit")
    add("--teachers", type=Path, nargs="+", default=[],
        help="folders of models to distil (--keep's names; final: digits_seed*)")
    add("--distill", type=float, default=0.0,
        help="weight of the teachers' loss (> 0 with --teachers)")
    add("--threads", type=int, default=1, help="torch threads while training")
    args = p.parse_args(argv)
    if not (args.folds or args.final or args.make_demo):
        p.error("choose --folds, --final and/or --make-demo")
    if args.final and len(args.seeds) != 1:
        p.error(f"--final trains one model: give one seed, got --seeds {args.seeds}")
    for name, lo, hi in (
        ("epochs", 1, 1000),
        ("hidden", 1, 1024),
        ("layers", 1, 3),
        ("batch", 1, 4096),
        ("window", 1, 10_000),
        ("threads", 1, 256),
    ):
        v = getattr(args, name)
        if not lo <= v <= hi:
            p.error(f"--{name} must be in [{lo}, {hi}], got {v}")  # fmt: skip
    if not 0 <= args.conv <= 256:
        p.error(f"--conv must be a number of filters in [0, 256], got {args.conv}")
    if not 1 <= args.conv_pool <= FEATURES["n_mels"] or FEATURES["n_mels"] % args.conv_pool:
        p.error(f"--conv-pool must divide the {FEATURES['n_mels']} mel bands, got "
                f"{args.conv_pool}")
    if args.conv and (args.cell != "gru" or args.layers != 1 or args.cepstra != 0):
        p.error("--conv filters the log-mel bands before one GRU layer: it needs --cell gru "
                f"--layers 1 --cepstra 0, got --cell {args.cell} --layers {args.layers} "
                f"--cepstra {args.cepstra}")
    if args.conv and args.adversary:
        p.error("--adversary reads the GRU's hidden state of a plain cell: not with --conv")
    if not 0 <= args.cepstra <= FEATURES["n_mels"]:
        p.error(f"--cepstra must be in [0, {FEATURES['n_mels']}], got {args.cepstra}")
    if not 0.0 <= args.ema < 1.0:
        p.error(f"--ema must be a decay in [0, 1), got {args.ema}")
    if not 0.0 <= args.smooth < 1.0:
        p.error(f"--smooth must be a label-smoothing weight in [0, 1), got {args.smooth}")
    if not (math.isfinite(args.adversary) and 0.0 <= args.adversary <= 10.0):
        p.error(f"--adversary must be in [0, 10], got {args.adversary}")
    if not 0.0 <= args.onset_blank <= EARLY:
        p.error(f"--onset-blank must be a fraction of the word in [0, {EARLY}], "
                f"got {args.onset_blank}")  # fmt: skip
    if not 0.0 <= args.hang <= 0.5:
        p.error(f"--hang must be in [0, 0.5] seconds, got {args.hang}")
    if not 0.0 <= args.distill <= 1.0 or bool(args.teachers) != (args.distill > 0):
        p.error(f"--distill must be in (0, 1] with --teachers, 0 without, got {args.distill}")
    if not 0.0 <= args.dropout < 1.0:
        p.error(f"--dropout must be in [0, 1), got {args.dropout}")
    if not (math.isfinite(args.lr) and args.lr > 0):
        p.error(f"--lr must be a finite number > 0, got {args.lr}")
    try:
        augment_of(args)
    except ValueError as exc:
        p.error(str(exc))
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
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
