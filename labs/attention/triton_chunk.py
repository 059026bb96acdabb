"""Chunked causal linear attention in Triton, forward and backward.

The kernels compute the numerator ``o_t = sum_{s <= t} (phi(q_t) . phi(k_s)) v_s``
(the normaliser is one cumulative sum, left to torch) in two passes, each
parallel over (batch x head, chunk of ``BT`` positions, block of value columns):

1. ``_chunk_sum_kernel``: every chunk's contribution ``k_c^T v_c`` (``Dk x Dv``);
   torch turns these into the state before each chunk, ``S_c``, with one
   exclusive cumulative sum over chunks.
2. ``_forward_kernel``: ``o_c = tril(q_c k_c^T) v_c + q_c S_c``.

The backward pass reuses pass 1 on ``(q, do)`` for ``dS_c = sum over later
chunks of q^T do`` and then, per chunk,
``dq_c = tril(do_c v_c^T) k_c + do_c S_c^T``,
``dk_c = triu(v_c do_c^T) q_c + v_c dS_c^T`` and
``dv_c = triu(k_c q_c^T) do_c + k_c dS_c``.

Everything is accumulated in float32 (float64 for float64 inputs) and the
numerator is returned in that precision: a sum over 32k positions overflows
float16. ``dq`` and ``dk`` sum over value blocks, so each program writes its
share and torch adds the shares.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _load(base, rows, cols, n_rows, n_cols, FP64: tl.constexpr):
    """A (rows x cols) tile of a row-major (n_rows, n_cols) matrix, zero outside, in the accumulation type."""
    mask = (rows[:, None] < n_rows) & (cols[None, :] < n_cols)
    x = tl.load(base + rows[:, None] * n_cols + cols[None, :], mask=mask, other=0.0)
    return x.to(tl.float64) if FP64 else x.to(tl.float32)


@triton.jit
def _store(base, x, rows, cols, n_rows, n_cols):
    mask = (rows[:, None] < n_rows) & (cols[None, :] < n_cols)
    tl.store(base + rows[:, None] * n_cols + cols[None, :], x.to(base.dtype.element_ty), mask=mask)


@triton.jit
def _chunk_sum_kernel(a_ptr, b_ptr, out_ptr, T, DA, DB, NT,
                      BT: tl.constexpr, BA: tl.constexpr, BB: tl.constexpr, FP64: tl.constexpr):
    """out[bh, c] = a_c^T b_c for chunk c: (DA x DB) per chunk."""
    i_b, i_c, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    rows = i_c * BT + tl.arange(0, BT)
    cols_a = tl.arange(0, BA)
    cols_b = i_b * BB + tl.arange(0, BB)
    a = _load(a_ptr + i_bh * T * DA, rows, cols_a, T, DA, FP64)
    b = _load(b_ptr + i_bh * T * DB, rows, cols_b, T, DB, FP64)
    _store(out_ptr + (i_bh * NT + i_c) * DA * DB, tl.dot(tl.trans(a), b), cols_a, cols_b, DA, DB)


@triton.jit
def _forward_kernel(q_ptr, k_ptr, v_ptr, s_ptr, o_ptr, T, DK, DV, NT,
                    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, FP64: tl.constexpr):
    """o_c = tril(q_c k_c^T) v_c + q_c S_c for one chunk c and one block of value columns."""
    i_v, i_c, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    offs_t = tl.arange(0, BT)
    rows = i_c * BT + offs_t
    offs_k = tl.arange(0, BK)
    offs_v = i_v * BV + tl.arange(0, BV)
    q = _load(q_ptr + i_bh * T * DK, rows, offs_k, T, DK, FP64)
    k = _load(k_ptr + i_bh * T * DK, rows, offs_k, T, DK, FP64)
    v = _load(v_ptr + i_bh * T * DV, rows, offs_v, T, DV, FP64)
    state = _load(s_ptr + (i_bh * NT + i_c) * DK * DV, offs_k, offs_v, DK, DV, FP64)
    scores = tl.where(offs_t[:, None] >= offs_t[None, :], tl.dot(q, tl.trans(k)), 0.0)
    out = tl.dot(scores, v) + tl.dot(q, state)
    _store(o_ptr + i_bh * T * DV, out, rows, offs_v, T, DV)


@triton.jit
def _backward_kernel(q_ptr, k_ptr, v_ptr, do_ptr, s_ptr, ds_ptr, dq_ptr, dk_ptr, dv_ptr, T, DK, DV, NT, BH,
                     BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, FP64: tl.constexpr):
    """dq, dk (this value block's share) and dv for one chunk, from the states S_c and dS_c."""
    i_v, i_c, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2).to(tl.int64)
    offs_t = tl.arange(0, BT)
    rows = i_c * BT + offs_t
    offs_k = tl.arange(0, BK)
    offs_v = i_v * BV + tl.arange(0, BV)
    q = _load(q_ptr + i_bh * T * DK, rows, offs_k, T, DK, FP64)
    k = _load(k_ptr + i_bh * T * DK, rows, offs_k, T, DK, FP64)
    v = _load(v_ptr + i_bh * T * DV, rows, offs_v, T, DV, FP64)
    do = _load(do_ptr + i_bh * T * DV, rows, offs_v, T, DV, FP64)
    state = _load(s_ptr + (i_bh * NT + i_c) * DK * DV, offs_k, offs_v, DK, DV, FP64)
    d_state = _load(ds_ptr + (i_bh * NT + i_c) * DK * DV, offs_k, offs_v, DK, DV, FP64)
    causal = offs_t[:, None] >= offs_t[None, :]  # query row t, key column s: s <= t
    d_scores = tl.where(causal, tl.dot(do, tl.trans(v)), 0.0)  # (t, s)
    scores = tl.where(causal, tl.dot(q, tl.trans(k)), 0.0)  # (t, s)
    dq = tl.dot(d_scores, k) + tl.dot(do, tl.trans(state))
    dk = tl.dot(tl.trans(d_scores), q) + tl.dot(v, tl.trans(d_state))
    dv = tl.dot(tl.trans(scores), do) + tl.dot(k, d_state)
    share = (i_v * BH + i_bh) * T * DK
    _store(dq_ptr + share, dq, rows, offs_k, T, DK)
    _store(dk_ptr + share, dk, rows, offs_k, T, DK)
    _store(dv_ptr + i_bh * T * DV, dv, rows, offs_v, T, DV)


