"""Defects a GPU exposes and the CPU interpreter hides, each shown on the CPU.

Each test here failed on the kernels before issue 17's fixes:

* the float64 softmax scale, typed fp32 by Triton's own argument mangling;
* RoPE angles formed in fp32, wrong by up to 5e-2 near position 1M;
* the linear scan's ``inf * 0 = NaN`` when the running product of ``a`` overflows;
* a grid of more than 65535 programs on axis 1 or 2 (batch x heads > 65535);
* fp32 ``tl.dot`` left at Triton's default TF32 precision on sm_80+.
"""

import pytest
import torch

from labs import _backend
from labs.attention import linear_attention
from labs.rope import apply_rope_qk, reference as rope_reference, rope_frequencies
from labs.scaling import scaled_softmax
from labs.ssm import linear_scan
from labs.ssm.reference import linear_scan_reference

kernel_compile = pytest.importorskip("kernel_compile")


def rel_rms(x, ref):
    """Relative RMS error (||x - ref|| / ||ref||), the tolerance measure for every kernel."""
    x, ref = x.double(), ref.double()
    return ((x - ref).norm() / ref.norm().clamp_min(1e-300)).item()


def recorded(fn, capability=(9, 0)):
    with _backend.record_launches(capability) as launches:
        fn()
    return launches


# --- The float64 scale ------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_softmax_scale_reaches_the_compiled_kernel_as_float64(dtype):
    """Triton's binder types a Python float as fp32; the kernel annotates ``scale: tl.float64``."""
    x = torch.randn(3, 100, dtype=dtype, requires_grad=True)
    launches = recorded(lambda: scaled_softmax(x, 1 / 3).sum().backward())
    assert [launch.name for launch in launches] == ["_forward_kernel", "_backward_kernel"]
    for launch in launches:
        signature = kernel_compile.specialize(launch, 90)["signature"]
        assert signature["scale"] == "fp64", f"{launch.name} compiles scale as {signature['scale']}"


def test_python_float_alone_would_be_fp32():
    """What the annotation guards against: Triton's own mangling of an unannotated float."""
    from triton.runtime.jit import mangle_type

    assert mangle_type(0.125) == "fp32"


def test_softmax_float64_long_rows_stay_float64():
    """The long-row kernels (two sweeps) keep the float64 scale too: error at float64 rounding."""
    x = torch.randn(2, 20000, dtype=torch.float64)
    assert rel_rms(scaled_softmax(x, 1 / 3), torch.softmax(x / 3, dim=-1)) < 1e-14


# --- RoPE far from the origin -----------------------------------------------------------------


@pytest.mark.parametrize("start", [0, 4096, 131072, 1_000_000])
@pytest.mark.parametrize("interleaved", [False, True])
def test_rope_matches_float64_at_long_context_positions(start, interleaved):
    """fp32 q/k rotated at positions near ``start``: fp32 rounding, not fp32 angle error (5e-2 at 1M)."""
    inv_freq, _ = rope_frequencies(64)
    positions = torch.arange(start, start + 24)
    q, k = torch.randn(1, 2, 24, 64), torch.randn(1, 1, 24, 64)
    q_rot, k_rot = apply_rope_qk(q, k, positions, inv_freq, interleaved=interleaved)
    for ours, x in ((q_rot, q), (k_rot, k)):
        exact = rope_reference.apply_rope(x.double(), positions, inv_freq, interleaved)
        assert rel_rms(ours, exact) < 3e-7


def test_rope_fractional_positions_near_one_million():
    inv_freq, _ = rope_frequencies(32)
    positions = torch.arange(24, dtype=torch.float64) * 0.37 + 999_983.25
    q = torch.randn(1, 1, 24, 32)
    ours, _ = apply_rope_qk(q, q.clone(), positions, inv_freq)
    assert rel_rms(ours, rope_reference.apply_rope(q.double(), positions, inv_freq, False)) < 3e-7


def test_rope_reads_strided_qkv_views_without_copying():
    """q and k as (B, H, T, D) views of a (B, T, 3, H, D) projection: no copy, outputs in the same layout."""
    qkv = torch.randn(2, 20, 3, 4, 32)
    q, k = qkv[:, :, 0].transpose(1, 2), qkv[:, :, 1].transpose(1, 2)
    inv_freq, _ = rope_frequencies(32)
    launches = recorded(lambda: apply_rope_qk(q, k, torch.arange(20), inv_freq))
    (launch,) = launches
    assert launch.args[0].data_ptr() == q.data_ptr() and launch.args[1].data_ptr() == k.data_ptr()
    q_rot, k_rot = apply_rope_qk(q, k, torch.arange(20), inv_freq)
    assert q_rot.stride() == torch.empty_like(q).stride()
    torch.testing.assert_close(q_rot, rope_reference.apply_rope(q, torch.arange(20), inv_freq, False))
    torch.testing.assert_close(k_rot, rope_reference.apply_rope(k, torch.arange(20), inv_freq, False))


# --- The scan's overflow ----------------------------------------------------------------------


OVERFLOWS = pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning",
                                       "ignore:invalid value encountered:RuntimeWarning")  # numpy, in the interpreter


