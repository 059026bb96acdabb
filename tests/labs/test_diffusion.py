"""labs.diffusion: SDE marginals against simulation, exact-score samplers against the data,
ODE likelihood against the analytic density, DSM against ESM, and clear errors for bad input."""

import math

import pytest
import torch

from labs.diffusion import (
    VESDE,
    VPSDE,
    SubVPSDE,
    ScoreMLP,
    checkerboard,
    digits,
    dormand_prince,
    dsm_loss,
    euler_maruyama,
    fixed_step,
    gaussian_mixture_score,
    log_likelihood,
    predictor_corrector,
    probability_flow_sample,
    sliced_wasserstein,
    swiss_roll,
    train_score_model,
    two_moons,
)

SDES = [VPSDE(), SubVPSDE(), VESDE(sigma_max=5.0)]
IDS = ["vp", "subvp", "ve"]
MEANS, STDS, WEIGHTS = [[-1.5, 0.0], [1.5, 0.5]], [0.4, 0.3], [0.4, 0.6]


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_marginal_matches_euler_maruyama_simulation_of_the_forward_sde(sde):
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((20000, 1), 0.7, dtype=torch.float64)
    x, n = x0.clone(), 400
    for i in range(n):  # plain Euler-Maruyama forward in time, dt = 0.5 / n
        t = torch.full((x.shape[0],), 0.5 * i / n, dtype=torch.float64)
        drift, diffusion = sde.sde(x, t)
        x = x + drift * (0.5 / n) + diffusion[:, None] * math.sqrt(0.5 / n) * torch.randn(x.shape, generator=g, dtype=x.dtype)
    mean, std = sde.marginal(x0[:1], 0.5)
    se = std.item() / math.sqrt(x.shape[0])
    assert abs(x.mean().item() - mean.item()) < 5 * se + 2e-3
    assert abs(x.std().item() / std.item() - 1) < 0.03


def test_vp_discrete_betas_are_ddpm_linear_schedule():
    sde = VPSDE(0.1, 20.0, 1000)
    ddpm = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    assert torch.allclose(sde.discrete_betas, ddpm, rtol=0, atol=1e-15)
    x = torch.ones(3, 2, dtype=torch.float64)
    f, G = sde.discretize(x, torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64))
    assert torch.allclose(G**2, ddpm[[0, 500, 999]], atol=1e-12)  # round(0.5 * 999) = 500
    assert torch.allclose(f + x, torch.sqrt(1 - ddpm[[0, 500, 999]])[:, None] * x)


def test_ve_discretize_adds_variance_sigma_i_squared_minus_previous():
    sde = VESDE(0.01, 50.0, 10)
    x = torch.zeros(2, 3, dtype=torch.float64)
    _, G = sde.discretize(x, torch.tensor([0.0, 1.0], dtype=torch.float64))
    s = sde.discrete_sigmas
    assert torch.allclose(G, torch.stack([s[0], torch.sqrt(s[9] ** 2 - s[8] ** 2)]))


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_mixture_score_is_gradient_of_log_density(sde):
    score = gaussian_mixture_score(sde, MEANS, STDS, WEIGHTS)
    x = torch.randn(7, 2, dtype=torch.float64, requires_grad=True)
    t = torch.rand(7, dtype=torch.float64) * 0.9 + 0.05
    (grad,) = torch.autograd.grad(score.mixture.log_prob(x, sde, t).sum(), x)
    assert torch.allclose(score(x.detach(), t), grad, atol=1e-10)


@pytest.mark.parametrize("sde", SDES, ids=IDS)
@pytest.mark.parametrize("sampler", ["em", "pc", "pf-rk45", "pf-heun"])
def test_samplers_with_exact_score_reproduce_mixture_statistics(sde, sampler):
    score = gaussian_mixture_score(sde, MEANS, STDS, WEIGHTS)
    g, n = torch.Generator().manual_seed(1), 3000
    run = {
        "em": lambda: euler_maruyama(sde, score, (n, 2), 200, generator=g, dtype=torch.float64),
        "pc": lambda: predictor_corrector(sde, score, (n, 2), 100, generator=g, dtype=torch.float64),
        "pf-rk45": lambda: probability_flow_sample(sde, score, (n, 2), generator=g, dtype=torch.float64, rtol=1e-4, atol=1e-4),
        "pf-heun": lambda: probability_flow_sample(sde, score, (n, 2), 100, method="heun", generator=g, dtype=torch.float64),
    }[sampler]
    x = run().x
    assert torch.isfinite(x).all()
    right = (x[:, 0] > 0).double().mean().item()  # weight of the right-hand component
    assert abs(right - 0.6) < 5 * math.sqrt(0.24 / n) + 0.01
    assert abs(x[x[:, 0] > 0, 1].mean().item() - 0.5) < 0.05
    assert abs(x[x[:, 0] > 0, 1].std().item() - 0.3) < 0.05


