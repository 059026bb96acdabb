"""Input checks shared by the public functions of ``labs.rl``: one clear error per mistake."""

from __future__ import annotations

import math

import torch

from .._checks import whole_number


def real(fn: str, name: str, value, *, low: float, high: float = math.inf, low_open: bool = False) -> float:
    """``value`` as a float in [low, high] (or (low, high] with ``low_open``), else a ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{fn}: {name} must be a finite real number, got {value!r}")
    too_low = value <= low if low_open else value < low
    if too_low or value > high:
        bracket = "(" if low_open else "["
        raise ValueError(f"{fn}: {name} must lie in {bracket}{low:g}, {high:g}], got {value!r}")
    return float(value)


def alpha(fn: str, value) -> float:
    return real(fn, "alpha (the step size)", value, low=0.0, low_open=True)


def gamma(fn: str, value) -> float:
    return real(fn, "gamma (the discount)", value, low=0.0, high=1.0)


def epsilon(fn: str, value) -> float:
    return real(fn, "epsilon", value, low=0.0, high=1.0)


def count(fn: str, name: str, value) -> int:
    return whole_number(fn, name, value)


def mdp(fn: str, value):
    from .mdp import TabularMDP

    if not isinstance(value, TabularMDP):
        raise TypeError(f"{fn}: mdp must be a labs.rl.TabularMDP, got {type(value).__name__}")
    return value


def policy(fn: str, mdp, value) -> torch.Tensor:
    """A policy is an S x A tensor whose rows are probability distributions over actions."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{fn}: policy must be a torch.Tensor of shape (S, A), got {type(value).__name__}")
    expected = (mdp.n_states, mdp.n_actions)
    if tuple(value.shape) != expected:
        raise ValueError(f"{fn}: policy must have shape (S, A) = {expected}, got {tuple(value.shape)}")
    value = value.to(mdp.P)
    if (value < 0).any() or not torch.allclose(value.sum(-1), torch.ones_like(value[:, 0]), atol=1e-6):
        raise ValueError(f"{fn}: policy rows must be probability distributions (non-negative, summing to 1)")
    return value


def features(fn: str, mdp, value) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.ndim != 2 or value.shape[0] != mdp.n_states:
        shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"{fn}: features must be a tensor of shape (S, d) with S = {mdp.n_states}, got {shape}")
    return value.to(mdp.P)


def generator(fn: str, value, device) -> torch.Generator:
    """The caller's generator, or a fresh one seeded from torch's global RNG (so labs.seed applies)."""
    if value is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
        return torch.Generator(device=device).manual_seed(seed)
    if not isinstance(value, torch.Generator):
        raise TypeError(f"{fn}: generator must be a torch.Generator or None, got {type(value).__name__}")
    return value


def per_run(fn: str, name: str, value, runs: int, *, low: float, high: float = math.inf, low_open: bool = False):
    """A hyper-parameter that is one number for all runs, or a tensor with one value per run."""
    if not isinstance(value, torch.Tensor):
        return real(fn, name, value, low=low, high=high, low_open=low_open)
    if value.shape != (runs,):
        raise ValueError(f"{fn}: {name} given per run must have shape ({runs},), got {tuple(value.shape)}")
    for v in value.tolist():
        real(fn, name, v, low=low, high=high, low_open=low_open)
    return value.double()
