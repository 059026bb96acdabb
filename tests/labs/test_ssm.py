"""labs.ssm: HiPPO matrices against their defining ODEs, discretisations, the SSM's two views, input checks."""

import math

import pytest
import torch

import labs
import labs.ssm as ssm
from labs.ssm import memory, reference
from labs.ssm.experiment import (StackedS4D, delay_task, mode_init, s4d_legs_init, sequential_digits, train_delay,
                                 train_digits)

F64 = torch.float64


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tensors: one thread is fastest, and two spin against each other on a busy machine."""
    with labs.threads(1):
        yield


def test_legs_closed_form_small():
    A, B = ssm.hippo("legs", 3)
    r3, r5 = math.sqrt(3), math.sqrt(5)
    expected = -torch.tensor([[1, 0, 0], [r3, 2, 0], [r5, r3 * r5, 3]], dtype=F64)
    torch.testing.assert_close(A, expected)
    torch.testing.assert_close(B, torch.tensor([1, r3, r5], dtype=F64))


def test_legt_and_lagt_closed_forms_small():
    A, B = ssm.hippo("legt", 2, theta=2.0)
    r3 = math.sqrt(3)
    torch.testing.assert_close(A, -torch.tensor([[1, -r3], [r3, 3]], dtype=F64) / 2)
    torch.testing.assert_close(B, torch.tensor([1, r3], dtype=F64) / 2)
    A, B = ssm.hippo("lagt", 3)
    torch.testing.assert_close(A, -torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=F64))
    torch.testing.assert_close(B, torch.ones(3, dtype=F64))


def test_legs_eigenvalues_are_minus_one_to_minus_n():
    A, _ = ssm.hippo("legs", 7)
    eig = torch.linalg.eigvals(A).real.sort().values
    torch.testing.assert_close(eig, -torch.arange(7, 0, -1, dtype=F64))


def test_legs_normal_plus_low_rank():
    A, _ = ssm.hippo("legs", 9)
    P = torch.sqrt(torch.arange(9, dtype=F64) + 0.5)
    S = A + torch.outer(P, P) + 0.5 * torch.eye(9, dtype=F64)
    torch.testing.assert_close(S, -S.T)


@pytest.mark.parametrize("measure, theta", [("legs", 1.0), ("legt", 0.5)])
def test_projection_reconstructs_a_smooth_signal(measure, theta):
    L = 2000
    s = torch.arange(1, L + 1, dtype=F64) / L
    f = torch.sin(6 * s) + s**2
    c = ssm.hippo_project(f, measure, 16, dt=1 / L, theta=theta)
    assert c.shape == (L, 16)
    rebuilt = ssm.hippo_reconstruct(c[-1], measure, s, t=1.0, theta=theta)
    support = s >= 1 - theta if measure == "legt" else s > 0
    assert (rebuilt - f)[support].abs().max() < 5e-3


def _legs_error(n: int, L: int) -> float:
    s = torch.arange(1, L + 1, dtype=F64) / L
    f = torch.exp(-3 * s) * torch.cos(10 * s)
    c = ssm.hippo_project(f, "legs", n, dt=1 / L)
    return (ssm.hippo_reconstruct(c[-1], "legs", s, t=1.0) - f).pow(2).mean().item()


def test_projection_error_falls_with_n():
    assert _legs_error(4, 4000) > 10 * _legs_error(8, 4000)


def _smooth(s):
    return torch.sin(9 * s) + 0.5 * torch.cos(23 * s**2) + s


def _order(measure, samples, Ls=(500, 1000), **options):
    """Measured order in dt of the coefficient error at t = 1 against the exact projection (N = 32)."""
    exact = memory.exact_coefficients(_smooth, measure, 32, 1.0, theta=0.5)
    errors = []
    for L in Ls:
        k = torch.arange(1, L + 1, dtype=F64)
        s = (k - 0.5) / L if samples == "midpoint" else k / L
        c = ssm.hippo_project(_smooth(s), measure, 32, dt=1 / L, theta=0.5, **options)[-1]
        errors.append((c - exact).norm().item())
    return math.log(errors[0] / errors[1]) / math.log(Ls[1] / Ls[0])


def test_exact_coefficients_rebuild_a_polynomial_exactly():
    f = lambda s: 3 * s**3 - s + 0.5  # degree 3 < N: the projection is the polynomial itself
    s = torch.linspace(0.1, 1.0, 11, dtype=F64)
    for measure, theta in (("legs", 1.0), ("legt", 0.5)):
        c = memory.exact_coefficients(f, measure, 6, 1.0, theta=theta)
        support = s >= 0.5 if measure == "legt" else s >= 0
        torch.testing.assert_close(memory.reconstruct(c, measure, s, 1.0, theta=theta)[support], f(s)[support])
    with pytest.raises(ValueError, match="exact_coefficients: measure must be 'legs' or 'legt', got 'lagt'"):
        memory.exact_coefficients(f, "lagt", 4, 1.0)


def test_legt_order_depends_on_where_the_sample_is_taken():
    """Bilinear LegT: end-of-step samples lag half a step (first order); mid-step samples give second order."""
    assert abs(_order("legt", "endpoint") - 1) < 0.1
    assert abs(_order("legt", "midpoint") - 2) < 0.1


def test_legs_needs_all_three_fixes_for_second_order():
    """1/k steps, the first step from an empty memory, and the half-step lag are each first order."""
    assert abs(_order("legs", "midpoint", legs_step="log", legs_start="constant") - 2) < 0.1
    for samples, step, start in [("endpoint", "log", "constant"), ("midpoint", "reciprocal", "constant"),
                                 ("midpoint", "log", "empty"), ("endpoint", "reciprocal", "empty")]:
        assert abs(_order("legs", samples, legs_step=step, legs_start=start) - 1) < 0.2, (samples, step, start)


def test_bilinear_legs_on_a_constant_gives_2L_over_2L_plus_1():
    for L in (1, 2, 7, 40):
        c = ssm.hippo_project(torch.ones(L, dtype=F64), "legs", 4, dt=0.1)[-1]
        assert abs(c[0].item() - 2 * L / (2 * L + 1)) < 1e-13
    c = ssm.hippo_project(torch.ones(5, dtype=F64), "legs", 4, dt=0.1, legs_start="constant", legs_step="log")
    torch.testing.assert_close(c[:, 0], torch.ones(5, dtype=F64))  # the constant's memory is a fixed point


def test_legs_log_steps():
    A, B = ssm.hippo("legs", 3)
    Ads, _ = memory.legs_steps(A, B, 4, "zoh", step="log")
    torch.testing.assert_close(Ads[2], torch.linalg.matrix_exp(math.log(3 / 2) * A))
    torch.testing.assert_close(Ads[0], torch.linalg.matrix_exp(A))


def test_legs_is_timescale_invariant():
    """LegS's discrete memory does not depend on dt: the same samples give the same coefficients."""
    f = torch.randn(50, dtype=F64)
    torch.testing.assert_close(ssm.hippo_project(f, "legs", 8, dt=0.01), ssm.hippo_project(f, "legs", 8, dt=3.0))


