"""labs.diffusion's evidence tools: stacked score models (one per seed, trained at once), the
Gaussian-fit baseline, the digit classifier and its scores, convergence orders, and
Euler-Maruyama on a given Brownian path."""

import math

import numpy as np
import pytest
import torch

import labs
from labs.diffusion import (
    VPSDE,
    StackedScoreMLP,
    classifier_scores,
    convergence_order,
    ddim_sample,
    euler_maruyama,
    frechet_distance,
    gaussian_fit,
    gaussian_mixture_score,
    probability_flow_sample,
    stacked_batch,
    train_digit_classifier,
    train_score_models,
    two_moons,
)

VP = VPSDE()


def test_stacked_members_score_their_own_block_and_depend_on_their_seed_alone():
    model = StackedScoreMLP([3, 5, 3], 2, VP, hidden=16, depth=2)
    x = torch.randn(3 * 7, 2, generator=torch.Generator().manual_seed(0))
    t = torch.rand(3 * 7, generator=torch.Generator().manual_seed(1)) * 0.9 + 0.05
    with torch.no_grad():
        whole = model(x, t)
        blocks = [model.member(s)(x[7 * s:7 * (s + 1)], t[7 * s:7 * (s + 1)]) for s in range(3)]
        alone = StackedScoreMLP([5], 2, VP, hidden=16, depth=2)(x[7:14], t[7:14])
    torch.testing.assert_close(whole, torch.cat(blocks), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(blocks[0], model.member(2)(x[:7], t[:7]), rtol=1e-6, atol=1e-6)  # same seed, same net
    torch.testing.assert_close(blocks[1], alone, rtol=1e-6, atol=1e-6)  # a member does not depend on its neighbours
    assert not torch.allclose(blocks[0], model.member(1)(x[:7], t[:7]))


def test_stacked_training_equals_training_each_member_alone():
    data = torch.stack([two_moons(200, generator=torch.Generator().manual_seed(k)) for k in range(2)])
    both, both_losses = train_score_models(data, VP, [11, 12], steps=20, batch_size=32, hidden=16, depth=2)
    one, one_losses = train_score_models(data[1:], VP, [12], steps=20, batch_size=32, hidden=16, depth=2)
    torch.testing.assert_close(both_losses[:, 1], one_losses[:, 0], rtol=1e-4, atol=1e-5)
    for w_both, w_one in zip(both.weights, one.weights):
        torch.testing.assert_close(w_both[1], w_one[0], rtol=1e-4, atol=1e-5)


def test_stacked_training_lowers_every_members_loss_and_leaves_the_global_rng_alone():
    data = two_moons(500, generator=torch.Generator().manual_seed(0))
    before = torch.get_rng_state()
    with labs.threads(1):
        _, losses = train_score_models(data, VP, [1, 2, 3], steps=300, batch_size=64, hidden=32, depth=2)
    assert torch.equal(torch.get_rng_state(), before)
    assert losses.shape == (300, 3)
    assert (losses[-50:].mean(0) < 0.8 * losses[:50].mean(0)).all()


def test_gaussian_fit_matches_the_data_mean_and_covariance():
    g = torch.Generator().manual_seed(0)
    data = torch.randn(5000, 3, generator=g, dtype=torch.float64) @ torch.tensor([[1.0, 0.5, 0], [0, 2, 0], [0, 0, 0.3]],
                                                                                  dtype=torch.float64) + 4
    fit = gaussian_fit(data, 200_000, torch.Generator().manual_seed(1))
    torch.testing.assert_close(fit.mean(0), data.mean(0), atol=0.02, rtol=0)
    torch.testing.assert_close(torch.cov(fit.T), torch.cov(data.T), atol=0.03, rtol=0)


def test_frechet_distance_is_the_closed_form_for_gaussians():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200_000, 1, generator=g, dtype=torch.float64)
    b = 3 + 2 * torch.randn(200_000, 1, generator=g, dtype=torch.float64)
    assert frechet_distance(a, b) == pytest.approx(3**2 + (2 - 1) ** 2, rel=0.02)  # (m1-m2)^2 + (s1-s2)^2 in 1-D
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-6)


@pytest.fixture(scope="module")
def classifier():
    with labs.threads(1):  # full-batch steps on 1258 small images: one thread beats a contended pool
        return train_digit_classifier(seed=0)


