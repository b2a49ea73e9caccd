"""Checkpoints of the online learner: everything needed to resume exactly (private).

A checkpoint holds the weights, the optimizer state, and per stream: the live state and
the ring of entering states (one tensor per state part, named by the part), the window
of the last k2 inputs, their targets and target status, the step count, whether an
update is due and its recency; plus the counters, the slot table's clock and the number
of optimizer steps taken. A due update whose fused graph was kept in memory is
recomputed after loading with the same call (same rows, same order), which gives the
same bits.

Loads are all-or-nothing: :func:`~streamrnn.learn._load.read_state` validates the whole
state into new objects, and only then are they swapped in. Files of version 1 (entering
states ``streams.enter_h`` / ``streams.enter_c``) still load.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from .._io import encode_key, read_state_file, write_state_file
from ._io import optimizer_to_tensors
from ._load import FORMAT, VERSION, read_state

__all__ = ["Checkpoint"]

_HEADER = ("config", "keys", "counts", "meta")


class Checkpoint:
    """``state_dict`` / ``load_state_dict`` / ``save`` / ``load`` of the learner's parts.

    Parameters
    ----------
    model, rows, updater, stepper
        The learner's parts it reads and replaces: the weights, the streams, the
        optimizer (``updater.optimizer``) and the stepper's per-push state.
    counts : dict
        The learner's counters (replaced in place).
    config : callable
        ``config()``: the learner's configuration, which a state must match.
    """

    def __init__(self, *, model, rows, updater, stepper, counts: dict, config) -> None:
        self.model, self.rows, self.updater, self.stepper = model, rows, updater, stepper
        self.counts, self.config = counts, config

    def state_dict(self) -> dict:
        """Weights, optimizer state, every stream's state and window, and the counters.

        Tensors are copies; the rest is JSON-able (str, int, float, None, lists, dicts).
        """
        rows = self.rows
        table = rows.table
        slots = sorted(table.slot_of.values())
        idx = torch.tensor(slots, dtype=torch.long, device=rows.device)
        tensors = {f"model.{k}": v.detach().clone() for k, v in self.model.state_dict().items()}
        opt_tensors, opt_meta = optimizer_to_tensors(self.updater.optimizer)
        tensors.update(opt_tensors)
        tensors.update(rows.live.select(idx).to_tensors("streams.live."))
        for part, ring in rows.enter.items():
            tensors[f"streams.enter.{part}"] = ring.index_select(2, idx)
        for name in ("xbuf", "ybuf"):
            tensors[f"streams.{name}"] = getattr(rows, name).index_select(0, idx)
        tensors["streams.tstat"] = torch.from_numpy(rows.tstat[slots])
        tensors["streams.count"] = torch.from_numpy(rows.count[slots].copy())
        tensors["streams.due"] = torch.from_numpy(rows.due[slots].astype(np.uint8))
        tensors["streams.last_used"] = torch.from_numpy(table.last_used[slots].copy())
        return {
            "format": FORMAT,
            "version": VERSION,
            "config": self.config(),
            "keys": [encode_key(table.key_of[s]) for s in slots],
            "counts": dict(self.counts),
            "meta": {
                "optimizer": opt_meta,
                "optimizer_steps": self.updater.version,
                "tick": table.tick,
                "last_loss": self.updater.last_loss,
            },
            "tensors": tensors,
        }

    def load_state_dict(self, state_dict: dict) -> None:
        """Replace weights, optimizer state, streams and counters with ``state_dict``'s
        (this version or version 1).

        Refuses (``ValueError`` naming the field; nothing changed) a state of another
        format, version, model, window configuration or optimizer type, and one with a
        malformed, missing, misshapen or non-finite field.
        """
        new = read_state(self, state_dict)
        # -- everything checked: now replace ------------------------------------------
        self.model.load_state_dict(new["weights"])
        self.updater.optimizer.load_state_dict(new["optimizer"])
        self.counts.clear()
        self.counts.update(new["counts"])
        self.rows.install(new["buffers"], new["keys"], new["last_used"], new["tick"])
        self.updater.version = new["optimizer_steps"]
        self.updater.last_loss = new["last_loss"]
        self.stepper.graph = None
        self.stepper.last_reset = []

    def save(self, path: str | os.PathLike) -> None:
        """Write :meth:`state_dict` to a safetensors file with a JSON header, atomically."""
        sd = self.state_dict()
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in sd["tensors"].items()}
        header = {k: sd[k] for k in _HEADER}
        write_state_file(path, tensors, kind=FORMAT, version=VERSION, header=header)

    def load(self, path: str | os.PathLike) -> None:
        """Read a file written by :meth:`save` (this version or version 1); refuses
        (``ValueError`` naming the file and the field; nothing changed) a truncated,
        foreign, unfitting or damaged one."""
        try:
            try:
                tensors, header = read_state_file(path, kind=FORMAT, version=VERSION)
                version = VERSION
            except ValueError as err:
                if "format version '1'" not in str(err):
                    raise
                # version 1 files were written before checksums (one recorded is verified)
                tensors, header = read_state_file(path, kind=FORMAT, version=1,
                                                  checksum=False)
                version = 1
        except RecursionError:
            raise ValueError(f"path {str(path)!r} has a damaged header (nested too "
                             "deeply)") from None
        if not isinstance(header, dict):
            raise ValueError(f"path {str(path)!r} has a damaged header: not a JSON object")
        for field in _HEADER:
            if field not in header:
                raise ValueError(f"path {str(path)!r} header lacks {field!r}")
        try:
            self.load_state_dict({**{k: header[k] for k in _HEADER}, "format": FORMAT,
                                  "version": version, "tensors": tensors})
        except ValueError as err:
            raise ValueError(f"path {str(path)!r}: {err}") from None
