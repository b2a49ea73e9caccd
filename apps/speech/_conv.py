"""A causal convolution front before a GRU: the recogniser's ``ConvGRU`` cell (private).

Each step, ``C`` filters of ``kernel_time`` frames x ``kernel_bands`` mel bands look at
the standardised log-mel of this frame and the ``kernel_time - 1`` before it (causal in
time, zero-padded at the band edges), a ReLU, then the largest of each ``pool`` adjacent
bands: a detector that fires wherever on the mel axis its pattern sits, so a formant moved
by another speaker's vocal tract still fires it. The ``C * n_mels / pool`` values feed a
GRU. The state is the GRU's ``h`` and the last ``kernel_time - 1`` standardised frames
(``frames``), so a stream pushed in any chunks gets the outputs of one pass.

The cell is registered as ``"convgru"``; its export form (:func:`conv_form`) writes the
front as ONNX ``Conv`` / ``Relu`` / ``MaxPool`` nodes before the GRU's own form. It has no
compiled form (the compiled engine steps cells whose input enters through one product),
so :class:`~streamrnn.Stream` and :class:`~streamrnn.StreamBank` run it on torch.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from streamrnn import GRU, State
from streamrnn.cells import Cell, register
from streamrnn.cells.base import uniform_
from streamrnn.export import Graph, export_form, register_export
from streamrnn.utils import FileHeader, check_positive_int

__all__ = ["ConvGRU", "check_conv_config", "conv_form", "conv_matrix", "conv_numel"]

#: The configuration keys of a ConvGRU beyond a cell's ``input_size`` / ``hidden_size``.
CONV_KEYS = ("channels", "kernel_time", "kernel_bands", "pool")


@register("convgru")
class ConvGRU(Cell):
    """Causal conv over (time, mel band), max-pool over bands, then a GRU.

    Parameters
    ----------
    input_size : int
        Mel bands per frame (F).
    hidden_size : int
        GRU units (H).
    num_layers : int
        Must be 1 (one conv front, one GRU).
    channels : int
        Filters (C).
    kernel_time, kernel_bands : int
        The filters' extent in frames and in bands (``kernel_bands`` odd).
    pool : int
        Bands per max-pool (``input_size`` divisible by it).
    seed : int or None
        Seeds a local generator for the initial weights (torch's defaults' ranges).

    Shape
    -----
    x: ``(B, T, F)`` raw log-mel -> y: ``(B, T, H)``; state ``h``: ``(1, B, H)``,
    ``frames``: ``(1, B, (kernel_time - 1) * F)``.

    Threads
    -------
    As a torch module: ``forward`` keeps nothing between calls; changing the weights while
    another thread runs it is not safe.

    Examples
    --------
    >>> cell = ConvGRU(8, 5, channels=3, seed=0)
    >>> x = torch.randn(2, 7, 8)
    >>> y, s = cell(x)
    >>> y.shape, s.h.shape, s.frames.shape
    (torch.Size([2, 7, 5]), torch.Size([1, 2, 5]), torch.Size([1, 2, 16]))
    >>> y1, s1 = cell(x[:, :3])
    >>> y2, s2 = cell(x[:, 3:], s1)
    >>> bool(torch.allclose(torch.cat([y1, y2], 1), y, atol=1e-6))
    True
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, *,
                 channels: int = 16, kernel_time: int = 3, kernel_bands: int = 5,
                 pool: int = 2, seed: int | None = None) -> None:
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size),
                            ("channels", channels), ("kernel_time", kernel_time),
                            ("kernel_bands", kernel_bands), ("pool", pool)):
            check_positive_int(name, value)
        if num_layers != 1:
            raise ValueError(f"num_layers must be 1 (one conv front, one GRU), got {num_layers}")
        if kernel_bands % 2 == 0:
            raise ValueError(f"kernel_bands must be odd (centred on a band), got {kernel_bands}")
        if input_size % pool:
            raise ValueError(f"input_size = {input_size} must be a multiple of pool, got {pool}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, 1
        self.channels, self.kernel_time, self.kernel_bands = channels, kernel_time, kernel_bands
        self.pool = pool
        gen = None if seed is None else torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(1, channels, (kernel_time, kernel_bands),
                              padding=(0, kernel_bands // 2))
        uniform_(self.conv.parameters(), 1.0 / math.sqrt(kernel_time * kernel_bands), gen)
        self.gru = GRU(channels * (input_size // pool), hidden_size,
                       seed=None if seed is None else seed + 1)
        # the standardisation of the log-mel (set after training: train_digits.fold_front)
        self.register_buffer("mean", torch.zeros(input_size))
        self.register_buffer("std", torch.ones(input_size))

    def initial_state(self, batch_size: int, *, device=None, dtype=None) -> State:
        dtype = self.mean.dtype if dtype is None else dtype
        h = torch.zeros(1, batch_size, self.hidden_size, device=device, dtype=dtype)
        lead = (self.kernel_time - 1) * self.input_size
        return State(h=h, frames=torch.zeros(1, batch_size, lead, device=device, dtype=dtype))

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        b, t, f = x.shape
        s = self.initial_state(b, device=x.device, dtype=x.dtype) if state is None else state
        if t == 0:
            return x.new_zeros(b, 0, self.hidden_size), s
        past = s.frames[0].reshape(b, self.kernel_time - 1, f)
        full = torch.cat([past, (x - self.mean) / self.std], 1)  # (B, K - 1 + T, F)
        z = torch.relu(self.conv(full.unsqueeze(1)))  # (B, C, T, F)
        z = z.reshape(b, self.channels, t, f // self.pool, self.pool).amax(-1)
        y, g = self.gru(z.permute(0, 2, 1, 3).reshape(b, t, -1), State(h=s.h))
        frames = full[:, full.shape[1] - (self.kernel_time - 1):].reshape(1, b, -1)
        return y, State(h=g.h, frames=frames)

    def config(self) -> dict:
        return {**super().config(), **{k: getattr(self, k) for k in CONV_KEYS}}


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
    fields = [(cell, key) for key in ("input_size", "hidden_size", "num_layers", *CONV_KEYS)]
    for config, key in [*fields, (out, "output_size")]:
        value = config.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= limit:
            raise ValueError(f"{where}: model field {key!r} must be an int in [1, {limit}] "
                             f"(the file's tensors hold {limit} values), got {value!r}")
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


def _np(t: Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def conv_matrix(cell: ConvGRU) -> tuple[np.ndarray, np.ndarray]:
    """The filters as one matrix on a window of ``kernel_time`` frames, and its bias.

    Column ``j * C * F / pool + c * F / pool + o`` is filter ``c`` at band
    ``o * pool + j`` (zero where the filter overhangs the band edges), so the max-pool is
    an elementwise maximum of ``pool`` contiguous column blocks.

    Shape
    -----
    ``(kernel_time * F, C * F)`` and ``(C * F,)``, in the cell's dtype.

    Examples
    --------
    >>> cell = ConvGRU(4, 2, channels=1, kernel_time=1, kernel_bands=3, pool=2, seed=0)
    >>> with torch.no_grad():
    ...     _ = cell.conv.weight.copy_(torch.tensor([[[[1.0, 2.0, 3.0]]]]))
    >>> conv_matrix(cell)[0]  # rows: input bands; columns: output bands 0, 2 then 1, 3
    array([[2., 0., 1., 0.],
           [3., 1., 2., 0.],
           [0., 2., 3., 1.],
           [0., 3., 0., 2.]], dtype=float32)
    """
    w = _np(cell.conv.weight)[:, 0]  # (C, K, kernel_bands)
    c, k, kb = w.shape
    f, p = cell.input_size, cell.pool
    fo = f // p
    out = np.zeros((k, f, p, c, fo), w.dtype)
    for j in range(p):
        for o in range(fo):
            band = o * p + j
            for d in range(kb):
                src = band + d - kb // 2
                if 0 <= src < f:
                    out[:, src, j, :, o] = w[:, :, d].T
    bias = np.tile(np.repeat(_np(cell.conv.bias), fo), p)
    return out.reshape(k * f, p * c * fo), bias


def conv_form(g: Graph, cell: ConvGRU, x: str, state: dict, lengths: str | None):
    """The export form of :class:`ConvGRU`: standardise, prepend the carried frames, gather
    each step's window, one ``MatMul`` by :func:`conv_matrix`, ``Relu``, the ``Max`` of the
    pooled bands, then the GRU's own export form (``Conv`` is not used: onnxruntime has no
    float64 kernel for it). With ``lengths``, stream ``b`` carries the frames before its
    step ``lengths[b]`` (``GatherElements``).

    Shape
    -----
    x: ``(T, B, F)`` -> y ``(T, B, H)``; state ``h`` ``(1, B, H)``, ``frames``
    ``(1, B, (kernel_time - 1) F)``.
    """
    f, k = cell.input_size, cell.kernel_time
    lead = k - 1
    full = g.op("Div", g.op("Sub", x, g.const(_np(cell.mean))), g.const(_np(cell.std)))
    if lead:  # (K - 1 + T, B, F)
        past = g.op("Reshape", state["frames"], g.ints(-1, lead, f))  # (B, K - 1, F)
        full = g.op("Concat", g.op("Transpose", past, perm=[1, 0, 2]), full, axis=0)
    steps = g.op("Range", g.const(np.array(0, np.int64)),
                 g.op("Squeeze", g.op("Shape", x, start=0, end=1), g.ints(0)),
                 g.const(np.array(1, np.int64)))
    at = g.op("Add", g.op("Unsqueeze", steps, g.ints(1)),
              g.const(np.arange(k, dtype=np.int64)[None]))  # (T, K): step t's frames
    window = g.op("Transpose", g.op("Gather", full, at, axis=0), perm=[0, 2, 1, 3])
    w, b = conv_matrix(cell)
    z = g.op("Relu", g.op("Add", g.op("MatMul", g.op("Reshape", window, g.ints(0, 0, -1)),
                                      g.const(w)), g.const(b)))  # (T, B, pool * C * F / p)
    if cell.pool > 1:
        width = w.shape[1] // cell.pool
        z = g.op("Max", *g.op("Split", z, g.ints(*[width] * cell.pool), axis=2,
                              n_out=cell.pool))
    y, new = export_form(cell.gru)(g, cell.gru, z, {"h": state["h"]}, lengths)
    if not lead:
        return y, {"h": new["h"], "frames": state["frames"]}
    if lengths is None:
        frames = g.op("Transpose", g.op("Slice", full, g.ints(-lead), g.ints(2**62), g.ints(0)),
                      perm=[1, 0, 2])  # (B, K - 1, F)
    else:  # stream b's last frames: full[lengths[b] : lengths[b] + K - 1, b]
        rows = g.op("Transpose", full, perm=[1, 0, 2])  # (B, K - 1 + T, F)
        at = g.op("Add", g.op("Unsqueeze", lengths, g.ints(1)),
                  g.const(np.arange(lead, dtype=np.int64)[None]))  # (B, K - 1)
        at = g.op("Expand", g.op("Unsqueeze", at, g.ints(2)),
                  g.op("Shape", g.op("Slice", rows, g.ints(0), g.ints(lead), g.ints(1))))
        frames = g.op("GatherElements", rows, at, axis=1)
    return y, {"h": new["h"], "frames": g.op("Reshape", frames, g.ints(1, -1, lead * f))}


register_export("convgru", conv_form)
