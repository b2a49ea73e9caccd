"""The shards' checkpoint folder: the one given, or a temporary one (private).

One rule for :class:`~.bank.ShardedBank` and :class:`~.learner.ShardedLearner`: the router
takes ``checkpoint_dir`` as given (on a cluster, a folder every node mounts) or makes a
temporary folder that it owns and removes on close; a shard readies the folder each
time it (re)starts, removing the temp files of a writer that was killed midway.
"""

from __future__ import annotations

import os
import shutil
import tempfile

from .._io import remove_orphans

__all__ = ["open_folder", "ready_folder", "release_folder"]


def open_folder(checkpoint_dir: str | os.PathLike | None) -> tuple[str, bool]:
    """``(folder, owned)``: ``checkpoint_dir`` as a str, or a new temporary folder that
    the caller owns (``owned``) and hands to :func:`release_folder` on close.

    Examples
    --------
    >>> folder, owned = open_folder(None)
    >>> os.path.isdir(folder), owned
    (True, True)
    >>> release_folder(folder, owned); os.path.exists(folder)
    False
    >>> open_folder("/data/ckpt")
    ('/data/ckpt', False)
    """
    if checkpoint_dir is not None:
        return os.fspath(checkpoint_dir), False
    return tempfile.mkdtemp(prefix="streamrnn-shards-"), True


def release_folder(folder: str, owned: bool) -> None:
    """Remove ``folder`` if :func:`open_folder` made it; leave a given one alone."""
    if owned:
        shutil.rmtree(folder, ignore_errors=True)


def ready_folder(folder: str) -> None:
    """Create ``folder`` if it is missing and remove this library's orphaned temp files
    in it (those of a writer killed midway)."""
    folder = folder or "."
    os.makedirs(folder, exist_ok=True)
    remove_orphans(folder)
