"""Seeding: one call makes a chapter's random numbers repeatable."""

from __future__ import annotations

import random

import numpy as np
import torch

_last_seed: int | None = None


def seed(n: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA) with ``n``."""
    global _last_seed
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"seed: n must be an int, got {type(n).__name__} ({n!r})")
    if not 0 <= n < 2**32:
        raise ValueError(f"seed: n must be in [0, 2**32), got {n}")
    random.seed(int(n))
    np.random.seed(int(n))
    torch.manual_seed(int(n))  # also seeds every CUDA device
    _last_seed = int(n)


def last_seed() -> int | None:
    """The seed of the latest ``seed`` call in this process, or None."""
    return _last_seed
