"""Every Triton kernel on a GPU at realistic shapes, against float64 references (``pytest tests/cuda -m cuda``).

Errors are relative RMS, ``||ours - ref|| / ||ref||`` over the whole output,
as flash-linear-attention's tests measure them: the right yardstick for
16-bit storage and tensor-core dots, where a few elements may round far more
than the typical one. The reference is computed in float64 from the *same*
(rounded) inputs, and the bound is what storing the exact result in the
output's dtype costs (large for 16-bit subnormals, e.g. probabilities of a
20k-column softmax) plus the tolerance below, by kernel and dtype:

=========  ======  =======  =======  ======
kernel     fp64    fp32     fp16     bf16
=========  ======  =======  =======  ======
softmax    1e-12   2e-6     1e-3     8e-3
rope       1e-12   2e-6     1e-3     8e-3
scan       1e-10   2e-5     3e-3     2e-2
chunk fwd  1e-10   2e-5     3e-3     2e-2
chunk bwd  1e-10   5e-5     8e-3     4e-2
=========  ======  =======  =======  ======

fp16 stores with 11 significant bits (RMS rounding error ~1.6e-4 relative),
bf16 with 8 (~1.3e-3); the bounds leave room for the kernels' own roundings
(16-bit scores before the second dot of the chunk kernel, TF32 state dots,
a 16-bit gradient in its backward) and for long sums.
"""

import math

import pytest
import torch

import labs
from labs import _backend
from labs.attention import linear_attention
from labs.attention.chunk import causal_chunk_numerator
from labs.attention.triton_chunk import causal_chunk_numerator_triton
from labs.rope import apply_rope, apply_rope_qk, reference as rope_reference, rope_frequencies
from labs.scaling import scaled_softmax
from labs.ssm import linear_scan
from labs.ssm.triton_scan import linear_scan_triton

DEV = "cuda"
TOL = {
    "softmax": {torch.float64: 1e-12, torch.float32: 2e-6, torch.float16: 1e-3, torch.bfloat16: 8e-3},
    "rope": {torch.float64: 1e-12, torch.float32: 2e-6, torch.float16: 1e-3, torch.bfloat16: 8e-3},
    "scan": {torch.float64: 1e-10, torch.float32: 2e-5, torch.float16: 3e-3, torch.bfloat16: 2e-2},
    "chunk": {torch.float64: 1e-10, torch.float32: 2e-5, torch.float16: 3e-3, torch.bfloat16: 2e-2},
    "chunk_grad": {torch.float64: 1e-10, torch.float32: 5e-5, torch.float16: 8e-3, torch.bfloat16: 4e-2},
}
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


def rel_rms(ours, ref):
    ours, ref = ours.double(), ref.double()
    assert torch.isfinite(ours).all(), "non-finite values in the kernel's output"
    return ((ours - ref).norm() / ref.norm().clamp_min(1e-300)).item()


def check(kind, dtype, ours, ref, what=""):
    """ours is within TOL of ref beyond what storing ref in ours' dtype costs (16-bit subnormals)."""
    floor = rel_rms(ref.to(ours.dtype), ref)
    err, tol = rel_rms(ours, ref), TOL[kind][dtype]
    assert err <= floor + tol, f"{kind} {what} {dtype}: relative RMS error {err:.3g} > {floor:.3g} + {tol:.3g}"


def needs(dtype):
    if dtype == torch.bfloat16 and torch.cuda.get_device_capability() < (8, 0):
        pytest.skip("bf16 needs sm_80+ (the dispatch sends it to torch here)")


@pytest.fixture
def launches(monkeypatch):
    """The names of the kernels launched through ``labs._backend.launch`` during the test."""
    names = []
    real = _backend.launch

    def spy(kernel, grid, *args, **kwargs):
        names.append(getattr(getattr(kernel, "fn", kernel), "__name__", "?"))
        return real(kernel, grid, *args, **kwargs)

    monkeypatch.setattr(_backend, "launch", spy)
    return names


def test_backend_takes_the_triton_path():
    path, why = _backend.kernel_path(torch.device(DEV))
    assert path == "triton", why
    target = _backend.kernel_target(torch.zeros(1, device=DEV))
    assert target.capability == torch.cuda.get_device_capability() and not target.interpreter
    assert target.shared_memory >= 48 * 1024 and target.sm_count > 0


# --- Scaled softmax ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows, cols", [(4096, 4096), (512, 32768), (1000, 1000), (64, 20000)])
def test_softmax_forward_backward(rows, cols, dtype, launches):
    needs(dtype)
    g = labs.generator("softmax")
    x = torch.randn(rows, cols, generator=g, dtype=torch.float64).mul(3).to(device=DEV, dtype=dtype)
    x.requires_grad_()
    scale = 1 / math.sqrt(96)
    y = scaled_softmax(x, scale)
    y64 = torch.softmax(x.detach().double() * scale, dim=-1)
    check("softmax", dtype, y, y64, "forward")
    dy = torch.randn(rows, cols, generator=g, dtype=torch.float64).to(device=DEV, dtype=dtype)
    (dx,) = torch.autograd.grad(y, x, dy)
    # The backward's inputs are the stored y (16-bit: long rows hold subnormal probabilities) and dy.
    y_in, dy_in = y.detach().double(), dy.double()
    dx64 = scale * y_in * (dy_in - (dy_in * y_in).sum(-1, keepdim=True))
    check("softmax", dtype, dx, dx64, "backward")
    assert launches and all("kernel" in n for n in launches), launches


