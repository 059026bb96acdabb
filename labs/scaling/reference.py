"""The chapter's math as plain torch: slow, clear, float64-friendly.

Everything here is what ``book/attention_scaling.md`` derives; the Triton
kernel in ``triton_softmax.py`` is held against ``scaled_softmax``.
"""

from __future__ import annotations

import math

import torch

from .._checks import choice, float_tensor, real_number
from .._checks import generator as check_generator

UNIT_VARIANCE_LAWS = ("normal", "uniform", "rademacher")


def scaled_softmax(x: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(scale * x) along the last dimension, written out step by step."""
    z = scale * x
    z = z - z.amax(dim=-1, keepdim=True)  # exp never overflows; the result is unchanged
    e = torch.exp(z)
    return e / e.sum(dim=-1, keepdim=True)


def softmax_jacobian(p: torch.Tensor) -> torch.Tensor:
    """d softmax_i / d z_j = p_i (delta_ij - p_j), batched over leading dims: (..., n) -> (..., n, n)."""
    float_tensor("softmax_jacobian", "p", p, min_ndim=1)
    return torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)


def unit_variance_samples(shape, *, generator: torch.Generator, distribution: str = "normal") -> torch.Tensor:
    """float64 samples with mean 0 and variance 1 from one of ``UNIT_VARIANCE_LAWS``, drawn from ``generator``."""
    choice("unit_variance_samples", "distribution", distribution, UNIT_VARIANCE_LAWS)
    check_generator("unit_variance_samples", "generator", generator)
    if distribution == "normal":
        return torch.randn(shape, generator=generator, dtype=torch.float64)
    if distribution == "uniform":  # U(-a, a) has variance a^2 / 3
        u = torch.rand(shape, generator=generator, dtype=torch.float64)
        return (2 * u - 1) * math.sqrt(3.0)
    return torch.randint(0, 2, shape, generator=generator).to(torch.float64) * 2 - 1  # Rademacher


def attention_statistics(q: torch.Tensor, k: torch.Tensor, scale: float) -> dict[str, float]:
    """Summaries of one attention pattern per query, averaged over queries.

    ``q`` is (n_queries, d), ``k`` is (n_keys, d). Returns the standard deviation
    of the logits, the mean largest attention weight, the mean entropy of the
    weights (nats; uniform over n keys is log n) and the mean and median
    Frobenius norm of the softmax Jacobian (how much gradient flows back
    through softmax; the mean is dominated by the rare queries with near-ties).
    """
    for name, t in (("q", q), ("k", k)):
        float_tensor("attention_statistics", name, t, ndim=2)
    if q.shape[1] != k.shape[1]:
        raise ValueError(f"attention_statistics: q and k need the same d, got q {tuple(q.shape)} and k {tuple(k.shape)}")
    logits = real_number("attention_statistics", "scale", scale) * (q @ k.T)
    p = scaled_softmax(logits, 1.0)
    entropy = -(p * torch.log(p.clamp_min(1e-300))).sum(-1)
    jacobian_norms = torch.linalg.matrix_norm(softmax_jacobian(p))
    return {
        "logit_std": logits.std().item(),
        "max_weight": p.amax(-1).mean().item(),
        "entropy": entropy.mean().item(),
        "jacobian_norm": jacobian_norms.mean().item(),
        "jacobian_norm_median": jacobian_norms.median().item(),
    }

