"""The gated-linear-attention kernel on a GPU at realistic shapes, against the float64 chunked form.

Errors are relative RMS over the whole tensor, bounded as in ``test_kernels_cuda.py``
(the chunk kernel's rows of its table: this kernel rounds the same way, plus the
decay factors, which are formed in float32).
"""

import pytest
import torch

import labs
from labs.recurrent import gated_linear_attention
from labs.recurrent.chunk import gla_chunk
from labs.recurrent.triton_chunk import gla_chunk_triton
from tests.gla_inputs import gla_draws
from test_kernels_cuda import DEV, DTYPES, check, launches, needs, rel_rms  # noqa: F401  (launches: a fixture)


def _inputs(b, h, t, dk, dv, dtype, g, channel=False):
    q, k, v, u = gla_draws(b, h, t, dk, dv, g, channel)
    q, k = q.div(dk ** 0.5), k.div(dk ** 0.5)
    # Decays between 0.9 and 1 per step, as trained RetNet / Mamba-2 heads keep them: long memories;
    # one per key channel too when ``channel`` (GLA).
    log_decay = torch.log(0.9 + 0.1 * u)
    return [x.to(device=DEV, dtype=dtype).requires_grad_() for x in (q, k, v, log_decay)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b, h, t, dk, dv, chunk", [
    (2, 4, 8192, 64, 64, 64), (1, 8, 4096, 128, 128, 64), (1, 2, 2048, 256, 256, 64),
    (1, 4, 4096, 128, 64, 16), (1, 4, 4096, 64, 128, 32), (1, 4, 4096, 128, 128, 128), (1, 2, 1000, 96, 80, 64),
])
def test_gla_kernel_forward_backward(b, h, t, dk, dv, chunk, dtype, launches):
    needs(dtype)
    g = labs.generator("recurrent", device="cpu")
    q, k, v, log_decay = _inputs(b, h, t, dk, dv, dtype, g)
    out = gla_chunk_triton(q, k, v, log_decay, chunk)
    ref_in = [x.detach().double().requires_grad_() for x in (q, k, v, log_decay)]
    ref = gla_chunk(*ref_in, chunk_size=chunk)[0]
    check("chunk", dtype, out, ref, "forward")
    d_out = torch.randn(out.shape, generator=g, dtype=torch.float64).to(DEV)
    ours = torch.autograd.grad(out, (q, k, v, log_decay), d_out.to(out.dtype))
    grads = torch.autograd.grad(ref, ref_in, d_out)
    for name, x, y in zip(("dq", "dk", "dv", "dlog_decay"), ours, grads):
        check("chunk_grad", dtype, x, y, name)
    assert launches.count("_state_kernel") == 2 and launches.count("_output_kernel") == 4


def test_gla_public_path_uses_the_kernel(launches):
    g = labs.generator("recurrent", device="cpu")
    dtype = torch.bfloat16 if torch.cuda.get_device_capability() >= (8, 0) else torch.float16
    q, k, v, log_decay = (x.detach() for x in _inputs(2, 4, 1024, 64, 64, dtype, g))
    out = gated_linear_attention(q, k, v, log_decay, chunk_size=64)
    ref = gated_linear_attention(q.double(), k.double(), v.double(), log_decay.double(), method="quadratic")
    assert "_output_kernel" in launches and out.dtype == dtype
    assert rel_rms(out, ref) < 3e-2


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b, h, t, dk, dv, chunk", [
    (2, 4, 2048, 64, 64, 64), (2, 4, 2048, 64, 64, 128), (1, 4, 2048, 128, 128, 32), (1, 2, 1000, 96, 80, 64),
])
def test_gla_per_channel_kernel_forward_backward(b, h, t, dk, dv, chunk, dtype, launches):
    """One decay per key channel (B, H, T, K): the per-channel kernels against the float64 torch chunk form."""
    needs(dtype)
    g = labs.generator("recurrent-channel", device="cpu")
    q, k, v, log_decay = _inputs(b, h, t, dk, dv, dtype, g, channel=True)
    out = gla_chunk_triton(q, k, v, log_decay, chunk)
    ref_in = [x.detach().double().requires_grad_() for x in (q, k, v, log_decay)]
    ref = gla_chunk(*ref_in, chunk_size=chunk)[0]
    check("chunk", dtype, out, ref, "forward")
    d_out = torch.randn(out.shape, generator=g, dtype=torch.float64).to(DEV)
    ours = torch.autograd.grad(out, (q, k, v, log_decay), d_out.to(out.dtype))
    grads = torch.autograd.grad(ref, ref_in, d_out)
    for name, x, y in zip(("dq", "dk", "dv", "dlog_decay"), ours, grads):
        check("chunk_grad", dtype, x, y, name)
    assert launches.count("_channel_state_kernel") == 2 and launches.count("_channel_output_kernel") == 2
    assert launches.count("_channel_key_grad_kernel") == 2


def test_gla_per_channel_strong_decay_in_float32():
    """log-decay -5 on every channel and step, chunks of 64: b reaches -320 in a chunk, yet every exponent
    the kernels take is <= 0; the result stays finite and matches the float64 recurrence's chunk form."""
    g = labs.generator("recurrent-channel", device="cpu")
    q, k, v, log_decay = _inputs(2, 4, 2048, 64, 64, torch.float32, g, channel=True)
    log_decay = torch.full_like(log_decay, -5.0).requires_grad_()
    out = gla_chunk_triton(q, k, v, log_decay, 64)
    ref_in = [x.detach().double().requires_grad_() for x in (q, k, v, log_decay)]
    ref = gla_chunk(*ref_in, chunk_size=64)[0]
    check("chunk", torch.float32, out, ref, "forward")
    d_out = torch.randn(out.shape, generator=g, dtype=torch.float64).to(DEV)
    ours = torch.autograd.grad(out, (q, k, v, log_decay), d_out.float())
    for name, x, y in zip(("dq", "dk", "dv", "dlog_decay"), ours, torch.autograd.grad(ref, ref_in, d_out)):
        check("chunk_grad", torch.float32, x, y, name)


def test_gla_per_channel_public_path_uses_the_kernel(launches):
    g = labs.generator("recurrent-channel", device="cpu")
    dtype = torch.bfloat16 if torch.cuda.get_device_capability() >= (8, 0) else torch.float16
    q, k, v, log_decay = (x.detach() for x in _inputs(2, 4, 1024, 64, 64, dtype, g, channel=True))
    out = gated_linear_attention(q, k, v, log_decay, chunk_size=64)
    ref = gated_linear_attention(q.double(), k.double(), v.double(), log_decay.double(), method="recurrent")
    assert "_channel_output_kernel" in launches and out.dtype == dtype
    assert rel_rms(out, ref) < 3e-2
