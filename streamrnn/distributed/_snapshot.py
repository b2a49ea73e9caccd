"""A ShardedBank's saved folder: a manifest and one shard file per shard (private).

Saved by N shards, loaded by M: every key is routed again by the loading bank's router,
its state rows and its offset go with it; the counters are summed into the first shard.
"""

from __future__ import annotations

import json
import os

import torch

from .._io import check_config, encode_key
from ._shard import read_shard_file

__all__ = ["load_snapshot", "snapshot_manifest"]

_FORMAT = "streamrnn.ShardedBank"
_VERSION = 1


def snapshot_manifest(files: list[str], config: dict) -> str:
    """The manifest's JSON text: format, version, the shard files and the model config."""
    return json.dumps({"format": _FORMAT, "version": _VERSION, "files": files,
                       "config": config}, indent=1)


def _read_manifest(folder: str) -> list[str]:
    path = os.path.join(folder, "manifest.json")
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"folder {folder!r} has no readable manifest.json: {err}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != _FORMAT \
            or manifest.get("version") != _VERSION:
        raise ValueError(f"{path!r} is not a {_FORMAT} version {_VERSION} manifest")
    files = manifest.get("files")
    if not isinstance(files, list) or not files or not all(
            isinstance(f, str) and os.path.basename(f) == f and f for f in files):
        raise ValueError(f"{path!r} must list the shard files by name")
    return files


def load_snapshot(folder: str, config: dict, router, max_streams: int) -> list[tuple]:
    """Per shard of ``router``: ``(bank state_dict, offsets)`` of the keys it owns, from
    the save in ``folder``. Everything is checked before anything is returned."""
    keys: list = []
    offsets: list[int] = []
    parts: dict[str, list] = {}
    counts: dict = {}
    head = None
    for name in _read_manifest(folder):
        sd, file_keys, file_offsets, _ = read_shard_file(os.path.join(folder, name))
        check_config(sd["config"], config)
        head = head or {k: sd[k] for k in ("format", "version", "config")}
        keys += file_keys
        offsets += file_offsets
        for part, tensor in sd["tensors"].items():
            if tensor.dim() < 2 or tensor.shape[1] != len(file_keys):
                raise ValueError(f"{name!r}: part {part!r} does not hold one row per key")
            parts.setdefault(part, []).append(tensor)
        for k, n in sd["counts"].items():
            counts[k] = counts.get(k, 0) + n
    if len(set(keys)) != len(keys):
        raise ValueError(f"folder {folder!r} holds a key in two shard files")
    whole = {p: torch.cat(ts, dim=1) for p, ts in parts.items()}
    if not all(bool(torch.isfinite(t).all()) for t in whole.values()):
        raise ValueError("the saved state has non-finite values (NaN or inf)")
    owner = torch.tensor([router.shard_of(k) for k in keys], dtype=torch.long)
    out = []
    for s in range(router.num_shards):
        idx = (owner == s).nonzero().flatten()
        if len(idx) > max_streams:
            raise ValueError(f"shard {s} would hold {len(idx)} streams, "
                             f"max_streams_per_shard is {max_streams}")
        mine = idx.tolist()
        sd = {**head, "keys": [encode_key(keys[i]) for i in mine],
              "counts": counts if s == 0 else dict.fromkeys(counts, 0),
              "tensors": {p: t.index_select(1, idx).contiguous() for p, t in whole.items()}}
        out.append((sd, [offsets[i] for i in mine]))
    return out
