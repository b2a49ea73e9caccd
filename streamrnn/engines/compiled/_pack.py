"""A model as the compiled engine sees it: its plan and its packed weights (private).

:func:`plan_for` reads a model into a :class:`Plan` (the cell's compiled form, each
layer's weights, the head, the embedding), or ``None`` when the compiled engine cannot
run it. :class:`Packed` keeps the weights in the kernels' layout, one flat array of the
model's dtype, with ``weight_ih`` and ``weight_hh`` transposed (their products are sums
of rows, :func:`._math.add_rows`):

    per layer   weight_ih^T (In, G*H), weight_hh^T (H, G*H), bias_ih (G*H), bias_hh (G*H)
    then        head weight^T (H, P), head bias (P), zero-padded to P = O rounded up to 8
                (whole vectors in the head's loop)

and ``meta`` (int64): ``L, H, In0, O, offset of each layer..., offset of the head``
(``O = 0``: no head). The embedding is read in place (its rows are what a step needs).

The copy follows the model: :meth:`Packed.current` re-packs when a parameter was
replaced (``load_state_dict(assign=True)``, ``module.weight = ...``) or the model moved
(``.to()``, ``.double()``: the storage of its first tensor changed), when a parameter was
changed in place by torch (every in-place torch op bumps the tensor's version counter:
optimizer steps, ``load_state_dict``, ``copy_``, ``nn.init``), after any step of a
``torch.optim`` optimizer with ``fused=True`` (its kernels bump no version: a global
step hook calls :func:`weights_changed` for those), or when :func:`weights_changed` was
called. Writes that bypass all of these (through ``.data`` or a numpy view of a
parameter, ``p.data = ...``, a fused kernel called outside an optimizer) are seen after
:func:`weights_changed`. The check runs at every step: ~1.4 us for ten parameters
(their versions, identities and the first one's storage; more in a live loop, whose
kernel calls evict the tensors' records from the caches: ~3 us between two chunks of a
2 x 128 LSTM).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from ...heads import Readout, RecurrentModel
from .forms import CompiledForm, compiled_form

__all__ = ["Packed", "Plan", "after_optimizer_step", "plan_for", "weights_changed"]

_EPOCH = [0]
_version = operator.attrgetter("_version")
_getitem = operator.getitem
_is = operator.is_
_data_ptr = Tensor.data_ptr


def weights_changed() -> None:
    """Tell every compiled engine to re-read its model's weights at its next step."""
    _EPOCH[0] += 1


def after_optimizer_step(optimizer, args, kwargs) -> None:  # noqa: ARG001 - hook signature
    """The global ``optimizer.step`` post-hook this module registers: a fused optimizer's
    kernels write the parameters without bumping their versions, so its steps call
    :func:`weights_changed`; other steps do nothing here."""
    if any(group.get("fused") for group in optimizer.param_groups):
        weights_changed()


register_optimizer_step_post_hook(after_optimizer_step)


@dataclass
class Plan:
    """What the compiled engine runs: the cell's form and the model's tensors."""

    cell: nn.Module
    form: CompiledForm
    layers: list  # per layer (w_ih, w_hh, b_ih | None, b_hh | None)
    head: tuple | None  # (weight (O, H), bias (O,) | None)
    embedding: Tensor | None  # (V, E)
    dtype: torch.dtype
    front: object = None  # the form's Front of the cell's current weights, if it has one

    @property
    def tensors(self) -> list[Tensor]:
        out = [t for layer in self.layers for t in layer if t is not None]
        if self.head is not None:
            out += [t for t in self.head if t is not None]
        if self.embedding is not None:
            out.append(self.embedding)
        return out + (list(self.front.tensors) if self.front is not None else [])


def plan_for(model) -> Plan | None:
    """The compiled engine's plan for ``model``, or ``None`` if it runs on torch."""
    head = embedding = None
    if type(model) is RecurrentModel:
        cell = model.cell
        if model.head is not None:
            lin = model.head.linear if type(model.head) is Readout else model.head
            if type(lin) is not nn.Linear:
                return None
            head = (lin.weight, lin.bias)
        if model.embedding is not None:
            emb = model.embedding
            if type(emb) is not nn.Embedding or emb.max_norm is not None:
                return None
            embedding = emb.weight
    else:
        cell = model
    form = compiled_form(cell)
    layers = None if form is None else form.weights(cell)
    if not layers:
        return None
    if form.front is not None and embedding is not None:
        return None
    front = None if form.front is None else form.front(cell)
    plan = Plan(cell, form, layers, head, embedding, layers[0][1].dtype, front)
    tensors = plan.tensors
    if plan.dtype not in (torch.float32, torch.float64) or any(
            t.dtype != plan.dtype or t.device.type != "cpu" for t in tensors):
        return None
    hid, gh = layers[0][1].shape[1], layers[0][1].shape[0]
    if gh != form.gates * hid or (head is not None and head[0].shape[1] != hid):
        return None
    return plan


