"""Export forms of cells, registered by the cell's registered name.

:func:`~streamrnn.export.to_onnx` writes a cell through its *export form*: a function
that adds the ONNX nodes of one chunk to a :class:`~streamrnn.export.Graph`. A cell
whose registered name (:func:`streamrnn.cells.cell_name`) has no form cannot be
exported, and ``to_onnx`` says so, naming it. Adding a form for a cell is one
registration::

    register_export("mycell", my_form)

A form is called as ``form(g, cell, x, state, lengths) -> (y, new_state)``, with names
of values of the graph ``g``:

- ``x``: the chunk, time first, ``(T, B, F)`` in the cell's dtype, with ``T >= 1``
  (the caller turns an empty chunk into one step and discards what it did);
- ``state``: ``{part: name}``, each part ``(L, B, ...)`` as the cell's ``initial_state``
  makes it;
- ``lengths``: ``None`` (every step of every stream is real), or an int64 ``(B,)``
  value in ``[1, T]``: stream ``b``'s steps from ``lengths[b]`` on are padding, which
  must not change its state (its outputs there are discarded);
- returns ``y`` ``(T, B, O)`` and ``{part: name}`` of the state after the chunk.

Most cells write their step alone and let :func:`scan_form` loop it over time in an ONNX
``Scan`` (which also honours ``lengths``)::

    def my_step(g, cell, x, state):      # x (B, F); state {part: (L, B, ...)}
        ...                              # g.op("MatMul", ...), g.const(weights), ...
        return y, new_state              # y (B, O)

    register_export("mycell", scan_form(my_step))

The built-in cells' forms (``"rnn"``, ``"lstm"``, ``"gru"``) use onnxruntime's fused
``RNN`` / ``LSTM`` / ``GRU`` kernels in float32 and :func:`scan_form` of their equations
in float64 (the fused kernels run float32 only).
"""

from __future__ import annotations

from collections.abc import Callable

from ..cells.base import cell_name

__all__ = ["ExportForm", "export_form", "register_export", "registered_exports", "scan_form"]

#: ``form(g, cell, x, state, lengths) -> (y, new_state)`` (see the module docstring).
ExportForm = Callable

_FORMS: dict[str, ExportForm] = {}


def register_export(name: str, form: ExportForm) -> None:
    """Register ``form`` as the export form of the cells registered under ``name``.

    Examples
    --------
    >>> import streamrnn
    >>> from streamrnn.export import export_form, register_export
    >>> export_form(streamrnn.LSTM(2, 3)) is not None
    True
    >>> register_export("lstm", lambda *a: None)
    Traceback (most recent call last):
    ...
    ValueError: cell name 'lstm' already has an export form
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name must be a cell's registered name, got {name!r}")
    if not callable(form):
        raise ValueError(f"form must be callable, got {type(form).__name__}")
    if name in _FORMS and _FORMS[name] is not form:
        raise ValueError(f"cell name {name!r} already has an export form")
    _FORMS[name] = form


def export_form(cell) -> ExportForm | None:
    """The export form of ``cell`` (by its registered name), or ``None``."""
    return _FORMS.get(cell_name(cell))


def registered_exports() -> tuple[str, ...]:
    """The cell names that have an export form, sorted."""
    return tuple(sorted(_FORMS))


def scan_form(step: Callable) -> ExportForm:
    """An export form that runs ``step(g, cell, x, state) -> (y, new_state)`` (one step:
    ``x`` ``(B, F)``, ``y`` ``(B, O)``, state parts ``(L, B, ...)``) over the chunk's
    steps in an ONNX ``Scan``; padding steps (``lengths``) keep the state.

    Shape
    -----
    step: x ``(B, F)`` -> y ``(B, O)``; the form: x ``(T, B, F)`` -> y ``(T, B, O)``.
    """
    from ._scan import scan_chunk

    def form(g, cell, x, state, lengths):
        return scan_chunk(g, cell, step, x, state, lengths)

    form.step = step
    return form
