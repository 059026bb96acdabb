"""Chunked causal linear attention in Triton, forward and backward.

The kernels compute the numerator ``o_t = sum_{s <= t} (phi(q_t) . phi(k_s)) v_s``
(the normaliser is one cumulative sum, left to torch). One program owns one
(batch x head, block of value columns) pair and walks the sequence one chunk
of ``BT`` positions at a time, keeping the running state
``S = sum phi(k)^T v`` (``BK x BV``) in registers:

* forward:  ``o_c = tril(q_c k_c^T) v_c + q_c S``, then ``S += k_c^T v_c``;
* backward, walking forwards:  ``dq_c = tril(do_c v_c^T) k_c + do_c S^T``;
* backward, walking backwards with ``dS = sum over later chunks of q^T do``:
  ``dv_c = triu(k_c q_c^T) do_c + k_c dS`` and ``dk_c = triu(v_c do_c^T) q_c + v_c dS^T``.

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
def _forward_kernel(q_ptr, k_ptr, v_ptr, o_ptr, T, DK, DV,
                    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, FP64: tl.constexpr):
    i_v = tl.program_id(0)
    i_bh = tl.program_id(1).to(tl.int64)
    q_ptr += i_bh * T * DK
    k_ptr += i_bh * T * DK
    v_ptr += i_bh * T * DV
    o_ptr += i_bh * T * DV
    offs_t = tl.arange(0, BT)
    offs_k = tl.arange(0, BK)
    offs_v = i_v * BV + tl.arange(0, BV)
    causal = offs_t[:, None] >= offs_t[None, :]
    state = tl.zeros([BK, BV], dtype=tl.float64 if FP64 else tl.float32)
    for start in range(0, T, BT):
        rows = start + offs_t
        q = _load(q_ptr, rows, offs_k, T, DK, FP64)
        k = _load(k_ptr, rows, offs_k, T, DK, FP64)
        v = _load(v_ptr, rows, offs_v, T, DV, FP64)
        scores = tl.where(causal, tl.dot(q, tl.trans(k)), 0.0)
        out = tl.dot(scores, v) + tl.dot(q, state)
        _store(o_ptr, out, rows, offs_v, T, DV)
        state += tl.dot(tl.trans(k), v)


@triton.jit
def _backward_dq_kernel(k_ptr, v_ptr, do_ptr, dq_ptr, T, DK, DV, BH,
                        BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, FP64: tl.constexpr):
    i_v = tl.program_id(0)
    i_bh = tl.program_id(1).to(tl.int64)
    k_ptr += i_bh * T * DK
    v_ptr += i_bh * T * DV
    do_ptr += i_bh * T * DV
    dq_ptr += (i_v * BH + i_bh) * T * DK  # this value block's share of dq
    offs_t = tl.arange(0, BT)
    offs_k = tl.arange(0, BK)
    offs_v = i_v * BV + tl.arange(0, BV)
    causal = offs_t[:, None] >= offs_t[None, :]
    state = tl.zeros([BK, BV], dtype=tl.float64 if FP64 else tl.float32)
    for start in range(0, T, BT):
        rows = start + offs_t
        k = _load(k_ptr, rows, offs_k, T, DK, FP64)
        v = _load(v_ptr, rows, offs_v, T, DV, FP64)
        do = _load(do_ptr, rows, offs_v, T, DV, FP64)
        d_scores = tl.where(causal, tl.dot(do, tl.trans(v)), 0.0)
        dq = tl.dot(d_scores, k) + tl.dot(do, tl.trans(state))
        _store(dq_ptr, dq, rows, offs_k, T, DK)
        state += tl.dot(tl.trans(k), v)


@triton.jit
def _backward_dkv_kernel(q_ptr, k_ptr, v_ptr, do_ptr, dk_ptr, dv_ptr, T, DK, DV, BH,
                         BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr, FP64: tl.constexpr):
    i_v = tl.program_id(0)
    i_bh = tl.program_id(1).to(tl.int64)
    q_ptr += i_bh * T * DK
    k_ptr += i_bh * T * DK
    v_ptr += i_bh * T * DV
    do_ptr += i_bh * T * DV
    dv_ptr += i_bh * T * DV
    dk_ptr += (i_v * BH + i_bh) * T * DK  # this value block's share of dk
    offs_t = tl.arange(0, BT)
    offs_k = tl.arange(0, BK)
    offs_v = i_v * BV + tl.arange(0, BV)
    anticausal = offs_t[:, None] <= offs_t[None, :]  # key row s, query column t: s <= t
    d_state = tl.zeros([BK, BV], dtype=tl.float64 if FP64 else tl.float32)
    n_chunks = tl.cdiv(T, BT)
    for i in range(0, n_chunks):
        rows = (n_chunks - 1 - i) * BT + offs_t
        q = _load(q_ptr, rows, offs_k, T, DK, FP64)
        k = _load(k_ptr, rows, offs_k, T, DK, FP64)
        v = _load(v_ptr, rows, offs_v, T, DV, FP64)
        do = _load(do_ptr, rows, offs_v, T, DV, FP64)
        scores_t = tl.where(anticausal, tl.dot(k, tl.trans(q)), 0.0)
        dv = tl.dot(scores_t, do) + tl.dot(k, d_state)
        d_scores_t = tl.where(anticausal, tl.dot(v, tl.trans(do)), 0.0)
        dk = tl.dot(d_scores_t, q) + tl.dot(v, tl.trans(d_state))
        _store(dv_ptr, dv, rows, offs_v, T, DV)
        _store(dk_ptr, dk, rows, offs_k, T, DK)
        d_state += tl.dot(tl.trans(q), do)


MAX_HEAD_DIM = 256  # the state tile BK x BV lives in registers


def _blocks(dk: int, dv: int) -> tuple[int, int]:
    """Tile sizes: tl.dot needs every dimension >= 16 on a GPU."""
    return max(16, triton.next_power_of_2(dk)), min(64, max(16, triton.next_power_of_2(dv)))


class ChunkLinearAttention(torch.autograd.Function):
    """Autograd wrapper: the forward keeps the (feature-mapped) inputs, the backward recomputes the state."""

    @staticmethod
    def forward(ctx, fq, fk, v, chunk_size: int):
        fq, fk, v = fq.contiguous(), fk.contiguous(), v.contiguous()
        b, h, t, dk = fq.shape
        dv = v.shape[-1]
        acc = torch.float64 if v.dtype == torch.float64 else torch.float32
        out = torch.empty(b, h, t, dv, device=v.device, dtype=acc)
        bk, bv = _blocks(dk, dv)
        grid = (triton.cdiv(dv, bv), b * h)
        if t:
            _forward_kernel[grid](fq, fk, v, out, t, dk, dv, BT=chunk_size, BK=bk, BV=bv, FP64=acc == torch.float64)
        ctx.save_for_backward(fq, fk, v)
        ctx.chunk_size = chunk_size
        return out

    @staticmethod
    def backward(ctx, d_out):
        fq, fk, v = ctx.saved_tensors
        b, h, t, dk = fq.shape
        dv = v.shape[-1]
        bk, bv = _blocks(dk, dv)
        n_v = triton.cdiv(dv, bv)
        acc = d_out.dtype if d_out.dtype == torch.float64 else torch.float32
        d_out = d_out.to(acc).contiguous()
        dq = torch.empty(n_v, b, h, t, dk, device=v.device, dtype=acc)
        dk_ = torch.empty(n_v, b, h, t, dk, device=v.device, dtype=acc)
        dv_ = torch.empty(b, h, t, dv, device=v.device, dtype=acc)
        grid = (n_v, b * h)
        meta = dict(BT=ctx.chunk_size, BK=bk, BV=bv, FP64=acc == torch.float64)
        if t:
            _backward_dq_kernel[grid](fk, v, d_out, dq, t, dk, dv, b * h, **meta)
            _backward_dkv_kernel[grid](fq, fk, v, d_out, dk_, dv_, t, dk, dv, b * h, **meta)
        return dq.sum(0).to(fq.dtype), dk_.sum(0).to(fk.dtype), dv_.to(v.dtype), None


def causal_chunk_numerator_triton(fq, fk, v, chunk_size: int) -> torch.Tensor:
    """The Triton version of ``chunk.causal_chunk_numerator`` (same arguments, same result)."""
    return ChunkLinearAttention.apply(fq, fk, v, chunk_size)
