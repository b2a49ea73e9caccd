"""Online next-character learning on a text split into parallel streams (private).

Public through :mod:`streamrnn.apps.lm`.
"""

from __future__ import annotations

import os
import sys
import time

import torch

from streamrnn.adapters.tokens import CharCodec
from streamrnn.learn import OnlineLearner
from streamrnn.utils import (
    check_choice,
    check_int,
    check_number,
    check_positive_float,
    check_positive_int,
)

from ._data import (
    batchify,
    read_text,
    split_text,
    text_digest,
)
from ._io import check_vocabulary, read_checkpoint
from ._io import write_checkpoint as _write
from ._model import CharLM, build_model, stream_loss

__all__ = ["LMTrainer"]

OPTIMIZERS = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}
_EMA = 0.05  # weight of the newest update's loss in the running loss


class LMTrainer:
    """Learn to predict the next character of a text, online, with TBPTT(k1, k2).

    The text is read as UTF-8 (invalid sequences replaced and counted, or refused, by
    ``errors``); its first ``1 - holdout`` of the characters is the training stream and
    the rest is held out. A :class:`~streamrnn.adapters.tokens.CharCodec` is built from the
    training characters (held-out characters outside it become the unknown id and are
    counted). The training ids are cut into ``batch`` contiguous parallel streams
    (canonical batchify) that an :class:`~streamrnn.learn.OnlineLearner` walks in
    lockstep: at every step each stream predicts its next character, then learns every
    ``k1`` steps through the last ``k2`` (one fused forward per window when k1 == k2).
    At the end of the training text each stream wraps around to its start, state carried.

    Parameters
    ----------
    text : str, bytes or path-like
        The training text (a ``str`` is text, never a path; pass a ``pathlib.Path``).
    hidden, layers, emb : int
        LSTM units per layer, LSTM layers, embedding size.
    batch : int
        Parallel streams (B).
    k1, k2 : int
        Learn every ``k1`` steps through the last ``k2 >= k1`` (``None``: ``k1``).
    lr : float
        Learning rate. clip : float or None — gradient-norm clip.
    optimizer : {"adam", "sgd"}
        The optimizer.
    holdout : float
        Fraction of the characters held out for validation, from the end.
    errors : {"replace", "strict"}
        Policy for invalid UTF-8 in the text.
    seed : int
        Seed of the weights (local generators; nothing else is random).

    Attributes
    ----------
    codec : CharCodec
    model : RecurrentModel
    learner : OnlineLearner
    counts : dict
        ``invalid_sequences`` / ``invalid_bytes`` replaced in the text, ``unknown``
        held-out characters outside the training alphabet.
    steps : int
        Steps each stream has taken (cumulative over resumes); ``steps * batch`` tokens.
    running_loss : float or None
        Exponential average of the updates' losses (nats per character, prequential:
        each window is scored by the weights that then learn from it).

    Shape
    -----
    training data ``(B, N)``; each push ``(B, T)`` ids with ``(B, T)`` next-id targets.

    Threads
    -------
    Not safe under concurrent calls, and not locked (a lock per call would cost more
    than the call): use it from one thread at a time, or hold your own lock around each
    call.

    Examples
    --------
    >>> import os, tempfile, torch
    >>> text = "the cat sat on the mat. " * 30 + "ZZZ"   # "Z" only in the held-out end
    >>> kw = dict(hidden=16, layers=1, emb=8, batch=3, k1=8, lr=1e-2, holdout=0.05)
    >>> trainer = LMTrainer(text, **kw)
    >>> trainer.codec.vocab_size, trainer.data.shape, trainer.counts["unknown"]
    (12, torch.Size([3, 228]), 3)
    >>> path = os.path.join(tempfile.mkdtemp(), "lm.safetensors")
    >>> _ = trainer.train(steps=20, checkpoint=path)   # 20 steps, then a checkpoint
    >>> resumed = LMTrainer.resume(path, text)
    >>> _ = resumed.train(steps=40); _ = trainer.train(steps=40)
    >>> all(torch.equal(a, b) for a, b in zip(trainer.model.parameters(),
    ...                                       resumed.model.parameters()))
    True
    >>> LMTrainer.resume(path, text.replace("m", "M"))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: vocabulary mismatch: checkpoint '...' has a 'char' vocabulary of 12 symbols, ...
    ... (only in checkpoint '...': 'm'; only in this text: 'M')
    """

    def __init__(self, text, *, hidden: int = 256, layers: int = 2, emb: int = 64,
                 batch: int = 32, k1: int = 32, k2: int | None = None, lr: float = 3e-3,
                 clip: float | None = 1.0, optimizer: str = "adam", holdout: float = 0.1,
                 errors: str = "replace", seed: int = 0) -> None:
        self.hidden = check_positive_int("hidden", hidden)
        self.layers = check_positive_int("layers", layers)
        self.emb = check_positive_int("emb", emb)
        self.batch = check_positive_int("batch", batch)
        self.k1 = check_positive_int("k1", k1)
        self.k2 = check_positive_int("k2", k1 if k2 is None else k2)
        if self.k2 < self.k1:
            raise ValueError(f"k2 must be >= k1 = {k1}, got {k2}")
        self.lr = check_positive_float("lr", lr)
        self.clip = check_positive_float("clip", clip, none_ok=True)
        self.optimizer = check_choice("optimizer", optimizer, tuple(OPTIMIZERS))
        self.holdout = check_number("holdout", holdout, low=0, high=1, high_open=True)
        self.seed, self.errors = check_int("seed", seed), errors
        full, self.counts = read_text(text, errors=errors)
        self.digest, self.chars = text_digest(full), len(full)
        train, held = split_text(full, self.holdout)
        if not train:
            raise ValueError(f"text must hold training characters: it has {len(full)} "
                             f"characters and holdout = {holdout} leaves none")
        self.codec = CharCodec(train, errors=errors)
        train_ids = self.codec.encode(train)
        before = self.codec.counts["unknown"]
        self.held = torch.tensor(self.codec.encode(held), dtype=torch.int64)
        self.counts["unknown"] += self.codec.counts["unknown"] - before
        self.data = batchify(train_ids, self.batch)
        self.model = build_model(self.codec.vocab_size, emb=self.emb, hidden=self.hidden,
                                 layers=self.layers, seed=seed)
        self.learner = OnlineLearner(self.model, optimizer=OPTIMIZERS[self.optimizer],
                                     lr=self.lr, k1=self.k1, k2=self.k2, clip=self.clip)
        self.keys = list(range(self.batch))
        self.steps, self.elapsed, self.running_loss = 0, 0.0, None

    def config(self) -> dict:
        """The flat keyword configuration (stored in checkpoints)."""
        return {"hidden": self.hidden, "layers": self.layers, "emb": self.emb,
                "batch": self.batch, "k1": self.k1, "k2": self.k2, "lr": self.lr,
                "clip": self.clip, "optimizer": self.optimizer, "holdout": self.holdout,
                "errors": self.errors, "seed": self.seed}

    @property
    def period(self) -> int:
        """Steps per pass over the training text (``N - 1`` for streams of N ids)."""
        return self.data.shape[1] - 1

    # -- training --------------------------------------------------------------------
    def train(self, *, steps: int | None = None, minutes: float | None = None,
              progress: bool = False, checkpoint: str | os.PathLike | None = None,
              save_every: float | None = None) -> dict:
        """Train until ``steps`` steps per stream in total, or for ``minutes``.

        Parameters
        ----------
        steps : int or None
            Stop at the first window end (a multiple of ``k1``) at or after this many
            steps of every stream in total, counted over resumes (``steps * batch``
            tokens). Training and checkpoints stop only at window ends, so that every
            window is one fused push in a resumed run as in an uninterrupted one: the
            resumed weights are then bit for bit those of a run that never stopped.
        minutes : float or None
            Stop at the first window end after this much wall time of this call.
        progress : bool
            A tqdm bar on stderr: tokens, tokens/s, running loss, epoch.
        checkpoint : path or None
            Written at the end (and every ``save_every`` minutes).
        save_every : float or None
            Minutes between checkpoints during training.

        Returns
        -------
        dict
            ``steps``, ``tokens``, ``epochs``, ``seconds`` (this call), ``tokens_per_s``,
            ``train_loss``, ``updates``, ``skipped_nonfinite``.
        """
        if steps is None and minutes is None:
            raise ValueError("give steps or minutes (or both): training needs an end")
        check_positive_int("steps", steps, none_ok=True)
        check_positive_float("minutes", minutes, none_ok=True)
        check_positive_float("save_every", save_every, none_ok=True)
        if steps is not None:
            steps = -(-steps // self.k1) * self.k1
        bar = self._bar(steps) if progress else None
        start = last_save = time.perf_counter()
        done_before, updates = self.steps, self.learner.counts["updates"]
        try:
            while steps is None or self.steps < steps:
                now = time.perf_counter()
                if minutes is not None and now - start >= minutes * 60:
                    break
                if checkpoint is not None and save_every and now - last_save >= save_every * 60:
                    self.save(checkpoint)
                    last_save = now
                t = self.k1 - self.steps % self.k1  # 0 < t < k1 only after a foreign resume
                self._window(t)
                if bar is not None:
                    bar.update(t * self.batch)
                    if self.running_loss is not None:
                        bar.set_postfix(loss=f"{self.running_loss:.3f}",
                                        epoch=f"{self.steps / self.period:.2f}", refresh=False)
        finally:
            seconds = time.perf_counter() - start
            self.elapsed += seconds
            if bar is not None:
                bar.close()
        if checkpoint is not None:
            self.save(checkpoint)
        tokens = (self.steps - done_before) * self.batch
        return {"steps": self.steps, "tokens": self.steps * self.batch,
                "epochs": self.steps / self.period, "seconds": seconds,
                "tokens_per_s": tokens / seconds if seconds > 0 else 0.0,
                "train_loss": self.running_loss,
                "updates": self.learner.counts["updates"] - updates,
                "skipped_nonfinite": self.learner.counts["skipped_nonfinite"]}

    def _window(self, t: int) -> None:
        # t steps of every stream: inputs at positions s .. s+t-1 (mod the period), the
        # next ids as targets; the update of a finished window runs right away.
        pos = torch.arange(self.steps, self.steps + t) % self.period
        updates = self.learner.counts["updates"]
        self.learner.push_many(self.keys, self.data[:, pos], self.data[:, pos + 1])
        self.learner.flush()
        self.steps += t
        if self.learner.counts["updates"] != updates:
            loss = self.learner.last_loss
            r = self.running_loss
            self.running_loss = loss if r is None else r + _EMA * (loss - r)

    def _bar(self, steps):
        from tqdm import tqdm

        return tqdm(total=None if steps is None else steps * self.batch,
                    initial=self.steps * self.batch, unit="tok", unit_scale=True,
                    desc="train-lm", file=sys.stderr, dynamic_ncols=True, smoothing=0.05)

    def evaluate(self, *, chunk: int = 4096, streams: int = 1) -> float | None:
        """Validation loss, nats per character: the held-out text streamed from the
        initial state with carried state, no learning, as one stream or cut into
        ``streams`` contiguous parallel streams (see :func:`stream_loss`); ``None`` if
        fewer than 2 characters are held out."""
        if self.held.shape[0] < 2:
            return None
        return stream_loss(self.model, self.held, chunk=chunk, streams=streams)

    def lm(self) -> CharLM:
        """A :class:`CharLM` sharing this trainer's model and codec (for sampling)."""
        return CharLM(self.model, self.codec)

    # -- checkpoints -----------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write a checkpoint: the learner's safetensors file (weights, optimizer, every
        stream's state and window) with the codec and training state in its header."""
        meta = {
            "codec": self.codec.config(),
            "model": {"vocab": self.codec.vocab_size, "emb": self.emb, "hidden": self.hidden,
                      "layers": self.layers},
            "train": self.config(),
            "progress": {"steps": self.steps, "elapsed": self.elapsed,
                         "running_loss": self.running_loss},
            "text": {"sha256": self.digest, "chars": self.chars},
        }
        _write(path, self.learner, meta)

    @classmethod
    def resume(cls, path: str | os.PathLike, text) -> LMTrainer:
        """Rebuild a trainer from its checkpoint and the same training text.

        The configuration comes from the checkpoint. Refuses (``ValueError``) a text
        whose vocabulary differs from the checkpoint's (naming both) or that is not the
        text the checkpoint was trained on.
        """
        tensors, state, meta = read_checkpoint(path)
        trainer = cls(text, **meta["train"])
        where = f"checkpoint {str(path)!r}"
        text_name = f"the text {str(text)!r}" if isinstance(text, os.PathLike) else "this text"
        check_vocabulary(trainer.codec, meta["codec"], where, text_name)
        saved = meta["text"]
        if saved["sha256"] != trainer.digest:
            raise ValueError(
                f"{where} was trained on a text of {saved['chars']} characters with SHA-256 "
                f"{saved['sha256'][:12]}..., {text_name} has {trainer.chars} characters with "
                f"SHA-256 {trainer.digest[:12]}...: exact resume needs the same text"
            )
        try:
            trainer.learner.load_state_dict({**state, "tensors": tensors})
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
        except (KeyError, TypeError, AttributeError, IndexError, RuntimeError) as err:
            raise ValueError(f"{where} does not hold a valid learner state: {err!r}") from None
        progress = meta["progress"]
        trainer.steps = int(progress["steps"])
        trainer.elapsed = float(progress["elapsed"])
        trainer.running_loss = progress["running_loss"]
        return trainer