@pytest.mark.parametrize("sde", SDES, ids=IDS)
def test_ode_likelihood_matches_analytic_mixture_density(sde):
    score = gaussian_mixture_score(sde, MEANS, STDS, WEIGHTS)
    x = score.mixture.sample(6, torch.Generator().manual_seed(2))
    exact_prior = lambda z: score.mixture.log_prob(z, sde, 1.0)  # noqa: E731
    ours = log_likelihood(sde, score, x, rtol=1e-7, atol=1e-7, prior_logp=exact_prior)
    exact = score.mixture.log_prob(x, sde, 1e-5)
    assert torch.allclose(ours, exact, atol=2e-3)
    if not isinstance(sde, VESDE):  # VP and sub-VP forget the data by t = 1: the N(0, I) prior is nearly exact
        assert torch.allclose(log_likelihood(sde, score, x, rtol=1e-6, atol=1e-6), exact, atol=0.02)
    hutch = log_likelihood(sde, score, x, hutchinson=True, generator=torch.Generator().manual_seed(0), rtol=1e-4, atol=1e-4)
    assert torch.isfinite(hutch).all() and (hutch - exact).abs().mean() < 1.0


def test_dormand_prince_is_fifth_order_accurate_and_adapts():
    y0 = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    rotate = lambda y, t: torch.stack([-y[:, 1], y[:, 0]], dim=1)  # noqa: E731
    y, nfe, times = dormand_prince(rotate, y0, 0.0, 2 * math.pi, rtol=1e-9, atol=1e-9)
    assert torch.allclose(y, y0, atol=1e-7) and len(times) > 5
    _, nfe_loose, _ = dormand_prince(rotate, y0, 0.0, 2 * math.pi, rtol=1e-3, atol=1e-3)
    assert nfe_loose < nfe
    backward, _, _ = dormand_prince(lambda y, t: -y, y0, 1.0, 0.0, rtol=1e-9, atol=1e-9)
    assert torch.allclose(backward, y0 * math.e, rtol=1e-7)
    scipy_integrate = pytest.importorskip("scipy.integrate")
    ref = scipy_integrate.solve_ivp(lambda t, y: [-y[1] * t, y[0] * t], (0, 2), [1.0, 0.0], rtol=1e-10, atol=1e-10).y[:, -1]
    ours, _, _ = dormand_prince(lambda y, t: torch.stack([-y[:, 1] * t, y[:, 0] * t], 1), y0, 0.0, 2.0, rtol=1e-10, atol=1e-10)
    assert torch.allclose(ours[0], torch.tensor(ref), atol=1e-7)


def test_fixed_step_orders():
    y0 = torch.ones(1, 1, dtype=torch.float64)
    errors = {}
    for method in ["euler", "heun"]:
        errors[method] = [
            abs(fixed_step(lambda y, t: y, y0, torch.linspace(0, 1, n + 1, dtype=torch.float64), method)[0].item() - math.e)
            for n in (20, 40)
        ]
    assert 1.8 < errors["euler"][0] / errors["euler"][1] < 2.2
    assert 3.6 < errors["heun"][0] / errors["heun"][1] < 4.4


