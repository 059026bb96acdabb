"""``h_t = a_t h_{t-1} + b_t`` as a parallel (associative) scan in Triton, forward and backward.

One step is the affine map ``h -> a h + b``; composing two steps gives another,
``(a1, b1) then (a2, b2) = (a1 a2, a2 b1 + b2)``, and composition is
associative. So ``tl.associative_scan`` can combine a whole block of steps in
``log2(BLOCK)`` rounds instead of ``BLOCK`` dependent ones. One program owns one
row; it walks the row block by block, carrying the last ``h`` of each block
into the next. Every element is read once and written once.

The backward is the same scan run backwards in time. With ``g_t = dL/dh_t``
from outside, the total adjoint obeys ``dh_t = a_{t+1} dh_{t+1} + g_t``: a
linear scan in reverse with the coefficients shifted by one. Then
``db_t = dh_t``, ``da_t = dh_t h_{t-1}`` and ``dh0 = a_0 dh_0``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _compose(a1, b1, a2, b2):
    """Step (a1, b1) followed by step (a2, b2)."""
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _scan_kernel(a_ptr, b_ptr, h0_ptr, out_ptr, h_ptr, da_ptr, L,
                 BLOCK: tl.constexpr, REVERSE: tl.constexpr, HAS_H0: tl.constexpr, FP64: tl.constexpr):
    """Forward (REVERSE=False): out = h. Backward (REVERSE=True): b holds g, out = dh, and da = dh * h_{t-1}."""
    row = tl.program_id(0).to(tl.int64)
    base = row * L
    compute = tl.float64 if FP64 else tl.float32
    if HAS_H0 and not REVERSE:
        carry = tl.load(h0_ptr + row).to(compute)
    else:
        carry = tl.zeros((), dtype=compute)
    for start in range(0, L, BLOCK):
        step = start + tl.arange(0, BLOCK)  # position in scan order
        valid = step < L
        t = (L - 1 - step) if REVERSE else step  # position in time
        a_t = (t + 1) if REVERSE else t  # the backward scan multiplies by the next step's a
        a = tl.load(a_ptr + base + a_t, mask=valid & (a_t < L), other=0.0).to(compute)
        a = tl.where(valid, a, 1.0)  # padding steps are the identity map, so the carry survives them
        b = tl.load(b_ptr + base + t, mask=valid, other=0.0).to(compute)
        a_acc, b_acc = tl.associative_scan((a, b), axis=0, combine_fn=_compose)
        h = a_acc * carry + b_acc
        tl.store(out_ptr + base + t, h.to(out_ptr.dtype.element_ty), mask=valid)
        if REVERSE:  # fused: da_t = dh_t * h_{t-1}, with h_{-1} = h0 (or 0)
            h_prev = tl.load(h_ptr + base + t - 1, mask=valid & (t > 0), other=0.0).to(compute)
            if HAS_H0:
                h_prev = tl.where(t == 0, tl.load(h0_ptr + row).to(compute), h_prev)
            tl.store(da_ptr + base + t, (h * h_prev).to(da_ptr.dtype.element_ty), mask=valid)
        carry = tl.sum(tl.where(tl.arange(0, BLOCK) == BLOCK - 1, h, 0.0), axis=0)


def _block(L: int) -> int:
    return min(triton.next_power_of_2(L), 1024)


def _launch(a, b, h0, out, *, reverse: bool, h=None, da=None) -> None:
    rows, L = b.shape
    if rows == 0 or L == 0:
        return
    _scan_kernel[(rows,)](
        a, b, h0 if h0 is not None else b, out, h if h is not None else b, da if da is not None else out, L,
        BLOCK=_block(L), REVERSE=reverse, HAS_H0=h0 is not None, FP64=b.dtype == torch.float64,
        num_warps=4,
    )


class LinearScan(torch.autograd.Function):
    """Autograd wrapper over rows of shape ``(R, L)``; keeps ``a`` and ``h`` for the backward."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None):
        a, b = a.contiguous(), b.contiguous()
        h0 = h0.contiguous() if h0 is not None else None
        h = torch.empty_like(b)
        _launch(a, b, h0, h, reverse=False)
        ctx.save_for_backward(a, h, h0)
        ctx.has_h0 = h0 is not None
        return h

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        a, h, h0 = ctx.saved_tensors
        dh, da = torch.empty_like(h), torch.empty_like(a)
        _launch(a, g.contiguous(), h0, dh, reverse=True, h=h, da=da)
        dh0 = a[:, 0] * dh[:, 0] if ctx.has_h0 else None
        return da, dh, dh0


def linear_scan_triton(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    """``h_t = a_t h_{t-1} + b_t`` along the last axis with the Triton scan (same shapes as ``b``)."""
    shape = b.shape
    rows = b.reshape(-1, shape[-1])
    h = LinearScan.apply(a.reshape(rows.shape), rows, None if h0 is None else h0.reshape(-1))
    return h.reshape(shape)
