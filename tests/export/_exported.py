"""Exported copies of test models, written once per configuration into a temp folder."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import torch
from _oracle import make_model

import streamrnn
from streamrnn.export import OnnxModel, to_onnx

FOLDER = Path(tempfile.mkdtemp(prefix="streamrnn-export-tests-"))
atexit.register(shutil.rmtree, FOLDER, ignore_errors=True)
KINDS = ("RNN_TANH", "RNN_RELU", "LSTM", "GRU", "MinGRU", "MinLSTM")  # every exportable cell
_count = [0]


def fresh_path(stem: str = "m") -> Path:
    _count[0] += 1
    return FOLDER / f"{stem}_{_count[0]}.onnx"


def cell(kind: str, features: int, hidden: int, layers: int, *, dtype=torch.float32,
         seed: int = 0):
    if kind in ("MinGRU", "MinLSTM"):
        cls = getattr(streamrnn, kind)
        return cls(features, hidden, layers, dtype=dtype, seed=seed)
    return make_model(kind, features, hidden, layers, dtype=dtype, seed=seed)


def exported(model, **kw) -> tuple[Path, OnnxModel]:
    path = fresh_path()
    to_onnx(model, path, **kw)
    return path, OnnxModel(path)


@functools.cache
def onnx_twin(kind: str, features: int, hidden: int, layers: int, dtype: torch.dtype,
              seed: int) -> OnnxModel:
    """The exported copy of ``cell(kind, ...)``, shared (streams never change a model)."""
    return exported(cell(kind, features, hidden, layers, dtype=dtype, seed=seed))[1]
