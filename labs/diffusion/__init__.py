"""Chapter "Diffusion as a stochastic differential equation": forward SDEs, exact and learned
scores, reverse-time samplers, probability-flow likelihoods and denoising score matching."""

from .mixture import GaussianMixture, gaussian_mixture_score
from .samplers import Samples, ddim_sample, divergence, euler_maruyama, log_likelihood, predictor_corrector, probability_flow_sample
from .metrics import (
    DigitClassifier,
    DigitClassifierFit,
    classifier_scores,
    convergence_order,
    frechet_distance,
    gaussian_fit,
    train_digit_classifier,
)
from .sde import SDE, ReverseSDE, SubVPSDE, VESDE, VPSDE
from .solvers import dormand_prince, fixed_step
from .stacked import StackedScoreMLP, stacked_batch, train_score_models
from .training import (
    TOY_DATA,
    ScoreMLP,
    checkerboard,
    digits,
    dsm_loss,
    sliced_wasserstein,
    swiss_roll,
    train_score_model,
    two_moons,
)

__all__ = [
    "SDE", "ReverseSDE", "VPSDE", "SubVPSDE", "VESDE",
    "GaussianMixture", "gaussian_mixture_score",
    "Samples", "ddim_sample", "euler_maruyama", "predictor_corrector", "probability_flow_sample", "log_likelihood", "divergence",
    "dormand_prince", "fixed_step",
    "ScoreMLP", "dsm_loss", "train_score_model", "sliced_wasserstein",
    "TOY_DATA", "two_moons", "swiss_roll", "checkerboard", "digits",
    "StackedScoreMLP", "train_score_models", "stacked_batch",
    "gaussian_fit", "DigitClassifier", "DigitClassifierFit", "train_digit_classifier", "classifier_scores", "frechet_distance",
    "convergence_order",
]
