"""Chapter "Why attention divides by sqrt(d)": the scaled softmax and its statistics."""

from __future__ import annotations

import torch

from .. import _backend
from .._checks import float_tensor, real_number
from .reference import attention_statistics, softmax_jacobian, unit_variance_samples
from .reference import scaled_softmax as scaled_softmax_reference

__all__ = [
    "attention_statistics",
    "scaled_softmax",
    "scaled_softmax_reference",
    "softmax_jacobian",
    "unit_variance_samples",
]

MAX_TRITON_COLS = 32768  # longest row one Triton program holds in registers; longer rows use torch


def _check(x, scale) -> float:
    float_tensor("scaled_softmax", "x", x)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ValueError(f"scaled_softmax: x needs a non-empty last dimension, got shape {tuple(x.shape)}")
    return real_number("scaled_softmax", "scale", scale)


def scaled_softmax(x: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(scale * x) along the last dimension, differentiable.

    Runs the fused Triton kernel where ``labs._backend`` allows it (CUDA, or the
    CPU interpreter with ``TRITON_INTERPRET=1``) and the torch reference
    otherwise; both give the same result.
    """
    scale = _check(x, scale)
    fits = x.shape[-1] <= MAX_TRITON_COLS and _backend.triton_dtype_ok(x.dtype, x.device)
    if fits and _backend.use_triton(x):
        from .triton_softmax import scaled_softmax_triton

        return scaled_softmax_triton(x, scale)
    return scaled_softmax_reference(x, scale)
