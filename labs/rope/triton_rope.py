"""A fused RoPE kernel in Triton: q and k rotated in one launch, forward and backward.

RoPE is pure memory traffic: each element is read once and written once, with
a few flops in between. Eager PyTorch materialises cos/sin tables, slices the
pairs, multiplies and concatenates, writing temporaries at every step. Here a
program owns a block of positions and a group of heads of q *and* k: it forms
the angles ``m * theta_j`` once, in registers (no cos/sin table is read),
rotates every head of the group in both tensors, and writes each output once.
The backward pass is the same kernel with the angle negated, because
R(theta)^T = R(-theta).

Three things a GPU exposes that the CPU interpreter hides:

* **Angles in float64.** ``m * theta_j`` reaches 1e6 radians at position 1M;
  an fp32 product and argument reduction there are off by up to 0.06 rad
  (fp32 spacing at 1e6 is 0.0625). The kernel forms the angle and reduces it to
  [-pi, pi] in float64, then takes cos and sin in fp32 (float64 for float64
  inputs): the rotation is as exact at position 1M as at position 0. The
  float64 work is per (position, pair), shared by all heads of the group.
* **Strided inputs.** q and k are read through their strides, so q/k views of
  a fused QKV projection, laid out (B, T, H, D) and seen as (B, H, T, D), are
  rotated in place of a copy. Leading dims that cannot be described by two
  strides are copied first.
* **Registers.** A tile of 1024 (position, pair) entries per program (512 in
  float64) keeps a thread at 8 pairs, and interleaved pairs are loaded as whole
  rows and split in registers rather than gathered with a stride of 2 (which
  took twice the registers). tests/labs/test_compile.py checks every
  configuration for spills and for at most 128 registers on sm_75/80/90.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from .. import _backend

TILE = 1024  # (position, pair) entries per program
HEADS = 4  # heads of q and of k per program: the angles are formed once for all of them
MIN_BLOCK_H = 16  # pairs per row block: head dims up to 32 share one compiled kernel
MAX_HEAD_DIM = 512  # wider heads take the torch reference (rope_qk_triton falls back)
# pi / 2 in three parts (Cody and Waite), together ~100 bits: the first has 24 significant bits,
# so quarter_turns * HALF_PI_HI is exact in float64 for any count below 2^29 (positions up to ~10^8
# at theta = 1); float64's own pi / 2 would be off by 6e-17 per quarter turn (4e-11 rad at 1M).
HALF_PI_HI = tl.constexpr(1.5707963705062866)  # pi / 2 rounded to float32
HALF_PI_MID = tl.constexpr(-4.3711390001862426e-08)  # float64(pi / 2 - HALF_PI_HI)
HALF_PI_LO = tl.constexpr(-2.6718907338610155e-24)  # what is left
TWO_OVER_PI = tl.constexpr(2.0 / math.pi)


@triton.jit
def _cos_sin(r, quadrant, FP64: tl.constexpr):
    """cos and sin of r + quadrant * pi/2 for |r| <= pi/4: Taylor series to below the type's
    rounding (through r^11 in float32, r^19 in float64), then the quadrant's swap and signs."""
    r2 = r * r
    if FP64:  # the terms of r^11 .. r^19 (sin) and r^10 .. r^18 (cos)
        s = -1.0 / 39916800 + r2 * (1.0 / 6227020800 + r2 * (-1.0 / 1307674368000 + r2 * (
            1.0 / 355687428096000 + r2 * (-1.0 / 121645100408832000))))
        c = -1.0 / 3628800 + r2 * (1.0 / 479001600 + r2 * (-1.0 / 87178291200 + r2 * (
            1.0 / 20922789888000 + r2 * (-1.0 / 6402373705728000))))
    else:  # r^11 (sin), r^10 and r^12 (cos): the next terms are below 1e-11
        s = r2 * 0.0 - 1.0 / 39916800
        c = -1.0 / 3628800 + r2 * (1.0 / 479001600)
    s = r * (1.0 + r2 * (-1.0 / 6 + r2 * (1.0 / 120 + r2 * (-1.0 / 5040 + r2 * (1.0 / 362880 + r2 * s)))))
    c = 1.0 + r2 * (-0.5 + r2 * (1.0 / 24 + r2 * (-1.0 / 720 + r2 * (1.0 / 40320 + r2 * c))))
    odd = (quadrant & 1) == 1  # a quarter turn swaps cos and sin
    cos = tl.where(odd, s, c)
    sin = tl.where(odd, c, s)
    cos = tl.where(((quadrant + 1) & 2) != 0, -cos, cos)  # quadrants 1, 2: cos < 0
    sin = tl.where((quadrant & 2) != 0, -sin, sin)  # quadrants 2, 3: sin < 0
    return cos, sin


