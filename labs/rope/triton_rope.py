"""A fused RoPE kernel in Triton: q and k rotated in one launch, forward and backward.

RoPE is pure memory traffic: each element is read once and written once, with
a few flops in between. Eager PyTorch materialises cos/sin tables, slices the
pairs, multiplies and concatenates, writing temporaries at every step. Here a
program owns a block of positions of one head of q *and* the same block of k:
it computes the angles ``m * theta_j`` in registers (no cos/sin table is read),
rotates both tensors, and writes each output once. The backward pass is the
same kernel with the angle negated, because R(theta)^T = R(-theta).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _rope_kernel(
    q_ptr, k_ptr, q_out_ptr, k_out_ptr, pos_ptr, freq_ptr,
    n_q, n_k, seq_len,
    HALF: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_H: tl.constexpr,
    INTERLEAVED: tl.constexpr, SIGN: tl.constexpr, FP64: tl.constexpr,
):
    head = tl.program_id(0).to(tl.int64)  # heads on axis 0: it allows 2^31 programs, axis 1 only 65535
    block_t = tl.program_id(1)
    t = block_t * BLOCK_T + tl.arange(0, BLOCK_T)
    j = tl.arange(0, BLOCK_H)
    t_ok, j_ok = t < seq_len, j < HALF

    pos = tl.load(pos_ptr + t, mask=t_ok, other=0.0)
    freq = tl.load(freq_ptr + j, mask=j_ok, other=0.0)
    pos = pos.to(tl.float64) if FP64 else pos.to(tl.float32)
    freq = freq.to(tl.float64) if FP64 else freq.to(tl.float32)
    angle = pos[:, None] * freq[None, :]
    cos, sin = tl.cos(angle), SIGN * tl.sin(angle)

    if INTERLEAVED:  # pair j lives at columns (2j, 2j + 1)
        first, second = 2 * j, 2 * j + 1
    else:  # pair j lives at columns (j, j + d/2)
        first, second = j, j + HALF
    row = t.to(tl.int64)[:, None] * (2 * HALF)
    offsets_a, offsets_b = row + first[None, :], row + second[None, :]
    head_offset = head * seq_len * (2 * HALF)

    # A program past the last head of q (or k) still runs for the other tensor: mask it out.
    rows_q = tl.where(head < n_q, seq_len, 0)
    mask_q = (t < rows_q)[:, None] & j_ok[None, :]
    a = tl.load(q_ptr + head_offset + offsets_a, mask=mask_q, other=0.0)
    b = tl.load(q_ptr + head_offset + offsets_b, mask=mask_q, other=0.0)
    a = a.to(cos.dtype)
    b = b.to(cos.dtype)
    tl.store(q_out_ptr + head_offset + offsets_a, (a * cos - b * sin).to(q_out_ptr.dtype.element_ty), mask=mask_q)
    tl.store(q_out_ptr + head_offset + offsets_b, (a * sin + b * cos).to(q_out_ptr.dtype.element_ty), mask=mask_q)

    rows_k = tl.where(head < n_k, seq_len, 0)
    mask_k = (t < rows_k)[:, None] & j_ok[None, :]
    a = tl.load(k_ptr + head_offset + offsets_a, mask=mask_k, other=0.0)
    b = tl.load(k_ptr + head_offset + offsets_b, mask=mask_k, other=0.0)
    a = a.to(cos.dtype)
    b = b.to(cos.dtype)
    tl.store(k_out_ptr + head_offset + offsets_a, (a * cos - b * sin).to(k_out_ptr.dtype.element_ty), mask=mask_k)
    tl.store(k_out_ptr + head_offset + offsets_b, (a * sin + b * cos).to(k_out_ptr.dtype.element_ty), mask=mask_k)


def _launch(q, k, positions, inv_freq, interleaved: bool, sign: float):
    """Rotate contiguous ``q`` (..., T, D) and ``k`` (..., T, D) (``k`` may be None) by sign * m * theta."""
    seq_len, dim = q.shape[-2], q.shape[-1]
    half = dim // 2
    n_q = q.numel() // max(seq_len * dim, 1)
    n_k = 0 if k is None else k.numel() // max(seq_len * dim, 1)
    q_out = torch.empty_like(q)
    k_out = None if k is None else torch.empty_like(k)
    if q.numel() == 0 and (k is None or k.numel() == 0):
        return q_out, k_out
    block_h = triton.next_power_of_2(half)
    block_t = max(1, min(triton.next_power_of_2(seq_len), 4096 // block_h))
    fp64 = q.dtype == torch.float64
    compute = torch.float64 if fp64 else torch.float32
    grid = (max(n_q, n_k), triton.cdiv(seq_len, block_t))
    _rope_kernel[grid](
        q, q if k is None else k, q_out, q_out if k is None else k_out,
        positions.to(compute).contiguous(), inv_freq.to(compute).contiguous(),
        n_q, n_k, seq_len,
        HALF=half, BLOCK_T=block_t, BLOCK_H=block_h, INTERLEAVED=interleaved, SIGN=sign, FP64=fp64,
        num_warps=4,
    )
    return q_out, k_out


class RopeQK(torch.autograd.Function):
    """Autograd wrapper: the backward rotates the incoming gradients by -m * theta."""

    @staticmethod
    def forward(ctx, q, k, positions, inv_freq, interleaved):
        ctx.save_for_backward(positions, inv_freq)
        ctx.interleaved = interleaved
        ctx.has_k = k is not None
        return _launch(q.contiguous(), None if k is None else k.contiguous(), positions, inv_freq, interleaved, 1.0)

    @staticmethod
    def backward(ctx, dq, dk):
        positions, inv_freq = ctx.saved_tensors
        dq_in, dk_in = _launch(
            dq.contiguous(), dk.contiguous() if ctx.has_k else None, positions, inv_freq, ctx.interleaved, -1.0
        )
        return dq_in, dk_in, None, None, None


def rope_qk_triton(q, k, positions, inv_freq, interleaved: bool = False):
    """Rotate ``q`` and ``k`` (k may be None) with the fused kernel; returns ``(q_rot, k_rot)``."""
    return RopeQK.apply(q, k, positions, inv_freq, interleaved)
