"""Text for the character language model: reading, splitting, batchifying (private).

Public through :mod:`streamrnn.apps.lm`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torch import Tensor

from streamrnn.adapters.tokens import decode_text

__all__ = [
    "batchify",
    "read_text",
    "split_text",
    "text_digest",
]


def read_text(source, *, errors: str = "replace") -> tuple[str, dict[str, int]]:
    """A training text and what reading it replaced.

    Parameters
    ----------
    source : str, bytes or path-like
        The text itself (``str``), its UTF-8 bytes, or a :class:`os.PathLike` of a file
        (read as bytes; a plain ``str`` is always text, never a path).
    errors : {"replace", "strict"}
        Invalid UTF-8: one U+FFFD per invalid sequence, counted in
        ``counts["invalid_sequences"]`` / ``["invalid_bytes"]``; or ``ValueError`` naming
        the byte offset.

    Returns
    -------
    text : str
    counts : dict of str to int

    Examples
    --------
    >>> text, counts = read_text(b"caf\\xc3\\xa9 \\xff!")
    >>> text, counts["invalid_sequences"]
    ('café �!', 1)
    >>> read_text(b"caf\\xff", errors="strict")
    Traceback (most recent call last):
    ...
    ValueError: text: invalid UTF-8 at byte 3 of the input (ff: invalid start byte); ...
    """
    if isinstance(source, os.PathLike):
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"path {str(path)!r} is not a file")
        data: str | bytes = path.read_bytes()
    elif isinstance(source, str | bytes | bytearray):
        data = bytes(source) if isinstance(source, bytearray) else source
    else:
        raise ValueError(f"text must be a str, UTF-8 bytes or a path, got {type(source).__name__}")
    try:
        return decode_text(data, errors=errors)
    except ValueError as err:
        if str(err).startswith("errors must be"):
            raise
        where = f"file {str(source)!r}" if isinstance(source, os.PathLike) else "text"
        raise ValueError(f"{where}: {err}") from None


def text_digest(text: str) -> str:
    """SHA-256 of the text's UTF-8 encoding (to refuse resuming on another text)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def split_text(text: str, holdout: float) -> tuple[str, str]:
    """The first ``1 - holdout`` of the characters for training, the rest held out.

    The cut is at character ``int(len(text) * (1 - holdout))``, nanoGPT's split of
    ``shakespeare_char`` for ``holdout = 0.1``.

    Examples
    --------
    >>> split_text("abcdefghij", 0.1)
    ('abcdefghi', 'j')
    """
    cut = int(len(text) * (1.0 - holdout))
    return text[:cut], text[cut:]


def batchify(ids: list[int] | Tensor, batch: int) -> Tensor:
    """Cut a token sequence into ``batch`` contiguous parallel streams (canonical batchify).

    Stream ``i`` is ``ids[i * N : (i + 1) * N]`` with ``N = len(ids) // batch``; the
    ``len(ids) % batch`` trailing tokens are dropped, as ``word_language_model`` does.

    Shape
    -----
    ``(L,)`` -> ``(B, N)``.

    Examples
    --------
    >>> batchify(list(range(11)), 3)
    tensor([[0, 1, 2],
            [3, 4, 5],
            [6, 7, 8]])
    """
    data = torch.as_tensor(ids, dtype=torch.int64)
    n = data.shape[0] // batch
    if n < 2:
        raise ValueError(
            f"batch must leave at least 2 tokens per stream: {data.shape[0]} training "
            f"tokens cut into batch = {batch} streams give {n}"
        )
    return data[: n * batch].reshape(batch, n).contiguous()