def _blocks(dk: int, dv: int) -> tuple[int, int]:
    """Tile sizes: tl.dot needs every dimension >= 16 on a GPU."""
    return max(16, triton.next_power_of_2(dk)), min(64, max(16, triton.next_power_of_2(dv)))


def _chunk_sums(a: torch.Tensor, b: torch.Tensor, chunk_size: int, acc: torch.dtype) -> torch.Tensor:
    """(B*H, N, Da, Db): a_c^T b_c for every chunk c (pass 1)."""
    bh, t, da = a.shape
    db = b.shape[-1]
    n = triton.cdiv(t, chunk_size)
    ba, bb = _blocks(da, db)
    out = torch.empty(bh, n, da, db, device=a.device, dtype=acc)
    _chunk_sum_kernel[(triton.cdiv(db, bb), n, bh)](a, b, out, t, da, db, n, BT=chunk_size, BA=ba, BB=bb,
                                                    FP64=acc == torch.float64)
    return out


class ChunkLinearAttention(torch.autograd.Function):
    """Autograd wrapper: the forward keeps the (feature-mapped) inputs and the chunk states."""

    @staticmethod
    def forward(ctx, fq, fk, v, chunk_size: int):
        b, h, t, dk = fq.shape
        dv = v.shape[-1]
        acc = torch.float64 if v.dtype == torch.float64 else torch.float32
        out = torch.empty(b, h, t, dv, device=v.device, dtype=acc)
        q3, k3, v3 = (x.reshape(b * h, t, x.shape[-1]).contiguous() for x in (fq, fk, v))
        states = torch.empty(0, device=v.device, dtype=acc)
        if t:
            sums = _chunk_sums(k3, v3, chunk_size, acc)
            states = sums.cumsum(dim=1) - sums  # S_c: the chunks strictly before c
            bk, bv = _blocks(dk, dv)
            grid = (triton.cdiv(dv, bv), states.shape[1], b * h)
            _forward_kernel[grid](q3, k3, v3, states, out, t, dk, dv, states.shape[1],
                                  BT=chunk_size, BK=bk, BV=bv, FP64=acc == torch.float64)
        ctx.save_for_backward(q3, k3, v3, states)
        ctx.chunk_size, ctx.shape = chunk_size, (b, h, t, dk, dv)
        return out

    @staticmethod
    def backward(ctx, d_out):
        q3, k3, v3, states = ctx.saved_tensors
        b, h, t, dk, dv = ctx.shape
        acc = states.dtype
        bk, bv = _blocks(dk, dv)
        n_v = triton.cdiv(dv, bv)
        do3 = d_out.to(acc).reshape(b * h, t, dv).contiguous()
        dq = torch.zeros(n_v, b * h, t, dk, device=v3.device, dtype=acc)
        dk_ = torch.zeros(n_v, b * h, t, dk, device=v3.device, dtype=acc)
        dv_ = torch.zeros(b * h, t, dv, device=v3.device, dtype=acc)
        if t:
            sums = _chunk_sums(q3, do3, ctx.chunk_size, acc)
            d_states = sums.flip(1).cumsum(dim=1).flip(1) - sums  # dS_c: the chunks strictly after c
            grid = (n_v, states.shape[1], b * h)
            _backward_kernel[grid](q3, k3, v3, do3, states, d_states, dq, dk_, dv_, t, dk, dv, states.shape[1], b * h,
                                   BT=ctx.chunk_size, BK=bk, BV=bv, FP64=acc == torch.float64)
        shape_k = (b, h, t, dk)
        return (dq.sum(0).reshape(shape_k).to(q3.dtype), dk_.sum(0).reshape(shape_k).to(k3.dtype),
                dv_.reshape(b, h, t, dv).to(v3.dtype), None)


def causal_chunk_numerator_triton(fq, fk, v, chunk_size: int) -> torch.Tensor:
    """The Triton version of ``chunk.causal_chunk_numerator`` (same arguments, same result)."""
    return ChunkLinearAttention.apply(fq, fk, v, chunk_size)
