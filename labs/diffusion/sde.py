"""The three forward SDEs of score-based modelling: VP, sub-VP and VE.

Each SDE ``dx = f(x, t) dt + g(t) dw`` on ``t in [0, 1]`` knows its drift and
diffusion, its Gaussian transition kernel ``p_t(x | x0)`` (mean and std, the
solution of the moment ODEs derived in the chapter), its prior at ``t = 1``,
one discrete step (DDPM for VP, SMLD for VE) and its reverse-time SDE.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .._checks import float_tensor, positive, whole_number

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def check_state(owner: str, x) -> None:
    """``x`` must be a floating tensor with a batch dimension: shape (batch, *dims)."""
    float_tensor(owner, "x", x, min_ndim=2)


def check_sde(owner: str, sde) -> "SDE":
    """``sde`` must be one of the forward SDEs (an instance of ``SDE``)."""
    if not isinstance(sde, SDE):
        raise TypeError(f"{owner}: sde must be a VPSDE, SubVPSDE or VESDE, got {type(sde).__name__}")
    return sde


def check_time(owner: str, t, x: torch.Tensor) -> torch.Tensor:
    """Return ``t`` as a (batch,) tensor on ``x``'s device; t must lie in [0, 1]."""
    if isinstance(t, bool) or not isinstance(t, (int, float, torch.Tensor)):
        raise TypeError(f"{owner}: t must be a float or a tensor of shape (batch,), got {type(t).__name__}")
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    if t.ndim == 0:
        t = t.expand(x.shape[0])
    if t.shape != (x.shape[0],):
        raise ValueError(f"{owner}: t must be a scalar or have shape ({x.shape[0]},), got shape {tuple(t.shape)}")
    if torch.isnan(t).any() or (t < 0).any() or (t > 1).any():
        raise ValueError(f"{owner}: t must lie in [0, 1], got values in [{t.min().item():.4g}, {t.max().item():.4g}]")
    return t