def test_digit_classifier_is_accurate_and_scores_real_digits_as_real(classifier):
    model, train_x, test_x, test_y, accuracy = classifier
    assert train_x.shape[0] + test_x.shape[0] == 1797
    assert accuracy > 0.93
    half = test_x.shape[0] // 2
    real = classifier_scores(model, test_x[:half], test_x[half:])
    noise = classifier_scores(model, torch.rand(half, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1, test_x[half:])
    assert real["confidence"] > 0.95 and real["coverage"] > 0.95
    assert noise["fd"] > 5 * real["fd"]
    one_class = classifier_scores(model, test_x[test_y == 3][:20], test_x)
    assert one_class["coverage"] < 0.1  # every sample the same digit: no coverage


def test_convergence_order_recovers_a_power_law():
    steps = np.array([8, 16, 32, 64])
    assert convergence_order(steps, 3.0 * steps**-1.5) == pytest.approx(1.5)
    assert convergence_order(steps, 0.2 / steps) == pytest.approx(1.0)


def test_euler_maruyama_on_a_shared_brownian_path_converges_strongly_with_order_one():
    """Additive noise (g depends on t only): Euler-Maruyama is Milstein, strong order 1, not 1/2."""
    score = gaussian_mixture_score(VP, [[-1.5, 0.0], [1.5, 0.5]], [0.4, 0.3], [0.4, 0.6])
    g = torch.Generator().manual_seed(0)
    n, fine = 300, 512
    start = torch.randn(n, 2, generator=g, dtype=torch.float64)
    dw = torch.randn(fine, n, 2, generator=g, dtype=torch.float64) * math.sqrt((1 - 1e-3) / fine)
    run = lambda k: euler_maruyama(VP, score, (n, 2), k, x_start=start, brownian=dw.reshape(k, fine // k, n, 2).sum(1),
                                   denoise=False).x
    reference = run(fine)
    steps = [16, 32, 64]
    errors = [(run(k) - reference).norm(dim=1).mean().item() for k in steps]
    assert convergence_order(steps, errors) == pytest.approx(1.0, abs=0.25)


def test_euler_maruyama_with_zero_increments_is_euler_on_the_reverse_drift():
    score = gaussian_mixture_score(VP, [[0.0, 0.0]], [0.5], [1.0])
    start = torch.randn(5, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = euler_maruyama(VP, score, (5, 2), 4, x_start=start, brownian=torch.zeros(4, 5, 2, dtype=torch.float64),
                         denoise=False).x
    x, times = start, torch.linspace(1.0, 1e-3, 5).tolist()
    for t, t_next in zip(times[:-1], times[1:]):
        x = x - VP.reverse(score).sde(x, t)[0] * (t - t_next)
    torch.testing.assert_close(out, x)


def test_bad_input_raises_clear_errors(classifier):
    with pytest.raises(ValueError, match="StackedScoreMLP: seeds"):
        StackedScoreMLP([], 2, VP)
    with pytest.raises(ValueError, match="StackedScoreMLP: the batch"):
        StackedScoreMLP([1, 2], 2, VP, hidden=4, depth=1)(torch.zeros(3, 2), torch.full((3,), 0.5))
    with pytest.raises(ValueError, match="StackedScoreMLP.member: s must be below 2"):
        StackedScoreMLP([1, 2], 2, VP, hidden=4, depth=1).member(2)
    with pytest.raises(ValueError, match="train_score_models: data has 3 data sets for 2 seeds"):
        train_score_models(torch.zeros(3, 10, 2), VP, [1, 2], steps=1)
    with pytest.raises(TypeError, match="train_score_models"):
        train_score_models([[0.0, 1.0]], VP, [1], steps=1)
    with pytest.raises(ValueError, match="stacked_batch: the batch"):
        stacked_batch(torch.zeros(5, 2), 2)
    with pytest.raises(ValueError, match="gaussian_fit: data needs at least 2 rows"):
        gaussian_fit(torch.zeros(1, 2), 4)
    with pytest.raises(ValueError, match="frechet_distance: a and b"):
        frechet_distance(np.zeros((5, 2)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="classifier_scores: samples and reference must be"):
        classifier_scores(classifier[0], torch.zeros(4, 63), torch.zeros(4, 64))
    with pytest.raises(ValueError, match="convergence_order: steps and errors"):
        convergence_order([1, 2, 3], [1.0, 0.5])
    with pytest.raises(ValueError, match="convergence_order: steps and errors must be positive"):
        convergence_order([1, 2], [1.0, 0.0])
    with pytest.raises(ValueError, match="train_digit_classifier: test_fraction"):
        train_digit_classifier(test_fraction=1.5)
    with pytest.raises(ValueError, match="euler_maruyama: brownian must have shape"):
        euler_maruyama(VP, lambda x, t: -x, (4, 2), 3, brownian=torch.zeros(2, 4, 2))
    with pytest.raises(ValueError, match="euler_maruyama: x_start must have shape"):
        euler_maruyama(VP, lambda x, t: -x, (4, 2), 3, x_start=torch.zeros(3, 2))


def test_ddim_with_many_steps_follows_the_probability_flow_ode():
    """DDIM (eta = 0) is a first-order solver of the probability-flow ODE: with many steps it lands where RK45 does."""
    score = gaussian_mixture_score(VP, [[-1.5, 0.0], [1.5, 0.5]], [0.4, 0.3], [0.4, 0.6])
    ode = probability_flow_sample(VP, score, (200, 2), rtol=1e-8, atol=1e-8, generator=torch.Generator().manual_seed(0),
                                  dtype=torch.float64).x
    steps = [50, 100, 200, 400]
    errors = [(ddim_sample(VP, score, (200, 2), n, generator=torch.Generator().manual_seed(0), dtype=torch.float64).x - ode)
              .norm(dim=1).mean().item() for n in steps]
    assert errors[-1] < 5e-3
    assert convergence_order(steps, errors) == pytest.approx(1.0, abs=0.25)


def test_ddpm_ancestral_sampling_with_the_exact_score_reproduces_the_mixture():
    score = gaussian_mixture_score(VP, [[-1.5, 0.0], [1.5, 0.5]], [0.4, 0.3], [0.4, 0.6])
    x = ddim_sample(VP, score, (4000, 2), 200, eta=1.0, generator=torch.Generator().manual_seed(0), dtype=torch.float64).x
    right = x[:, 0] > 0
    assert right.double().mean().item() == pytest.approx(0.6, abs=0.04)
    assert x[right].mean(0).tolist() == pytest.approx([1.5, 0.5], abs=0.05)
    assert x[right, 0].std().item() == pytest.approx(0.3, abs=0.04)


def test_ddim_refuses_other_sdes_and_bad_eta():
    from labs.diffusion import VESDE

    with pytest.raises(TypeError, match="ddim_sample: sde must be a VPSDE"):
        ddim_sample(VESDE(), lambda x, t: -x, (4, 2), 3)
    with pytest.raises(ValueError, match="ddim_sample: eta must be"):
        ddim_sample(VP, lambda x, t: -x, (4, 2), 3, eta=1.5)
