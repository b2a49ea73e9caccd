"""``streamrnn train-lm`` and ``streamrnn generate`` (private).

Public through :mod:`streamrnn.apps.lm`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from ._model import CharLM
from ._train import OPTIMIZERS, LMTrainer

__all__ = [
    "generate_main",
    "register_generate",
    "register_train_lm",
    "run_generate",
    "run_train_lm",
    "train_lm_main",
]

_HELP_TRAIN = ("Learn a character language model of a text file online: the text cut into "
               "B parallel streams, next-character prediction learned with TBPTT(k1, k2); "
               "validation loss in nats per character on the held-out end of the file.")
_HELP_GENERATE = ("Push a prompt through a train-lm checkpoint as a stream, then sample "
                  "characters from the live state and print them as they come.")
# model and learning settings: None on the command line means "the default" for a new run
# and "the checkpoint's" for --resume (an explicit value must then match it)
_MODEL_ARGS = ("hidden", "layers", "emb", "batch", "k1", "k2", "lr", "clip", "optimizer",
               "holdout", "errors", "seed")
_DEFAULTS = {"hidden": 256, "layers": 2, "emb": 64, "batch": 32, "k1": 32, "k2": None,
             "lr": 3e-3, "clip": 1.0, "optimizer": "adam", "holdout": 0.1,
             "errors": "replace", "seed": 0}


def _threads(value: str) -> int:
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
    return n


def add_train_lm_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The arguments of ``streamrnn train-lm``."""
    d = _DEFAULTS
    parser.add_argument("file", metavar="FILE", help="training text (UTF-8)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="wall-time budget of this run (default 10 without --steps)")
    parser.add_argument("--steps", type=int, default=None,
                        help="stop at the first window end (multiple of k1) at or after N steps "
                        "of each stream in total, counted over resumes")
    parser.add_argument("--checkpoint", default=None, metavar="PATH",
                        help="safetensors checkpoint written at the end (and every "
                        "--save-every minutes); read by --resume and by generate")
    parser.add_argument("--resume", action="store_true",
                        help="continue exactly from --checkpoint (same FILE)")
    parser.add_argument("--save-every", type=float, default=5.0, metavar="MIN",
                        help="minutes between checkpoints while training (default 5)")
    parser.add_argument("--hidden", type=int, help=f"LSTM units per layer (default {d['hidden']})")
    parser.add_argument("--layers", type=int, help=f"LSTM layers (default {d['layers']})")
    parser.add_argument("--emb", type=int, help=f"embedding size (default {d['emb']})")
    parser.add_argument("--batch", type=int, help=f"parallel streams B (default {d['batch']})")
    parser.add_argument("--k1", type=int, help=f"learn every k1 steps (default {d['k1']})")
    parser.add_argument("--k2", type=int, help="backpropagate through k2 >= k1 steps (default k1)")
    parser.add_argument("--lr", type=float, help=f"learning rate (default {d['lr']})")
    parser.add_argument("--clip", type=float, help=f"gradient-norm clip (default {d['clip']})")
    parser.add_argument("--optimizer", choices=tuple(OPTIMIZERS),
                        help=f"optimizer (default {d['optimizer']})")
    parser.add_argument("--holdout", type=float,
                        help="fraction held out from the end for validation "
                        f"(default {d['holdout']})")
    parser.add_argument("--errors", choices=("replace", "strict"),
                        help="invalid UTF-8 in FILE: replace with U+FFFD and count (default), "
                        "or stop with an error")
    parser.add_argument("--seed", type=int, help=f"seed of the weights (default {d['seed']})")
    parser.add_argument("--threads", type=_threads, default=None,
                        help="torch threads (default: torch's)")
    parser.add_argument("--val-streams", type=int, default=1, metavar="S",
                        help="read the held-out text as S contiguous streams side by side, "
                        "each with carried state (default 1: one stream)")
    parser.add_argument("--sample", type=int, default=0, metavar="N",
                        help="print N sampled characters after training (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print a JSON summary line last")
    return parser


def add_generate_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The arguments of ``streamrnn generate``."""
    parser.add_argument("--checkpoint", required=True, metavar="PATH",
                        help="a checkpoint written by train-lm")
    parser.add_argument("--prompt", default="", metavar="TEXT",
                        help="text pushed into the stream first (default: none)")
    parser.add_argument("--chars", type=int, default=500, metavar="N",
                        help="characters to sample (default 500)")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="softmax temperature (default 1.0)")
    parser.add_argument("--top-k", type=int, default=None, metavar="K",
                        help="sample among the K most likely characters (default: all)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the sampler (default: random)")
    parser.add_argument("--echo", action="store_true", help="print the prompt first")
    parser.add_argument("--threads", type=_threads, default=1,
                        help="torch threads (default 1: fastest for one stream)")
    return parser


def register_train_lm(subparsers) -> argparse.ArgumentParser:
    """Add ``streamrnn train-lm`` to the ``streamrnn`` command (an entry-point plug-in).

    Examples
    --------
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="streamrnn")
    >>> _ = register_train_lm(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["train-lm", "input.txt", "--minutes", "10", "--k1", "50"])
    >>> args.func is run_train_lm, args.file, args.minutes, args.k1, args.hidden
    (True, 'input.txt', 10.0, 50, None)
    """
    parser = subparsers.add_parser("train-lm", help=_HELP_TRAIN, description=_HELP_TRAIN)
    add_train_lm_arguments(parser)
    parser.set_defaults(func=run_train_lm)
    return parser


def register_generate(subparsers) -> argparse.ArgumentParser:
    """Add ``streamrnn generate`` to the ``streamrnn`` command (an entry-point plug-in).

    Examples
    --------
    >>> import argparse
    >>> parser = argparse.ArgumentParser(prog="streamrnn")
    >>> _ = register_generate(parser.add_subparsers(dest="command"))
    >>> args = parser.parse_args(["generate", "--checkpoint", "lm.safetensors",
    ...                           "--prompt", "ROMEO:", "--top-k", "5", "--seed", "1"])
    >>> args.func is run_generate, args.prompt, args.chars, args.temperature, args.top_k
    (True, 'ROMEO:', 500, 1.0, 5)
    """
    parser = subparsers.add_parser("generate", help=_HELP_GENERATE, description=_HELP_GENERATE)
    add_generate_arguments(parser)
    parser.set_defaults(func=run_generate)
    return parser


def _fail(command: str, err: Exception) -> int:
    print(f"streamrnn {command}: error: {err}", file=sys.stderr)
    return 2


def _trainer(args) -> LMTrainer:
    given = {k: getattr(args, k) for k in _MODEL_ARGS if getattr(args, k) is not None}
    if not args.resume:
        return LMTrainer(Path(args.file), **{**_DEFAULTS, **given})
    if args.checkpoint is None:
        raise ValueError("--resume needs --checkpoint PATH")
    trainer = LMTrainer.resume(args.checkpoint, Path(args.file))
    saved = trainer.config()
    clash = [f"--{k} {v} (checkpoint: {saved[k]})" for k, v in given.items() if saved[k] != v]
    if clash:
        raise ValueError("with --resume the settings come from the checkpoint; these differ: "
                         + ", ".join(clash))
    return trainer


def run_train_lm(args) -> int:
    """Run ``streamrnn train-lm`` from parsed arguments; returns the exit status.

    Prints the text's counts and the model, trains (a tqdm bar on stderr unless
    ``--no-progress``), then the tokens/s, the running train loss and the validation
    loss; errors in the input print ``streamrnn train-lm: error: ...`` and return 2.
    See :func:`train_lm_main` for an example.
    """
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    minutes = args.minutes if args.minutes is not None or args.steps is not None else 10.0
    try:
        trainer = _trainer(args)
        c = trainer.counts
        params = sum(p.numel() for p in trainer.model.parameters())
        cfg = trainer.config()
        print(f"text: {args.file}: {trainer.chars:,} characters, vocabulary "
              f"{trainer.codec.vocab_size} (with the unknown symbol)")
        print(f"bad input: {c['invalid_sequences']} invalid UTF-8 sequence(s) replaced; "
              f"{c['unknown']} held-out character(s) outside the vocabulary")
        print(f"model: {cfg['layers']}-layer LSTM {cfg['hidden']}, embedding {cfg['emb']}, "
              f"{params:,} parameters; {torch.get_num_threads()} thread(s)")
        print(f"learning: {cfg['batch']} streams, TBPTT(k1={cfg['k1']}, k2={cfg['k2']}), "
              f"{cfg['optimizer']} lr {cfg['lr']}, clip {cfg['clip']}"
              + (f"; resumed at step {trainer.steps:,}" if args.resume else ""), flush=True)
        result = trainer.train(steps=args.steps, minutes=minutes,
                               progress=not args.no_progress, checkpoint=args.checkpoint,
                               save_every=args.save_every)
        start = time.perf_counter()
        val = trainer.evaluate(streams=args.val_streams)
        val_seconds = time.perf_counter() - start
    except ValueError as err:
        return _fail("train-lm", err)
    loss = result["train_loss"]
    print(f"trained: {result['steps']:,} steps x {cfg['batch']} streams = {result['tokens']:,} "
          f"tokens ({result['epochs']:.2f} epochs)")
    print(f"speed: this run {result['seconds']:.0f} s at {result['tokens_per_s']:,.0f} "
          "tokens/s; running train loss " + ("n/a" if loss is None else f"{loss:.4f}")
          + " nats/char")
    if val is None:
        print("validation: nothing held out")
    else:
        print(f"validation: {val:.4f} nats/char ({val / 0.6931471805599453:.4f} bits/char) on "
              f"the last {trainer.holdout:.0%} ({trainer.held.shape[0]:,} characters)")
        how = ("one stream" if args.val_streams == 1 else
               f"{args.val_streams} contiguous streams side by side")
        print(f"  (streamed as {how} with carried state, no learning, {val_seconds:.0f} s)")
    if args.checkpoint is not None:
        print(f"checkpoint: {args.checkpoint}")
    if args.sample:
        lm = trainer.lm()
        lm.push("\n")
        print("sample:\n" + lm.generate(args.sample, seed=0))
    if args.json:
        print(json.dumps({**{k: result[k] for k in ("steps", "tokens", "epochs", "seconds",
                                                     "tokens_per_s", "train_loss")},
                          "val_loss": val, "invalid_sequences": c["invalid_sequences"],
                          "unknown": c["unknown"], "checkpoint": args.checkpoint}))
    return 0


def run_generate(args) -> int:
    """Run ``streamrnn generate`` from parsed arguments; returns the exit status.

    The prompt is pushed in one fused pass; then each sampled character is printed and
    flushed as soon as the decoder has it. See :func:`train_lm_main` for an example.
    """
    torch.set_num_threads(args.threads)
    try:
        lm = CharLM.from_checkpoint(args.checkpoint)
        pieces = lm.sample(args.chars, temperature=args.temperature, top_k=args.top_k,
                           seed=args.seed)
        lm.push(args.prompt)  # one fused pass over the prompt's ids
    except ValueError as err:
        return _fail("generate", err)
    out = sys.stdout
    if args.echo:
        out.write(args.prompt)
    for piece in pieces:
        out.write(piece)
        out.flush()
    out.write(lm.flush() + "\n")
    out.flush()
    if lm.counts["unknown"]:
        print(f"streamrnn generate: {lm.counts['unknown']} prompt character(s) outside the "
              "vocabulary were pushed as the unknown symbol", file=sys.stderr)
    return 0


def train_lm_main(argv: list[str] | None = None) -> int:
    """``streamrnn train-lm`` as a function (arguments as on the command line).

    Examples
    --------
    >>> import os, tempfile
    >>> folder = tempfile.mkdtemp()
    >>> path, ck = os.path.join(folder, "tiny.txt"), os.path.join(folder, "lm.safetensors")
    >>> with open(path, "wb") as f:
    ...     _ = f.write(b"to be or not to be\\n" * 30 + b"\\xff")   # one invalid byte
    >>> train_lm_main([path, "--steps", "40", "--hidden", "16", "--layers", "1", "--emb",
    ...                "8", "--batch", "4", "--k1", "10", "--checkpoint", ck, "--no-progress",
    ...                "--threads", "1"])  # doctest: +ELLIPSIS
    text: ...tiny.txt: 571 characters, vocabulary 9 (with the unknown symbol)
    bad input: 1 invalid UTF-8 sequence(s) replaced; 0 held-out character(s) outside ...
    model: 1-layer LSTM 16, embedding 8, 1,889 parameters; 1 thread(s)
    learning: 4 streams, TBPTT(k1=10, k2=10), adam lr 0.003, clip 1.0
    trained: 40 steps x 4 streams = 160 tokens (0.31 epochs)
    speed: this run ... s at ... tokens/s; running train loss 2.18 nats/char
    validation: 2.13 nats/char (3.07 bits/char) on the last 10% (58 characters)
      (streamed as one stream with carried state, no learning, 0 s)
    checkpoint: ...lm.safetensors
    0
    >>> import contextlib, io
    >>> with contextlib.redirect_stdout(io.StringIO()) as printed:
    ...     code = generate_main(["--checkpoint", ck, "--prompt", "to be", "--chars", "12",
    ...                           "--seed", "0", "--echo"])
    >>> text = printed.getvalue()  # the prompt, 12 sampled characters, a newline
    >>> code, text[:5], len(text) - 5 - 1
    (0, 'to be', 12)
    """
    parser = argparse.ArgumentParser(prog="streamrnn train-lm", description=_HELP_TRAIN)
    return run_train_lm(add_train_lm_arguments(parser).parse_args(argv))


def generate_main(argv: list[str] | None = None) -> int:
    """``streamrnn generate`` as a function (arguments as on the command line).

    Examples
    --------
    >>> import contextlib, sys
    >>> with contextlib.redirect_stderr(sys.stdout):
    ...     generate_main(["--checkpoint", "missing.safetensors"])
    streamrnn generate: error: checkpoint 'missing.safetensors' is not a file
    2
    """
    parser = argparse.ArgumentParser(prog="streamrnn generate", description=_HELP_GENERATE)
    return run_generate(add_generate_arguments(parser).parse_args(argv))
