"""Character language models on token streams: learn online, sample from the live state.

- :class:`LMTrainer` learns next-character prediction on a text cut into B parallel
  streams (canonical batchify) with :class:`~streamrnn.learn.OnlineLearner`'s
  TBPTT(k1, k2), reports the validation loss in nats per character on the held-out end
  of the text (streamed with carried state, no learning), and checkpoints for exact
  resume: one safetensors file that is the learner's own checkpoint, with the codec and
  the training progress in its header.
- :class:`CharLM` is a trained model on one live stream: text pushed in pieces of any
  size (one fused call per piece), many-to-many logits, and one-to-many sampling with
  temperature and top-k whose text comes out through the codec's incremental decoder.
- The commands ``streamrnn train-lm FILE`` and ``streamrnn generate --checkpoint PATH``
  (entry points :func:`register_train_lm`, :func:`register_generate`).

Bad input: invalid UTF-8 in the training text is replaced and counted
(``errors="replace"``) or refused with the byte offset (``"strict"``); held-out or pushed
characters outside the vocabulary become the unknown id and are counted; an empty push
changes nothing and is counted; a checkpoint whose vocabulary does not match the text
or codec it meets is refused naming both.

Examples
--------
>>> import tempfile, torch
>>> from pathlib import Path
>>> from streamrnn.apps.lm import CharLM, LMTrainer
>>> threads = torch.get_num_threads()
>>> torch.set_num_threads(1)
>>> text = "to be or not to be, that is the question.\\n" * 40
>>> trainer = LMTrainer(text, hidden=32, layers=1, emb=8, batch=4, k1=16, lr=1e-2)
>>> before = trainer.evaluate()
>>> result = trainer.train(steps=320)
>>> result["tokens"], trainer.evaluate() < before
(1280, True)
>>> folder = tempfile.mkdtemp()
>>> trainer.save(Path(folder) / "lm.safetensors")
>>> lm = CharLM.from_checkpoint(Path(folder) / "lm.safetensors")
>>> _ = lm.push("to be or ")
>>> len(lm.generate(20, top_k=3, seed=0))
20
>>> torch.set_num_threads(threads)
"""

from __future__ import annotations

from ._cli import (
    generate_main,
    register_generate,
    register_train_lm,
    run_generate,
    run_train_lm,
    train_lm_main,
)
from ._data import batchify, read_text, split_text
from ._io import read_checkpoint, write_checkpoint
from ._model import CharLM, build_model, stream_loss
from ._train import LMTrainer

__all__ = [
    "CharLM",
    "LMTrainer",
    "batchify",
    "build_model",
    "generate_main",
    "read_checkpoint",
    "read_text",
    "register_generate",
    "register_train_lm",
    "run_generate",
    "run_train_lm",
    "split_text",
    "stream_loss",
    "train_lm_main",
    "write_checkpoint",
]

