"""Compiled forms of cells, registered by the cell's registered name.

The compiled engine steps a cell whose step is ``gi = W_ih x + b_ih``,
``gh = W_hh h + b_hh`` followed by a pointwise function of ``gi``, ``gh`` and the
entering state, with every state part ``(L, B, H)``: it computes the two products itself
and calls the cell's *compiled form* for the pointwise part. A cell whose registered name
(:func:`streamrnn.cells.cell_name`) has no compiled form, or whose configuration its form
declines, runs on the torch engine.

Adding a compiled form for a cell is one registration::

    register_compiled("mycell", CompiledForm(gates=3, acts=4, parts=("h",),
                                             step=my_step, backward=my_backward))

``step`` and ``backward`` are plain functions decorated with
``numba.extending.register_jitable`` (signatures in :mod:`._cells`); the engine builds and
caches its kernels around them. ``weights(cell)`` (default: the cell's wrapped
``nn.RNNBase`` as the built-in cells have it) gives each layer's
``(weight_ih, weight_hh, bias_ih, bias_hh)`` in torch's layout, or ``None`` to decline.

A cell whose input passes through a stateful map before its recurrent layers (a causal
convolution over the last frames, as :class:`streamrnn.ConvGRU` has) gives that
map as its form's ``front`` (a :class:`Front`, built from the cell's current weights)
and the layers as ``weights``: the engine maps each chunk through the front, then runs
the layers' kernels on the result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from ...cells.base import cell_name
from ...cells.classic import RecurrentLayer

__all__ = ["CompiledForm", "Front", "classic_weights", "compiled_form", "register_compiled"]


def classic_weights(cell) -> list[tuple] | None:
    """Each layer's ``(weight_ih, weight_hh, bias_ih, bias_hh)`` of a built-in cell.

    ``None`` (no compiled form) for a subclass that overrides ``forward`` (it must not
    be bypassed), or a bidirectional or projected torch module. Biases are ``None`` for
    ``bias=False``. (Dropout between layers while training runs on torch: the engine
    checks the mode at every call.)
    """
    if not isinstance(cell, RecurrentLayer) or any(
        getattr(type(cell), name) is not getattr(RecurrentLayer, name)
        for name in ("forward", "_chunk", "_one_step", "_fused")
    ):
        return None
    rnn = cell.rnn
    if rnn.bidirectional or getattr(rnn, "proj_size", 0) or not rnn.batch_first:
        return None
    layers = []
    for k in range(cell.num_layers):
        b_ih = getattr(rnn, f"bias_ih_l{k}", None) if rnn.bias else None
        b_hh = getattr(rnn, f"bias_hh_l{k}", None) if rnn.bias else None
        layers.append((getattr(rnn, f"weight_ih_l{k}"), getattr(rnn, f"weight_hh_l{k}"),
                       b_ih, b_hh))
    return layers


@dataclass(frozen=True)
class CompiledForm:
    """How the compiled engine steps one kind of cell.

    Parameters
    ----------
    gates : int
        G: rows of ``weight_ih`` / ``weight_hh`` per hidden unit (LSTM 4, GRU 3, RNN 1).
    acts : int
        A: values per hidden unit that ``step`` keeps for ``backward``.
    parts : tuple of str
        The state's parts, each ``(L, B, H)``, ``h`` first (it is the layer's output).
    step, backward : callable
        The pointwise forward and backward (``register_jitable`` functions; see
        :mod:`streamrnn.engines.compiled._cells`). ``backward`` may be ``None``: then the
        form serves inference only.
    weights : callable
        ``weights(cell)`` -> per layer ``(weight_ih, weight_hh, bias_ih, bias_hh)``
        tensors, or ``None`` when this cell's configuration has no compiled form.
    additive : bool
        ``step`` reads ``gi`` and ``gh`` only through their sum ``gi + gh`` (LSTM, RNN;
        not GRU, whose candidate reads ``gh`` alone). Then one step of many streams is one
        matrix product per layer, of the rows ``[x, h, 1]`` with the stacked
        ``[W_ih^T; W_hh^T; b_ih]``, and ``gh`` is ``b_hh``. Default ``False``: two products.
    front : callable or None
        ``front(cell)`` -> a :class:`Front` of the cell's current weights: a stateful map
        of each chunk's input before the first layer (a convolution over the last frames,
        say), whose state parts ``front_parts`` follow ``parts`` in the state. ``None``
        (default): the input enters the first layer as it is.
    front_parts : tuple of str
        The front's state parts, each ``(1, B, P)``.

    Threads
    -------
    Not changed after it is built: safe to read from several threads at once.

    Examples
    --------
    >>> import streamrnn
    >>> form = compiled_form(streamrnn.LSTM(3, 4))
    >>> form.gates, form.parts, form.step.__name__, form.additive
    (4, ('h', 'c'), 'lstm_step', True)
    >>> compiled_form(streamrnn.RNN(3, 4, nonlinearity="relu")).step.__name__
    'relu_step'
    """

    gates: int
    acts: int
    parts: tuple[str, ...]
    step: Callable
    backward: Callable | None = None
    weights: Callable = field(default=classic_weights)
    additive: bool = False
    front: Callable | None = None
    front_parts: tuple[str, ...] = ()

    @property
    def kernels(self) -> CompiledForm:
        """The form the inference kernels are built from: equal for cells that share a
        step, so that they share their compiled kernels."""
        return replace(self, backward=None, weights=classic_weights, front=None,
                       front_parts=())


class Front(Protocol):
    """A stateful map of a chunk's input before the first layer (:attr:`CompiledForm.front`).

    ``tensors`` are the model's tensors it was built from (the engine re-builds it when one
    of them changes). ``front(x, past)`` maps ``x`` ``(B, T, F)`` and the front's state of
    those streams, one ``(B, P)`` array per part of ``front_parts``, to the first layer's
    input ``(B, T, In)`` (contiguous) and the new state; it changes nothing itself (the
    engine writes the state once the chunk's kernel has accepted the input).
    """

    tensors: list

    def __call__(self, x: np.ndarray, past: tuple) -> tuple[np.ndarray, tuple]: ...


_FORMS: dict[str, Callable] = {}


def register_compiled(name: str, form) -> None:
    """Register the compiled form of the cell registered under ``name``.

    ``form`` is a :class:`CompiledForm`, or a callable ``form(cell)`` returning one (or
    ``None``) for cells whose form depends on their configuration.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a registered cell name, got {name!r}")
    if not (isinstance(form, CompiledForm) or callable(form)):
        raise ValueError(f"form must be a CompiledForm or a callable, got {form!r}")
    _FORMS[name] = form


def has_compiled_form(name: str, *, learning: bool = False) -> bool:
    """Whether a compiled form is registered for the cell name ``name`` (with
    ``learning``: one with a backward pass, that the river estimators can learn on).

    Examples
    --------
    >>> has_compiled_form("lstm"), has_compiled_form("mingru"), has_compiled_form("minlstm")
    (True, True, False)
    >>> has_compiled_form("mingru", learning=True)
    False
    """
    form = _FORMS.get(name)
    if form is None:
        return False
    return not learning or not isinstance(form, CompiledForm) or form.backward is not None


def compiled_form(cell) -> CompiledForm | None:
    """The compiled form of ``cell`` (looked up by its registered name), or ``None``."""
    form = _FORMS.get(cell_name(cell))
    if form is not None and not isinstance(form, CompiledForm):
        form = form(cell)
    return form