def test_softmax_float64_scale_is_exact():
    """The scale reaches the fp64 kernel as fp64 (an fp32 scale would give ~1e-7 here)."""
    x = torch.randn(64, 4096, dtype=torch.float64, device=DEV) * 10
    assert rel_rms(scaled_softmax(x, 1 / 3), torch.softmax(x / 3, dim=-1)) < 1e-14


# --- RoPE -------------------------------------------------------------------------------------


def _qkv(b, t, hq, hk, d, dtype, g):
    """q (B, Hq, T, D) and k (B, Hk, T, D) as strided views of one (B, T, Hq + 2 Hk, D) projection."""
    qkv = torch.randn(b, t, hq + 2 * hk, d, generator=g, dtype=torch.float64).to(device=DEV, dtype=dtype)
    return qkv[:, :, :hq].transpose(1, 2), qkv[:, :, hq:hq + hk].transpose(1, 2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("d", [64, 128, 256])
@pytest.mark.parametrize("interleaved", [False, True])
def test_rope_far_positions_strided_gqa(d, dtype, interleaved, launches):
    """(B, T, Hq, Hk) = (2, 2048, 16, 4) at positions up to 1M, q/k strided views, forward and backward."""
    needs(dtype)
    g = labs.generator("rope")
    q, k = _qkv(2, 2048, 16, 4, d, dtype, g)
    q.requires_grad_()
    k.requires_grad_()
    positions = torch.arange(1_000_000 - 2048, 1_000_000, device=DEV)
    inv_freq, _ = rope_frequencies(d)
    inv_freq = inv_freq.to(DEV)
    q_rot, k_rot = apply_rope_qk(q, k, positions, inv_freq, interleaved=interleaved)
    q64, k64 = (x.detach().double().requires_grad_() for x in (q, k))
    q_ref = rope_reference.apply_rope(q64, positions, inv_freq, interleaved)
    k_ref = rope_reference.apply_rope(k64, positions, inv_freq, interleaved)
    check("rope", dtype, q_rot, q_ref, "q")
    check("rope", dtype, k_rot, k_ref, "k")
    dq_out, dk_out = torch.randn_like(q_rot), torch.randn_like(k_rot)
    dq, dk = torch.autograd.grad((q_rot, k_rot), (q, k), (dq_out, dk_out))
    dq64, dk64 = torch.autograd.grad((q_ref, k_ref), (q64, k64), (dq_out.double(), dk_out.double()))
    check("rope", dtype, dq, dq64, "dq")
    check("rope", dtype, dk, dk64, "dk")
    assert launches == ["_rope_kernel", "_rope_kernel"]


def test_rope_benchmark_shape_single_tensor():
    """(4, 4096, 32, 128) fp16 through apply_rope: one launch, no copy of the strided input."""
    g = labs.generator("rope")
    q, _ = _qkv(4, 4096, 32, 8, 128, torch.float16, g)
    inv_freq, _ = rope_frequencies(128)
    out = apply_rope(q, torch.arange(4096, device=DEV), inv_freq.to(DEV))
    ref = rope_reference.apply_rope(q.double(), torch.arange(4096, device=DEV), inv_freq.to(DEV), False)
    check("rope", torch.float16, out, ref)


# --- Linear scan ------------------------------------------------------------------------------


def scan_reference(a, b, h0=None, block=256):
    """float64 h_t = a_t h_{t-1} + b_t, blockwise: inside a block h = P (h_in + cumsum(b / P)),
    P the running product (a in [0.5, 1): P stays above 0.5^256, far from underflow)."""
    a, b = a.double(), b.double()
    h = torch.zeros(b.shape[:-1], dtype=torch.float64, device=b.device) if h0 is None else h0.double()
    out = []
    for start in range(0, b.shape[-1], block):
        p = a[..., start:start + block].cumprod(-1)
        h_block = p * (h[..., None] + (b[..., start:start + block] / p).cumsum(-1))
        out.append(h_block)
        h = h_block[..., -1]
    return torch.cat(out, dim=-1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows, length", [(256, 65536), (8, 1 << 20), (3, 1000), (70000, 64)])
def test_scan_forward_backward(rows, length, dtype, launches):
    needs(dtype)
    g = labs.generator("scan")
    a = (0.5 + 0.5 * torch.rand(rows, length, generator=g, dtype=torch.float64)).to(device=DEV, dtype=dtype)
    b = torch.randn(rows, length, generator=g, dtype=torch.float64).to(device=DEV, dtype=dtype)
    h0 = torch.randn(rows, generator=g, dtype=torch.float64).to(device=DEV, dtype=dtype)
    for x in (a, b, h0):
        x.requires_grad_()
    h = linear_scan(a, b, h0=h0)
    a64, b64, h064 = (x.detach().double().requires_grad_() for x in (a, b, h0))
    h_ref = scan_reference(a64, b64, h064)
    check("scan", dtype, h, h_ref, "forward")
    if length <= 65536:
        gh = torch.randn(rows, length, generator=g, dtype=torch.float64).to(device=DEV, dtype=dtype)
        ours = torch.autograd.grad(h, (a, b, h0), gh)
        ref = torch.autograd.grad(h_ref, (a64, b64, h064), gh.double())
        for name, x, y in zip(("da", "db", "dh0"), ours, ref):
            check("scan", dtype, x, y, name)
    assert "_scan_kernel" in launches
    if rows == 8:
        assert "_aggregate_kernel" in launches, "few long rows should take the chunked scan"


def test_scan_broadcast_coefficient_is_not_materialised(launches):
    """a of shape (N, 1) expanded over L: the kernel reads it with a zero stride."""
    a = torch.rand(64, 1, device=DEV, dtype=torch.float64) * 0.5 + 0.5
    b = torch.randn(64, 4096, device=DEV, dtype=torch.float64)
    h = linear_scan_triton(a.expand(64, 4096), b)
    check("scan", torch.float64, h, scan_reference(a.expand(64, 4096), b))


def test_scan_overflow_gives_no_nan():
    a = torch.full((4, 300), 2.0, device=DEV)
    b = torch.zeros(4, 300, device=DEV)
    b[:, 295] = 1.0
    h = linear_scan(a, b)
    assert not torch.isnan(h).any()
    assert h[:, -1].eq(16.0).all()


# --- Chunked linear attention -----------------------------------------------------------------


def _attention_inputs(b, h, t, d, dtype, g):
    # Positive features, as phi(q) and phi(k) are; values centred.
    fq = torch.rand(b, h, t, d, generator=g, dtype=torch.float64).div(math.sqrt(d))
    fk = torch.rand(b, h, t, d, generator=g, dtype=torch.float64).div(math.sqrt(d))
    v = torch.randn(b, h, t, d, generator=g, dtype=torch.float64)
    return [x.to(device=DEV, dtype=dtype).requires_grad_() for x in (fq, fk, v)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("b, h, t, d, chunk", [
    (2, 4, 16384, 64, 64), (1, 8, 4096, 128, 64), (1, 2, 2048, 256, 64),
    (1, 4, 4096, 128, 16), (1, 4, 4096, 128, 32), (1, 4, 4096, 128, 128), (1, 2, 1000, 96, 64),
])
def test_chunk_attention_forward_backward(b, h, t, d, chunk, dtype, launches):
    needs(dtype)
    g = labs.generator("attention")
    fq, fk, v = _attention_inputs(b, h, t, d, dtype, g)
    out = causal_chunk_numerator_triton(fq, fk, v, chunk)
    ref_in = [x.detach().double().requires_grad_() for x in (fq, fk, v)]
    ref = causal_chunk_numerator(*ref_in, chunk)
    check("chunk", dtype, out, ref, "forward")
    d_out = torch.randn(out.shape, generator=g, dtype=torch.float64).to(DEV)
    ours = torch.autograd.grad(out, (fq, fk, v), d_out.to(out.dtype))
    grads = torch.autograd.grad(ref, ref_in, d_out)
    for name, x, y in zip(("dq", "dk", "dv"), ours, grads):
        check("chunk_grad", dtype, x, y, name)
    assert launches.count("_state_kernel") == 2 and launches.count("_forward_kernel") == 4


def test_chunk_attention_many_heads():
    """batch x heads = 70000 (> 65535, the limit of grid axes 1 and 2)."""
    g = labs.generator("attention")
    fq, fk, v = _attention_inputs(1, 70000, 32, 16, torch.float32, g)
    out = causal_chunk_numerator_triton(fq, fk, v, 16)
    ref = causal_chunk_numerator(*(x.detach().double() for x in (fq, fk, v)), 16)
    check("chunk", torch.float32, out, ref, "forward")


def test_linear_attention_public_path_uses_the_kernel(launches):
    g = labs.generator("attention")
    q, k, v = (x.detach() for x in _attention_inputs(2, 4, 1024, 64, torch.bfloat16
                                                     if torch.cuda.get_device_capability() >= (8, 0)
                                                     else torch.float16, g))
    out = linear_attention(q, k, v, causal=True, method="chunk", chunk_size=64)
    ref = linear_attention(q.double(), k.double(), v.double(), causal=True, method="quadratic")
    assert "_forward_kernel" in launches
    assert rel_rms(out, ref) < 3e-2
