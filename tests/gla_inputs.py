"""Random inputs for the gated-linear-attention kernel tests, shared by tests/labs (Triton's interpreter)
and tests/cuda (a GPU).

Imported as ``tests.gla_inputs`` (pytest puts the repository root on ``sys.path``: ``pythonpath`` in
pyproject.toml). It needs only torch, so the CUDA suite still collects on a machine with no GPU.
"""

import torch


def gla_draws(b, h, t, dk, dv, g, channel=False):
    """float64 q, k (B, H, T, K) and v (B, H, T, V), standard normal, then u uniform in [0, 1), (B, H, T),
    or (B, H, T, K) when ``channel`` (one decay per key channel), drawn from ``g`` in that order; each
    suite scales them and makes its log-decay from u."""
    q, k = (torch.randn(b, h, t, dk, generator=g, dtype=torch.float64) for _ in range(2))
    v = torch.randn(b, h, t, dv, generator=g, dtype=torch.float64)
    u = torch.rand(b, h, t, *((dk,) if channel else ()), generator=g, dtype=torch.float64)
    return q, k, v, u
