"""BankOutputs: the read-only ``{key: outputs}`` mapping a bank's push returns (private).

Public as :class:`streamrnn.BankOutputs`; :class:`~streamrnn.StreamBank` and
:class:`~streamrnn.distributed.ShardedBank` return it.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

__all__ = ["BankOutputs"]


class BankOutputs(Mapping):
    """The outputs of one :meth:`StreamBank.push`: a read-only ``{key: outputs}`` mapping.

    Rows are handed out as views on first access, so a push over thousands of streams
    does not pay for thousands of tensor objects nobody reads. ``tensor`` is the whole
    batch in key order when all chunks had the same shape (else ``None``).

    Shape
    -----
    ``out[key]``: ``(T, O)`` or ``(O,)``; ``tensor``: ``(N, T, O)`` or ``(N, O)``.

    Threads
    -------
    Not changed after it is built: safe to read from several threads at once.

    Examples
    --------
    >>> import torch
    >>> out = BankOutputs(["a", "b"], torch.arange(6.0).reshape(2, 3))
    >>> out["b"], list(out), len(out), out.tensor.shape
    (tensor([3., 4., 5.]), ['a', 'b'], 2, torch.Size([2, 3]))
    """

    def __init__(self, keys: list, rows: Tensor | list) -> None:
        self._keys = keys
        self._rows = rows
        self._pos: dict | None = None
        self.tensor = rows if isinstance(rows, Tensor) else None

    def __getitem__(self, key):
        if self._pos is None:
            self._pos = dict(zip(self._keys, range(len(self._keys)), strict=True))
        return self._rows[self._pos[key]]

    def __iter__(self):
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"BankOutputs({len(self._keys)} streams)"
