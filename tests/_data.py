"""Real data for the tests, read from ../shared/data (a test skips when it is absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

__all__ = ["ETT", "TEXT", "ett", "shakespeare"]

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TEXT = DATA / "text" / "tinyshakespeare.txt"
ETT = DATA / "sensors" / "ett" / "ETTh1.csv"


def shakespeare(chars: int) -> tuple[torch.Tensor, int]:
    """The first ``chars`` characters of tiny-shakespeare as ids, and the vocabulary size."""
    if not TEXT.exists():
        pytest.skip(f"{TEXT} is absent")
    text = TEXT.read_text()
    lookup = {ch: i for i, ch in enumerate(sorted(set(text)))}
    return torch.tensor([lookup[ch] for ch in text[:chars]]), len(lookup)


def ett(rows: int, dtype=torch.float64) -> torch.Tensor:
    """The first ``rows`` rows of ETTh1's 7 columns, z-scored over those rows."""
    if not ETT.exists():
        pytest.skip(f"{ETT} is absent")
    data = np.loadtxt(ETT, delimiter=",", skiprows=1, usecols=range(1, 8), max_rows=rows)
    return torch.tensor((data - data.mean(0)) / data.std(0), dtype=dtype)
