"""RoPE: frequencies against an independent float64 computation and hand values, rotations against
the matrix form, the Triton kernel (interpreted) against the reference, and input checks."""

import math

import numpy as np
import pytest
import torch

import labs.rope as rope
from labs.rope import alibi_slopes, apply_rope, apply_rope_qk, decay_bound, rope_frequencies, sinusoidal_encoding
from labs.rope import reference
from labs.rope.triton_rope import rope_qk_triton


# An independent float64 NumPy transcription of the Hugging Face formulas, kept apart from labs.
def np_theta(d, base):
    return np.array([base ** (-(2 * j) / d) for j in range(d // 2)])


def np_yarn(d, base, factor, orig, beta_fast=32.0, beta_slow=1.0):
    def dim_for(rotations):
        return d * np.log(orig / (rotations * 2 * np.pi)) / (2 * np.log(base))

    low, high = max(np.floor(dim_for(beta_fast)), 0), min(np.ceil(dim_for(beta_slow)), d - 1)
    if low == high:
        high += 0.001
    extrapolate = 1 - np.clip((np.arange(d // 2) - low) / (high - low), 0, 1)
    theta = np_theta(d, base)
    return theta / factor * (1 - extrapolate) + theta * extrapolate, 0.1 * np.log(factor) + 1


@pytest.mark.parametrize("d, base", [(4, 10000.0), (16, 10000.0), (128, 500000.0), (10, 100.0)])
def test_default_frequencies_match_float64_formula(d, base):
    inv_freq, attention = rope_frequencies(d, base=base)
    np.testing.assert_allclose(inv_freq.numpy(), np_theta(d, base), rtol=1e-14)
    assert attention == 1.0 and inv_freq.dtype == torch.float64


def test_hand_checkable_frequencies():
    # d = 4, base 10^4: theta = (1, 10^-2).
    torch.testing.assert_close(rope_frequencies(4)[0], torch.tensor([1.0, 1e-2], dtype=torch.float64))
    torch.testing.assert_close(rope_frequencies(4, scaling="linear", factor=2)[0], torch.tensor([0.5, 5e-3], dtype=torch.float64))
    # NTK: base * 4^(4/2) = 160000, so theta_1 = 160000^(-1/2) = 1/400.
    torch.testing.assert_close(rope_frequencies(4, scaling="ntk", factor=4)[0], torch.tensor([1.0, 1 / 400], dtype=torch.float64))
    # dynamic, factor 2, length 20 over 10: stretch 2 * 2 - 1 = 3, base 10^4 * 9, theta_1 = 1/300.
    dynamic = rope_frequencies(4, scaling="dynamic", factor=2, original_max_position=10, seq_len=20)[0]
    torch.testing.assert_close(dynamic, torch.tensor([1.0, 1 / 300], dtype=torch.float64))


def test_dynamic_is_default_within_the_training_length_and_ntk_beyond():
    default = rope_frequencies(16)[0]
    for seq_len in (None, 5, 64):
        torch.testing.assert_close(rope_frequencies(16, scaling="dynamic", factor=3, original_max_position=64, seq_len=seq_len)[0], default)
    # factor 1 at twice the length is static NTK with factor 2
    torch.testing.assert_close(
        rope_frequencies(16, scaling="dynamic", factor=1, original_max_position=64, seq_len=128)[0],
        rope_frequencies(16, scaling="ntk", factor=2)[0],
    )


@pytest.mark.parametrize("d, base, factor, orig", [(128, 10000.0, 4.0, 4096), (16, 10000.0, 8.0, 32), (64, 500000.0, 2.5, 8192), (8, 100.0, 3.0, 16)])
def test_yarn_matches_float64_formula(d, base, factor, orig):
    inv_freq, attention = rope_frequencies(d, base=base, scaling="yarn", factor=factor, original_max_position=orig)
    expected, expected_attention = np_yarn(d, base, factor, orig)
    np.testing.assert_allclose(inv_freq.numpy(), expected, rtol=1e-13)
    assert attention == pytest.approx(expected_attention, rel=1e-15)


def test_yarn_ramp_bounds_by_hand():
    # d=128, base 1e4, L=4096: pair 20.9 turns 32 times (floor -> 20), pair 45.03 turns once (ceil -> 46).
    theta = rope_frequencies(128)[0]
    yarn = rope_frequencies(128, scaling="yarn", factor=4, original_max_position=4096)[0]
    torch.testing.assert_close(yarn[:21], theta[:21])
    torch.testing.assert_close(yarn[46:], theta[46:] / 4)
    torch.testing.assert_close(yarn[33], theta[33] * (0.5 + 0.5 / 4))  # halfway up the ramp
    assert rope_frequencies(64, scaling="yarn", factor=math.e, original_max_position=100)[1] == pytest.approx(1.1)


def test_factor_one_leaves_frequencies_unchanged():
    default = rope_frequencies(32)[0]
    for scaling in ("linear", "ntk", "dynamic", "yarn"):
        inv_freq, attention = rope_frequencies(32, scaling=scaling, factor=1.0, original_max_position=64)
        torch.testing.assert_close(inv_freq, default)
        assert attention == 1.0


@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize("T, D", [(1, 2), (5, 6), (63, 10), (65, 16)])
def test_elementwise_equals_matrix_form(T, D, interleaved):
    x = torch.randn(2, T, D, dtype=torch.float64)
    positions = torch.arange(T, dtype=torch.float64) * 1.7 - 3.0
    inv_freq = rope_frequencies(D, base=100.0)[0]
    out = apply_rope(x, positions, inv_freq, interleaved=interleaved)
    for m in range(T):
        matrix = reference.rope_matrix(positions[m].item(), inv_freq, interleaved)
        torch.testing.assert_close(out[:, m], x[:, m] @ matrix.T)
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1))  # rotations keep lengths


def test_interleaved_and_half_split_are_a_permutation_apart():
    D = 10
    x = torch.randn(3, 7, D, dtype=torch.float64)
    positions, inv_freq = torch.arange(7), rope_frequencies(D)[0]
    perm = torch.cat((torch.arange(0, D, 2), torch.arange(1, D, 2)))  # interleaved -> half-split order
    torch.testing.assert_close(
        apply_rope(x, positions, inv_freq, interleaved=True)[..., perm],
        apply_rope(x[..., perm], positions, inv_freq, interleaved=False),
    )


def test_dot_product_depends_only_on_relative_position():
    D = 8
    q, k = torch.randn(1, D, dtype=torch.float64), torch.randn(1, D, dtype=torch.float64)
    inv_freq = rope_frequencies(D)[0]

    def logit(m, n):
        qm = apply_rope(q, torch.tensor([m], dtype=torch.float64), inv_freq)
        kn = apply_rope(k, torch.tensor([n], dtype=torch.float64), inv_freq)
        return (qm * kn).sum().item()

    assert logit(3, 7) == pytest.approx(logit(103.5, 107.5), abs=1e-10)
    assert logit(3, 7) != pytest.approx(logit(3, 8), abs=1e-3)


def test_integer_positions_equal_float_positions():
    x, inv_freq = torch.randn(2, 4, 6), rope_frequencies(6)[0]
    torch.testing.assert_close(apply_rope(x, torch.arange(4), inv_freq), apply_rope(x, torch.arange(4.0), inv_freq))


def rel_err(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30)).item()


@pytest.mark.parametrize("interleaved", [False, True])
@pytest.mark.parametrize(
    "q_shape, k_shape", [((1, 1, 4), (1, 1, 4)), ((2, 3, 5, 6), (2, 1, 5, 6)), ((1, 7, 10), (3, 7, 10)), ((2, 65, 16), (2, 65, 16))]
)
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-14), (torch.float32, 1e-6), (torch.float16, 2e-3)])
def test_triton_matches_reference(q_shape, k_shape, interleaved, dtype, tol):
    q, k = torch.randn(q_shape).to(dtype), torch.randn(k_shape).to(dtype)
    T, D = q_shape[-2:]
    positions = torch.rand(T) * 40  # any (float) positions
    inv_freq = rope_frequencies(D)[0]
    q_rot, k_rot = rope_qk_triton(q, k, positions, inv_freq, interleaved)
    assert q_rot.dtype == dtype and q_rot.shape == q.shape and k_rot.shape == k.shape
    assert rel_err(q_rot, reference.apply_rope(q.double(), positions, inv_freq, interleaved)) < tol
    assert rel_err(k_rot, reference.apply_rope(k.double(), positions, inv_freq, interleaved)) < tol


