"""The gated-linear-attention Triton kernel against the float64 recurrence, through Triton's interpreter."""

import pytest
import torch

from labs import _backend
from labs.recurrent import gated_linear_attention
from labs.recurrent.reference import gla_recurrent

triton_chunk = pytest.importorskip("labs.recurrent.triton_chunk")


def inputs(t, dk, dv, dtype=torch.float64, seed=0, b=1, h=2, strength=1.0):
    g = torch.Generator().manual_seed(seed)
    q, k = (torch.randn(b, h, t, dk, generator=g, dtype=torch.float64) for _ in range(2))
    v = torch.randn(b, h, t, dv, generator=g, dtype=torch.float64)
    log_decay = -strength * torch.rand(b, h, t, generator=g, dtype=torch.float64)
    return [x.to(dtype) for x in (q, k, v, log_decay)]


def loop_with_grads(q, k, v, log_decay, d_out):
    args = [x.detach().double().requires_grad_() for x in (q, k, v, log_decay)]
    out = gla_recurrent(*args)[0]
    return out, torch.autograd.grad(out, args, d_out.double())


@pytest.mark.parametrize("t", [1, 63, 65])
@pytest.mark.parametrize("dims", [(5, 3), (16, 20), (8, 80), (70, 5)])  # 80: two value blocks; 70: two q/k blocks
def test_kernel_forward_and_backward_match_the_loop(t, dims):
    q, k, v, log_decay = inputs(t, *dims)
    args = [x.clone().requires_grad_() for x in (q, k, v, log_decay)]
    ours = triton_chunk.gla_chunk_triton(*args, 16)
    d_out = torch.randn_like(ours)
    want, want_grads = loop_with_grads(q, k, v, log_decay, d_out)
    torch.testing.assert_close(ours, want, rtol=1e-10, atol=1e-10)
    for name, a, b in zip("q k v log_decay".split(), torch.autograd.grad(ours, args, d_out), want_grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=f"d{name}")


@pytest.mark.parametrize("t", [5, 20])  # one chunk; two chunks and a partial one
def test_kernel_gradcheck(t):
    args = [x.requires_grad_() for x in inputs(t, 3, 2, h=1)]
    assert torch.autograd.gradcheck(lambda *a: triton_chunk.gla_chunk_triton(*a, 16), args)


@pytest.mark.parametrize("t", [64, 40])  # whole chunks; a last chunk padded past T
def test_kernel_strong_decay_stays_finite_in_float32(t):
    """Per-step log-decays near -30: the running sum reaches far below -88, every exponent stays <= 0,
    padded steps included."""
    q, k, v, log_decay = inputs(t, 8, 8, dtype=torch.float32, strength=30.0)
    args = [x.clone().requires_grad_() for x in (q, k, v, log_decay)]
    out = triton_chunk.gla_chunk_triton(*args, 32)
    d_out = torch.randn_like(out)
    grads = torch.autograd.grad(out, args, d_out)
    want, want_grads = loop_with_grads(q, k, v, log_decay, d_out)
    assert torch.isfinite(out).all() and all(torch.isfinite(g).all() for g in grads)
    torch.testing.assert_close(out.double(), want, rtol=1e-4, atol=1e-4)
    for a, b in zip(grads, want_grads):
        torch.testing.assert_close(a.double(), b, rtol=1e-3, atol=1e-3)


def rel_rms(x, ref):
    return ((x.double() - ref.double()).norm() / ref.double().norm()).item()


@pytest.mark.parametrize("dtype, tol", [(torch.float16, 2e-3), (torch.bfloat16, 1.5e-2)])
def test_kernel_16_bit_inputs_to_16_bit_accuracy(dtype, tol):
    """16-bit operands and scores, fp32 accumulation and decays: within 16-bit rounding of float64."""
    q, k, v, log_decay = inputs(65, 8, 8, dtype=dtype)
    args = [x.clone().requires_grad_() for x in (q, k, v, log_decay)]
    out = triton_chunk.gla_chunk_triton(*args, 32)
    assert out.dtype == torch.float32
    d_out = torch.randn_like(out)
    want, want_grads = loop_with_grads(q, k, v, log_decay, d_out)
    assert rel_rms(out, want) < tol
    for ours, exact in zip(torch.autograd.grad(out, args, d_out), want_grads):
        assert ours.dtype == dtype
        assert rel_rms(ours, exact) < 4 * tol


def test_dispatch_takes_the_kernel_only_where_it_applies():
    q, k, v, log_decay = inputs(40, 8, 8, dtype=torch.float32)
    with _backend.record_launches((9, 0)) as launched:
        gated_linear_attention(q, k, v, log_decay, chunk_size=16)
    assert {launch.name for launch in launched} == {"_state_kernel", "_output_kernel"}, launched
    assert all(launch.kernel.fn.__module__ == "labs.recurrent.triton_chunk" for launch in launched)
    channel = log_decay[..., None].expand_as(q).contiguous()
    for kwargs in (dict(log_decay=channel), dict(return_state=True), dict(chunk_size=8), dict(method="recurrent")):
        args = dict(q=q, k=k, v=v, log_decay=log_decay, chunk_size=16) | kwargs
        with _backend.record_launches((9, 0)) as launched:
            gated_linear_attention(**args)
        assert not launched, kwargs
