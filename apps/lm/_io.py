"""The language model's checkpoint file and vocabulary check (private).

Public through :mod:`streamrnn.apps.lm`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import safetensors.torch

from streamrnn.adapters.tokens import TokenCodec
from streamrnn.utils import FileHeader, atomic_write_bytes, read_header, read_tensors

from .._checks import check_model_config

__all__ = ["LM_KEY", "check_vocabulary", "read_checkpoint", "write_checkpoint"]

LM_KEY = "streamrnn.lm"  # safetensors metadata key of the language-model header
LM_VERSION = 1
#: The fields of ``LMTrainer.config()`` (a checkpoint's ``train`` entry).
TRAIN_KEYS = ("hidden", "layers", "emb", "batch", "k1", "k2", "lr", "clip", "optimizer",
              "holdout", "errors", "seed")


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


def _check_model(meta: dict, head: FileHeader) -> None:
    """The ``model`` and ``train`` entries against the declared weights, before allocation.

    ``model`` holds ``vocab, emb, hidden, layers`` of :func:`build_model
    <streamrnn.apps.lm.build_model>`; the ``model.*`` tensors must hold exactly that
    many parameters, and the training configuration must name the same sizes.
    """
    m = meta["model"]
    if not isinstance(m, dict) or not isinstance(meta["train"], dict):
        raise ValueError(f"{head.where} {LM_KEY} entries 'model' and 'train' must be "
                         "JSON objects")
    config = {
        "type": "RecurrentModel", "num_tokens": m.get("vocab"),
        "cell": {"type": "LSTM", "input_size": m.get("emb"), "hidden_size": m.get("hidden"),
                 "num_layers": m.get("layers")},
        "head": {"type": "Readout", "output_size": m.get("vocab")},
    }
    names = {"num_tokens": "vocab", "input_size": "emb", "hidden_size": "hidden",
             "num_layers": "layers", "output_size": "vocab"}
    check_model_config(config, head, prefix="model.", names=names)
    unknown = sorted(set(meta["train"]) - set(TRAIN_KEYS))
    if unknown:
        raise ValueError(f"{head.where} {LM_KEY} entry 'train' has unknown fields {unknown}")
    for key in ("emb", "hidden", "layers"):
        if key in meta["train"] and meta["train"][key] != m[key]:
            raise ValueError(f"{head.where} {LM_KEY} field 'train.{key}' is "
                             f"{meta['train'][key]!r}, the model has {m[key]!r}")


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
    >>> meta = dict.fromkeys(("codec", "train", "progress", "text"), {})
    >>> meta["model"] = {"vocab": 5, "emb": 4, "hidden": 8, "layers": 1}
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

    Refuses (``ValueError`` naming the path and the field) a missing, truncated or
    foreign file, one without the ``"streamrnn.lm"`` header of :func:`write_checkpoint`,
    or one whose ``model`` sizes (``vocab, emb, hidden, layers``) do not fit the weights
    it holds: checked on the header before any tensor is read or model built.

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
    where = f"checkpoint {str(Path(path))!r}"
    head = read_header(path, what="safetensors file", where=where)
    if LM_KEY not in head.metadata:
        raise ValueError(f"{where} has no {LM_KEY!r} header: it was not "
                         "written by streamrnn train-lm")
    meta = head.json(LM_KEY)
    if not isinstance(meta, dict):
        raise ValueError(f"{where} has a damaged header: {LM_KEY!r} is not a JSON object")
    try:
        learner = {"format": head.field("format"), "version": int(head.field("version")),
                   **head.json("header")}
    except (TypeError, ValueError) as err:
        raise ValueError(f"{where} has a damaged header: {err}") from None
    if meta.get("version") != LM_VERSION:
        raise ValueError(f"{where} has {LM_KEY} version "
                         f"{meta.get('version')!r}, this streamrnn reads {LM_VERSION}")
    for key in ("codec", "model", "train", "progress", "text"):
        if key not in meta:
            raise ValueError(f"{where} {LM_KEY} header lacks {key!r}")
    _check_model(meta, head)
    tensors = read_tensors(head)
    return tensors, learner, meta
