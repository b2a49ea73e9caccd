"""Data for the tests.

The core's exactness and resume tests carry their own small data, so they never skip:

- :func:`shakespeare`: the first 8,000 characters of tiny-shakespeare (public-domain
  text, ``tests/data/shakespeare_8k.txt``) as ids;
- :func:`approval`: river's bundled TrumpApproval (1,001 daily rows; five pollsters, the
  date and FiveThirtyEight's average: 7 columns), z-scored.

- :func:`demo_clips` / :func:`demo_digits`: the shipped speech demo's clip list and the
  digits it says (from the FSDD file names ``{digit}_{speaker}_{take}.wav``: the labels,
  never the model's output).

Tests of accuracy on real data read ``../shared/data`` (:data:`DATA`) through
:func:`require`: a missing file FAILS the test with a message that says where it was
looked for (CI must have the data; a skip would pass without testing anything).
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch

__all__ = ["DATA", "require", "approval", "shakespeare"]

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TEXT = Path(__file__).resolve().parent / "data" / "shakespeare_8k.txt"


def require(path: Path) -> Path:
    """``path`` (under :data:`DATA`) if it exists; else fail the test, saying why."""
    if not Path(path).exists():
        pytest.fail(f"{path} is missing: the real-data tests read ../shared/data beside "
                    f"the checkout (see shared/data/README.md); CI must provide it",
                    pytrace=False)
    return Path(path)


def shakespeare(chars: int) -> tuple[torch.Tensor, int]:
    """The first ``chars`` (<= 8,000) characters of tiny-shakespeare as ids, and the
    vocabulary size of the excerpt."""
    text = TEXT.read_text()
    if chars > len(text):
        raise ValueError(f"the excerpt has {len(text)} characters, asked for {chars}")
    lookup = {ch: i for i, ch in enumerate(sorted(set(text)))}
    return torch.tensor([lookup[ch] for ch in text[:chars]]), len(lookup)


@cache
def _approval() -> np.ndarray:
    from river import datasets

    rows = [[*x.values(), y] for x, y in datasets.TrumpApproval()]
    return np.asarray(rows, dtype=np.float64)


def approval(rows: int, dtype=torch.float64) -> torch.Tensor:
    """The first ``rows`` (<= 1,001) rows of TrumpApproval's 7 columns, z-scored with
    the whole series' mean and deviation (a few rows can hold a constant column).

    Shape
    -----
    ``(rows, 7)``
    """
    whole = _approval()
    if rows > len(whole):
        raise ValueError(f"TrumpApproval has {len(whole)} rows, asked for {rows}")
    return torch.tensor((whole[:rows] - whole.mean(0)) / whole.std(0), dtype=dtype)


def demo_clips() -> list[dict]:
    """The shipped speech demo's clips (FSDD file names, word bounds in seconds)."""
    meta = resources.files("streamrnn.apps.speech").joinpath("data", "digits_demo.json")
    return json.loads(meta.read_text())["clips"]


def demo_digits(clips: list[dict] | None = None) -> list[int]:
    """The digits the demo's clips (or ``clips``) say, read off their file names."""
    return [int(c["file"].split("_")[0]) for c in (demo_clips() if clips is None else clips)]
