"""The Triton chunk kernel against the torch chunk form, on the CPU through Triton's interpreter."""

import pytest
import torch

from labs.attention import linear_attention
from labs.attention.chunk import causal_chunk_numerator

triton_chunk = pytest.importorskip("labs.attention.triton_chunk")


def inputs(t, dk, dv, dtype=torch.float64, seed=0, b=1, h=2):
    g = torch.Generator().manual_seed(seed)
    fq = torch.rand(b, h, t, dk, generator=g, dtype=torch.float64).to(dtype)
    fk = torch.rand(b, h, t, dk, generator=g, dtype=torch.float64).to(dtype)
    v = torch.randn(b, h, t, dv, generator=g, dtype=torch.float64).to(dtype)
    return fq, fk, v


@pytest.mark.parametrize("t", [1, 63, 65])
@pytest.mark.parametrize("dims", [(5, 3), (16, 20), (8, 80), (70, 5)])  # 80: two value blocks; 70: two q/k blocks
def test_kernel_forward_and_backward_match_torch(t, dims):
    fq, fk, v = inputs(t, *dims)
    args = [x.clone().requires_grad_() for x in (fq, fk, v)]
    ours = triton_chunk.causal_chunk_numerator_triton(*args, 16)
    ref_args = [x.clone().requires_grad_() for x in (fq, fk, v)]
    ref = causal_chunk_numerator(*ref_args, 16)
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-10)
    d_out = torch.randn_like(ref)
    for a, b in zip(torch.autograd.grad(ours, args, d_out), torch.autograd.grad(ref, ref_args, d_out)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_kernel_gradcheck():
    fq, fk, v = (x.requires_grad_() for x in inputs(5, 4, 3, h=1))
    assert torch.autograd.gradcheck(lambda a, b, c: triton_chunk.causal_chunk_numerator_triton(a, b, c, 16), (fq, fk, v))


def rel_rms(x, ref):
    return ((x.double() - ref.double()).norm() / ref.double().norm()).item()


@pytest.mark.parametrize("dtype, tol", [(torch.float16, 1e-3), (torch.bfloat16, 8e-3)])
def test_kernel_16_bit_inputs_to_16_bit_accuracy(dtype, tol):
    """16-bit operands, fp32 accumulation, 16-bit scores before the second dot: the numerator (fp32)
    is within 16-bit rounding of the float64 result, forward and backward (relative RMS)."""
    fq, fk, v = inputs(65, 8, 8, dtype=dtype)
    args = [x.clone().requires_grad_() for x in (fq, fk, v)]
    out = triton_chunk.causal_chunk_numerator_triton(*args, 32)
    assert out.dtype == torch.float32
    ref_args = [x.double().requires_grad_() for x in (fq, fk, v)]
    ref = causal_chunk_numerator(*ref_args, 32)
    assert rel_rms(out, ref) < tol
    d_out = torch.randn_like(ref)
    for ours, exact in zip(torch.autograd.grad(out, args, d_out.float()), torch.autograd.grad(ref, ref_args, d_out)):
        assert ours.dtype == dtype
        assert rel_rms(ours, exact) < 4 * tol


@pytest.mark.parametrize("chunk", [16, 32, 64, 128])
def test_every_triton_chunk_size(chunk):
    fq, fk, v = inputs(chunk + 7, 6, 5)
    torch.testing.assert_close(triton_chunk.causal_chunk_numerator_triton(fq, fk, v, chunk),
                               causal_chunk_numerator(fq, fk, v, chunk), rtol=1e-10, atol=1e-10)


def test_kernel_non_contiguous_inputs():
    """(B, T, H, D) tensors seen as (B, H, T, D): non-contiguous inputs give the same result."""
    g = torch.Generator().manual_seed(1)
    fq, fk, v = (torch.rand(2, 40, 3, 8, generator=g, dtype=torch.float64).transpose(1, 2) for _ in range(3))
    torch.testing.assert_close(triton_chunk.causal_chunk_numerator_triton(fq, fk, v, 16),
                               causal_chunk_numerator(fq, fk, v, 16), rtol=1e-10, atol=1e-10)


def test_linear_attention_chunk_takes_the_kernel_when_interpreting(monkeypatch):
    calls = []
    real = triton_chunk.ChunkLinearAttention.apply
    monkeypatch.setattr(triton_chunk.ChunkLinearAttention, "apply", lambda *a: calls.append(1) or real(*a))
    fq, fk, v = inputs(20, 4, 4)
    out = linear_attention(fq, fk, v, causal=True, method="chunk", chunk_size=16)
    assert calls, "method='chunk' did not run the Triton kernel under TRITON_INTERPRET=1"
    torch.testing.assert_close(out, linear_attention(fq, fk, v, causal=True, method="quadratic"))
