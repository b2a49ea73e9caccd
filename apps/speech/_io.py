"""Save and load a digit recogniser: safetensors with a JSON header, never pickle (private).

The file holds the model's tensors under their ``state_dict`` names and, in the
safetensors metadata (string to string), ``format`` and ``version`` plus JSON for the
feature front end (``features``), the model (``model``), the decoder (``decoder``), the
class labels (``labels``) and free-form provenance (``info``).
"""

from __future__ import annotations

import json
import os
import tempfile
from importlib import resources

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

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
VERSION = "1"
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
    """Write atomically: a temp file in the same folder, fsync, rename over ``path``."""
    path = os.fspath(path)
    meta = {"format": FORMAT, "version": VERSION}
    meta.update({k: json.dumps(v, sort_keys=True) for k, v in header.items()})
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".digits-", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, meta)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; weights are data, readable by all
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def read_file(path) -> tuple[dict, dict]:
    """Tensors and decoded header of a recogniser file; ``ValueError`` if it is not one."""
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise ValueError(f"path {name!r}: no such weights file")
    try:
        with safe_open(name, framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"path {name!r} is not a safetensors file: {exc}") from exc
    if meta.get("format") != FORMAT:
        raise ValueError(f"path {name!r}: format must be {FORMAT!r}, got {meta.get('format')!r}")
    if meta.get("version") != VERSION:
        raise ValueError(
            f"path {name!r}: version must be {VERSION!r} (this streamrnn), "
            f"got {meta.get('version')!r}"
        )
    header = {}
    for key in ("features", "model", "decoder", "labels", "info"):
        if key not in meta:
            raise ValueError(f"path {name!r}: the header has no {key!r} entry")
        try:
            header[key] = json.loads(meta[key])
        except json.JSONDecodeError as exc:
            raise ValueError(f"path {name!r}: header entry {key!r} is not JSON: {exc}") from exc
    return tensors, header


def build_model(config: dict, tensors: dict, where: str) -> torch.nn.Module:
    """Rebuild ``RecurrentModel(LSTM | GRU | RNN, Readout)`` from its config and tensors."""
    from streamrnn.cells import GRU, LSTM, RNN
    from streamrnn.heads import Readout, RecurrentModel

    layers = {"LSTM": LSTM, "GRU": GRU, "RNN": RNN}
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
            f"RecurrentModel(LSTM/GRU/RNN, Readout): {exc}"
        ) from exc
    return model.eval()