def test_triton_gradcheck():
    q = torch.randn(1, 2, 5, 4, dtype=torch.float64, requires_grad=True)
    k = torch.randn(1, 1, 5, 4, dtype=torch.float64, requires_grad=True)
    positions, inv_freq = torch.tensor([0.0, 1.0, 2.5, 7.0, 30.0], dtype=torch.float64), rope_frequencies(4)[0]
    for interleaved in (False, True):
        assert torch.autograd.gradcheck(lambda a, b: rope_qk_triton(a, b, positions, inv_freq, interleaved), (q, k))


def test_triton_backward_matches_reference_autograd():
    q = torch.randn(2, 9, 6, requires_grad=True)
    k = torch.randn(1, 9, 6, requires_grad=True)
    dq, dk = torch.randn_like(q), torch.randn_like(k)
    positions, inv_freq = torch.arange(9.0), rope_frequencies(6)[0]
    ours = torch.autograd.grad(rope_qk_triton(q, k, positions, inv_freq, False), (q, k), (dq, dk))
    expected = torch.autograd.grad(
        (reference.apply_rope(q, positions, inv_freq), reference.apply_rope(k, positions, inv_freq)), (q, k), (dq, dk)
    )
    for a, b in zip(ours, expected):
        assert rel_err(a, b) < 1e-6


