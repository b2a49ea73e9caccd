"""The language model's checkpoint file and vocabulary check (private).

Public through :mod:`streamrnn.apps.lm`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import safetensors
import safetensors.torch

from streamrnn._io import atomic_write_bytes
from streamrnn.adapters.tokens import TokenCodec

__all__ = ["LM_KEY", "check_vocabulary", "read_checkpoint", "write_checkpoint"]

LM_KEY = "streamrnn.lm"  # safetensors metadata key of the language-model header
LM_VERSION = 1


def check_vocabulary(codec: TokenCodec, saved: dict, saved_name: str, codec_name: str) -> None:
    """``ValueError`` naming both sides unless ``codec`` has the ``saved`` vocabulary."""
    try:
        codec.check_compatible(saved)
    except ValueError as err:
        mine, size = codec.config(), _vocab_size(saved)
        if saved.get("kind") == "char" and mine.get("kind") == "char":
            theirs, ours = set(saved.get("alphabet") or ""), set(mine["alphabet"])
            detail = (f"only in {saved_name}: {_chars(theirs - ours)}; only in {codec_name}: "
                      f"{_chars(ours - theirs)}")
            if saved.get("unknown") != mine.get("unknown"):
                detail += (f"; unknown symbol {saved.get('unknown')!r} vs "
                           f"{mine.get('unknown')!r}")
        else:
            detail = str(err)
        raise ValueError(
            f"vocabulary mismatch: {saved_name} has a {saved.get('kind')!r} vocabulary of "
            f"{size} symbols, {codec_name} has a {mine.get('kind')!r} vocabulary of "
            f"{codec.vocab_size} ({detail})"
        ) from None


def _vocab_size(config: dict):
    if config.get("kind") == "char":
        return len(config.get("alphabet") or "") + (config.get("unknown") is not None)
    return 256 if config.get("kind") == "byte" else config.get("vocab_size")


def _chars(chars: set) -> str:
    shown = "".join(sorted(chars))
    return repr(shown if len(shown) <= 20 else shown[:20] + "...") if chars else "none"


# -- the checkpoint file ---------------------------------------------------------------
def write_checkpoint(path: str | os.PathLike, learner, meta: dict) -> None:
    """Write the learner's state and ``meta`` as one safetensors file, atomically.

    The file is the learner's own checkpoint format (``OnlineLearner.load`` reads it)
    with one more metadata entry, ``"streamrnn.lm"``: the JSON of ``meta`` (codec
    config, model shape, training configuration and progress).
    :meth:`LMTrainer.save <streamrnn.apps.lm.LMTrainer.save>` writes it with the
    keys :func:`read_checkpoint` requires.

    Examples
    --------
    >>> import os, tempfile
    >>> from streamrnn.apps.lm import build_model
    >>> from streamrnn.learn import OnlineLearner
    >>> learner = OnlineLearner(build_model(5, emb=4, hidden=8, layers=1), k1=4)
    >>> path = os.path.join(tempfile.mkdtemp(), "ck.safetensors")
    >>> meta = dict.fromkeys(("codec", "model", "train", "progress", "text"), {})
    >>> write_checkpoint(path, learner, meta)
    >>> tensors, state, back = read_checkpoint(path)
    >>> state["format"], back["version"], learner.load(path)  # the learner reads it too
    ('streamrnn.OnlineLearner', 1, None)
    """
    sd = learner.state_dict()
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in sd["tensors"].items()}
    header = {k: v for k, v in sd.items() if k not in ("format", "version", "tensors")}
    metadata = {"format": sd["format"], "version": str(sd["version"]),
                "header": json.dumps(header), LM_KEY: json.dumps({"version": LM_VERSION, **meta})}
    atomic_write_bytes(Path(path), safetensors.torch.save(tensors, metadata))


def read_checkpoint(path: str | os.PathLike) -> tuple[dict, dict, dict]:
    """``(tensors, learner_state_dict_without_tensors, lm_meta)`` of a checkpoint.

    Refuses (``ValueError`` naming the path) a missing, truncated or foreign file, or one
    without the ``"streamrnn.lm"`` header of :func:`write_checkpoint`.

    Examples
    --------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "not-a-checkpoint")
    >>> with open(path, "wb") as f:
    ...     _ = f.write(b"hello")
    >>> read_checkpoint(path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: checkpoint '...not-a-checkpoint' is not a readable safetensors file ...
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {str(path)!r} is not a file")
    try:
        with safetensors.safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (safetensors.SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"checkpoint {str(path)!r} is not a readable safetensors file "
                         f"(truncated or foreign?): {err}") from None
    if LM_KEY not in metadata:
        raise ValueError(f"checkpoint {str(path)!r} has no {LM_KEY!r} header: it was not "
                         "written by streamrnn train-lm")
    try:
        meta = json.loads(metadata[LM_KEY])
        learner = {"format": metadata["format"], "version": int(metadata["version"]),
                   **json.loads(metadata["header"])}
    except (KeyError, ValueError) as err:
        raise ValueError(f"checkpoint {str(path)!r} has a damaged header: {err}") from None
    if meta.get("version") != LM_VERSION:
        raise ValueError(f"checkpoint {str(path)!r} has {LM_KEY} version "
                         f"{meta.get('version')!r}, this streamrnn reads {LM_VERSION}")
    for key in ("codec", "model", "train", "progress", "text"):
        if key not in meta:
            raise ValueError(f"checkpoint {str(path)!r} {LM_KEY} header lacks {key!r}")
    return tensors, learner, meta
