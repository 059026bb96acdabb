"""Input checks shared by the public functions of ``labs.rl``: one clear error per mistake.

Numbers go through ``labs._checks`` (``real_number``, ``whole_number``); what is
particular to reinforcement learning (an MDP, a policy, features, a per-run
hyper-parameter, the generator every sampling function requires) is checked here.
"""

from __future__ import annotations

import torch

from .._checks import real_number


def alpha(fn: str, value) -> float:
    return real_number(fn, "alpha (the step size)", value, low=0.0, low_open=True)


def gamma(fn: str, value) -> float:
    return real_number(fn, "gamma (the discount)", value, low=0.0, high=1.0)


def epsilon(fn: str, value) -> float:
    return real_number(fn, "epsilon", value, low=0.0, high=1.0)


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


def per_run(fn: str, name: str, value, runs: int, *, low: float, high: float | None = None, low_open: bool = False):
    """A hyper-parameter that is one number for all runs, or a tensor with one value per run."""
    if not isinstance(value, torch.Tensor):
        return real_number(fn, name, value, low=low, high=high, low_open=low_open)
    if value.shape != (runs,):
        raise ValueError(f"{fn}: {name} given per run must have shape ({runs},), got {tuple(value.shape)}")
    for v in value.tolist():
        real_number(fn, name, v, low=low, high=high, low_open=low_open)
    return value.double()