def test_legs_lti_basis_matches_matrix_exponential():
    A, B = ssm.hippo("legs", 6)
    t = torch.linspace(0, 4, 9, dtype=F64)
    expected = torch.stack([torch.linalg.matrix_exp(ti * A) @ B for ti in t])
    torch.testing.assert_close(ssm.legs_lti_basis(6, t), expected)


@pytest.mark.parametrize("method", ssm.DISCRETIZATIONS)
def test_discretize_converges_to_matrix_exponential(method):
    A, B = ssm.hippo("legt", 4)
    exact = torch.linalg.matrix_exp(A)
    errors = []
    for steps in (50, 100):
        Ad, _ = ssm.discretize(A, B, 1 / steps, method)
        errors.append((torch.linalg.matrix_power(Ad, steps) - exact).abs().max().item())
    if method == "zoh":
        assert errors[1] < 1e-12
    else:
        order = 2 if method == "bilinear" else 1
        assert errors[1] < errors[0] / (2**order) * 1.2


def test_diagonal_discretize_matches_dense():
    a = -torch.rand(5, dtype=F64)
    b = torch.randn(5, dtype=F64)
    for method in ssm.DISCRETIZATIONS:
        Ad, Bd = ssm.discretize(a, b, 0.3, method)
        Ad_dense, Bd_dense = ssm.discretize(torch.diag(a), b, 0.3, method)
        torch.testing.assert_close(torch.diag(Ad), Ad_dense)
        torch.testing.assert_close(Bd, Bd_dense)


@pytest.mark.parametrize("method", ssm.DISCRETIZATIONS)
@pytest.mark.parametrize("L", [1, 63, 65])
def test_kernel_convolution_equals_recurrence_dense(method, L):
    A, B = ssm.hippo("legs", 5)
    C = torch.randn(5, dtype=F64)
    u = torch.randn(3, L, dtype=F64)
    K = ssm.ssm_kernel(A, B, C, 0.05, L, method=method)
    torch.testing.assert_close(ssm.fft_conv(u, K), ssm.ssm_recurrence(A, B, C, 0.05, u, method=method))