class Packed:
    """The weights of ``model`` in the kernels' layout, re-packed when the model changes.

    Attributes ``weights`` (flat), ``meta`` (int64) and ``embedding`` (``(V, E)`` or
    ``(0, 0)``) are what the kernels take; read them after :meth:`current`.
    """

    def __init__(self, model, plan: Plan) -> None:
        self.model = model
        self.plan = plan
        self.hidden = plan.layers[0][1].shape[1]
        self.num_layers = len(plan.layers)
        self.output_size = plan.head[0].shape[0] if plan.head is not None else self.hidden
        self.np_dtype = np.float32 if plan.dtype == torch.float32 else np.float64
        self.embedding = np.zeros((0, 0), dtype=self.np_dtype)
        self._use(plan)
        self._pack()

    def _use(self, plan: Plan) -> None:
        self.plan = plan
        self._tensors = plan.tensors
        self._cell = plan.cell
        self._dropout = bool(getattr(plan.cell, "dropout", 0.0)) and len(plan.layers) > 1
        # where each tensor lives (module._parameters or _buffers, name): a replaced one
        # is noticed
        wanted = {id(t) for t in self._tensors}
        slots = [(d, n) for m in self.model.modules() for d in (m._parameters, m._buffers)
                 for n, t in d.items() if t is not None and id(t) in wanted]
        self._dicts, self._names = [d for d, _ in slots], [n for _, n in slots]

    def current(self) -> bool:
        """Re-pack if the model changed; ``False`` if it no longer fits this engine (moved
        to another device or dtype, dropout switched on, ...): run it on torch."""
        if self._dropout and self._cell.training:
            return False  # dropout between layers draws masks: torch's job
        # (this runs at every step: C-level maps, no Python loop; the versions first, the
        # change that happens most, then the epoch, the tensors' identities and storage)
        held = self._held
        if (tuple(map(_version, held)) == self._versions and _EPOCH[0] == self._epoch
                and all(map(_is, map(_getitem, self._dicts, self._names), held))
                and _data_ptr(held[0]) == self._data):
            return True
        fresh = plan_for(self.model)
        old = self.plan
        if fresh is None or fresh.form is not old.form or fresh.dtype != old.dtype or [
                tuple(t.shape) for t in fresh.tensors] != [tuple(t.shape) for t in old.tensors]:
            return False
        self._use(fresh)
        self._pack()
        return True

    def _pack(self) -> None:
        plan = self.plan
        hid, gh = self.hidden, plan.layers[0][1].shape[0]
        chunks, offsets, at = [], [], 0
        with torch.no_grad():
            for w_ih, w_hh, b_ih, b_hh in plan.layers:
                offsets.append(at)
                chunks += [w_ih.t(), w_hh.t()]
                chunks += [torch.zeros(gh, dtype=plan.dtype) if b is None else b
                           for b in (b_ih, b_hh)]
                at += (w_ih.shape[1] + hid + 2) * gh
            offsets.append(at)
            n_out = 0
            if plan.head is not None:
                w, b = plan.head
                n_out = w.shape[0]
                pad = -(-n_out // 8) * 8
                w_t = torch.zeros(hid, pad, dtype=plan.dtype)
                w_t[:, :n_out] = w.t()
                b_pad = torch.zeros(pad, dtype=plan.dtype)
                if b is not None:
                    b_pad[:n_out] = b
                chunks += [w_t, b_pad]
            flat = torch.cat([c.detach().reshape(-1) for c in chunks])
        self.weights = flat.numpy()
        in0 = plan.layers[0][0].shape[1]
        self.meta = np.array([len(plan.layers), hid, in0, n_out, *offsets], dtype=np.int64)
        if plan.embedding is not None:
            self.embedding = plan.embedding.detach().numpy()
        # what current() compares: the tensors packed, as their modules hold them now
        self._held = held = list(map(_getitem, self._dicts, self._names))
        self._versions = tuple(map(_version, held))
        self._epoch, self._data = _EPOCH[0], _data_ptr(held[0])