def test_dsm_equals_esm_up_to_a_constant():
    """Two different score models: DSM - ESM is the same number for both (Vincent, 2011)."""
    sde = VPSDE()
    score = gaussian_mixture_score(sde, MEANS, STDS, WEIGHTS)
    x0 = score.mixture.sample(400_000, torch.Generator().manual_seed(3))
    t = torch.full((x0.shape[0],), 0.3, dtype=torch.float64)
    z = torch.randn(x0.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    mean, std = sde.marginal(x0, t)
    x = mean + std[:, None] * z
    gaps = []
    for a, b in [(0.0, 0.0), (-0.7, 0.3)]:
        s = a * x + b
        dsm = (s + z / std[:, None]).pow(2).sum(1).mean()
        esm = (s - score(x, t)).pow(2).sum(1).mean()
        gaps.append((dsm - esm).item())
    assert abs(gaps[0] - gaps[1]) < 0.02 * abs(gaps[0])


def test_dsm_loss_is_near_its_floor_for_the_exact_score_and_larger_for_a_wrong_one():
    sde = VPSDE()
    score = gaussian_mixture_score(sde, MEANS, STDS, WEIGHTS)
    x0 = score.mixture.sample(20000, torch.Generator().manual_seed(5))
    exact = dsm_loss(score, x0, sde, generator=torch.Generator().manual_seed(0))
    wrong = dsm_loss(lambda x, t: 0.5 * score(x, t), x0, sde, generator=torch.Generator().manual_seed(0))
    assert 0 < exact < 2 and wrong > exact + 0.05
    likelihood = dsm_loss(score, x0, sde, weighting="likelihood", generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(likelihood)


def test_training_lowers_the_loss_and_mlp_score_runs_batched():
    sde = VPSDE()
    data = two_moons(512, generator=torch.Generator().manual_seed(0))
    model, losses = train_score_model(data, sde, steps=150, batch_size=128, hidden=32, depth=2)
    assert sum(losses[-20:]) / 20 < sum(losses[:20]) / 20
    out = euler_maruyama(sde, model, (64, 2), 5, generator=torch.Generator().manual_seed(0))
    assert out.x.shape == (64, 2) and torch.isfinite(out.x).all() and out.nfe == 5


def test_seeded_score_model_and_training_leave_the_global_rng_alone():
    """A seed fixes the initial weights and the training; torch's global RNG is neither read nor moved."""
    state = torch.random.get_rng_state()
    a, b = ScoreMLP(2, VPSDE(), hidden=8, depth=1, seed=3), ScoreMLP(2, VPSDE(), hidden=8, depth=1, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.net[0].weight, ScoreMLP(2, VPSDE(), hidden=8, depth=1, seed=4).net[0].weight)
    data = two_moons(64, generator=torch.Generator().manual_seed(0))
    _, first = train_score_model(data, VPSDE(), steps=3, batch_size=16, hidden=8, depth=1, seed=5)
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.manual_seed(123)  # a different global state must not change the result
    _, second = train_score_model(data, VPSDE(), steps=3, batch_size=16, hidden=8, depth=1, seed=5)
    torch.random.set_rng_state(state)
    assert first == second
    _, other = train_score_model(data, VPSDE(), steps=3, batch_size=16, hidden=8, depth=1, seed=6)
    assert other != first
    assert torch.equal(torch.random.get_rng_state(), state)


def test_no_nans_near_t_zero():
    for sde in SDES:
        score = gaussian_mixture_score(sde, MEANS, STDS, WEIGHTS)
        model = ScoreMLP(2, sde, hidden=8, depth=1)
        x = torch.randn(5, 2)
        for t in (1e-5, 1e-3):
            tt = torch.full((5,), t)
            assert torch.isfinite(score(x.double(), tt.double())).all()
            assert torch.isfinite(model(x, tt)).all()
            assert torch.isfinite(torch.stack(sde.marginal(x, tt)[:1])).all()


def test_trajectories_and_datasets_have_the_documented_shapes():
    sde = VPSDE()
    score = gaussian_mixture_score(sde, MEANS, STDS, WEIGHTS)
    g = torch.Generator().manual_seed(0)
    assert euler_maruyama(sde, score, (4, 2), 6, generator=g, return_trajectory=True).trajectory.shape == (7, 4, 2)
    assert predictor_corrector(sde, score, (4, 2), 6, generator=g, return_trajectory=True).nfe == 12
    pf = probability_flow_sample(sde, score, (4, 2), 6, method="euler", generator=g, return_trajectory=True)
    assert pf.trajectory.shape == (7, 4, 2)
    for make in (two_moons, swiss_roll, checkerboard):
        assert make(33, generator=g).shape == (33, 2)
    d = digits()
    assert d.shape == (1797, 64) and d.min() >= -1 and d.max() <= 1
    board = checkerboard(4000, generator=g)
    assert ((torch.floor(board[:, 0]) + torch.floor(board[:, 1])) % 2 == 0).all()  # dark squares only


def test_sliced_wasserstein_is_zero_for_identical_and_grows_with_a_shift():
    a = torch.randn(500, 2, generator=torch.Generator().manual_seed(0))
    assert sliced_wasserstein(a, a) == 0
    assert sliced_wasserstein(a, a + 1.0) > sliced_wasserstein(a, a + 0.1) > 0


# -- bad input -------------------------------------------------------------------------


def test_bad_sde_parameters_raise():
    with pytest.raises(ValueError, match="VPSDE: need beta_min < beta_max"):
        VPSDE(beta_min=20.0, beta_max=0.1)
    with pytest.raises(ValueError, match="SubVPSDE: need beta_min < beta_max"):
        SubVPSDE(beta_min=1.0, beta_max=1.0)
    with pytest.raises(ValueError, match="VESDE: need sigma_min < sigma_max"):
        VESDE(sigma_min=5.0, sigma_max=1.0)
    with pytest.raises(ValueError, match="VPSDE: beta_min must be a finite real number > 0, got -1.0"):
        VPSDE(beta_min=-1.0)
    with pytest.raises(ValueError, match="VESDE: sigma_max must be a finite real number > 0, got inf"):
        VESDE(sigma_max=float("inf"))
    with pytest.raises(ValueError, match="VESDE: N .* must be an int >= 2"):
        VESDE(N=1)


def test_t_outside_unit_interval_raises():
    sde, x = VPSDE(), torch.zeros(3, 2)
    with pytest.raises(ValueError, match=r"VPSDE.sde: t must lie in \[0, 1\]"):
        sde.sde(x, 1.5)
    with pytest.raises(ValueError, match=r"VESDE.marginal: t must lie in \[0, 1\]"):
        VESDE().marginal(x, torch.tensor([0.1, -0.2, 0.3]))
    with pytest.raises(ValueError, match=r"t must be a scalar or have shape \(3,\)"):
        sde.sde(x, torch.zeros(4))


def test_wrong_shapes_and_types_raise():
    sde = VPSDE()
    with pytest.raises(ValueError, match=r"VPSDE.sde: x must have at least 2 dimensions, got shape \(3,\)"):
        sde.sde(torch.zeros(3), 0.5)
    with pytest.raises(TypeError, match="VPSDE.marginal: x must be a torch.Tensor"):
        sde.marginal([1.0, 2.0], 0.5)
    with pytest.raises(ValueError, match="prior_sample: shape must be"):
        sde.prior_sample((0, 2))
    with pytest.raises(ValueError, match=r"means must have shape \(K, D\)"):
        gaussian_mixture_score(sde, [1.0, 2.0], [1.0, 1.0], [0.5, 0.5])
    with pytest.raises(ValueError, match="weights must be"):
        gaussian_mixture_score(sde, MEANS, STDS, [0.5, 0.6])
    score = gaussian_mixture_score(sde, MEANS, STDS, WEIGHTS)
    with pytest.raises(ValueError, match=r"score_fn: x must have shape \(batch, 2\)"):
        score(torch.zeros(4, 3), 0.5)
    with pytest.raises(ValueError, match="euler_maruyama: n_steps must be a positive int"):
        euler_maruyama(sde, score, (4, 2), 0)
    with pytest.raises(ValueError, match="predictor_corrector: snr must be a finite real number > 0, got -1.0"):
        predictor_corrector(sde, score, (4, 2), 3, snr=-1.0)
    with pytest.raises(ValueError, match="predictor_corrector: n_corrector must be an int >= 0, got -1"):
        predictor_corrector(sde, score, (4, 2), 3, n_corrector=-1)
    with pytest.raises(ValueError, match="probability_flow_sample: method must be one of 'euler', 'heun', 'rk45'; got 'rk4'"):
        probability_flow_sample(sde, score, (4, 2), 3, method="rk4")
    with pytest.raises(ValueError, match="log_likelihood: x must have at least 2 dimensions"):
        log_likelihood(sde, score, torch.zeros(2))
    with pytest.raises(TypeError, match="log_likelihood: x must have a floating dtype"):
        log_likelihood(sde, score, torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match=r"euler_maruyama: eps \(the cut-off time near t = 0\) must be a finite real number > 0 and < 1, got 0.0"):
        euler_maruyama(sde, score, (4, 2), 3, eps=0.0)
    with pytest.raises(ValueError, match="dsm_loss: eps must be a finite real number > 0 and < 1, got 1.0"):
        dsm_loss(score, torch.zeros(4, 2), sde, eps=1.0)
    with pytest.raises(TypeError, match="log_likelihood: sde must be"):
        log_likelihood("vp", score, torch.zeros(2, 2))
    with pytest.raises(ValueError, match="dsm_loss: weighting must be one of 'variance', 'likelihood'; got 'uniform'"):
        dsm_loss(score, torch.zeros(4, 2), sde, weighting="uniform")
    with pytest.raises(ValueError, match="sliced_wasserstein: a and b must have the same shape"):
        sliced_wasserstein(torch.zeros(5, 2), torch.zeros(6, 2))
    with pytest.raises(ValueError, match="sliced_wasserstein: b must have 2 dimensions"):
        sliced_wasserstein(torch.zeros(5, 2), torch.zeros(5))
    with pytest.raises(ValueError, match="train_score_model: steps must be a positive int, got 0"):
        train_score_model(torch.zeros(8, 2), sde, steps=0)
    with pytest.raises(TypeError, match="ScoreMLP: sde must be a VPSDE, SubVPSDE or VESDE"):
        ScoreMLP(2, "vp")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_sampling_runs_on_cuda():
    sde = VPSDE()
    score = gaussian_mixture_score(sde, MEANS, STDS, WEIGHTS)
    out = euler_maruyama(sde, score, (256, 2), 20, device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    assert out.x.is_cuda and torch.isfinite(out.x).all()