@pytest.mark.parametrize("dtype", [F64, torch.complex128])
def test_kernel_convolution_equals_recurrence_diagonal(dtype):
    H, N, L = 3, 4, 37
    a = -torch.rand(H, N, dtype=F64) + (1j * torch.randn(H, N, dtype=F64) if dtype.is_complex else 0)
    b, c = torch.randn(H, N, dtype=dtype), torch.randn(H, N, dtype=dtype)
    dt = torch.rand(H, dtype=F64) * 0.5 + 0.01
    u = torch.randn(2, H, L, dtype=F64)
    K = ssm.ssm_kernel(a, b, c, dt, L, method="zoh")
    y = ssm.ssm_recurrence(a, b, c, dt, u, method="zoh")
    if dtype.is_complex:
        torch.testing.assert_close(ssm.fft_conv(u, K.real) + 1j * ssm.fft_conv(u, K.imag), y)
    else:
        torch.testing.assert_close(ssm.fft_conv(u, K), y)


@pytest.mark.parametrize("L", [1, 63, 65])
def test_real_diagonal_recurrence_takes_the_scan_and_matches_the_loop(L, monkeypatch):
    """A real diagonal system runs on linear_scan (the Triton scan, interpreted here): held against the loop."""
    calls = []
    real_scan = ssm.linear_scan
    monkeypatch.setattr(ssm, "linear_scan", lambda a, b: calls.append(a.shape) or real_scan(a, b))
    a, b, c = -torch.rand(3, 4, dtype=F64) - 0.1, torch.randn(3, 4, dtype=F64), torch.randn(3, 4, dtype=F64)
    dt = torch.rand(3, dtype=F64) * 0.5 + 0.01
    u = torch.randn(2, 3, L, dtype=F64)
    for method in ssm.DISCRETIZATIONS:
        torch.testing.assert_close(ssm.ssm_recurrence(a, b, c, dt, u, method=method),
                                   reference.ssm_recurrence_reference(a, b, c, dt, u, method))
    assert calls == [(2, 3, 4, L)] * len(ssm.DISCRETIZATIONS)


def test_fft_conv_has_no_wraparound():
    u = torch.zeros(8, dtype=F64)
    u[-1] = 1.0  # an impulse at the last step must not leak into the start
    K = torch.ones(8, dtype=F64)
    y = ssm.fft_conv(u, K)
    torch.testing.assert_close(y, torch.tensor([0, 0, 0, 0, 0, 0, 0, 1], dtype=F64))
    direct = torch.tensor([sum(K[j] * u[k - j] for j in range(k + 1)) for k in range(8)], dtype=F64)
    torch.testing.assert_close(y, direct)


def test_s4d_inits():
    a, _ = s4d_legs_init(8)
    torch.testing.assert_close(a.real, torch.full((8,), -0.5, dtype=F64))
    assert (a.imag > 0).all()
    a, b = mode_init("lin", 4, seed=0)
    torch.testing.assert_close(a, torch.tensor([-0.5 + 0j, -0.5 + math.pi * 1j, -0.5 + 2j * math.pi, -0.5 + 3j * math.pi], dtype=torch.complex128))
    torch.testing.assert_close(b, torch.ones(4, dtype=torch.complex128))
    legs_a, legs_b = s4d_legs_init(16)
    a, b = mode_init("random", 16, seed=1)
    assert (a.real == -0.5).all()
    assert legs_a.imag.min() <= a.imag.min() and a.imag.max() <= legs_a.imag.max()
    assert 0.5 < b.abs().pow(2).mean().sqrt() / legs_b.abs().pow(2).mean().sqrt() < 2
    assert not torch.equal(a, mode_init("random", 16, seed=2)[0])
    with pytest.raises(ValueError, match="mode_init: init must be one of"):
        mode_init("xavier", 4, seed=0)


def test_arms_share_everything_but_a_and_b():
    model = StackedS4D([("legs", 3), ("narrow", 3), ("legs", 4)], H=4, N=2, depth=1, classes=3)
    p = model.layers[0]
    for name in ("C", "log_dt", "D", "mix_w"):
        assert torch.equal(p[name][0], p[name][1]) and not torch.equal(p[name][0], p[name][2]), name
    assert torch.equal(model.dec_w[0], model.dec_w[1])
    assert not torch.equal(p["im"][0], p["im"][1])


