"""Checkpoints of the online learner: everything needed to resume exactly (private).

A checkpoint holds the weights, the optimizer state, and per stream: the live state,
the ring of entering states, the window of the last k2 inputs, their targets and target
status, the step count and whether an update is due; plus the counters and the number
of optimizer steps taken. A due update whose fused graph was kept in memory is
recomputed after loading with the same call (same rows, same order), which gives the
same bits.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from .._io import check_config, decode_key, encode_key, read_state_file, write_state_file
from ..state import State
from ._io import optimizer_from_tensors, optimizer_to_tensors

__all__ = ["LearnerCheckpoint"]

_FORMAT = "streamrnn.OnlineLearner"
_VERSION = 1
_HEADER = ("config", "keys", "counts", "meta")


class LearnerCheckpoint:
    """``state_dict`` / ``load_state_dict`` / ``save`` / ``load`` of the learner."""

    def state_dict(self) -> dict:
        """Weights, optimizer state, every stream's state and window, and the counters.

        Tensors are copies; the rest is JSON-able (str, int, float, None, lists, dicts).
        """
        rows = self.rows
        slots = sorted(rows.slot_of.values())
        idx = torch.tensor(slots, dtype=torch.long, device=self._device)
        tensors = {f"model.{k}": v.detach().clone() for k, v in self.model.state_dict().items()}
        opt_tensors, opt_meta = optimizer_to_tensors(self.optimizer)
        tensors.update(opt_tensors)
        tensors.update(rows.live.select(idx).to_tensors("streams.live."))
        tensors["streams.enter_h"] = rows.enter_h.index_select(2, idx)
        if rows.enter_c is not None:
            tensors["streams.enter_c"] = rows.enter_c.index_select(2, idx)
        for name in ("xbuf", "ybuf"):
            tensors[f"streams.{name}"] = getattr(rows, name).index_select(0, idx)
        tensors["streams.tstat"] = torch.from_numpy(rows.tstat[slots])
        tensors["streams.count"] = torch.from_numpy(rows.count[slots].copy())
        tensors["streams.due"] = torch.from_numpy(rows.due[slots].astype(np.uint8))
        tensors["streams.last_used"] = torch.from_numpy(rows.last_used[slots].copy())
        return {
            "format": _FORMAT,
            "version": _VERSION,
            "config": self.config(),
            "keys": [encode_key(rows.key_of[s]) for s in slots],
            "counts": dict(self.counts),
            "meta": {
                "optimizer": opt_meta,
                "optimizer_steps": self._version,
                "tick": rows.tick,
                "last_loss": self.last_loss,
            },
            "tensors": tensors,
        }

    def _check_stream_tensors(self, tensors: dict, n: int) -> None:
        rows = self.rows
        probe = self.model.initial_state(n, device="cpu", dtype=self._dtype)
        want = {
            "streams.live.h": tuple(probe.h.shape),
            "streams.enter_h": (rows.ring, *probe.h.shape),
            "streams.xbuf": (n, self.k2, *rows.in_shape),
            "streams.ybuf": (n, self.k2, *rows.target_shape),
            "streams.tstat": (n, self.k2),
            "streams.count": (n,),
            "streams.due": (n,),
            "streams.last_used": (n,),
        }
        if probe.c is not None:
            want["streams.live.c"] = tuple(probe.c.shape)
            want["streams.enter_c"] = (rows.ring, *probe.c.shape)
        for name, shape in want.items():
            if name not in tensors:
                raise ValueError(f"state lacks tensor {name!r}")
            if tuple(tensors[name].shape) != shape:
                raise ValueError(f"state tensor {name!r} has shape "
                                 f"{tuple(tensors[name].shape)}, expected {shape}")

    def load_state_dict(self, state_dict: dict) -> None:
        """Replace weights, optimizer state, streams and counters with ``state_dict``'s.

        Refuses (``ValueError``, nothing changed) a state of another format, version,
        model, window configuration or optimizer type.
        """
        if state_dict.get("format") != _FORMAT or state_dict.get("version") != _VERSION:
            raise ValueError(
                f"state_dict must be a {_FORMAT} version {_VERSION} state, got "
                f"{state_dict.get('format')!r} version {state_dict.get('version')!r}"
            )
        check_config(state_dict["config"], self.config(), what="learner")
        tensors, meta = state_dict["tensors"], state_dict["meta"]
        keys = [decode_key(k) for k in state_dict["keys"]]
        if len(keys) > self.max_streams:
            raise ValueError(f"state holds {len(keys)} streams, max_streams is {self.max_streams}")
        self._check_stream_tensors(tensors, len(keys))
        weights = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        live = self.model.state_dict()
        if set(weights) != set(live) or any(weights[k].shape != live[k].shape for k in live):
            raise ValueError("state's model weights do not fit this model (names or shapes)")
        opt_state = optimizer_from_tensors(self.optimizer, tensors, meta["optimizer"])
        # -- everything checked: now replace ------------------------------------------
        self.model.load_state_dict(weights)
        self.optimizer.load_state_dict(opt_state)
        self.counts.clear()
        self.counts.update(state_dict["counts"])
        rows, n = self.rows, len(keys)
        rows.clear(max(min(self.max_streams, 16), n))
        if n:
            rows.slots_for(keys)  # slots 0 .. n-1, in the saved (slot) order
            idx = torch.arange(n, device=self._device)
            rows.live.scatter_(idx, State.from_tensors(tensors, "streams.live.").to(
                device=self._device, dtype=self._dtype))
            rows.enter_h[:, :, :n] = tensors["streams.enter_h"].to(self._device)
            if rows.enter_c is not None:
                rows.enter_c[:, :, :n] = tensors["streams.enter_c"].to(self._device)
            for name in ("xbuf", "ybuf"):
                getattr(rows, name)[:n] = tensors[f"streams.{name}"].to(self._device)
            rows.tstat[:n] = tensors["streams.tstat"].cpu().numpy()
            rows.count[:n] = tensors["streams.count"].numpy()
            rows.due[:n] = tensors["streams.due"].numpy().astype(bool)
            rows.last_used[:n] = tensors["streams.last_used"].numpy()
        rows.tick = int(meta["tick"])
        self._version = int(meta["optimizer_steps"])
        self.last_loss = meta["last_loss"]
        self._graph = None
        self.last_reset = []

    def save(self, path: str | os.PathLike) -> None:
        """Write :meth:`state_dict` to a safetensors file with a JSON header, atomically."""
        sd = self.state_dict()
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in sd["tensors"].items()}
        header = {k: sd[k] for k in _HEADER}
        write_state_file(path, tensors, kind=_FORMAT, version=_VERSION, header=header)

    def load(self, path: str | os.PathLike) -> None:
        """Read a file written by :meth:`save`; refuses a truncated, foreign or unfitting one."""
        # version 1 files were written before checksums: one recorded is verified
        tensors, header = read_state_file(path, kind=_FORMAT, version=_VERSION, checksum=False)
        for field in _HEADER:
            if field not in header:
                raise ValueError(f"path {str(path)!r} header lacks {field!r}")
        self.load_state_dict({"format": _FORMAT, "version": _VERSION, **header,
                              "tensors": tensors})