def _bcast(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A (batch,) tensor reshaped to broadcast against x of shape (batch, *dims)."""
    return v.reshape(-1, *([1] * (x.ndim - 1)))


class SDE:
    """A forward SDE on t in [0, 1]; subclasses define the coefficients."""

    T = 1.0

    def __init__(self, N: int):
        self.N = whole_number(type(self).__name__, "N (number of discrete steps)", N, minimum=2)

    # -- subclasses --------------------------------------------------------
    def _coefficients(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(drift factor a(t) with f = a(t) x, diffusion g(t)), both (batch,)."""
        raise NotImplementedError

    def _mean_std(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean coefficient m(t) with mean = m(t) x0, std s(t)), both (batch,)."""
        raise NotImplementedError

    prior_std = 1.0

    # -- public API --------------------------------------------------------
    def sde(self, x: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
        """Drift f(x, t) (shape of x) and diffusion g(t) (shape (batch,))."""
        name = f"{type(self).__name__}.sde"
        check_state(name, x)
        t = check_time(name, t, x)
        a, g = self._coefficients(t)
        return _bcast(a, x) * x, g

    def marginal(self, x0: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean (shape of x0) and std (shape (batch,)) of the Gaussian p_t(x | x0)."""
        name = f"{type(self).__name__}.marginal"
        check_state(name, x0)
        t = check_time(name, t, x0)
        m, s = self._mean_std(t)
        return _bcast(m, x0) * x0, s

    def prior_sample(self, shape, generator: torch.Generator | None = None, device=None,
                     dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Samples from p_1, the Gaussian the reverse process starts from."""
        shape = _check_shape(f"{type(self).__name__}.prior_sample", shape)
        return self.prior_std * torch.randn(shape, generator=generator, device=device, dtype=dtype)

    def prior_logp(self, z: torch.Tensor) -> torch.Tensor:
        """log N(z; 0, prior_std^2 I), summed over all but the batch dimension."""
        d = z[0].numel()
        s2 = self.prior_std**2
        return -0.5 * d * math.log(2 * math.pi * s2) - z.flatten(1).pow(2).sum(1) / (2 * s2)

    def discretize(self, x: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
        """One discrete forward step x_{i+1} = x_i + f + G z (Euler-Maruyama with dt = 1/N)."""
        drift, g = self.sde(x, t)
        dt = 1.0 / self.N
        return drift * dt, g * math.sqrt(dt)

    def reverse(self, score_fn: ScoreFn, probability_flow: bool = False) -> "ReverseSDE":
        """The reverse-time SDE (Anderson), or with ``probability_flow`` the ODE with the same marginals."""
        if not callable(score_fn):
            raise TypeError(f"{type(self).__name__}.reverse: score_fn must be callable, got {type(score_fn).__name__}")
        return ReverseSDE(self, score_fn, probability_flow)


class ReverseSDE:
    """dx = [f - c g^2 score] dt + g' dw-bar, run from t = 1 down to 0.

    c = 1 and g' = g for the reverse SDE; c = 1/2 and g' = 0 for the
    probability-flow ODE.
    """

    def __init__(self, forward: SDE, score_fn: ScoreFn, probability_flow: bool):
        self.forward, self.score_fn, self.probability_flow = forward, score_fn, bool(probability_flow)
        self.N = forward.N

    def sde(self, x: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
        drift, g = self.forward.sde(x, t)
        t = check_time("ReverseSDE.sde", t, x)
        factor = 0.5 if self.probability_flow else 1.0
        drift = drift - factor * _bcast(g**2, x) * self.score_fn(x, t)
        return drift, torch.zeros_like(g) if self.probability_flow else g


def _check_shape(owner: str, shape) -> tuple[int, ...]:
    if isinstance(shape, int):
        shape = (shape,)
    if not isinstance(shape, (tuple, list, torch.Size)) or len(shape) < 2 or not all(
        isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in shape
    ):
        raise ValueError(f"{owner}: shape must be (batch, *dims) of positive ints, got {shape!r}")
    return tuple(shape)


class VPSDE(SDE):
    """Variance preserving: dx = -beta(t)/2 x dt + sqrt(beta(t)) dw, beta linear in t.

    The continuous limit of DDPM: ``discrete_betas`` are DDPM's betas,
    beta_i = beta(i / (N - 1)) / N.
    """

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0, N: int = 1000):
        super().__init__(N)
        owner = type(self).__name__
        self.beta_min = positive(owner, "beta_min", beta_min)
        self.beta_max = positive(owner, "beta_max", beta_max)
        if self.beta_min >= self.beta_max:
            raise ValueError(f"{owner}: need beta_min < beta_max, got beta_min={beta_min!r} >= beta_max={beta_max!r}")
        self.discrete_betas = torch.linspace(self.beta_min / N, self.beta_max / N, N, dtype=torch.float64)

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def _integral_beta(self, t: torch.Tensor) -> torch.Tensor:
        """B(t) = integral of beta from 0 to t."""
        return self.beta_min * t + 0.5 * t**2 * (self.beta_max - self.beta_min)

    def _coefficients(self, t):
        return -0.5 * self.beta(t), torch.sqrt(self.beta(t))

    def _mean_std(self, t):
        B = self._integral_beta(t)
        return torch.exp(-0.5 * B), torch.sqrt(-torch.expm1(-B))

    def _index(self, t: torch.Tensor) -> torch.Tensor:
        return torch.round(t * (self.N - 1)).long()

    def discretize(self, x, t):
        """DDPM's step: x_{i+1} = sqrt(1 - beta_i) x_i + sqrt(beta_i) z."""
        check_state("VPSDE.discretize", x)
        t = check_time("VPSDE.discretize", t, x)
        beta = self.discrete_betas.to(x.device, x.dtype)[self._index(t)]
        return (_bcast(torch.sqrt(1 - beta), x) - 1) * x, torch.sqrt(beta)


class SubVPSDE(VPSDE):
    """Sub-variance preserving: VP's drift, diffusion sqrt(beta(t) (1 - exp(-2 B(t)))).

    Its marginal variance (1 - e^{-B})^2 sits below VP's 1 - e^{-B} at every t.
    """

    def _coefficients(self, t):
        B = self._integral_beta(t)
        return -0.5 * self.beta(t), torch.sqrt(self.beta(t) * -torch.expm1(-2 * B))

    def _mean_std(self, t):
        B = self._integral_beta(t)
        return torch.exp(-0.5 * B), -torch.expm1(-B)

    discretize = SDE.discretize


class VESDE(SDE):
    """Variance exploding: dx = sigma(t) sqrt(2 log(sigma_max / sigma_min)) dw, sigma(t) = sigma_min (sigma_max/sigma_min)^t.

    The continuous limit of SMLD/NCSN. Started from a point x0, the variance is
    sigma(t)^2 - sigma_min^2 (the moment ODE's solution).
    """

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0, N: int = 1000):
        super().__init__(N)
        owner = type(self).__name__
        self.sigma_min = positive(owner, "sigma_min", sigma_min)
        self.sigma_max = positive(owner, "sigma_max", sigma_max)
        if self.sigma_min >= self.sigma_max:
            raise ValueError(
                f"{owner}: need sigma_min < sigma_max, got sigma_min={sigma_min!r} >= sigma_max={sigma_max!r}"
            )
        self.prior_std = self.sigma_max
        self.discrete_sigmas = torch.exp(
            torch.linspace(math.log(self.sigma_min), math.log(self.sigma_max), N, dtype=torch.float64)
        )

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def _coefficients(self, t):
        return torch.zeros_like(t), self.sigma(t) * math.sqrt(2 * math.log(self.sigma_max / self.sigma_min))

    def _mean_std(self, t):
        return torch.ones_like(t), torch.sqrt(self.sigma(t) ** 2 - self.sigma_min**2)

    def discretize(self, x, t):
        """SMLD's step: x_{i+1} = x_i + sqrt(sigma_{i+1}^2 - sigma_i^2) z."""
        check_state("VESDE.discretize", x)
        t = check_time("VESDE.discretize", t, x)
        i = torch.round(t * (self.N - 1)).long()
        sigmas = self.discrete_sigmas.to(x.device, x.dtype)
        previous = torch.where(i > 0, sigmas[(i - 1).clamp(min=0)], torch.zeros_like(sigmas[i]))
        return torch.zeros_like(x), torch.sqrt(sigmas[i] ** 2 - previous**2)
