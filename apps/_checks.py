"""Checks the applications share: a model configuration read from a file (private).

A file's header declares a model's sizes; building the model allocates them. Before
anything is built, :func:`check_model_config` bounds every size by the file's own
tensors and requires the configuration's parameter count to equal the element count
the file declares, so a forged header (``hidden_size = 8192`` in a 32 KB file,
``num_layers = 100000``) is a ``ValueError`` naming the file and the field, not gigabytes
and minutes.
"""

from __future__ import annotations

from streamrnn.cells.convgru import CONV_KEYS
from streamrnn.utils import FileHeader

__all__ = ["GATES", "check_conv_config", "check_model_config", "conv_numel", "recurrent_numel"]

#: Gate blocks per layer of the built-in cells (the weight rows are ``gates * hidden``).
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def _size(config: dict, key: str, where: str, limit: int, names: dict) -> int:
    value = config.get(key) if isinstance(config, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
        raise ValueError(f"{where}: model field {names.get(key, key)!r} must be an int in "
                         f"[1, {limit}] (the file's tensors hold {limit} values), got "
                         f"{value!r}")
    return value


def recurrent_numel(cell: str, n_in: int, hidden: int, layers: int, bias: bool, n_out: int,
                    head_bias: bool, tokens: int | None = None) -> int:
    """Parameters of ``RecurrentModel(cell(n_in, hidden, layers), Readout(hidden, n_out))``,
    plus an embedding of ``tokens`` ids when given.

    Examples
    --------
    >>> recurrent_numel("LSTM", 40, 128, 1, True, 11, True)  # 4*128*(40+128) + 8*128 + 11*129
    88459
    """
    gates = GATES[cell]
    total = 0
    for layer in range(layers):
        width = n_in if layer == 0 else hidden
        total += gates * hidden * (width + hidden) + (2 * gates * hidden if bias else 0)
    total += n_out * hidden + (n_out if head_bias else 0)
    return total + (tokens * n_in if tokens else 0)


def check_model_config(config, head: FileHeader, prefix: str = "",
                       names: dict | None = None) -> None:
    """Refuse a ``RecurrentModel(LSTM | GRU | RNN, Readout)`` configuration that does not
    fit the tensors ``head`` declares under ``prefix`` (sizes bounded first).

    ``ValueError`` naming the file and the field (as ``names`` spells it in the file, if
    it maps the configuration's key); nothing is allocated.
    """
    where, names = head.where, names or {}
    limit = max(head.numel(prefix), 1)
    if not isinstance(config, dict) or config.get("type") != "RecurrentModel":
        raise ValueError(f"{where}: the model header must describe a RecurrentModel, got "
                         f"{config!r}"[:300])
    cell, out = config.get("cell"), config.get("head")
    if not isinstance(cell, dict) or cell.get("type") not in GATES:
        raise ValueError(f"{where}: model field 'cell' must be an LSTM, GRU or RNN config")
    if not isinstance(out, dict) or out.get("type") != "Readout":
        raise ValueError(f"{where}: model field 'head' must be a Readout config")
    sizes = {k: _size(cell, k, where, limit, names)
             for k in ("input_size", "hidden_size", "num_layers")}
    n_out = _size(out, "output_size", where, limit, names)
    tokens = config.get("num_tokens")
    if tokens is not None:
        tokens = _size(config, "num_tokens", where, limit, names)
    bias, head_bias = cell.get("bias", True), out.get("bias", True)
    if not isinstance(bias, bool) or not isinstance(head_bias, bool):
        raise ValueError(f"{where}: model fields 'bias' must be bools")
    if out.get("input_size", sizes["hidden_size"]) != sizes["hidden_size"]:
        raise ValueError(f"{where}: model field 'head.input_size' must equal the cell's "
                         f"hidden_size {sizes['hidden_size']}, got {out.get('input_size')!r}")
    want = recurrent_numel(cell["type"], sizes["input_size"], sizes["hidden_size"],
                           sizes["num_layers"], bias, n_out, head_bias, tokens)
    have = head.numel(prefix)
    if want != have:
        raise ValueError(f"{where}: the model header and tensors must describe a "
                         f"RecurrentModel of the same size: the header declares {want} "
                         f"parameters ({cell['type']} {sizes}, {n_out} outputs), the "
                         f"tensors hold {have}")


def conv_numel(cell: dict, n_out: int) -> int:
    """Values of ``RecurrentModel(ConvGRU(**cell), Readout(hidden, n_out))``: the filters
    and their biases, the standardisation (2 F), the GRU and the readout.

    Examples
    --------
    >>> conv_numel({"input_size": 40, "hidden_size": 8, "channels": 2, "kernel_time": 3,
    ...             "kernel_bands": 5, "pool": 4}, 11)  # 32 + 80 + (672 + 48) + 99
    931
    """
    f, h, c = cell["input_size"], cell["hidden_size"], cell["channels"]
    front = c * cell["kernel_time"] * cell["kernel_bands"] + c + 2 * f
    gru = 3 * h * (c * (f // cell["pool"]) + h) + 6 * h
    return front + gru + n_out * h + n_out


def check_conv_config(model: dict, head: FileHeader) -> None:
    """Refuse a ``RecurrentModel(ConvGRU, Readout)`` configuration whose sizes the file's
    tensors cannot hold, or whose value count differs from theirs (``ValueError`` naming
    the file and the field; nothing is allocated)."""
    where, limit = head.where, max(head.numel(), 1)
    cell, out = model.get("cell"), model.get("head")
    if model.get("type") != "RecurrentModel" or model.get("num_tokens") is not None or \
            not isinstance(out, dict) or out.get("type") != "Readout" or \
            out.get("bias", True) is not True:
        raise ValueError(f"{where}: a ConvGRU model must be a RecurrentModel with a Readout "
                         f"head (with bias) and no tokens, got {model!r}"[:300])
    for key in ("input_size", "hidden_size", "num_layers", *CONV_KEYS):
        _size(cell, key, where, limit, {})
    _size(out, "output_size", where, limit, {})
    if out.get("input_size", cell["hidden_size"]) != cell["hidden_size"]:
        raise ValueError(f"{where}: model field 'head.input_size' must equal the cell's "
                         f"hidden_size {cell['hidden_size']}, got {out.get('input_size')!r}")
    if cell["num_layers"] != 1 or cell["kernel_bands"] % 2 == 0 or \
            cell["input_size"] % cell["pool"]:
        raise ValueError(f"{where}: a ConvGRU has 1 layer, odd kernel_bands and a pool that "
                         f"divides input_size, got {cell!r}"[:300])
    want, have = conv_numel(cell, out["output_size"]), head.numel()
    if want != have:
        raise ValueError(f"{where}: the model header and tensors must describe a "
                         f"RecurrentModel of the same size: the header declares {want} "
                         f"values (ConvGRU, {out['output_size']} outputs), the tensors hold "
                         f"{have}")