@triton.jit
def _rotate(x_ptr, out_ptr, head, n_heads, inner, sx_o, sx_i, sx_t, so_o, so_i, so_t,
            t, j, seq_len, half, cos, sin, INTERLEAVED: tl.constexpr):
    """Rotate head number ``head`` of x (nothing when head >= n_heads) into out."""
    outer, i = (head // inner).to(tl.int64), (head % inner).to(tl.int64)
    x_row = x_ptr + outer * sx_o + i * sx_i + t.to(tl.int64)[:, None] * sx_t
    out_row = out_ptr + outer * so_o + i * so_i + t.to(tl.int64)[:, None] * so_t
    rows = tl.where(head < n_heads, seq_len, 0)  # a head past the last one has no rows
    if INTERLEAVED:  # pair j lives at columns (2j, 2j + 1): load whole rows, split them into pairs
        cols = tl.arange(0, 2 * j.shape[0])
        mask = (t < rows)[:, None] & (cols < 2 * half)[None, :]
        x = tl.load(x_row + cols[None, :], mask=mask, other=0.0).to(cos.dtype)
        a, b = tl.split(tl.reshape(x, (x.shape[0], j.shape[0], 2)))
        y = tl.reshape(tl.join(a * cos - b * sin, a * sin + b * cos), (x.shape[0], 2 * j.shape[0]))
        tl.store(out_row + cols[None, :], y.to(out_ptr.dtype.element_ty), mask=mask)
    else:  # pair j lives at columns (j, j + d/2): two contiguous half rows
        mask = (t < rows)[:, None] & (j < half)[None, :]
        a = tl.load(x_row + j[None, :], mask=mask, other=0.0).to(cos.dtype)
        b = tl.load(x_row + (j + half)[None, :], mask=mask, other=0.0).to(cos.dtype)
        tl.store(out_row + j[None, :], (a * cos - b * sin).to(out_ptr.dtype.element_ty), mask=mask)
        tl.store(out_row + (j + half)[None, :], (a * sin + b * cos).to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _rope_kernel(
    q_ptr, k_ptr, q_out_ptr, k_out_ptr, pos_ptr, freq_ptr,
    n_q, n_k, q_inner, k_inner,
    sq_o, sq_i, sq_t, sk_o, sk_i, sk_t, sqo_o, sqo_i, sqo_t, sko_o, sko_i, sko_t,
    seq_len, half, n_t_blocks, sign: tl.float64,
    BLOCK_T: tl.constexpr, BLOCK_H: tl.constexpr, HEADS: tl.constexpr,
    INTERLEAVED: tl.constexpr, FP64: tl.constexpr,
):
    # All programs on axis 0 (CUDA allows 2^31 - 1 there, 65535 on axes 1 and 2).
    pid = tl.program_id(0)
    group, block_t = pid // n_t_blocks, pid % n_t_blocks
    t = block_t * BLOCK_T + tl.arange(0, BLOCK_T)
    j = tl.arange(0, BLOCK_H)

    # The angle m * theta_j in float64, reduced to r in [-pi/4, pi/4] plus a count of quarter
    # turns: as exact at position 1M as at 0. Then cos and sin of r by their Taylor series.
    pos = tl.load(pos_ptr + t, mask=t < seq_len, other=0.0)
    freq = tl.load(freq_ptr + j, mask=j < half, other=0.0)
    angle = pos[:, None] * freq[None, :]
    quarters = tl.floor(angle * tl.full((), TWO_OVER_PI, tl.float64) + 0.5)
    r = angle - quarters * tl.full((), HALF_PI_HI, tl.float64)
    r = r - quarters * tl.full((), HALF_PI_MID, tl.float64) - quarters * tl.full((), HALF_PI_LO, tl.float64)
    if not FP64:
        r = r.to(tl.float32)
    cos, sin = _cos_sin(r, quarters.to(tl.int32) & 3, FP64)
    sin = tl.cast(sign, r.dtype) * sin

    for h in tl.static_range(HEADS):
        head = group * HEADS + h
        _rotate(q_ptr, q_out_ptr, head, n_q, q_inner, sq_o, sq_i, sq_t, sqo_o, sqo_i, sqo_t,
                t, j, seq_len, half, cos, sin, INTERLEAVED)
        _rotate(k_ptr, k_out_ptr, head, n_k, k_inner, sk_o, sk_i, sk_t, sko_o, sko_i, sko_t,
                t, j, seq_len, half, cos, sin, INTERLEAVED)


def _two_level(x: torch.Tensor):
    """View x (..., T, D) as (outer, inner, T, D) by strides, or None when two strides cannot describe it."""
    lead = [(n, s) for n, s in zip(x.shape[:-2], x.stride()[:-2]) if n != 1]
    merged: list[list[int]] = []  # [size, stride], outermost first
    for n, s in lead:
        if merged and merged[-1][1] == n * s:
            merged[-1] = [merged[-1][0] * n, s]
        else:
            merged.append([n, s])
    if len(merged) > 2 or x.stride(-1) != 1:
        return None
    while len(merged) < 2:
        merged.insert(0, [1, 0])
    (n_outer, s_outer), (n_inner, s_inner) = merged
    return n_outer * n_inner, n_inner, s_outer, s_inner, x.stride(-2)


def _heads(x: torch.Tensor):
    """``(x, layout)``: x itself when two strides describe its heads, else a contiguous copy."""
    layout = _two_level(x)
    if layout is None:
        x = x.contiguous()
        layout = _two_level(x)
    return x, layout


def _output(x: torch.Tensor):
    out = torch.empty_like(x)  # dense, in x's dimension order
    layout = _two_level(out)
    if layout is None:
        out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
        layout = _two_level(out)
    return out, layout


def _launch_config(dim: int, dtype: torch.dtype = torch.float32) -> tuple[int, int, int]:
    """``(BLOCK_T, BLOCK_H, num_warps)`` for head dim ``dim``: a tile of TILE (position, pair) entries,
    half as many for float64 (each value takes two registers)."""
    block_h = max(MIN_BLOCK_H, triton.next_power_of_2(max(dim // 2, 1)))
    tile = TILE // 2 if dtype == torch.float64 else TILE
    return max(1, tile // block_h), block_h, 4


def _launch(q, k, positions, inv_freq, interleaved: bool, sign: float):
    """Rotate ``q`` (..., T, D) and ``k`` (..., T, D) (``k`` may be None) by sign * m * theta."""
    seq_len, dim = q.shape[-2], q.shape[-1]
    q, (n_q, q_inner, *q_strides) = _heads(q)
    q_out, (_, _, *qo_strides) = _output(q)
    if k is None:
        k, k_out, n_k, k_inner, k_strides, ko_strides = q, q_out, 0, 1, q_strides, qo_strides
    else:
        k, (n_k, k_inner, *k_strides) = _heads(k)
        k_out, (_, _, *ko_strides) = _output(k)
    block_t, block_h, num_warps = _launch_config(dim, q.dtype)
    n_t_blocks = triton.cdiv(seq_len, block_t)
    grid = (triton.cdiv(max(n_q, n_k), HEADS) * n_t_blocks,)
    _backend.launch(
        _rope_kernel, grid,
        q, k, q_out, k_out,
        positions.to(torch.float64).contiguous(), inv_freq.to(torch.float64).contiguous(),
        n_q, n_k, q_inner, k_inner, *q_strides, *k_strides, *qo_strides, *ko_strides,
        seq_len, dim // 2, n_t_blocks, float(sign),
        BLOCK_T=block_t, BLOCK_H=block_h, HEADS=HEADS, INTERLEAVED=bool(interleaved),
        FP64=q.dtype == torch.float64, num_warps=num_warps,
    )
    return q_out, (None if n_k == 0 else k_out)


class RopeQK(torch.autograd.Function):
    """Autograd wrapper: the backward rotates the incoming gradients by -m * theta."""

    @staticmethod
    def forward(ctx, q, k, positions, inv_freq, interleaved):
        ctx.save_for_backward(positions, inv_freq)
        ctx.interleaved = interleaved
        ctx.has_k = k is not None
        return _launch(q, k, positions, inv_freq, interleaved, 1.0)

    @staticmethod
    def backward(ctx, dq, dk):
        positions, inv_freq = ctx.saved_tensors
        dq_in, dk_in = _launch(dq, dk if ctx.has_k else None, positions, inv_freq, ctx.interleaved, -1.0)
        return dq_in, dk_in, None, None, None


def rope_qk_triton(q, k, positions, inv_freq, interleaved: bool = False):
    """Rotate ``q`` and ``k`` (k may be None) with the fused kernel; returns ``(q_rot, k_rot)``.

    Head dims above ``MAX_HEAD_DIM`` take the torch reference instead.
    """
    if q.shape[-1] > MAX_HEAD_DIM:
        from .reference import apply_rope

        return apply_rope(q, positions, inv_freq, interleaved), (
            None if k is None else apply_rope(k, positions, inv_freq, interleaved))
    return RopeQK.apply(q, k, positions, inv_freq, interleaved)
