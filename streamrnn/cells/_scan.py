"""The diagonal linear recurrence ``h_t = a_t * h_{t-1} + b_t`` over a chunk (private).

:class:`~streamrnn.MinGRU` and :class:`~streamrnn.MinLSTM` (Feng et al. 2024, "Were RNNs
All We Needed?", arXiv:2410.01201) reduce a layer to this recurrence, with ``a_t`` and
``b_t`` computed from the input alone (:func:`gated_scan`: the gates and the recurrence
in one autograd node); ``_scancell.ScanCell`` is their shared stack of layers.

How a chunk runs
----------------
:func:`linear_scan` is one autograd node per layer and chunk, in linear space, from an
entering state ``h_0`` of any sign; its backward is the same recurrence time-reversed
(``g_t = dL/dh_t + a_{t+1} g_{t+1}``), not autograd through T steps. Inside, one of:

- the work-efficient odd/even parallel scan (Blelloch 1990; the algorithm of
  ``torch._higher_order_ops.associative_scan(combine_mode="generic")``) on the pairs
  ``(a, b)``, ``(a1, b1) . (a2, b2) = (a1 a2, a2 b1 + b2)``: O(log T) rounds of
  vectorised ops, which wins while a step is small (dispatch-bound);
- the T steps one after another, in place: on a CPU core the scan moves about twice
  the memory of the plain recurrence, so from :data:`SCAN_BELOW` elements per step
  (B * H) up the steps are faster.

Measured on this 2-core CPU, one thread, forward + backward of the recurrence alone
(``benchmarks/bench_cells.py --parts scan``, B, T, H = 20, 35, 475 / 1, 256, 64 /
1, 1024, 128, this module's pick in each case against):

- the paper's log-space scan (Heinsen 2023: ``cumsum`` + ``logcumsumexp``): 120 / 3.1 /
  56 ms against 2.1 / 0.85 / 2.4 ms (``logcumsumexp`` dominates on the CPU); and it
  loses precision with the chunk's length: ``a*_t + logcumsumexp(...)`` cancels two
  terms of size ``|sum log a|``, so in float32 its error against the step-by-step
  recurrence is 6e-6 to 1.5e-5 at T = 35, 5e-5 at T = 256 and 9e-4 at T = 4096: it
  cannot keep chunked == whole == step to 1e-5. Linear space does not drift (float32
  error 4e-7 to 6e-7 at any of these lengths);
- ``torch.associative_scan`` (generic mode, eager; a prototype API with autograd only in
  recent torch): exact, 26 / 12 / 21 ms, as autograd through its recursion;
- autograd through a plain loop of the steps: 29 / 24 / 319 ms.

The library call stays the reference: the tests compare :func:`linear_scan` (both ways)
with ``associative_scan`` and with a plain loop, values and gradients.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["candidate", "gate_terms", "gated_scan", "linear_scan"]


def candidate(x: Tensor) -> Tensor:
    """The paper's positive candidate activation ``g`` (Feng et al. 2024, Appendix B.3):
    ``x + 0.5`` for ``x >= 0``, ``sigmoid(x)`` below; continuous, increasing, > 0."""
    return torch.where(x >= 0, x + 0.5, torch.sigmoid(x))


def gate_terms(d: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """``(a, b) = (sigmoid(-d), sigmoid(d) * g(v))``: the coefficients of the gated
    recurrence, as every path (step, chunk, backward) computes them."""
    return torch.sigmoid(-d), torch.sigmoid(d) * candidate(v)


# Below this many elements per step (B * H) the odd/even scan runs, at or above it the
# steps run one after another (in place, inside the same autograd node). Measured with 1
# thread (bench_cells.py --parts scan), forward + backward, scan vs steps: B, T, H =
# 32, 64, 64: 1.6 vs 5.5 ms; 1, 256, 64: 0.85 vs 7.7 ms; 64, 16, 128: 1.3 vs 0.84 ms;
# 20, 35, 475: 8.3 vs 2.1 ms (the scan moves about twice the memory, and flips in time).
SCAN_BELOW = 4096
_BASE = 8  # the recursion's sub-chunks of at most this many steps run step by step


# Both take b as a tensor of their own (they overwrite it).
def _steps(a: Tensor, b: Tensor) -> Tensor:
    # h_t = a_t h_{t-1} + b_t from h_{-1} = 0 (a_0 is not used), step by step, in place.
    for t in range(1, b.shape[1]):
        b[:, t].addcmul_(a[:, t], b[:, t - 1])
    return b


def _reverse(a: Tensor, g: Tensor, method: str) -> Tensor:
    # The backward recurrence g_t = g_t + a_{t+1} g_{t+1}, in place on g (a tensor of our
    # own): step by step from the end, or the forward method on time-flipped tensors.
    if _pick(g, method) == "steps":
        for t in range(g.shape[1] - 2, -1, -1):
            g[:, t].addcmul_(a[:, t + 1], g[:, t + 1])
        return g
    shifted = torch.cat([a[:, :1], a[:, 1:].flip(1)], 1)  # its first entry is unused
    return _odd_even(shifted, g.flip(1)).flip(1)


def _odd_even(a: Tensor, b: Tensor) -> Tensor:
    # The same, by the work-efficient scan: pair neighbours (2i, 2i+1), scan the pairs
    # (the prefixes ending at odd steps), then fill in the even steps.
    steps = b.shape[1]
    if steps <= _BASE:
        return _steps(a, b)
    a0, a1 = a[:, 0 : steps - 1 : 2], a[:, 1::2]
    odd = _odd_even(a0 * a1, torch.addcmul(b[:, 1::2], a1, b[:, 0 : steps - 1 : 2]))
    out = torch.empty_like(b)
    out[:, 1::2] = odd
    out[:, 0] = b[:, 0]
    torch.addcmul(b[:, 2::2], a[:, 2::2], odd[:, : (steps - 1) // 2], out=out[:, 2::2])
    return out


_METHODS = {"scan": _odd_even, "steps": _steps}


def _pick(b: Tensor, method: str) -> str:
    if method == "auto":
        return "scan" if b.shape[0] * b.shape[2] < SCAN_BELOW else "steps"
    return method


def _prefix(a: Tensor, b: Tensor, method: str) -> Tensor:
    return _METHODS[_pick(b, method)](a, b)


class _LinearScan(torch.autograd.Function):
    @staticmethod
    def forward(a: Tensor, b: Tensor, h0: Tensor, method: str) -> Tensor:
        # Fold the entering state into the first step, then run from zero.
        h = b.clone()
        h[:, 0].addcmul_(a[:, 0], h0)
        return _prefix(a, h, method)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        a, _, h0, ctx.method = inputs
        ctx.save_for_backward(a, h0, output)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        a, h0, h = ctx.saved_tensors
        g = _reverse(a, grad.clone(), ctx.method)  # dL/dh_t, all paths
        da = g * torch.cat([h0.unsqueeze(1), h[:, :-1]], 1) if ctx.needs_input_grad[0] else None
        dh0 = a[:, 0] * g[:, 0] if ctx.needs_input_grad[2] else None
        return da, g, dh0, None


def linear_scan(a: Tensor, b: Tensor, h0: Tensor, method: str = "auto") -> Tensor:
    """Every ``h_t = a_t * h_{t-1} + b_t`` of a chunk, from ``h0``, as one autograd node.

    Elementwise (diagonal) coefficients; ``h0`` and ``b`` may have any sign. ``method``:
    ``"scan"`` (the odd/even parallel scan), ``"steps"`` (the recurrence step by step,
    in place) or ``"auto"`` (the scan below :data:`SCAN_BELOW` elements per step, where
    it is faster). The backward is the reverse recurrence by the same method. One step
    (T = 1) is the recurrence itself; T = 0 gives an empty result.

    Shape
    -----
    a, b: ``(B, T, H)``, h0: ``(B, H)`` -> ``(B, T, H)``.

    Examples
    --------
    >>> import torch
    >>> a = torch.tensor([[[0.5], [0.5], [1.0]]])
    >>> b = torch.tensor([[[1.0], [-2.0], [3.0]]])
    >>> linear_scan(a, b, torch.tensor([[-4.0]]))[0, :, 0]  # -1, -2.5, 0.5
    tensor([-1.0000, -2.5000,  0.5000])
    """
    if method not in ("auto", *_METHODS):
        raise ValueError(f"method must be 'auto', 'scan' or 'steps', got {method!r}")
    if a.shape[1] == 1:
        return torch.addcmul(b, a, h0.unsqueeze(1))
    if a.shape[1] == 0:
        return b.clone()
    return _LinearScan.apply(a, b, h0, method)


def _fast_candidate(v: Tensor) -> Tensor:
    # candidate(v) without torch.where (20x slower than other elementwise ops on this
    # CPU build): v + 0.5 >= sigmoid(v) exactly when v >= 0, so the larger of the two is
    # g(v); the values are bitwise those of candidate (tested).
    return torch.maximum(v + 0.5, torch.sigmoid(v))


class _GatedScan(torch.autograd.Function):
    # h_t = sigmoid(-d_t) h_{t-1} + sigmoid(d_t) g(v_t): the coefficients and the scan in
    # one node, with the gradients of d and v in closed form (not autograd through the
    # half-dozen elementwise ops of the gates, which cost more than the scan itself).
    @staticmethod
    def forward(ctx, d: Tensor, v: Tensor, h0: Tensor, method: str) -> Tensor:
        a, s, gv = torch.sigmoid(-d), torch.sigmoid(d), _fast_candidate(v)
        h = s * gv
        h[:, 0].addcmul_(a[:, 0], h0)
        h = _prefix(a, h, method)
        ctx.method = method
        ctx.save_for_backward(a, s, gv, v, h0, h)
        return h

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):
        a, s, gv, v, h0, h = ctx.saved_tensors
        g = _reverse(a, grad.clone(), ctx.method)  # dL/dh_t, all paths
        gs = g * s
        # d a / d d = -a s, d s / d d = a s  =>  dL/dd = a s g (g(v) - h_{t-1})
        diff = gv.clone()
        diff[:, 0] -= h0
        diff[:, 1:] -= h[:, :-1]
        dd = diff.mul_(a).mul_(gs)
        # g'(v) = 1 for v >= 0, sigmoid'(v) = g(v) (1 - g(v)) < 1/4 below
        step = v.sign().add_(1).clamp_(max=1)
        dv = torch.maximum(step, gv - gv * gv).mul_(gs)
        dh0 = a[:, 0] * g[:, 0] if ctx.needs_input_grad[2] else None
        return dd, dv, dh0, None


def gated_scan(d: Tensor, v: Tensor, h0: Tensor, method: str = "auto") -> Tensor:
    """Every ``h_t = sigmoid(-d_t) h_{t-1} + sigmoid(d_t) g(v_t)`` of a chunk, from ``h0``.

    The recurrence of minGRU (``d`` the update gate's logit) and minLSTM (``d = log i -
    log f``), as one autograd node with a closed-form backward; the values are those of
    :func:`gate_terms` then :func:`linear_scan` (``method`` as there).

    Shape
    -----
    d, v: ``(B, T, H)``, h0: ``(B, H)`` -> ``(B, T, H)``.

    Examples
    --------
    >>> import torch
    >>> d, v = torch.tensor([[[0.0], [2.0]]]), torch.tensor([[[1.0], [-1.0]]])
    >>> h = gated_scan(d, v, torch.tensor([[-1.0]]))
    >>> a, b = gate_terms(d, v)
    >>> torch.allclose(h, linear_scan(a, b, torch.tensor([[-1.0]]))), h[0, 0, 0].item()
    (True, 0.25)
    """
    if method not in ("auto", *_METHODS):
        raise ValueError(f"method must be 'auto', 'scan' or 'steps', got {method!r}")
    if d.shape[1] == 1:
        a, b = gate_terms(d, v)
        return torch.addcmul(b, a, h0.unsqueeze(1))
    if d.shape[1] == 0:
        return torch.zeros_like(v)
    return _GatedScan.apply(d, v, h0, method)