def test_stacked_training_equals_training_alone_and_leaves_the_global_rng_alone():
    before = torch.get_rng_state()
    both = train_digits(["legs", "lin"], [0, 1], epochs=2, H=4, N=2, depth=1)
    alone = train_digits(["lin"], [1], epochs=2, H=4, N=2, depth=1)
    for key in ("train_loss", "test_accuracy"):
        assert both["lin", 1][key] == pytest.approx(alone["lin", 1][key], rel=1e-4, abs=1e-3)
    assert torch.equal(torch.get_rng_state(), before)
    with pytest.raises(ValueError, match="train_digits: init must be one of"):
        train_digits(["xavier"], [0])
    with pytest.raises(ValueError, match="train_digits: seed must be an int >= 0, got 1.5"):
        train_digits(["legs"], [1.5])


def test_digits_learn_a_little():
    history = train_digits(["legs"], [0], epochs=3, H=16, N=8)
    assert history["legs", 0]["test_accuracy"][-1] > 0.5  # chance is 0.1


def test_delay_task_and_its_training():
    u, y = delay_task(3, 64, 10, cycles=4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(y[:, 10:], u[:, :-10])
    assert (y[:, :10] == 0).all()
    torch.testing.assert_close(u.pow(2).mean(-1), torch.ones(3))
    torch.testing.assert_close(torch.fft.rfft(u)[:, 5:].abs(), torch.zeros(3, 28), atol=1e-4, rtol=0)
    history = train_delay(["lin"], [0, 1], L=128, delay=32, cycles=6, steps=60, N=8)
    for seed in (0, 1):
        assert history["lin", seed]["test_loss"][-1] < 0.5 * history["lin", seed]["test_loss"][0]
    with pytest.raises(ValueError, match="train_delay: need delay < L"):
        train_delay(["lin"], [0], L=64, delay=64)


def test_the_model_comes_from_the_seed_alone():
    first = StackedS4D([("random", 3)], H=4, N=2, depth=2, classes=10)
    torch.rand(100)  # moving the global RNG must not change the model
    second = StackedS4D([("random", 3)], H=4, N=2, depth=2, classes=10)
    other = StackedS4D([("random", 4)], H=4, N=2, depth=2, classes=10)
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), second.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(first.parameters(), other.parameters()))
    split, again = sequential_digits(seed=3), sequential_digits(seed=3)
    assert torch.equal(split[1][1], again[1][1]) and not torch.equal(split[1][1], sequential_digits(seed=4)[1][1])


