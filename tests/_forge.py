"""Write forged files that pass the checksum, so tests reach the validation behind it.

The checksum (``streamrnn.utils.safetensors_bytes``) catches damage, not a forger, who
can recompute it; every check behind it must hold on its own.
"""

from __future__ import annotations

from pathlib import Path

from streamrnn.utils import atomic_write_bytes, safetensors_bytes

__all__ = ["forge"]


def forge(path, tensors: dict, metadata: dict) -> None:
    """Write ``tensors`` and ``metadata`` (any old ``checksum`` entry dropped) to
    ``path``, sealed by a fresh checksum."""
    meta = {k: v for k, v in metadata.items() if k != "checksum"}
    atomic_write_bytes(Path(path), safetensors_bytes(tensors, meta))