def test_single_tensor_backward_through_the_kernel():
    x = torch.randn(3, 7, 6, dtype=torch.float64, requires_grad=True)
    dy = torch.randn_like(x)
    positions, inv_freq = torch.arange(7.0, dtype=torch.float64) * 2.5, rope_frequencies(6)[0]
    (ours,) = torch.autograd.grad(rope_qk_triton(x, None, positions, inv_freq, True)[0], x, dy)
    (expected,) = torch.autograd.grad(reference.apply_rope(x, positions, inv_freq, True), x, dy)
    torch.testing.assert_close(ours, expected)


def test_public_functions_dispatch_to_triton_when_interpreting(monkeypatch):
    calls = []
    real = rope_qk_triton
    monkeypatch.setattr("labs.rope.triton_rope.rope_qk_triton", lambda *a: calls.append(a[1] is None) or real(*a))
    x, positions, inv_freq = torch.randn(3, 4), torch.arange(3), rope_frequencies(4)[0]
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    apply_rope(x, positions, inv_freq)
    apply_rope_qk(x, x, positions, inv_freq)
    assert calls == [True, False]
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    torch.testing.assert_close(apply_rope(x, positions, inv_freq), reference.apply_rope(x, positions, inv_freq))
    assert calls == [True, False]


def test_sinusoidal_encoding_hand_values():
    pe = sinusoidal_encoding(3, 4, base=100.0)
    torch.testing.assert_close(pe[0], torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(pe[2], torch.tensor([math.sin(2), math.cos(2), math.sin(0.2), math.cos(0.2)], dtype=torch.float64))


def test_alibi_slopes_hand_values():
    torch.testing.assert_close(alibi_slopes(8), torch.tensor([2.0**-k for k in range(1, 9)], dtype=torch.float64))
    # 6 heads: the 4-head slopes 2^-2, 2^-4, 2^-6, 2^-8, then every other 8-head slope: 2^-1, 2^-3.
    torch.testing.assert_close(alibi_slopes(6), torch.tensor([2.0**-k for k in (2, 4, 6, 8, 1, 3)], dtype=torch.float64))


def test_decay_bound_against_a_direct_sum():
    d, base = 12, 10000.0
    distances = torch.tensor([0.0, 1.0, 7.5, 100.0])
    theta = np_theta(d, base)
    expected = [np.mean([abs(sum(np.exp(1j * r * theta[k]) for k in range(j))) for j in range(1, d // 2 + 1)]) for r in distances.tolist()]
    np.testing.assert_allclose(decay_bound(rope_frequencies(d, base=base)[0], distances).numpy(), expected, rtol=1e-12)
    assert decay_bound(rope_frequencies(128)[0], [0])[0].item() == pytest.approx((64 + 1) / 2)  # S_j = j at r = 0


def test_decay_bound_takes_any_frequencies():
    """Scaled frequencies change the bound: interpolating every pair by s stretches it s times along r."""
    theta = rope_frequencies(16)[0]
    linear = rope_frequencies(16, scaling="linear", factor=4)[0]
    distances = torch.tensor([0.0, 3.0, 40.0, 250.0])
    torch.testing.assert_close(decay_bound(linear, 4 * distances), decay_bound(theta, distances))
    assert not torch.allclose(decay_bound(linear, distances), decay_bound(theta, distances))


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: rope_frequencies(7), ValueError, "head_dim must be even.*got 7"),
        (lambda: rope_frequencies(8, scaling="rope2"), ValueError, "scaling must be one of.*got 'rope2'"),
        (lambda: rope_frequencies(8, scaling="linear", factor=0.5), ValueError, "factor must be a finite real number >= 1, got 0.5"),
        (lambda: rope_frequencies(8, scaling="linear", factor=float("inf")), ValueError, "factor must be a finite real number"),
        (lambda: rope_frequencies(8, scaling="yarn", factor=2), ValueError, "needs original_max_position"),
        (lambda: rope_frequencies(8, base=1.0), ValueError, "rope_frequencies: base must be a finite real number > 1, got 1.0"),
        (lambda: rope_frequencies(8, base="10000"), ValueError, "base must be a finite real number > 1, got '10000'"),
        (lambda: rope_frequencies(8, scaling="yarn", factor=2, original_max_position=16, beta_fast=0), ValueError,
         "beta_fast must be a finite real number > 0, got 0"),
        (lambda: apply_rope(torch.ones(3, 5), torch.arange(3), torch.ones(2)), ValueError, "even head dim D.*got D=5"),
        (lambda: apply_rope(torch.ones(3, 4), torch.arange(4), torch.ones(2)), ValueError, r"positions must be a 1-D tensor of length T=3, got shape \(4,\)"),
        (lambda: apply_rope(torch.ones(3, 4), torch.arange(3), torch.ones(3)), ValueError, r"inv_freq must be a 1-D tensor of length D/2=2, got shape \(3,\)"),
        (lambda: apply_rope([1.0], torch.arange(1), torch.ones(1)), TypeError, "x must be a torch.Tensor, got list"),
        (lambda: apply_rope(torch.ones(3, 4, dtype=torch.int64), torch.arange(3), torch.ones(2)), TypeError, "apply_rope: x must have a floating dtype.*int64"),
        (lambda: apply_rope(torch.ones(4), torch.arange(1), torch.ones(2)), ValueError, r"x must have at least 2 dimensions, got shape \(4,\)"),
        (lambda: apply_rope_qk(torch.ones(3, 4), torch.ones(2, 4), torch.arange(3), torch.ones(2)), ValueError, r"k must share \(T, D\)"),
        (lambda: sinusoidal_encoding(4, 3), ValueError, "dim must be even"),
        (lambda: alibi_slopes(0), ValueError, "n_heads must be a positive int, got 0"),
        (lambda: sinusoidal_encoding(4, 4, base=0.5), ValueError, "sinusoidal_encoding: base must be a finite real number > 1"),
        (lambda: decay_bound(torch.ones(2, 3), [1.0]), ValueError, r"decay_bound: inv_freq must have 1 dimensions, got shape \(2, 3\)"),
        (lambda: decay_bound(torch.arange(3), [1.0]), TypeError, "decay_bound: inv_freq must have a floating dtype"),
        (lambda: decay_bound(torch.ones(3), [[1.0]]), ValueError, "decay_bound: distances must be a 1-D real sequence"),
    ],
)
def test_bad_input(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_every_scaling_is_accepted():
    for scaling in rope.SCALINGS:
        inv_freq, _ = rope_frequencies(8, scaling=scaling, factor=2, original_max_position=16, seq_len=40)
        assert inv_freq.shape == (4,) and torch.isfinite(inv_freq).all()
