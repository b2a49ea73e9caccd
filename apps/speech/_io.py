"""Save and load a digit recogniser: safetensors with a JSON header, never pickle (private).

The file holds the model's tensors under their ``state_dict`` names and, in the
safetensors metadata (string to string), ``format`` and ``version`` plus JSON for the
feature front end (``features``), the model (``model``), the decoder (``decoder``), the
class labels (``labels``) and free-form provenance (``info``).
"""

from __future__ import annotations

import json
import os
from importlib import resources

import torch

from streamrnn.utils import atomic_write_bytes, read_header, read_tensors, safetensors_bytes

from .._checks import GATES, check_conv_config, check_model_config

__all__ = [
    "FEATURE_KEYS",
    "FORMAT",
    "VERSION",
    "build_model",
    "default_weights",
    "read_file",
    "write_file",
]

FORMAT = "streamrnn.adapters.speech.DigitRecognizer"  # the file format's name (files carry it)
VERSION = "2"  # 2: sealed by a checksum; version 1 files (no checksum) still load
#: The AudioFeatures settings a recogniser stores (``input_rate`` is the user's, at load).
FEATURE_KEYS = (
    "sample_rate", "kind", "win_length", "hop_length", "n_fft", "n_mels", "n_mfcc", "f_min",
    "f_max", "mel_scale", "mel_norm", "window", "log_offset", "preemphasis", "normalize",
    "norm_eps", "tail",
)  # fmt: skip


def default_weights():
    """The shipped weights: ``data/digits.safetensors`` inside ``streamrnn.adapters``."""
    return resources.files("streamrnn.apps.speech").joinpath("data", "digits.safetensors")


def write_file(path, tensors: dict, header: dict) -> None:
    """Write atomically (:func:`streamrnn.utils.atomic_write`: same-folder temp file,
    fsync, rename, folder fsync; the mode follows the umask)."""
    meta = {"format": FORMAT, "version": VERSION}
    meta.update({k: json.dumps(v, sort_keys=True) for k, v in header.items()})
    atomic_write_bytes(path, safetensors_bytes(tensors, meta))


def read_file(path) -> tuple[dict, dict]:
    """Tensors and decoded header of a recogniser file; ``ValueError`` if it is not one.

    The header is read and checked first: the format and version, every entry, the
    front end's settings (the keys of :data:`FEATURE_KEYS`, a mapping) and the model's
    configuration against the shapes the file declares (:func:`check_model_config`).
    Only then are the tensors read, so a forged header allocates nothing.
    """
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise ValueError(f"path {name!r}: no such weights file")
    where = f"path {name!r}"
    head = read_header(name, what="safetensors file", where=where, checksum=False)
    if head.metadata.get("format") != FORMAT:
        raise ValueError(f"{where}: format must be {FORMAT!r}, got "
                         f"{head.metadata.get('format')!r}")
    if head.metadata.get("version") not in ("1", VERSION):
        raise ValueError(f"{where}: version must be '1' or {VERSION!r} (this streamrnn), "
                         f"got {head.metadata.get('version')!r}")
    if head.metadata["version"] != "1":
        head.require_checksum()
    header = {key: head.json(key) for key in ("features", "model", "decoder", "labels", "info")}
    features = header["features"]
    if not isinstance(features, dict):
        raise ValueError(f"{where}: header entry 'features' must be a mapping, got "
                         f"{type(features).__name__}")
    missing = [k for k in FEATURE_KEYS if k not in features]
    if missing:
        raise ValueError(f"{where}: the features header lacks {missing}")
    if not isinstance(header["decoder"], dict):
        raise ValueError(f"{where}: header entry 'decoder' must be a mapping")
    if not isinstance(header["labels"], list):
        raise ValueError(f"{where}: header entry 'labels' must be a list")
    model = header["model"]
    cell = model.get("cell") if isinstance(model, dict) else None
    kind = cell.get("type") if isinstance(cell, dict) else None
    if kind not in (*GATES, "ConvGRU"):
        raise ValueError(f"{where}: model field 'cell' must be an LSTM, GRU, RNN or ConvGRU "
                         f"config, got {kind!r}")
    if kind == "ConvGRU":
        check_conv_config(model, head)
    else:
        check_model_config(model, head)
    return read_tensors(head), header


def build_model(config: dict, tensors: dict, where: str) -> torch.nn.Module:
    """Rebuild ``RecurrentModel(LSTM | GRU | RNN | ConvGRU, Readout)`` from its config and
    tensors."""
    from streamrnn.cells import GRU, LSTM, RNN, ConvGRU
    from streamrnn.heads import Readout, RecurrentModel

    layers = {"LSTM": LSTM, "GRU": GRU, "RNN": RNN, "ConvGRU": ConvGRU}
    try:
        if config.get("type") != "RecurrentModel" or config.get("num_tokens") is not None:
            raise ValueError(f"a RecurrentModel without tokens, got {config.get('type')!r}")
        cell_cfg = dict(config["cell"])
        layer = layers[cell_cfg.pop("type")]
        head_cfg = dict(config["head"])
        if head_cfg.pop("type") != "Readout":
            raise ValueError("a Readout head")
        model = RecurrentModel(layer(**cell_cfg), Readout(**head_cfg))
        model.load_state_dict(tensors, strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(
            f"path {where!r}: the model header and tensors must describe a "
            f"RecurrentModel(LSTM/GRU/RNN/ConvGRU, Readout): {exc}"
        ) from exc
    return model.eval()