def test_ssm_kernel_takes_siso_row_and_column_shapes():
    A, B = ssm.hippo("legs", 5)
    C = torch.randn(5, dtype=F64)
    K = ssm.ssm_kernel(A, B, C, 0.1, 16)
    for b in (B, B[:, None]):
        for c in (C, C[None, :]):
            torch.testing.assert_close(ssm.ssm_kernel(A, b, c, 0.1, 16), K)
    u = torch.randn(2, 16, dtype=F64)
    torch.testing.assert_close(ssm.ssm_recurrence(A, B[:, None], C[None, :], 0.1, u), ssm.fft_conv(u, K))
    with pytest.raises(ValueError, match=r"ssm_kernel: expected a dense system .* got A \(5, 5\), B \(5,\), C \(2, 5\)"):
        ssm.ssm_kernel(A, B, torch.zeros(2, 5, dtype=F64), 0.1, 16)
    with pytest.raises(ValueError, match=r"ssm_kernel: expected a dense system .* B \(1, 5\)"):
        ssm.ssm_kernel(A, B[None, :], C, 0.1, 16)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: ssm.hippo("fourier", 4), ValueError, "hippo: measure must be one of .* got 'fourier'"),
        (lambda: ssm.hippo("legs", 0), ValueError, "hippo: N must be a positive int, got 0"),
        (lambda: ssm.hippo("legs", 2.5), ValueError, "hippo: N must be a positive int"),
        (lambda: ssm.hippo("legt", 3, theta=0), ValueError, "hippo: theta must be a finite real number > 0, got 0"),
        (lambda: ssm.hippo("legt", 3, theta=float("nan")), ValueError, "hippo: theta must be a finite real number > 0"),
        (lambda: ssm.hippo("legs", 3, dtype=torch.int64), TypeError, "hippo: dtype must be"),
        (lambda: ssm.discretize(*ssm.hippo("legs", 3), 0.0, "zoh"), ValueError, "discretize: dt must be .*> 0, got 0.0"),
        (lambda: ssm.discretize(*ssm.hippo("legs", 3), -1, "zoh"), ValueError, "discretize: dt must be"),
        (lambda: ssm.discretize(*ssm.hippo("legs", 3), 0.1, "rk4"), ValueError, "discretize: method must be one of"),
        (lambda: ssm.discretize(torch.full((2,), -1.0), torch.ones(2), torch.tensor([0.1, 0.0])), ValueError,
         "discretize: dt must be finite and > 0, got a tensor with min 0.0"),
        (lambda: ssm.discretize(torch.zeros(3, 3, dtype=torch.int64), torch.zeros(3), 0.1), TypeError,
         "discretize: A must have a floating dtype"),
        (lambda: ssm.discretize(torch.zeros(3, 3), torch.zeros(4), 0.1), ValueError, r"discretize: expected a dense system .* got A \(3, 3\), B \(4,\)"),
        (lambda: ssm.discretize([[1.0]], torch.zeros(1), 0.1), TypeError, "discretize: A must be a torch.Tensor, got list"),
        (lambda: ssm.hippo_project(torch.zeros(5), "legs", 4, dt=0), ValueError, "hippo_project: dt must be"),
        (lambda: ssm.hippo_project(torch.zeros(5), "cheb", 4, dt=0.1), ValueError, "hippo_project: measure must be"),
        (lambda: ssm.hippo_project(torch.zeros(5, dtype=torch.int64), "legs", 4, dt=0.1), TypeError, "hippo_project: signal must have a floating dtype"),
        (lambda: ssm.hippo_project(torch.zeros(5), "legs", 4, dt=0.1, legs_step="euler"), ValueError, "hippo_project: legs_step must be one of 'reciprocal', 'log'; got 'euler'"),
        (lambda: ssm.hippo_project(torch.zeros(5), "legs", 4, dt=0.1, legs_start="warm"), ValueError, "hippo_project: legs_start must be one of 'empty', 'constant'"),
        (lambda: ssm.hippo_project(torch.zeros(5), "legt", 4, dt=0.1, legs_step="log"), ValueError, "hippo_project: legs_step and legs_start apply to measure 'legs' only, got measure 'legt'"),
        (lambda: ssm.hippo_reconstruct(torch.zeros(4), "legs", torch.zeros(2, 2), t=1.0), ValueError, "hippo_reconstruct: times must have 1 dimensions"),
        (lambda: ssm.hippo_reconstruct(torch.zeros(4), "legs", torch.zeros(2), t=-1.0), ValueError, "hippo_reconstruct: t must be a finite real number > 0"),
        (lambda: ssm.ssm_kernel(torch.zeros(3, 3), torch.zeros(3), torch.zeros(2), 0.1, 8), ValueError, "ssm_kernel: expected a dense system"),
        (lambda: ssm.ssm_kernel(torch.zeros(3, 3), torch.zeros(3), torch.zeros(3), 0.1, 0), ValueError, "ssm_kernel: L must be a positive int"),
        (lambda: ssm.ssm_recurrence(torch.zeros(3), torch.zeros(3), torch.zeros(3), 0.1, torch.zeros(2, 0)), ValueError, "ssm_recurrence: u must have a non-empty"),
        (lambda: ssm.fft_conv(torch.zeros(3, 8), torch.zeros(2, 8)), ValueError, r"fft_conv: the leading dimensions of u \(3, 8\) and K \(2, 8\)"),
        (lambda: ssm.linear_scan(torch.zeros(2, 5), torch.zeros(2, 4)), ValueError, r"linear_scan: a and b must have the same shape and dtype, got a \(2, 5\)"),
        (lambda: ssm.linear_scan(torch.zeros(2, 5), torch.zeros(2, 5), h0=torch.zeros(3)), ValueError, r"linear_scan: h0 must have shape \(2,\), got \(3,\)"),
        (lambda: ssm.linear_scan(torch.zeros(2, 5, dtype=torch.int32), torch.zeros(2, 5, dtype=torch.int32)), TypeError, "linear_scan: a must have a floating dtype"),
    ],
)
def test_bad_input_is_rejected(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_legendre_and_laguerre_recurrences():
    x = torch.linspace(-1, 1, 7, dtype=F64)
    P = memory.legendre(4, x)
    torch.testing.assert_close(P[:, 2], (3 * x**2 - 1) / 2)
    torch.testing.assert_close(P[:, 3], (5 * x**3 - 3 * x) / 2)
    Lg = memory.laguerre(3, x + 1)
    torch.testing.assert_close(Lg[:, 2], ((x + 1) ** 2 - 4 * (x + 1) + 2) / 2)
