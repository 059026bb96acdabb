"""The gated-linear-attention Triton kernel against the float64 recurrence, through Triton's interpreter."""

import pytest
import torch

from labs import _backend
from labs.recurrent import gated_linear_attention
from labs.recurrent.reference import gla_recurrent
from tests.gla_inputs import gla_draws

triton_chunk = pytest.importorskip("labs.recurrent.triton_chunk")


def inputs(t, dk, dv, dtype=torch.float64, seed=0, b=1, h=2, strength=1.0, channel=False):
    """q, k, v and a log-decay in [-strength, 0]: (B, H, T), or (B, H, T, K) when ``channel``."""
    q, k, v, u = gla_draws(b, h, t, dk, dv, torch.Generator().manual_seed(seed), channel)
    return [x.to(dtype) for x in (q, k, v, -strength * u)]


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
    with _backend.record_launches((9, 0)) as launched:
        gated_linear_attention(q, k, v, channel, chunk_size=16)
    assert {launch.name for launch in launched} == {"_channel_state_kernel", "_channel_output_kernel"}, launched
    state = torch.zeros(1, 2, 8, 8)
    for kwargs in (dict(return_state=True), dict(chunk_size=8), dict(method="recurrent"),
                   dict(log_decay=channel, return_state=True), dict(log_decay=channel, initial_state=state),
                   dict(log_decay=channel, chunk_size=8)):
        args = dict(q=q, k=k, v=v, log_decay=log_decay, chunk_size=16) | kwargs
        with _backend.record_launches((9, 0)) as launched:
            gated_linear_attention(**args)
        assert not launched, kwargs


# --- One decay per key channel (GLA) -------------------------------------------------------------------


@pytest.mark.parametrize("t", [1, 63, 65])
@pytest.mark.parametrize("dims", [(5, 3), (16, 20), (8, 80), (40, 5)])  # float64 tiles BK=16, BV=32: 80 values
# take three value blocks, 40 keys three key blocks (the last ones partial)
def test_channel_kernel_forward_and_backward_match_the_loop(t, dims):
    """Chunks of 32: two sub-chunks each, so the split ratios (j < i) and the exact diagonal both run."""
    q, k, v, log_decay = inputs(t, *dims, channel=True)
    args = [x.clone().requires_grad_() for x in (q, k, v, log_decay)]
    ours = triton_chunk.gla_chunk_triton(*args, 32)
    d_out = torch.randn_like(ours)
    want, want_grads = loop_with_grads(q, k, v, log_decay, d_out)
    torch.testing.assert_close(ours, want, rtol=1e-10, atol=1e-10)
    for name, a, b in zip("q k v log_decay".split(), torch.autograd.grad(ours, args, d_out), want_grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=f"d{name}")


def test_channel_kernel_takes_a_chunk_of_64_and_many_key_blocks():
    """Four sub-chunks per chunk, two chunks and a partial third; 70 keys: five blocks of 16 in float64."""
    q, k, v, log_decay = inputs(150, 70, 17, channel=True, h=1)
    args = [x.clone().requires_grad_() for x in (q, k, v, log_decay)]
    ours = triton_chunk.gla_chunk_triton(*args, 64)
    d_out = torch.randn_like(ours)
    want, want_grads = loop_with_grads(q, k, v, log_decay, d_out)
    torch.testing.assert_close(ours, want, rtol=1e-10, atol=1e-10)
    for name, a, b in zip("q k v log_decay".split(), torch.autograd.grad(ours, args, d_out), want_grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=f"d{name}")


@pytest.mark.parametrize("t, chunk, fast", [(5, 16, False), (40, 32, True)])
def test_channel_kernel_gradcheck(t, chunk, fast):
    """One chunk, every entry of the Jacobian; then a chunk of two sub-chunks and a partial one, through
    random projections of it (``fast_mode``: the full Jacobian takes minutes in the interpreter)."""
    args = [x.requires_grad_() for x in inputs(t, 3, 2, h=1, channel=True)]
    assert torch.autograd.gradcheck(lambda *a: triton_chunk.gla_chunk_triton(*a, chunk), args, fast_mode=fast)


@pytest.mark.parametrize("t", [64, 40])  # one whole chunk of 64; a chunk padded past T
@pytest.mark.parametrize("kind", ["constant", "mixed"])
def test_channel_kernel_strong_decay_stays_finite_in_float32(t, kind):
    """log-decay -5 on every channel and step (b reaches -320 in a chunk of 64: e^{-b} would overflow
    float32 at -88), or per channel between -30 and 0: every exponent the kernels take stays <= 0."""
    q, k, v, log_decay = inputs(t, 8, 8, dtype=torch.float32, strength=30.0, channel=True)
    if kind == "constant":
        log_decay = torch.full_like(log_decay, -5.0)
    args = [x.clone().requires_grad_() for x in (q, k, v, log_decay)]
    out = triton_chunk.gla_chunk_triton(*args, 64)
    d_out = torch.randn_like(out)
    grads = torch.autograd.grad(out, args, d_out)
    want, want_grads = loop_with_grads(q, k, v, log_decay, d_out)
    assert torch.isfinite(out).all() and all(torch.isfinite(g).all() for g in grads)
    torch.testing.assert_close(out.double(), want, rtol=1e-4, atol=1e-4)
    for a, b in zip(grads, want_grads):
        torch.testing.assert_close(a.double(), b, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("dtype, tol", [(torch.float16, 2e-3), (torch.bfloat16, 1.5e-2)])
def test_channel_kernel_16_bit_inputs_to_16_bit_accuracy(dtype, tol):
    q, k, v, log_decay = inputs(65, 8, 8, dtype=dtype, channel=True)
    args = [x.clone().requires_grad_() for x in (q, k, v, log_decay)]
    out = triton_chunk.gla_chunk_triton(*args, 32)
    assert out.dtype == torch.float32
    d_out = torch.randn_like(out)
    want, want_grads = loop_with_grads(q, k, v, log_decay, d_out)
    assert rel_rms(out, want) < tol
    for ours, exact in zip(torch.autograd.grad(out, args, d_out), want_grads):
        assert ours.dtype == dtype
        assert rel_rms(ours, exact) < 4 * tol


def test_channel_public_path_matches_the_torch_chunk_form():
    """gated_linear_attention(method="chunk") on a (B, H, T, K) log-decay: the kernel, same answer as torch."""
    from labs.recurrent.chunk import gla_chunk

    q, k, v, log_decay = inputs(50, 6, 4, channel=True)
    ours = gated_linear_attention(q, k, v, log_decay, chunk_size=32)
    torch.testing.assert_close(ours, gla_chunk(q, k, v, log_decay, chunk_size=32)[0], rtol=1e-10, atol=1e-10)