@OVERFLOWS
@pytest.mark.parametrize("a_value, length", [(2.0, 300), (16.0, 300), (1000.0, 60)])
def test_scan_overflowing_product_times_zero_state_is_not_nan(a_value, length):
    """a > 1 with b = 0 until near the end: the running product overflows fp32, the true h does not."""
    a = torch.full((2, length), a_value)
    b = torch.zeros(2, length)
    b[:, length - 5] = 1.0
    h = linear_scan(a, b)
    exact = linear_scan_reference(a.double(), b.double())
    assert torch.isfinite(exact).all()
    assert not torch.isnan(h).any(), "inf * 0 in the scan"
    assert rel_rms(h, exact) < 1e-6


@OVERFLOWS
def test_scan_reset_after_overflow_is_exact():
    """A zero coefficient after an overflowing stretch resets h exactly (0 * inf is not NaN)."""
    a = torch.full((1, 200), 1.5)
    a[0, :150] = 1000.0  # the product overflows fp32 long before the reset
    a[0, 150] = 0.0
    b = torch.zeros(1, 200)
    b[0, 160] = 1.0
    h = linear_scan(a, b, h0=torch.zeros(1))
    exact = linear_scan_reference(a.double(), b.double(), torch.zeros(1, dtype=torch.float64))
    assert not torch.isnan(h).any()
    torch.testing.assert_close(h[0, 150:].double(), exact[0, 150:], rtol=1e-6, atol=0)


# --- Grid limits, computed on the host --------------------------------------------------------


def test_check_grid_names_the_axis():
    _backend.check_grid((70000,))
    with pytest.raises(ValueError, match="grid axis 1 must be an int in \\[0, 65535\\], got 70000"):
        _backend.check_grid((1, 70000, 1), "k")
    with pytest.raises(ValueError, match="grid axis 0"):
        _backend.check_grid((2**31,))


BH = 70000  # batch x heads past the 65535 limit of grid axes 1 and 2


def _many_heads_cases():
    meta = {"device": "meta"}

    def attention():
        q = torch.zeros(1, BH, 32, 16, **meta, requires_grad=True)
        linear_attention(q, q, q, causal=True, feature_map="identity", normalize=False, method="chunk",
                         chunk_size=16).sum().backward()

    def rope():
        q = torch.zeros(1, BH, 8, 16, **meta, requires_grad=True)
        apply_rope_qk(q, q, torch.arange(8, **meta), torch.ones(8, dtype=torch.float64, **meta))[0].sum().backward()

    def softmax():
        scaled_softmax(torch.zeros(BH, 4, 8, **meta, requires_grad=True), 0.5).sum().backward()

    def scan():
        a = torch.zeros(BH, 4, 8, **meta, requires_grad=True)
        linear_scan(a, a).sum().backward()

    return {"attention": attention, "rope": rope, "softmax": softmax, "scan": scan}


@pytest.mark.parametrize("op", ["attention", "rope", "softmax", "scan"])
def test_launch_grids_fit_cuda_limits_with_70000_heads(op):
    """Every launch for batch x heads = 70000 fits CUDA's grid limits, and covers every head."""
    launches = recorded(_many_heads_cases()[op])
    assert launches
    for launch in launches:
        _backend.check_grid(launch.grid, launch.name)
    assert max(launch.grid[0] for launch in launches) >= BH // 4  # heads (or rows) really are on axis 0


# --- TF32 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_chunk_attention_asks_for_ieee_dots_in_float32(dtype):
    """fp32 (and fp64) inputs request IEEE dots: Triton's fp32 default on sm_80+ is TF32."""
    q = torch.rand(1, 2, 40, 16, dtype=dtype, requires_grad=True)
    launches = recorded(lambda: linear_attention(q, q, q, causal=True, method="chunk", chunk_size=16)
                        .sum().backward(), capability=(8, 0))
    assert launches
    for launch in launches:
        assert launch.kwargs["PRECISION"] == "ieee"
        assert launch.kwargs.get("STATE_PRECISION", "ieee") == "ieee"


def test_chunk_attention_keeps_16_bit_operands():
    """fp16 inputs reach the kernels as fp16 (tensor-core dots), not upcast on the host."""
    q = torch.rand(1, 2, 40, 16, dtype=torch.float16, requires_grad=True)
    launches = recorded(lambda: linear_attention(q, q, q, causal=True, method="chunk", chunk_size=16)
                        .sum().backward(), capability=(8, 0))
    for launch in launches:
        assert launch.args[0].dtype == torch.float16 and launch.args[1].dtype == torch.float16
        assert launch.kwargs["UPCAST"] is False


def test_float16_chunk_output_accumulates_in_float32_past_the_float16_range():
    """A numerator of ~1e5 (float16 overflows at 65504) comes back finite, in float32, at fp16 accuracy."""
    from labs.attention.chunk import causal_chunk_numerator
    from labs.attention.triton_chunk import causal_chunk_numerator_triton

    g = torch.Generator().manual_seed(0)
    fq = torch.rand(1, 1, 200, 8, generator=g).half()
    fk = torch.rand(1, 1, 200, 8, generator=g).half()
    v = (300 + torch.randn(1, 1, 200, 8, generator=g)).half()
    out = causal_chunk_numerator_triton(fq, fk, v, 32)
    exact = causal_chunk_numerator(fq.double(), fk.double(), v.double(), 32)
    assert out.dtype == torch.float32 and exact.abs().max() > 65504
    assert torch.isfinite(out).all()
    assert rel_rms(out, exact) < 2e-3  # scores rounded to fp16 (2^-11) before the second dot
