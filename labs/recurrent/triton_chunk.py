"""Chunked gated linear attention with one decay per step (RetNet, Mamba-2, simple GLA), in Triton.

With b_t the log-decay summed from the start of t's chunk to t (inclusive), and
S_c the (K, V) state entering chunk c:

1. ``_state_kernel``: S_{c+1} = e^{b_C} S_c + (k_c * e^{b_C - b_c})^T v_c, one
   program per (batch x head, tile of the state) walking the chunks in order.
2. ``_output_kernel``: o_t = sum_{s <= t in the chunk} e^{b_t - b_s} (q_t . k_s) v_s
   + e^{b_t} q_t S_c, one program per (batch x head, chunk, block of value columns).

Every exponent is <= 0 (b falls within a chunk), so nothing overflows.

The backward reuses both. The state's gradient runs the state kernel backwards
(``reverse``): R_c, the gradient of the state leaving chunk c, obeys
R_{c-1} = e^{b_C} R_c + (q_c * e^{b_c})^T do_c. Then, with the same kernel and
other operands,

    dq_t = sum_{s <= t} e^{b_t - b_s} (do_t . v_s) k_s + e^{b_t} do_t S_c^T
    dk_s = sum_{t >= s} e^{b_t - b_s} (v_s . do_t) q_t + e^{b_C - b_s} v_s R_c^T
    dv_s = sum_{t >= s} e^{b_t - b_s} (k_s . q_t) do_t + e^{b_C - b_s} k_s R_c

(``reverse`` flips the mask to t >= s and the factors to e^{b_t - b_s} with t
the column, and e^{b_C - b_s}). The log-decay's gradient needs no kernel: the
output depends on it only through differences of the running sum B_t, and
dL/dB_t = q_t . dq_t - k_t . dk_t, so dlog_decay is that, summed from the end.

Precision follows the linear-attention kernel (``labs.attention.triton_chunk``):
IEEE float32 dots (never TF32), 16-bit products with float32 accumulation for
16-bit inputs. Its tiles are chosen the same way, from this kernel's own table
(``_TILES``): the decay factors cost registers that kernel does not spend.
One decay per key channel (GLA) is not here: its ratios e^{b_tc - b_sc} differ
per channel, so the scores are not one matrix product; ``gated_linear_attention``
computes it with the torch chunked form.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .. import _backend
from ..attention.triton_chunk import _config, _dot, _precisions, _state_dot, _strides3, _tile

# (BK, BV, warps) for _output_kernel and (BA, BB, warps) for _state_kernel, per GPU generation, input
# type and chunk length, as in labs.attention.triton_chunk; every entry compiled for its target with
# no register spills and shared memory within the limit (tests/labs/test_compile.py).
_TILES = {
    "sm75": {
        "16": {"forward": {16: (32, 32, 4), 32: (32, 64, 4)}, "state": {16: (64, 64, 4), 32: (32, 64, 4)}},
        "fp32": {"forward": {16: (32, 64, 4), 32: (32, 64, 4), 64: (64, 64, 8)},
                 "state": {16: (64, 64, 4), 32: (32, 64, 4), 64: (64, 64, 8)}},
        "fp64": {"forward": {16: (32, 32, 4), 32: (32, 64, 4)}, "state": {16: (64, 64, 4), 32: (32, 64, 4)}},
    },
    "sm80": {
        "16": {"forward": {16: (64, 64, 4), 32: (64, 64, 4), 64: (64, 64, 8), 128: (64, 64, 8)},
               "state": {16: (64, 64, 4), 32: (64, 64, 4), 64: (64, 64, 8), 128: (64, 64, 8)}},
        "fp32": {"forward": {16: (32, 64, 4), 32: (32, 64, 4), 64: (16, 32, 8)},
                 "state": {16: (64, 64, 4), 32: (32, 64, 4), 64: (32, 64, 8)}},
        "fp64": {"forward": {16: (64, 64, 4), 32: (64, 64, 4), 64: (64, 64, 8)},
                 "state": {16: (64, 64, 4), 32: (32, 64, 4), 64: (64, 64, 8)}},
    },
    "sm90": {
        "16": {"forward": {16: (64, 64, 4), 32: (64, 64, 4), 64: (64, 64, 8), 128: (64, 64, 8)},
               "state": {16: (64, 64, 4), 32: (64, 64, 4), 64: (64, 64, 8), 128: (64, 64, 8)}},
        "fp32": {"forward": {16: (32, 64, 4), 32: (32, 64, 4), 64: (64, 64, 8), 128: (32, 32, 8)},
                 "state": {16: (64, 64, 4), 32: (32, 64, 4), 64: (64, 64, 8), 128: (64, 64, 8)}},
        "fp64": {"forward": {16: (64, 64, 4), 32: (64, 64, 4), 64: (64, 64, 8)},
                 "state": {16: (64, 64, 4), 32: (32, 32, 4), 64: (64, 64, 8)}},
    },
}


@triton.jit
def _running_log_decay(g_ptr, rows, T, g_last, acc: tl.constexpr):
    """b at ``rows`` of one chunk; rows past T continue it with log-decay 0, so they hold b_C.

    (Loading them as 0 instead would make a ratio e^{b_pad - b_s} = e^{-b_s} overflow, and
    0 * inf poison the backward's real rows.)
    """
    g = tl.load(g_ptr + rows, mask=rows < T, other=0.0).to(acc)
    return tl.where(rows < T, g, g_last)


@triton.jit
def _state_kernel(a_ptr, b_ptr, g_ptr, gl_ptr, s_ptr, T, DA, DB, NT, n_blocks_b, reverse,
                  sa_bh, sa_t, sa_d, sb_bh, sb_t, sb_d, sg_bh, sgl_bh, ss_bh, ss_c, ss_a, ss_b,
                  BT: tl.constexpr, BA: tl.constexpr, BB: tl.constexpr,
                  PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    """S[c] = the state before chunk c (after it when ``reverse``), one (BA x BB) tile.

    Each chunk: state = e^{b_C} state + (a_c * w)^T b_c, with w = e^{b_C - b_t}, or e^{b_t} when reverse.
    """
    pid = tl.program_id(0)
    n_blocks = tl.cdiv(DA, BA) * n_blocks_b
    i_bh, i_ab = (pid // n_blocks).to(tl.int64), pid % n_blocks
    cols_a = (i_ab // n_blocks_b) * BA + tl.arange(0, BA)
    cols_b = (i_ab % n_blocks_b) * BB + tl.arange(0, BB)
    acc = tl.float64 if s_ptr.dtype.element_ty == tl.float64 else tl.float32
    state = tl.zeros((BA, BB), dtype=acc)
    s_tile = s_ptr + i_bh * ss_bh + cols_a[:, None] * ss_a + cols_b[None, :] * ss_b
    s_mask = (cols_a[:, None] < DA) & (cols_b[None, :] < DB)
    for i in range(NT):
        c = tl.where(reverse == 0, i, NT - 1 - i)
        tl.store(s_tile + c.to(tl.int64) * ss_c, state.to(s_ptr.dtype.element_ty), mask=s_mask)
        rows = c * BT + tl.arange(0, BT)
        g_last = tl.load(gl_ptr + i_bh * sgl_bh + c).to(acc)
        g = _running_log_decay(g_ptr + i_bh * sg_bh, rows, T, g_last, acc)
        w = tl.where(reverse == 0, tl.exp(g_last - g), tl.exp(g))
        a = _tile(a_ptr + i_bh * sa_bh, rows, cols_a, T, DA, sa_t, sa_d)
        b = _tile(b_ptr + i_bh * sb_bh, rows, cols_b, T, DB, sb_t, sb_d)
        a = (a.to(acc) * w[:, None]).to(a.dtype)
        state = _dot(tl.trans(a), b, state * tl.exp(g_last), PRECISION, UPCAST)


@triton.jit
def _output_kernel(q_ptr, k_ptr, v_ptr, s_ptr, g_ptr, gl_ptr, o_ptr, T, DK, DV, NT, n_blocks_v, reverse,
                   sq_bh, sq_t, sq_d, sk_bh, sk_t, sk_d, sv_bh, sv_t, sv_d, sg_bh, sgl_bh,
                   ss_bh, ss_c, ss_k, ss_v, so_bh, so_t, so_d,
                   BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
                   PRECISION: tl.constexpr, SCALED_STATE: tl.constexpr, UPCAST: tl.constexpr):
    """o_c = (mask(q_c k_c^T) * D) v_c + diag(e) q_c S_c for one chunk c and one block of value columns.

    Forward: D_ts = e^{b_t - b_s} for s <= t, e = e^{b_t}. Reverse: D_ts = e^{b_s - b_t} for s >= t,
    e = e^{b_C - b_t} (the backward's dk and dv).
    """
    pid = tl.program_id(0)
    i_bh = (pid // (NT * n_blocks_v)).to(tl.int64)
    i_c, i_v = (pid // n_blocks_v) % NT, pid % n_blocks_v
    offs_t = tl.arange(0, BT)
    rows = i_c * BT + offs_t
    cols_v = i_v * BV + tl.arange(0, BV)
    acc = tl.float64 if s_ptr.dtype.element_ty == tl.float64 else tl.float32
    g_last = tl.load(gl_ptr + i_bh * sgl_bh + i_c).to(acc)
    g = _running_log_decay(g_ptr + i_bh * sg_bh, rows, T, g_last, acc)
    scores = tl.zeros((BT, BT), dtype=acc)
    for start in range(0, DK, BK):
        cols_k = start + tl.arange(0, BK)
        q = _tile(q_ptr + i_bh * sq_bh, rows, cols_k, T, DK, sq_t, sq_d)
        k = _tile(k_ptr + i_bh * sk_bh, rows, cols_k, T, DK, sk_t, sk_d)
        scores = _dot(q, tl.trans(k), scores, PRECISION, UPCAST)  # (row, column)
    keep = tl.where(reverse == 0, offs_t[:, None] >= offs_t[None, :], offs_t[:, None] <= offs_t[None, :])
    log_ratio = tl.where(reverse == 0, g[:, None] - g[None, :], g[None, :] - g[:, None])
    decay = tl.exp(tl.where(keep, log_ratio, float("-inf")))  # exponents <= 0 where kept; 0 elsewhere
    v = _tile(v_ptr + i_bh * sv_bh, rows, cols_v, T, DV, sv_t, sv_d)
    scores = (scores * decay).to(v.dtype)  # 16-bit scores for a 16-bit tensor-core dot
    out = _dot(scores, v, tl.zeros((BT, BV), dtype=acc), PRECISION, UPCAST)
    state = s_ptr + i_bh * ss_bh + i_c.to(tl.int64) * ss_c
    inter = tl.zeros((BT, BV), dtype=acc)
    for start in range(0, DK, BK):
        cols_k = start + tl.arange(0, BK)
        q = _tile(q_ptr + i_bh * sq_bh, rows, cols_k, T, DK, sq_t, sq_d)
        s = _tile(state, cols_k, cols_v, DK, DV, ss_k, ss_v)
        if SCALED_STATE:
            inter += _state_dot(q, s, UPCAST)
        else:
            inter = _dot(q, s, inter, PRECISION, False)
    e = tl.where(reverse == 0, tl.exp(g), tl.exp(g_last - g))
    out += inter * e[:, None]
    mask = (rows[:, None] < T) & (cols_v[None, :] < DV)
    tl.store(o_ptr + i_bh * so_bh + rows[:, None].to(tl.int64) * so_t + cols_v[None, :] * so_d,
             out.to(o_ptr.dtype.element_ty), mask=mask)


def chunk_log_decay(log_decay: torch.Tensor, bt: int) -> tuple[torch.Tensor, torch.Tensor]:
    """b_t summed within each chunk of ``bt`` steps (BH, T), and b at each chunk's last step (BH, NT), float32+."""
    acc = torch.float64 if log_decay.dtype == torch.float64 else torch.float32
    bh, t = log_decay.shape
    pad = (-t) % bt
    g = torch.nn.functional.pad(log_decay.to(acc), (0, pad)).reshape(bh, -1, bt).cumsum(-1)
    # Padded steps have log-decay 0, so the chunk's running sum at its end is b at its last real step.
    return g.reshape(bh, -1)[:, :t].contiguous(), g[:, :, -1].contiguous()


def _states(a, b, g, g_last, config, reverse, acc, target):
    """(BH, NT, Da, Db): the state before (after, when reverse) each chunk."""
    bh, t, da = a.shape
    db = b.shape[-1]
    bt, tiles = config["BT"], config["state"]
    nt = g_last.shape[1]
    states = torch.empty(bh, nt, da, db, device=a.device, dtype=acc)
    prec = _precisions(a.dtype, target)
    n_blocks_b = triton.cdiv(db, tiles["BB"])
    grid = (bh * triton.cdiv(da, tiles["BA"]) * n_blocks_b,)
    _backend.launch(_state_kernel, grid, a, b, g, g_last, states, t, da, db, nt, n_blocks_b, int(reverse),
                    *_strides3(a), *_strides3(b), g.stride(0), g_last.stride(0), *states.stride(),
                    BT=bt, PRECISION=prec["PRECISION"], UPCAST=prec["UPCAST"], **tiles)
    return states


def _chunk_output(q, k, v, states, g, g_last, out, config, reverse, target, transpose_state=False):
    """out = (mask(q k^T) * D) v + diag(e) q S per chunk (S transposed when ``transpose_state``)."""
    bh, t, dk = q.shape
    dv = v.shape[-1]
    nt = states.shape[1]
    ss = states.stride()
    ss = (ss[0], ss[1], ss[3], ss[2]) if transpose_state else ss
    tiles = config["forward"]
    n_blocks_v = triton.cdiv(dv, tiles["BV"])
    _backend.launch(_output_kernel, (bh * nt * n_blocks_v,), q, k, v, states, g, g_last, out, t, dk, dv, nt,
                    n_blocks_v, int(reverse), *_strides3(q), *_strides3(k), *_strides3(v),
                    g.stride(0), g_last.stride(0), *ss, *_strides3(out),
                    BT=config["BT"], **_precisions(q.dtype, target), **tiles)
    return out


class ChunkGatedLinearAttention(torch.autograd.Function):
    """Autograd wrapper: the forward keeps the inputs, the chunk-local log-decay sums and the states."""

    @staticmethod
    def forward(ctx, q, k, v, log_decay, chunk_size: int):
        b, h, t, dk = q.shape
        dv = v.shape[-1]
        acc = torch.float64 if v.dtype == torch.float64 else torch.float32
        target = _backend.kernel_target(v)
        config = _config(chunk_size, v.dtype, target, _TILES)
        q3, k3, v3 = (x.reshape(b * h, t, x.shape[-1]) for x in (q, k, v))  # views where the layout allows
        g, g_last = chunk_log_decay(log_decay.reshape(b * h, t), config["BT"])
        out = torch.empty(b * h, t, dv, device=v.device, dtype=acc)
        states = _states(k3, v3, g, g_last, config, False, acc, target)
        _chunk_output(q3, k3, v3, states, g, g_last, out, config, False, target)
        ctx.save_for_backward(q3, k3, v3, g, g_last, states)
        ctx.config, ctx.shape, ctx.decay_dtype = config, (b, h, t, dk, dv), log_decay.dtype
        return out.reshape(b, h, t, dv)

    @staticmethod
    def backward(ctx, d_out):
        q3, k3, v3, g, g_last, states = ctx.saved_tensors
        b, h, t, dk, dv = ctx.shape
        config, target = ctx.config, _backend.kernel_target(v3)
        do3 = d_out.reshape(b * h, t, dv).to(v3.dtype)  # 16-bit inputs: a 16-bit gradient for the dots
        r = _states(q3, do3, g, g_last, config, True, states.dtype, target)
        dq = _chunk_output(do3, v3, k3, states, g, g_last, torch.empty_like(q3, dtype=states.dtype), config,
                           False, target, transpose_state=True)
        dk_ = _chunk_output(v3, do3, q3, r, g, g_last, torch.empty_like(k3, dtype=states.dtype), config,
                            True, target, transpose_state=True)
        dv_ = _chunk_output(k3, q3, do3, r, g, g_last, torch.empty_like(v3, dtype=states.dtype), config,
                            True, target)
        d_cum = (q3.to(dq.dtype) * dq - k3.to(dk_.dtype) * dk_).sum(-1)  # dL/dB_t, (BH, T)
        d_log_decay = d_cum.flip(-1).cumsum(-1).flip(-1)
        return (dq.to(q3.dtype).reshape(b, h, t, dk), dk_.to(k3.dtype).reshape(b, h, t, dk),
                dv_.to(v3.dtype).reshape(b, h, t, dv), d_log_decay.to(ctx.decay_dtype).reshape(b, h, t), None)


def gla_chunk_triton(q, k, v, log_decay, chunk_size: int) -> torch.Tensor:
    """o (B, H, T, V) in float32 or wider for a scalar ``log_decay`` (B, H, T); no initial or final state."""
    return ChunkGatedLinearAttention.apply(q, k, v, log_decay, chunk_size)
