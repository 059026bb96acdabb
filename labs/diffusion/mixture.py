"""Gaussian-mixture data: the one case where every p_t, and so the score, is known in closed form.

If x0 ~ sum_k w_k N(mu_k, diag(s_k^2)) and p_t(x | x0) = N(m(t) x0, s(t)^2 I),
then p_t = sum_k w_k N(m(t) mu_k, diag(m(t)^2 s_k^2 + s(t)^2)): a mixture again.
"""

from __future__ import annotations

import math

import torch

from .sde import SDE, check_sde, check_state, check_time


class GaussianMixture:
    """Weights (K,), means (K, D), per-dimension stds (K, D) of a diagonal Gaussian mixture."""

    def __init__(self, means, stds, weights):
        means = torch.as_tensor(means, dtype=torch.float64)
        if means.ndim != 2:
            raise ValueError(f"gaussian_mixture_score: means must have shape (K, D), got {tuple(means.shape)}")
        K, D = means.shape
        stds = torch.as_tensor(stds, dtype=torch.float64)
        if stds.ndim == 1 and stds.shape == (K,):
            stds = stds[:, None].expand(K, D)
        if stds.shape != (K, D) or (stds <= 0).any():
            raise ValueError(
                f"gaussian_mixture_score: stds must be positive with shape ({K},) or ({K}, {D}), got {tuple(stds.shape)}"
            )
        weights = torch.as_tensor(weights, dtype=torch.float64)
        if weights.shape != (K,) or (weights < 0).any() or not math.isclose(weights.sum().item(), 1.0, abs_tol=1e-6):
            raise ValueError(
                f"gaussian_mixture_score: weights must be ({K},), non-negative and sum to 1, got {weights.tolist()}"
            )
        self.means, self.stds, self.weights = means, stds.contiguous(), weights

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def _at(self, sde: SDE | None, t: torch.Tensor, x: torch.Tensor):
        """Per-sample component means and variances of p_t: (B, K, D) each."""
        means, var = self.means.to(x), self.stds.to(x) ** 2
        if sde is None:
            return means[None].expand(x.shape[0], -1, -1), var[None].expand(x.shape[0], -1, -1)
        m, s = sde._mean_std(t)
        m, s = m[:, None, None], s[:, None, None]
        return m * means[None], m**2 * var[None] + s**2

    def _log_components(self, x, sde, t):
        mu, var = self._at(sde, t, x)
        diff = x[:, None, :] - mu
        log_n = -0.5 * (diff**2 / var + torch.log(2 * math.pi * var)).sum(-1)
        return log_n + torch.log(self.weights.to(x))[None], diff, var

    def log_prob(self, x: torch.Tensor, sde: SDE | None = None, t=None) -> torch.Tensor:
        """log p_t(x) (log p_data when ``sde`` is None), shape (batch,)."""
        check_state("GaussianMixture.log_prob", x)
        t = None if sde is None else check_time("GaussianMixture.log_prob", t, x)
        return torch.logsumexp(self._log_components(x, sde, t)[0], dim=1)

    def score(self, x: torch.Tensor, sde: SDE, t) -> torch.Tensor:
        """grad_x log p_t(x) = sum_k r_k(x) (mu_k - x) / var_k with responsibilities r_k."""
        log_c, diff, var = self._log_components(x, sde, t)
        resp = torch.softmax(log_c, dim=1)
        return (resp[:, :, None] * (-diff / var)).sum(1)

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n float64 samples from the mixture."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=torch.float64)
        return self.means[k] + self.stds[k] * z


def gaussian_mixture_score(sde: SDE, means, stds, weights):
    """The exact score ``score_fn(x, t)`` of p_t when the data are a Gaussian mixture.

    ``means`` (K, D), ``stds`` (K,) or (K, D) per-dimension standard deviations,
    ``weights`` (K,) summing to 1. The returned function carries the mixture as
    ``score_fn.mixture`` (for ``log_prob`` and ``sample``).
    """
    check_sde("gaussian_mixture_score", sde)
    mixture = GaussianMixture(means, stds, weights)

    def score_fn(x: torch.Tensor, t) -> torch.Tensor:
        check_state("score_fn", x)
        if x.shape[1:] != (mixture.dim,):
            raise ValueError(f"score_fn: x must have shape (batch, {mixture.dim}), got {tuple(x.shape)}")
        return mixture.score(x, sde, check_time("score_fn", t, x))

    score_fn.mixture = mixture
    return score_fn
