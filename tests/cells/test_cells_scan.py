"""The parallel scan of ``h_t = a_t h_{t-1} + b_t`` equals the plain loop and the library's
``associative_scan`` (values and gradients), for any length and signs.

``streamrnn.cells._scan.linear_scan`` is hand-written for speed (a custom backward); the
plain loop and torch's ``associative_scan`` are its references.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from streamrnn.cells import _scan
from streamrnn.cells._scan import gate_terms, gated_scan, linear_scan

FAST = settings(max_examples=40, deadline=None)


def loop(a, b, h0):
    h, out = h0, []
    for t in range(a.shape[1]):
        h = a[:, t] * h + b[:, t]
        out.append(h)
    return torch.stack(out, 1) if out else b.clone()


def inputs(seed, steps, batch=2, hidden=3, zeros=False):
    gen = torch.Generator().manual_seed(seed)
    a = torch.rand(batch, steps, hidden, generator=gen, dtype=torch.float64) * 1.2
    if zeros:  # exact 0 and 1 coefficients (a forgotten state, a kept one)
        a = torch.where(a < 0.2, 0.0, torch.where(a > 1.0, 1.0, a))
    b = 3 * torch.randn(batch, steps, hidden, generator=gen, dtype=torch.float64)
    h0 = 3 * torch.randn(batch, hidden, generator=gen, dtype=torch.float64)
    return a, b, h0


@pytest.mark.parametrize("method", ["scan", "steps", "auto"])
@FAST
@given(steps=st.integers(0, 70), seed=st.integers(0, 2**16), zeros=st.booleans())
def test_values_and_gradients_equal_the_loop(method, steps, seed, zeros):
    a, b, h0 = (v.requires_grad_(True) for v in inputs(seed, steps, zeros=zeros))
    got, want = linear_scan(a, b, h0, method), loop(a, b, h0)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    if steps == 0:
        return
    w = torch.randn(got.shape, generator=torch.Generator().manual_seed(seed + 1),
                    dtype=torch.float64)
    g_got = torch.autograd.grad((got * w).sum(), (a, b, h0))
    g_want = torch.autograd.grad((want * w).sum(), (a, b, h0))
    for g, r in zip(g_got, g_want, strict=True):
        torch.testing.assert_close(g, r, rtol=0, atol=1e-11)


@pytest.mark.parametrize("method", ["scan", "steps"])
@pytest.mark.parametrize("steps", [2, 3, 5, 16, 17, 40])
def test_gradcheck(method, steps):
    a, b, h0 = (v.requires_grad_(True) for v in inputs(steps, steps))
    assert torch.autograd.gradcheck(lambda *v: linear_scan(*v, method), (a, b, h0))


def test_only_the_inputs_that_need_a_gradient_get_one():
    a, b, h0 = inputs(0, 9)
    b.requires_grad_(True)
    g = torch.autograd.grad(linear_scan(a, b, h0).sum(), b)[0]
    torch.testing.assert_close(g, torch.autograd.grad(loop(a, b, h0).sum(), b)[0],
                               rtol=0, atol=1e-12)


def test_equals_torch_associative_scan():
    scan = pytest.importorskip("torch._higher_order_ops.associative_scan").associative_scan

    def combine(x, y):  # (a1, b1) . (a2, b2) = (a1 a2, a2 b1 + b2)
        return x[0] * y[0], y[0] * x[1] + y[1]

    for steps in (1, 2, 7, 64, 129):
        a, b, h0 = inputs(steps, steps, batch=3, hidden=4)
        big_a, big_b = scan(combine, (a, b), dim=1, combine_mode="generic")
        for method in ("scan", "steps"):
            torch.testing.assert_close(linear_scan(a, b, h0, method),
                                       big_a * h0[:, None] + big_b, rtol=0, atol=1e-12)


def test_auto_picks_the_scan_for_small_steps_and_the_steps_for_large_ones(monkeypatch):
    calls = []
    for name in ("_odd_even", "_steps"):
        real = getattr(_scan, name)
        monkeypatch.setitem(_scan._METHODS, "scan" if name == "_odd_even" else "steps",
                            lambda a, b, real=real, name=name: calls.append(name) or real(a, b))
    linear_scan(*inputs(0, 5, batch=2, hidden=2047))
    linear_scan(*inputs(0, 5, batch=2, hidden=2048))
    assert calls == ["_odd_even", "_steps"]
    with pytest.raises(ValueError, match="method must be 'auto', 'scan' or 'steps', got 'x'"):
        linear_scan(*inputs(0, 5), "x")


def test_runs_under_inference_mode_and_keeps_the_input_dtype():
    a, b, h0 = (v.float() for v in inputs(1, 12))
    with torch.inference_mode():
        out = linear_scan(a, b, h0)
    assert out.dtype == torch.float32 and out.shape == (2, 12, 3)
    torch.testing.assert_close(out, loop(a, b, h0), rtol=0, atol=1e-5)


@pytest.mark.parametrize("method", ["scan", "steps"])
@FAST
@given(steps=st.integers(0, 40), seed=st.integers(0, 2**16))
def test_the_gated_scan_equals_its_terms_and_the_loop(method, steps, seed):
    """gated_scan's closed-form backward equals autograd through gate_terms and the loop
    (d and v of both signs, some v exactly 0: the kink of g)."""
    gen = torch.Generator().manual_seed(seed)
    d = 3 * torch.randn(2, steps, 4, generator=gen, dtype=torch.float64)
    v = 3 * torch.randn(2, steps, 4, generator=gen, dtype=torch.float64)
    v[:, ::3, 0] = 0.0
    h0 = 3 * torch.randn(2, 4, generator=gen, dtype=torch.float64)
    d, v, h0 = (t.requires_grad_(True) for t in (d, v, h0))
    got = gated_scan(d, v, h0, method)
    want = loop(*gate_terms(d, v), h0)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    if steps == 0:
        return
    w = torch.randn(got.shape, generator=gen, dtype=torch.float64)
    g_got = torch.autograd.grad((got * w).sum(), (d, v, h0))
    g_want = torch.autograd.grad((want * w).sum(), (d, v, h0))
    for g, r in zip(g_got, g_want, strict=True):
        torch.testing.assert_close(g, r, rtol=0, atol=1e-11)


@pytest.mark.parametrize("steps", [2, 9, 33])
def test_gated_scan_gradcheck(steps):
    gen = torch.Generator().manual_seed(steps)
    d, v = (torch.randn(2, steps, 3, generator=gen, dtype=torch.float64) for _ in range(2))
    h0 = torch.randn(2, 3, generator=gen, dtype=torch.float64)
    assert torch.autograd.gradcheck(gated_scan, tuple(t.requires_grad_(True) for t in (d, v, h0)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@FAST
@given(values=st.lists(st.floats(-1e30, 1e30, allow_subnormal=False), min_size=1,
                       max_size=50))
def test_the_fast_candidate_is_bitwise_the_papers_g(dtype, values):
    x = torch.tensor(values + [0.0, -0.0, 1e-45, -1e-45, 1e-7, -1e-7], dtype=dtype)
    x = torch.cat([x, torch.linspace(-30, 30, 10_001, dtype=dtype)])
    assert torch.equal(_scan._fast_candidate(x), _scan.candidate(x))
