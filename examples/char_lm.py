"""Online character language model on tiny-shakespeare, then streaming generation.

What ``streamrnn train-lm FILE`` and ``streamrnn generate`` do, written out with the API:

1. :class:`~streamrnn.apps.lm.LMTrainer` reads the file (invalid UTF-8 replaced and
   counted), builds a :class:`~streamrnn.adapters.tokens.CharCodec` from the first 90 %
   of the characters, cuts their ids into B parallel streams (canonical batchify) and
   learns next-character prediction online with ``OnlineLearner``'s TBPTT(k1, k2) for a
   time budget (a tqdm bar shows tokens/s and the running loss);
2. the validation loss, nats per character, is measured on the last 10 % of the file,
   streamed through the model with carried state and no learning (nanoGPT's
   ``shakespeare_char`` split: the first 90 % / last 10 % of the characters);
3. the checkpoint (the learner's safetensors file with the codec in its header) is
   loaded as a :class:`~streamrnn.apps.lm.CharLM`, a prompt is pushed in one fused
   pass, and characters are sampled from the live state and printed as they come.

Reference points on the same split (nanoGPT README, ``shakespeare_char``): a 6-layer
transformer (384 channels, context 256) reaches a best validation loss of 1.4697 in
about 3 minutes on one A100 GPU; its CPU recipe (4 layers, 128 channels, context 64,
2000 iterations, about 3 minutes) gets 1.88.

Usage (from the repository root; on a machine shared with other jobs, set
``OMP_WAIT_POLICY=PASSIVE`` or use ``--threads 1``)::

    python examples/char_lm.py --minutes 10 --threads 2
    python examples/char_lm.py --minutes 10 --checkpoint lm.safetensors --resume  # go on
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from streamrnn.apps.lm import CharLM, LMTrainer

TEXT = Path(__file__).resolve().parents[2] / "shared" / "data" / "text" / "tinyshakespeare.txt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", default=str(TEXT), help="training text (tiny-shakespeare)")
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpoint", default="char_lm.safetensors")
    parser.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    parser.add_argument("--prompt", default="ROMEO:\n")
    parser.add_argument("--chars", type=int, default=500)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.resume:
        trainer = LMTrainer.resume(args.checkpoint, Path(args.file))
    else:  # train-lm's defaults, written out
        trainer = LMTrainer(Path(args.file), hidden=256, layers=2, emb=64, batch=32, k1=32,
                            lr=3e-3, clip=1.0, seed=0)
    print(f"{trainer.chars:,} characters, vocabulary {trainer.codec.vocab_size}, "
          f"invalid UTF-8 replaced {trainer.counts['invalid_sequences']}; "
          f"{trainer.batch} streams of {trainer.data.shape[1]:,} ids")
    result = trainer.train(minutes=args.minutes, progress=True, checkpoint=args.checkpoint,
                           save_every=5.0)
    start = time.perf_counter()
    val = trainer.evaluate()
    print(f"{result['tokens']:,} tokens ({result['epochs']:.2f} epochs) at "
          f"{result['tokens_per_s']:,.0f} tokens/s; validation {val:.4f} nats/char "
          f"(evaluated in {time.perf_counter() - start:.0f} s); nanoGPT shakespeare_char: "
          f"1.4697 (GPU transformer), 1.88 (its 3-minute CPU recipe)")

    lm = CharLM.from_checkpoint(args.checkpoint)
    pieces = lm.sample(args.chars, temperature=0.8, top_k=20, seed=0)
    lm.push(args.prompt)  # one fused pass over the prompt
    sys.stdout.write(args.prompt)
    for piece in pieces:  # printed as they are sampled
        sys.stdout.write(piece)
        sys.stdout.flush()
    print(lm.flush())


if __name__ == "__main__":
    main()
