"""A fused ``softmax(scale * x)`` in Triton, forward and backward.

One program owns one row: the row is loaded once, scaled, max-subtracted,
exponentiated, normalised and written once, all in registers. Eager PyTorch
does the scale and the softmax as separate kernels, reading and writing the
whole tensor between them. The backward pass uses
``dx = scale * y * (dy - sum(dy * y))`` and needs only ``y``, not ``x``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _forward_kernel(x_ptr, y_ptr, n_cols, scale, BLOCK: tl.constexpr, FP64: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    x = tl.load(x_ptr + row * n_cols + cols, mask=mask, other=0.0)
    x = x.to(tl.float64) if FP64 else x.to(tl.float32)
    z = tl.where(mask, x * scale, -float("inf"))
    e = tl.exp(z - tl.max(z, axis=0))
    y = e / tl.sum(e, axis=0)
    tl.store(y_ptr + row * n_cols + cols, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _backward_kernel(y_ptr, dy_ptr, dx_ptr, n_cols, scale, BLOCK: tl.constexpr, FP64: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    y = tl.load(y_ptr + row * n_cols + cols, mask=mask, other=0.0)
    dy = tl.load(dy_ptr + row * n_cols + cols, mask=mask, other=0.0)
    y = y.to(tl.float64) if FP64 else y.to(tl.float32)
    dy = dy.to(tl.float64) if FP64 else dy.to(tl.float32)
    dx = scale * y * (dy - tl.sum(dy * y, axis=0))
    tl.store(dx_ptr + row * n_cols + cols, dx.to(dx_ptr.dtype.element_ty), mask=mask)


def _launch_config(n_cols: int) -> tuple[int, int]:
    block = triton.next_power_of_2(n_cols)
    num_warps = 4 if block <= 2048 else 8 if block <= 8192 else 16
    return block, num_warps


def _run(kernel, out: torch.Tensor, *tensors: torch.Tensor, scale: float) -> torch.Tensor:
    n_cols = out.shape[-1]
    n_rows = out.numel() // n_cols
    if n_rows:
        block, num_warps = _launch_config(n_cols)
        kernel[(n_rows,)](
            *tensors, out, n_cols, scale, BLOCK=block, FP64=out.dtype == torch.float64, num_warps=num_warps
        )
    return out


class ScaledSoftmax(torch.autograd.Function):
    """Autograd wrapper: the forward keeps ``y`` for the backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        x = x.contiguous()
        y = _run(_forward_kernel, torch.empty_like(x), x, scale=scale)
        ctx.save_for_backward(y)
        ctx.scale = scale
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        (y,) = ctx.saved_tensors
        dx = _run(_backward_kernel, torch.empty_like(y), y, dy.contiguous(), scale=ctx.scale)
        return dx, None


def scaled_softmax_triton(x: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(scale * x) along the last dimension with the fused Triton kernels."""
    return ScaledSoftmax.apply(x, scale)
