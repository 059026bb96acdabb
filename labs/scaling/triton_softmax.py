"""A fused ``softmax(scale * x)`` in Triton, forward and backward.

One program owns one row: the row is loaded once, scaled, max-subtracted,
exponentiated, normalised and written once, all in registers. Eager PyTorch
does the scale and the softmax as separate kernels, reading and writing the
whole tensor between them. The backward pass uses
``dx = scale * y * (dy - sum(dy * y))`` and needs only ``y``, not ``x``.

Two details a GPU exposes and the CPU interpreter hides:

* ``scale`` is annotated ``tl.float64``. Triton types a plain Python float
  argument as fp32, so without the annotation the float64 kernel would scale by
  an fp32-rounded number (relative error ~1e-7 instead of ~1e-16).
* The block is the whole row, so the row length decides registers per thread.
  ``_launch_config`` grows the warps with the row, and a row that would not fit
  in registers (a 32k-column backward holds 64k values, the whole register
  file of an SM) goes to the long-row kernels, which sweep it twice in blocks;
  the second sweep reads what the first just brought into L2. No configuration
  the dispatch can choose spills (checked for sm_75/80/90 by
  ``tests/labs/test_compile.py``).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .. import _backend

MIN_BLOCK = 256  # shorter rows share this block: one compiled kernel per dtype for every row under 256
MAX_BLOCK = 32768  # the longest row one program holds (labs.scaling.MAX_TRITON_COLS)


@triton.jit
def _scaled(x, scale, FP64: tl.constexpr):
    """``scale * x`` in the compute type: float64 for float64 rows, else float32."""
    if FP64:
        return x.to(tl.float64) * scale
    else:
        return x.to(tl.float32) * tl.cast(scale, tl.float32)


@triton.jit
def _forward_kernel(x_ptr, y_ptr, n_cols, scale: tl.float64, BLOCK: tl.constexpr, FP64: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    x = tl.load(x_ptr + row * n_cols + cols, mask=mask, other=0.0)
    z = tl.where(mask, _scaled(x, scale, FP64), -float("inf"))
    e = tl.exp(z - tl.max(z, axis=0))
    y = e / tl.sum(e, axis=0)
    tl.store(y_ptr + row * n_cols + cols, y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _backward_kernel(y_ptr, dy_ptr, dx_ptr, n_cols, scale: tl.float64, BLOCK: tl.constexpr, FP64: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    y = tl.load(y_ptr + row * n_cols + cols, mask=mask, other=0.0)
    dy = tl.load(dy_ptr + row * n_cols + cols, mask=mask, other=0.0)
    dtype = tl.float64 if FP64 else tl.float32
    y, dy = y.to(dtype), dy.to(dtype)
    dx = _scaled(y * (dy - tl.sum(dy * y, axis=0)), scale, FP64)
    tl.store(dx_ptr + row * n_cols + cols, dx.to(dx_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _forward_long_kernel(x_ptr, y_ptr, n_cols, scale: tl.float64, BLOCK: tl.constexpr, FP64: tl.constexpr):
    """A row too long for registers, in blocks: an online max and sum, then a second sweep that writes y."""
    row = tl.program_id(0).to(tl.int64)
    dtype = tl.float64 if FP64 else tl.float32
    m = tl.full((), -float("inf"), dtype)
    total = tl.zeros((), dtype)
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        z = _scaled(tl.load(x_ptr + row * n_cols + cols, mask=cols < n_cols, other=-float("inf")), scale, FP64)
        m_new = tl.maximum(m, tl.max(z, axis=0))
        total = total * tl.exp(m - m_new) + tl.sum(tl.exp(z - m_new), axis=0)
        m = m_new
    for start in range(0, n_cols, BLOCK):  # the row was just read: this sweep mostly hits L2
        cols = start + tl.arange(0, BLOCK)
        z = _scaled(tl.load(x_ptr + row * n_cols + cols, mask=cols < n_cols, other=0.0), scale, FP64)
        y = tl.exp(z - m) / total
        tl.store(y_ptr + row * n_cols + cols, y.to(y_ptr.dtype.element_ty), mask=cols < n_cols)


@triton.jit
def _backward_long_kernel(y_ptr, dy_ptr, dx_ptr, n_cols, scale: tl.float64, BLOCK: tl.constexpr, FP64: tl.constexpr):
    """The backward for long rows: sum(dy * y) in one sweep, dx in a second."""
    row = tl.program_id(0).to(tl.int64)
    dtype = tl.float64 if FP64 else tl.float32
    total = tl.zeros((), dtype)
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        y = tl.load(y_ptr + row * n_cols + cols, mask=cols < n_cols, other=0.0).to(dtype)
        dy = tl.load(dy_ptr + row * n_cols + cols, mask=cols < n_cols, other=0.0).to(dtype)
        total += tl.sum(dy * y, axis=0)
    for start in range(0, n_cols, BLOCK):
        cols = start + tl.arange(0, BLOCK)
        y = tl.load(y_ptr + row * n_cols + cols, mask=cols < n_cols, other=0.0).to(dtype)
        dy = tl.load(dy_ptr + row * n_cols + cols, mask=cols < n_cols, other=0.0).to(dtype)
        dx = _scaled(y * (dy - total), scale, FP64)
        tl.store(dx_ptr + row * n_cols + cols, dx.to(dx_ptr.dtype.element_ty), mask=cols < n_cols)


# Registers per thread the row may take in the one-sweep kernels (of 255; the rest is addressing).
ROW_REGISTERS = 64
LONG_BLOCK = 4096  # the block the long-row kernels sweep with (8 warps: 16 elements a thread)


def _launch_config(n_cols: int, dtype: torch.dtype = torch.float32, arrays: int = 1) -> tuple[bool, int, int]:
    """``(one_sweep, BLOCK, num_warps)`` for rows of ``n_cols`` when the kernel holds ``arrays`` row arrays.

    One warp per 512 columns, 4 to 16 warps. The whole row stays in registers
    when it needs at most ``ROW_REGISTERS`` 32-bit registers per thread
    (float64 takes two per element); a longer row (32k columns in the
    backward, which holds y and dy; 16k+ in float64) is swept twice in blocks
    by the long-row kernels instead, so no configuration spills.
    """
    if not 1 <= n_cols <= MAX_BLOCK:
        raise ValueError(f"scaled_softmax_triton: rows must have 1 to {MAX_BLOCK} columns, got {n_cols}")
    block = max(MIN_BLOCK, triton.next_power_of_2(n_cols))
    num_warps = min(16, max(4, block // 512))
    words = arrays * block * (2 if dtype == torch.float64 else 1)
    if words <= ROW_REGISTERS * 32 * num_warps:
        return True, block, num_warps
    return False, LONG_BLOCK, 8


def _run(kernels, out: torch.Tensor, *tensors: torch.Tensor, scale: float) -> torch.Tensor:
    n_cols = out.shape[-1]
    n_rows = out.numel() // n_cols
    one_sweep, block, num_warps = _launch_config(n_cols, out.dtype, arrays=len(tensors))
    _backend.launch(kernels[0] if one_sweep else kernels[1], (n_rows,), *tensors, out, n_cols, float(scale),
                    BLOCK=block, FP64=out.dtype == torch.float64, num_warps=num_warps)
    return out


class ScaledSoftmax(torch.autograd.Function):
    """Autograd wrapper: the forward keeps ``y`` for the backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, scale: float) -> torch.Tensor:
        x = x.contiguous()
        y = _run((_forward_kernel, _forward_long_kernel), torch.empty_like(x), x, scale=scale)
        ctx.save_for_backward(y)
        ctx.scale = scale
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        (y,) = ctx.saved_tensors
        dx = _run((_backward_kernel, _backward_long_kernel), torch.empty_like(y), y, dy.contiguous(), scale=ctx.scale)
        return dx, None


def scaled_softmax_triton(x: torch.Tensor, scale: float) -> torch.Tensor:
    """softmax(scale * x) along the last dimension with the fused Triton kernels."""
    return ScaledSoftmax.apply(x, scale)
