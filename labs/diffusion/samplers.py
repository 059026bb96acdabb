"""Sampling the reverse process and computing likelihoods, on whole batches.

Every sampler integrates from t = 1 down to t = eps, not to 0: near t = 0 the
noise scale s(t) goes to zero and the score of p_t(x | x0) grows like 1/s(t)^2,
so a learned score (and even the exact one between mixture components) is
unreliable there. eps = 1e-3 for sampling and 1e-5 for likelihoods, as in
Song et al. (2021), keeps every quantity finite.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from .._checks import choice, float_tensor, positive, real_number, whole_number
from .sde import SDE, ScoreFn, _bcast, _check_shape, check_sde
from .solvers import dormand_prince, fixed_step


class Samples(NamedTuple):
    """What a sampler returns: the samples, the number of score evaluations, and
    the states after every step when ``return_trajectory=True`` (else None)."""

    x: torch.Tensor
    nfe: int
    trajectory: torch.Tensor | None


def _check_common(owner: str, sde, score_fn, n_steps, eps) -> None:
    check_sde(owner, sde)
    if not callable(score_fn):
        raise TypeError(f"{owner}: score_fn must be callable (x, t) -> score, got {type(score_fn).__name__}")
    if n_steps is not None:
        whole_number(owner, "n_steps", n_steps)
    real_number(owner, "eps (the cut-off time near t = 0)", eps, low=0.0, high=1.0, low_open=True, high_open=True)


def _start(sde, shape, generator, device, dtype, owner):
    shape = _check_shape(owner, shape)
    device = torch.device("cpu") if device is None else torch.device(device)
    x = sde.prior_sample(shape, generator=generator, device=generator.device if generator else device, dtype=dtype)
    return x.to(device), device


def _noise(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    gen_device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=gen_device, dtype=x.dtype).to(x.device)


def _batch_t(t: float, x: torch.Tensor) -> torch.Tensor:
    return torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device)


@torch.no_grad()
def euler_maruyama(sde: SDE, score_fn: ScoreFn, shape, n_steps: int, *, eps: float = 1e-3,
                   generator: torch.Generator | None = None, device=None, dtype: torch.dtype = torch.float32,
                   return_trajectory: bool = False, x_start: torch.Tensor | None = None,
                   brownian: torch.Tensor | None = None, denoise: bool = True) -> Samples:
    """Euler-Maruyama on the reverse SDE, n_steps uniform steps from t = 1 to eps.

    x <- x - [f - g^2 score] dt + g dW with dW = sqrt(dt) z; with ``denoise`` the last step
    returns its mean (no noise). ``x_start`` replaces the draw from the prior and ``brownian``
    (n_steps, *shape) the Brownian increments dW, so that runs with different step counts can
    share one Brownian path (sum a fine path's increments), as a strong-error study needs.
    """
    _check_common("euler_maruyama", sde, score_fn, n_steps, eps)
    if x_start is None:
        x, device = _start(sde, shape, generator, device, dtype, "euler_maruyama")
    else:
        shape = _check_shape("euler_maruyama", shape)
        float_tensor("euler_maruyama", "x_start", x_start)
        if tuple(x_start.shape) != shape:
            raise ValueError(f"euler_maruyama: x_start must have shape {shape}, got {tuple(x_start.shape)}")
        x = x_start
    if brownian is not None:
        float_tensor("euler_maruyama", "brownian", brownian)
        if tuple(brownian.shape) != (n_steps, *x.shape):
            raise ValueError(f"euler_maruyama: brownian must have shape (n_steps, *shape) = {(n_steps, *x.shape)}, "
                             f"got {tuple(brownian.shape)}")
    reverse = sde.reverse(score_fn)
    times = torch.linspace(1.0, eps, n_steps + 1).tolist()
    path = [x]
    for i, (t, t_next) in enumerate(zip(times[:-1], times[1:])):
        dt = t - t_next
        drift, g = reverse.sde(x, _batch_t(t, x))
        x = x - drift * dt
        if i < n_steps - 1 or not denoise:
            dw = math.sqrt(dt) * _noise(x, generator) if brownian is None else brownian[i].to(x)
            x = x + _bcast(g, x) * dw
        path.append(x)
    return Samples(x, n_steps, torch.stack(path) if return_trajectory else None)


@torch.no_grad()
def predictor_corrector(sde: SDE, score_fn: ScoreFn, shape, n_steps: int, *, snr: float = 0.16,
                        n_corrector: int = 1, eps: float = 1e-3, generator: torch.Generator | None = None,
                        device=None, dtype: torch.dtype = torch.float32,
                        return_trajectory: bool = False) -> Samples:
    """Predictor-corrector sampling: at each time, ``n_corrector`` Langevin steps, then one Euler-Maruyama step.

    The Langevin step x <- x + e score + sqrt(2 e) z picks its size e so that
    the signal-to-noise ratio ||e score|| / ||sqrt(2 e) z|| equals ``snr``,
    e = 2 (snr ||z|| / ||score||)^2, with both norms averaged over the batch
    (per sample, a point where the score vanishes would get a huge step).
    """
    _check_common("predictor_corrector", sde, score_fn, n_steps, eps)
    positive("predictor_corrector", "snr", snr)
    whole_number("predictor_corrector", "n_corrector", n_corrector, minimum=0)
    x, device = _start(sde, shape, generator, device, dtype, "predictor_corrector")
    reverse = sde.reverse(score_fn)
    times = torch.linspace(1.0, eps, n_steps + 1).tolist()
    path = [x]
    for i, (t, t_next) in enumerate(zip(times[:-1], times[1:])):
        tt = _batch_t(t, x)
        for _ in range(n_corrector):
            grad = score_fn(x, tt)
            z = _noise(x, generator)
            ratio = z.flatten(1).norm(dim=1).mean() / grad.flatten(1).norm(dim=1).mean().clamp_min(1e-12)
            step = 2 * (snr * ratio) ** 2
            x = x + step * grad + torch.sqrt(2 * step) * z
        dt = t - t_next
        drift, g = reverse.sde(x, tt)
        x = x - drift * dt
        if i < n_steps - 1:
            x = x + _bcast(g, x) * math.sqrt(dt) * _noise(x, generator)
        path.append(x)
    return Samples(x, n_steps * (1 + n_corrector), torch.stack(path) if return_trajectory else None)


@torch.no_grad()
def ddim_sample(sde: SDE, score_fn: ScoreFn, shape, n_steps: int, *, eta: float = 0.0, eps: float = 1e-3,
                generator: torch.Generator | None = None, device=None, dtype: torch.dtype = torch.float32) -> Samples:
    """DDIM's generalised sampler (Song, Meng & Ermon 2021) for the VP SDE, n_steps uniform steps from 1 to eps.

    With abar(t) = m(t)^2 (so 1 - abar = s(t)^2), the score gives the noise estimate
    e = -s(t) score and the clean estimate x0 = (x - s(t) e) / m(t); a step to time u < t is

    x <- m(u) x0 + sqrt(s(u)^2 - sigma^2) e + sigma z,
    sigma = eta sqrt((1 - abar(u)) / (1 - abar(t))) sqrt(1 - abar(t) / abar(u)).

    ``eta = 0`` is DDIM (deterministic: a first-order solver of the probability-flow ODE that
    is exact for its linear part); ``eta = 1`` is DDPM's ancestral sampler on the same grid.
    """
    _check_common("ddim_sample", sde, score_fn, n_steps, eps)
    if type(sde).__name__ != "VPSDE":
        raise TypeError(f"ddim_sample: sde must be a VPSDE (DDIM's abar(t) = m(t)^2 needs 1 - abar = s(t)^2), "
                        f"got {type(sde).__name__}")
    real_number("ddim_sample", "eta", eta, low=0.0, high=1.0)
    x, device = _start(sde, shape, generator, device, dtype, "ddim_sample")
    times = torch.linspace(1.0, eps, n_steps + 1, dtype=torch.float64)
    m_all, s_all = sde._mean_std(times)
    for i in range(n_steps):
        m_t, s_t, m_u, s_u = (v.item() for v in (m_all[i], s_all[i], m_all[i + 1], s_all[i + 1]))
        noise_hat = -s_t * score_fn(x, _batch_t(times[i].item(), x))
        x0_hat = (x - s_t * noise_hat) / m_t
        sigma = eta * (s_u / s_t) * math.sqrt(max(1.0 - (m_t / m_u) ** 2, 0.0))
        x = m_u * x0_hat + math.sqrt(max(s_u**2 - sigma**2, 0.0)) * noise_hat
        if sigma > 0 and i < n_steps - 1:
            x = x + sigma * _noise(x, generator)
    return Samples(x, n_steps, None)


ODE_SOLVERS = ("euler", "heun", "rk45")


@torch.no_grad()
def probability_flow_sample(sde: SDE, score_fn: ScoreFn, shape, n_steps: int | None = None, *,
                            method: str = "rk45", rtol: float = 1e-5, atol: float = 1e-5, eps: float = 1e-3,
                            generator: torch.Generator | None = None, device=None,
                            dtype: torch.dtype = torch.float32, return_trajectory: bool = False) -> Samples:
    """Integrate the probability-flow ODE dx/dt = f - g^2 score / 2 from t = 1 to eps.

    ``method``: ``"euler"`` or ``"heun"`` with ``n_steps`` uniform steps, or
    ``"rk45"`` (adaptive Dormand-Prince with tolerances ``rtol``, ``atol``).
    The only randomness is the draw from the prior.
    """
    _check_common("probability_flow_sample", sde, score_fn, n_steps, eps)
    choice("probability_flow_sample", "method", method, ODE_SOLVERS)
    if method != "rk45" and n_steps is None:
        raise ValueError(f"probability_flow_sample: method {method!r} needs n_steps")
    x, device = _start(sde, shape, generator, device, dtype, "probability_flow_sample")
    flow = sde.reverse(score_fn, probability_flow=True)
    path = [x]

    def f(y, t):
        return flow.sde(y, _batch_t(t, y))[0]

    if method == "rk45":
        x, nfe, _ = dormand_prince(f, x, 1.0, eps, rtol=rtol, atol=atol, on_step=path.append)
    else:
        x, nfe = fixed_step(f, x, torch.linspace(1.0, eps, n_steps + 1), method, on_step=path.append)
    return Samples(x, nfe, torch.stack(path) if return_trajectory else None)


def divergence(fn, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
    """div_x fn(x) per sample: exact (one backward pass per dimension) or, given ``noise``,
    Hutchinson's unbiased estimate noise . d(fn . noise)/dx."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        out = fn(x)
        if noise is not None:
            (grad,) = torch.autograd.grad((out * noise).sum(), x)
            return (grad * noise).flatten(1).sum(1)
        flat_out, total = out.flatten(1), torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for i in range(flat_out.shape[1]):
            (grad,) = torch.autograd.grad(flat_out[:, i].sum(), x, retain_graph=True)
            total = total + grad.flatten(1)[:, i]
        return total


def log_likelihood(sde: SDE, score_fn: ScoreFn, x: torch.Tensor, *, eps: float = 1e-5, method: str = "rk45",
                   n_steps: int | None = None, rtol: float = 1e-5, atol: float = 1e-5, hutchinson: bool = False,
                   generator: torch.Generator | None = None, prior_logp=None) -> torch.Tensor:
    """log p_eps(x) in nats, per sample, by the instantaneous change of variables.

    Along the probability-flow ODE, d log p_t(x(t)) / dt = -div f~(x(t), t), so
    log p_eps(x) = log p_1(x(1)) + integral from eps to 1 of div f~ dt. The
    divergence is exact (D backward passes) unless ``hutchinson=True``.
    ``prior_logp(z)`` replaces the Gaussian prior's log-density, e.g. by the
    exact log p_1 when it is known (to separate solver error from prior mismatch).
    """
    _check_common("log_likelihood", sde, score_fn, n_steps, eps)
    float_tensor("log_likelihood", "x", x, min_ndim=2)
    choice("log_likelihood", "method", method, ODE_SOLVERS)
    if method != "rk45" and n_steps is None:
        raise ValueError(f"log_likelihood: method {method!r} needs n_steps")
    flow = sde.reverse(score_fn, probability_flow=True)
    shape, numel = x.shape, x[0].numel()
    noise = None
    if hutchinson:
        noise = torch.randint(0, 2, shape, generator=generator, device=generator.device if generator else x.device)
        noise = (2 * noise - 1).to(x.device, x.dtype)

    def f(state, t):
        y = state[:, :numel].reshape(shape)
        tt = _batch_t(t, y)
        drift = flow.sde(y, tt)[0]
        div = divergence(lambda z: flow.sde(z, tt)[0], y, noise)
        return torch.cat([drift.flatten(1).detach(), div.detach()[:, None]], dim=1)

    state = torch.cat([x.detach().flatten(1), torch.zeros(shape[0], 1, dtype=x.dtype, device=x.device)], dim=1)
    if method == "rk45":
        state, _, _ = dormand_prince(f, state, eps, 1.0, rtol=rtol, atol=atol)
    else:
        state, _ = fixed_step(f, state, torch.linspace(eps, 1.0, n_steps + 1), method)
    z, integral = state[:, :numel].reshape(shape), state[:, numel]
    return (sde.prior_logp if prior_logp is None else prior_logp)(z) + integral
