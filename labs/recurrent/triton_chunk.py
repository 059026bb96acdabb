"""Chunked gated linear attention in Triton: one decay per step (RetNet, Mamba-2, simple GLA) or per key channel (GLA).

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

One decay per key channel (GLA, log_decay (B, H, T, K)) has its own three kernels,
with b_{t,c} now a running sum per channel. Its ratios e^{b_tc - b_sc} differ per
channel, so a chunk's scores A_ts = sum_c q_tc k_sc e^{b_tc - b_sc} are not one
matrix product. They are built per sub-chunk of ``CHANNEL_SUB`` = 16 rows (the
secondary chunks of Yang et al. 2023, sec. 4): for rows t in sub-chunk i and
columns s in an earlier sub-chunk j of the same chunk, split the ratio at r, the
first row of sub-chunk i,

    e^{b_tc - b_sc} = e^{b_tc - b_rc} e^{b_rc - b_sc},   s < r <= t,

so A_ij = (q_i * e^{b_i - b_r}) (k_j * e^{b_r - b_j})^T is a matrix product of
rescaled tiles; on the diagonal (j = i) each ratio is formed on its own, a
(16, 16, BK) tile summed over its channels. The exponent bound: every exponent
the per-channel kernels take is <= 0 (b falls along each channel, and each is a
later b minus an earlier one: b_t - b_r, b_r - b_s, b_t - b_s with s <= t, the
inter-chunk b_t and b_C - b_s, the state's b_C), for any decay and any chunk
length; nothing overflows, and a factor that underflows to 0 stands for a term
whose true ratio is smaller still. (Splitting at the chunk's start instead,
k_s e^{-b_s}, overflows float32 once b_s < -88: three steps at log-decay -30.)
``_channel_state_kernel`` passes S_{c+1} = diag(e^{b_C}) S_c + (k_c * e^{b_C - b_c})^T v_c,
``_channel_output_kernel`` adds (q_t * e^{b_t}) S_c, and the backward runs them
reversed as above, with ``_channel_key_grad_kernel`` for dq and dk (their decay
falls on the output's channels, not on the contracted ones). The log-decay's
gradient is again kernel-free: per channel, dL/dB_{t,c} = q_tc dq_tc - k_tc dk_tc,
summed from the end.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .. import _backend
from ..attention.triton_chunk import _config, _dot, _generation, _precisions, _state_dot, _state_tile, _strides3, _tile

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
    i_bh, cols_a, cols_b, s_tile, s_mask = _state_tile(s_ptr, DA, DB, n_blocks_b, ss_bh, ss_a, ss_b, BA, BB)
    acc = tl.float64 if s_ptr.dtype.element_ty == tl.float64 else tl.float32
    state = tl.zeros((BA, BB), dtype=acc)
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




# --- One decay per key channel (GLA) ----------------------------------------------------------------
#
# (BK, BV, warps) for _channel_output_kernel ("output") and _channel_key_grad_kernel ("keys"), and
# (BA, BB, warps) for _channel_state_kernel ("state", per chunk length), per GPU generation and input
# type. The first two work on one sub-chunk of CHANNEL_SUB rows whatever the chunk length, so one entry
# serves every chunk; the state kernel loads chunk-long tiles. Every entry
# compiled for its target with no register spills and shared memory within the limit
# (tests/labs/test_compile.py).
CHANNEL_SUB = 16  # rows per sub-chunk: the smallest tl.dot, and the (16, 16, BK) exact-ratio tile


def _state_tiles(ba: int, bb: int, long_ba: int, long_bb: int) -> dict:
    """The state kernel's (BA, BB, warps) per chunk length: its (chunk x BA) decay tiles need 8 warps from 64 on."""
    return {16: (ba, bb, 4), 32: (ba, bb, 4), 64: (ba, bb, 8), 128: (long_ba, long_bb, 8)}


# fp64 output and key-gradient tiles are (16, 16): (16, 32) compiled at 228-231 registers and spilled 20 bytes
# in one compile of the output kernel for sm_90 at chunk 128.
_CHANNEL_TILES = {
    "sm75": {
        "16": {"output": (32, 32, 4), "keys": (32, 32, 4),
               "state": {16: (32, 64, 4), 32: (32, 64, 4), 64: (32, 32, 8)}},  # 128 spills
        "fp32": {"output": (32, 32, 4), "keys": (32, 32, 4), "state": _state_tiles(32, 64, 32, 32)},
        "fp64": {"output": (16, 16, 4), "keys": (16, 16, 4),
                 "state": {16: (32, 32, 4), 32: (32, 32, 4), 64: (32, 32, 8), 128: (16, 32, 8)}},
    },
    "sm80": {
        "16": {"output": (32, 64, 4), "keys": (32, 64, 4), "state": _state_tiles(64, 64, 32, 64)},
        "fp32": {"output": (32, 32, 4), "keys": (32, 32, 4), "state": _state_tiles(32, 64, 32, 64)},
        "fp64": {"output": (16, 16, 4), "keys": (16, 16, 4), "state": _state_tiles(32, 32, 32, 32)},
    },
    "sm90": {
        "16": {"output": (32, 64, 8), "keys": (32, 64, 4), "state": _state_tiles(64, 64, 32, 64)},
        "fp32": {"output": (32, 32, 4), "keys": (32, 32, 4), "state": _state_tiles(32, 64, 32, 64)},
        "fp64": {"output": (16, 16, 4), "keys": (16, 16, 4), "state": _state_tiles(32, 32, 32, 32)},
    },
}


@triton.jit
def _signed(x, reverse):
    """x in the forward, -x in the reverse pass: every ratio below is e^{_signed(later - earlier)}."""
    return tl.where(reverse == 0, x, -x)


@triton.jit
def _decay_rows(g_ptr, rows, cols, n_cols, s_row, s_col, acc: tl.constexpr):
    """A (rows x cols) tile of the padded running log-decay (every row exists: ``channel_log_decay``)."""
    return tl.load(g_ptr + rows[:, None].to(tl.int64) * s_row + cols[None, :] * s_col,
                   mask=cols[None, :] < n_cols, other=0.0).to(acc)


@triton.jit
def _decay_row(g_ptr, row, cols, n_cols, s_row, s_col, acc: tl.constexpr):
    """One row of the padded running log-decay, (cols,)."""
    return tl.load(g_ptr + row.to(tl.int64) * s_row + cols * s_col, mask=cols < n_cols, other=0.0).to(acc)


@triton.jit
def _channel_state_kernel(a_ptr, b_ptr, g_ptr, s_ptr, T, DA, DB, NT, n_blocks_b, reverse,
                          sa_bh, sa_t, sa_d, sb_bh, sb_t, sb_d, sg_bh, sg_t, sg_d, ss_bh, ss_c, ss_a, ss_b,
                          BT: tl.constexpr, BA: tl.constexpr, BB: tl.constexpr,
                          PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    """S[c] = the state before chunk c (after it when ``reverse``), one (BA x BB) tile, decays per row of S.

    Each chunk: state = diag(e^{b_C}) state + (a_c * W)^T b_c, W = e^{b_C - b_t} (e^{b_t} when reverse).
    """
    i_bh, cols_a, cols_b, s_tile, s_mask = _state_tile(s_ptr, DA, DB, n_blocks_b, ss_bh, ss_a, ss_b, BA, BB)
    acc = tl.float64 if s_ptr.dtype.element_ty == tl.float64 else tl.float32
    state = tl.zeros((BA, BB), dtype=acc)
    g_base = g_ptr + i_bh * sg_bh
    for i in range(NT):
        c = tl.where(reverse == 0, i, NT - 1 - i)
        tl.store(s_tile + c.to(tl.int64) * ss_c, state.to(s_ptr.dtype.element_ty), mask=s_mask)
        rows = c * BT + tl.arange(0, BT)
        g = _decay_rows(g_base, rows, cols_a, DA, sg_t, sg_d, acc)
        g_last = _decay_row(g_base, c * BT + BT - 1, cols_a, DA, sg_t, sg_d, acc)
        w = tl.where(reverse == 0, tl.exp(g_last[None, :] - g), tl.exp(g))
        a = _tile(a_ptr + i_bh * sa_bh, rows, cols_a, T, DA, sa_t, sa_d)
        b = _tile(b_ptr + i_bh * sb_bh, rows, cols_b, T, DB, sb_t, sb_d)
        a = (a.to(acc) * w).to(a.dtype)
        state = _dot(tl.trans(a), b, state * tl.exp(g_last)[:, None], PRECISION, UPCAST)


@triton.jit
def _channel_output_kernel(q_ptr, k_ptr, v_ptr, s_ptr, g_ptr, o_ptr, T, DK, DV, NT, n_blocks_v, reverse,
                           sq_bh, sq_t, sq_d, sk_bh, sk_t, sk_d, sv_bh, sv_t, sv_d, sg_bh, sg_t, sg_d,
                           ss_bh, ss_c, ss_k, ss_v, so_bh, so_t, so_d,
                           BT: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
                           PRECISION: tl.constexpr, SCALED_STATE: tl.constexpr, UPCAST: tl.constexpr):
    """o_i = sum_j A_ij v_j + (q_i * E) S_c for one sub-chunk i of BC rows and one block of value columns.

    A_ts = sum_c q_tc k_sc e^{b_tc - b_sc} over the sub-chunks j before i in its chunk (after it, with
    t and s swapped, when ``reverse``: the backward's dv). For j != i it is a product of
    (q_i * e^{b_i - b_r}) and (k_j * e^{b_r - b_j}), r the first row of the later sub-chunk; for j = i
    the ratios are formed one by one, a (BC, BC, BK) tile. E = e^{b_t} (e^{b_C - b_t} when reverse).
    """
    NC: tl.constexpr = BT // BC
    pid = tl.program_id(0)
    i_bh = (pid // (NT * NC * n_blocks_v)).to(tl.int64)
    i_r, i_v = (pid // n_blocks_v) % (NT * NC), pid % n_blocks_v
    i_c, i_s = i_r // NC, i_r % NC
    offs = tl.arange(0, BC)
    rows = i_r * BC + offs
    cols_v = i_v * BV + tl.arange(0, BV)
    acc = tl.float64 if s_ptr.dtype.element_ty == tl.float64 else tl.float32
    q_base, k_base, v_base = q_ptr + i_bh * sq_bh, k_ptr + i_bh * sk_bh, v_ptr + i_bh * sv_bh
    g_base = g_ptr + i_bh * sg_bh
    out = tl.zeros((BC, BV), dtype=acc)
    for j in range(tl.where(reverse == 0, 0, i_s + 1), tl.where(reverse == 0, i_s, NC)):
        cols_t = (i_c * NC + j) * BC + offs
        ref = (i_c * NC + tl.maximum(i_s, j)) * BC
        scores = tl.zeros((BC, BC), dtype=acc)
        for start in range(0, DK, BK):
            cols_k = start + tl.arange(0, BK)
            g_ref = _decay_row(g_base, ref, cols_k, DK, sg_t, sg_d, acc)[None, :]
            g_row = _decay_rows(g_base, rows, cols_k, DK, sg_t, sg_d, acc)
            g_col = _decay_rows(g_base, cols_t, cols_k, DK, sg_t, sg_d, acc)
            a = _tile(q_base, rows, cols_k, T, DK, sq_t, sq_d)
            b = _tile(k_base, cols_t, cols_k, T, DK, sk_t, sk_d)
            a = (a.to(acc) * tl.exp(_signed(g_row - g_ref, reverse))).to(a.dtype)  # exponents <= 0
            b = (b.to(acc) * tl.exp(_signed(g_ref - g_col, reverse))).to(b.dtype)  # exponents <= 0
            scores = _dot(a, tl.trans(b), scores, PRECISION, UPCAST)
        v = _tile(v_base, cols_t, cols_v, T, DV, sv_t, sv_d)
        out = _dot(scores.to(v.dtype), v, out, PRECISION, UPCAST)
    keep = tl.where(reverse == 0, offs[:, None] >= offs[None, :], offs[:, None] <= offs[None, :])
    scores = tl.zeros((BC, BC), dtype=acc)
    for start in range(0, DK, BK):
        cols_k = start + tl.arange(0, BK)
        g = _decay_rows(g_base, rows, cols_k, DK, sg_t, sg_d, acc)
        a = _tile(q_base, rows, cols_k, T, DK, sq_t, sq_d).to(acc)
        b = _tile(k_base, rows, cols_k, T, DK, sk_t, sk_d).to(acc)
        log_ratio = tl.where(keep[:, :, None], _signed(g[:, None, :] - g[None, :, :], reverse), float("-inf"))
        scores += tl.sum(a[:, None, :] * b[None, :, :] * tl.exp(log_ratio), axis=2)
    v = _tile(v_base, rows, cols_v, T, DV, sv_t, sv_d)
    out = _dot(scores.to(v.dtype), v, out, PRECISION, UPCAST)
    state = s_ptr + i_bh * ss_bh + i_c.to(tl.int64) * ss_c
    inter = tl.zeros((BC, BV), dtype=acc)
    for start in range(0, DK, BK):
        cols_k = start + tl.arange(0, BK)
        g = _decay_rows(g_base, rows, cols_k, DK, sg_t, sg_d, acc)
        g_last = _decay_row(g_base, i_c * BT + BT - 1, cols_k, DK, sg_t, sg_d, acc)[None, :]
        a = _tile(q_base, rows, cols_k, T, DK, sq_t, sq_d)
        a = (a.to(acc) * tl.where(reverse == 0, tl.exp(g), tl.exp(g_last - g))).to(a.dtype)
        s = _tile(state, cols_k, cols_v, DK, DV, ss_k, ss_v)
        if SCALED_STATE:
            inter += _state_dot(a, s, UPCAST)
        else:
            inter = _dot(a, s, inter, PRECISION, False)
    out += inter
    mask = (rows[:, None] < T) & (cols_v[None, :] < DV)
    tl.store(o_ptr + i_bh * so_bh + rows[:, None].to(tl.int64) * so_t + cols_v[None, :] * so_d,
             out.to(o_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _channel_key_grad_kernel(y_ptr, z_ptr, x_ptr, s_ptr, g_ptr, o_ptr, T, DK, DV, NT, n_blocks_k, reverse,
                             sy_bh, sy_t, sy_d, sz_bh, sz_t, sz_d, sx_bh, sx_t, sx_d, sg_bh, sg_t, sg_d,
                             ss_bh, ss_c, ss_k, ss_v, so_bh, so_t, so_d,
                             BT: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
                             PRECISION: tl.constexpr, SCALED_STATE: tl.constexpr, UPCAST: tl.constexpr):
    """dq (forward) or dk (``reverse``) for one sub-chunk i of BC rows and one block of key channels:

    out_tc = sum_s (y_t . z_s) x_sc e^{b_tc - b_sc} + E_tc (y_t S^T)_c, over s <= t (s >= t, signs
    swapped, when reverse), with (y, z, x, S) = (do, v, k, S) for dq and (v, do, q, R) for dk, and
    E = e^{b_t} (e^{b_C - b_t}). Sub-chunks j != i split the ratio at r as ``_channel_output_kernel``.
    """
    NC: tl.constexpr = BT // BC
    pid = tl.program_id(0)
    i_bh = (pid // (NT * NC * n_blocks_k)).to(tl.int64)
    i_r, i_k = (pid // n_blocks_k) % (NT * NC), pid % n_blocks_k
    i_c, i_s = i_r // NC, i_r % NC
    offs = tl.arange(0, BC)
    rows = i_r * BC + offs
    cols_k = i_k * BK + tl.arange(0, BK)
    acc = tl.float64 if s_ptr.dtype.element_ty == tl.float64 else tl.float32
    y_base, z_base, x_base = y_ptr + i_bh * sy_bh, z_ptr + i_bh * sz_bh, x_ptr + i_bh * sx_bh
    g_base = g_ptr + i_bh * sg_bh
    g_row = _decay_rows(g_base, rows, cols_k, DK, sg_t, sg_d, acc)
    out = tl.zeros((BC, BK), dtype=acc)
    for j in range(tl.where(reverse == 0, 0, i_s + 1), tl.where(reverse == 0, i_s, NC)):
        cols_t = (i_c * NC + j) * BC + offs
        m = tl.zeros((BC, BC), dtype=acc)
        for start in range(0, DV, BV):
            cols_v = start + tl.arange(0, BV)
            y = _tile(y_base, rows, cols_v, T, DV, sy_t, sy_d)
            z = _tile(z_base, cols_t, cols_v, T, DV, sz_t, sz_d)
            m = _dot(y, tl.trans(z), m, PRECISION, UPCAST)
        g_ref = _decay_row(g_base, (i_c * NC + tl.maximum(i_s, j)) * BC, cols_k, DK, sg_t, sg_d, acc)[None, :]
        g_col = _decay_rows(g_base, cols_t, cols_k, DK, sg_t, sg_d, acc)
        x = _tile(x_base, cols_t, cols_k, T, DK, sx_t, sx_d)
        x = (x.to(acc) * tl.exp(_signed(g_ref - g_col, reverse))).to(x.dtype)  # exponents <= 0
        part = _dot(m.to(x.dtype), x, tl.zeros((BC, BK), dtype=acc), PRECISION, UPCAST)
        out += part * tl.exp(_signed(g_row - g_ref, reverse))  # exponents <= 0
    keep = tl.where(reverse == 0, offs[:, None] >= offs[None, :], offs[:, None] <= offs[None, :])
    m = tl.zeros((BC, BC), dtype=acc)
    for start in range(0, DV, BV):
        cols_v = start + tl.arange(0, BV)
        y = _tile(y_base, rows, cols_v, T, DV, sy_t, sy_d)
        z = _tile(z_base, rows, cols_v, T, DV, sz_t, sz_d)
        m = _dot(y, tl.trans(z), m, PRECISION, UPCAST)
    x = _tile(x_base, rows, cols_k, T, DK, sx_t, sx_d).to(acc)
    log_ratio = tl.where(keep[:, :, None], _signed(g_row[:, None, :] - g_row[None, :, :], reverse), float("-inf"))
    out += tl.sum(m[:, :, None] * x[None, :, :] * tl.exp(log_ratio), axis=1)
    state = s_ptr + i_bh * ss_bh + i_c.to(tl.int64) * ss_c
    inter = tl.zeros((BC, BK), dtype=acc)
    for start in range(0, DV, BV):
        cols_v = start + tl.arange(0, BV)
        y = _tile(y_base, rows, cols_v, T, DV, sy_t, sy_d)
        s = _tile(state, cols_v, cols_k, DV, DK, ss_v, ss_k)  # S^T
        if SCALED_STATE:
            inter += _state_dot(y, s, UPCAST)
        else:
            inter = _dot(y, s, inter, PRECISION, False)
    g_last = _decay_row(g_base, i_c * BT + BT - 1, cols_k, DK, sg_t, sg_d, acc)[None, :]
    out += inter * tl.where(reverse == 0, tl.exp(g_row), tl.exp(g_last - g_row))
    mask = (rows[:, None] < T) & (cols_k[None, :] < DK)
    tl.store(o_ptr + i_bh * so_bh + rows[:, None].to(tl.int64) * so_t + cols_k[None, :] * so_d,
             out.to(o_ptr.dtype.element_ty), mask=mask)


def channel_log_decay(log_decay: torch.Tensor, bt: int) -> torch.Tensor:
    """b_{t,c} summed within each chunk of ``bt`` steps, (BH, NT * bt, K) in float32+, T padded to whole
    chunks with log-decay 0 (so a padded row holds its chunk's b_C, and every row a kernel asks for exists)."""
    acc = torch.float64 if log_decay.dtype == torch.float64 else torch.float32
    bh, t, dk = log_decay.shape
    g = torch.nn.functional.pad(log_decay.to(acc), (0, 0, 0, (-t) % bt))
    return g.reshape(bh, -1, bt, dk).cumsum(2).reshape(bh, -1, dk).contiguous()


def _channel_config(chunk_size: int, dtype: torch.dtype, target: _backend.Target) -> dict:
    """Chunk length, sub-chunk, tiles, warps and state-kernel pipeline stages for the per-channel kernels."""
    kind = "16" if dtype in (torch.float16, torch.bfloat16) else "fp64" if dtype == torch.float64 else "fp32"
    row = _CHANNEL_TILES[_generation(target)][kind]
    # A chunk length missing from a row is above what that GPU holds: take the longest it has (the result
    # is the same; only the work split changes).
    bt = max(c for c in row["state"] if c <= max(chunk_size, CHANNEL_SUB))
    ba, bb, state_warps = row["state"][bt]
    acc_bytes = 8 if dtype == torch.float64 else 4
    per_stage = bt * ((ba + bb) * (torch.finfo(dtype).bits // 8) + ba * acc_bytes)  # a, b and the decays
    stages = max(1, min(3, target.shared_memory // 2 // per_stage))
    config = {"BT": bt, "state": {"BA": ba, "BB": bb, "num_warps": state_warps, "num_stages": stages}}
    for name in ("output", "keys"):
        bk, bv, warps = row[name]
        config[name] = {"BC": CHANNEL_SUB, "BK": bk, "BV": bv, "num_warps": warps, "num_stages": 1}
    return config


def _channel_states(a, b, g, config, reverse, acc, target):
    """(BH, NT, Da, Db): the state before (after, when reverse) each chunk, decaying per row."""
    bh, t, da = a.shape
    db = b.shape[-1]
    bt, tiles = config["BT"], config["state"]
    nt = g.shape[1] // bt
    states = torch.empty(bh, nt, da, db, device=a.device, dtype=acc)
    prec = _precisions(a.dtype, target)
    n_blocks_b = triton.cdiv(db, tiles["BB"])
    grid = (bh * triton.cdiv(da, tiles["BA"]) * n_blocks_b,)
    _backend.launch(_channel_state_kernel, grid, a, b, g, states, t, da, db, nt, n_blocks_b, int(reverse),
                    *_strides3(a), *_strides3(b), *g.stride(), *states.stride(),
                    BT=bt, PRECISION=prec["PRECISION"], UPCAST=prec["UPCAST"], **tiles)
    return states


def _channel_launch(kernel, y, z, x, states, g, out, config, reverse, target):
    """Launch a sub-chunk kernel: one program per (batch x head, sub-chunk, block of out's columns).

    ``_channel_output_kernel`` (out = sum_j A_ij x_j + (y * E) S; (y, z, x) = (q, k, v), or (k, q, do) for
    dv) blocks value columns by BV, K from y and V from x. ``_channel_key_grad_kernel`` (dq, dk) blocks key
    channels by BK, K from x and V from y. The two take the same arguments in the same order, hence one
    launcher; the precision follows the operand with K channels.
    """
    keys = kernel is _channel_key_grad_kernel
    key_operand, value_operand = (x, y) if keys else (y, x)
    bh, t, dk = key_operand.shape
    dv = value_operand.shape[-1]
    nt = states.shape[1]
    tiles = config["keys" if keys else "output"]
    n_blocks = triton.cdiv(dk, tiles["BK"]) if keys else triton.cdiv(dv, tiles["BV"])
    grid = (bh * nt * (config["BT"] // tiles["BC"]) * n_blocks,)
    _backend.launch(kernel, grid, y, z, x, states, g, out, t, dk, dv, nt, n_blocks, int(reverse),
                    *_strides3(y), *_strides3(z), *_strides3(x), *g.stride(), *states.stride(), *_strides3(out),
                    BT=config["BT"], **_precisions(key_operand.dtype, target), **tiles)
    return out


class ChunkGatedLinearAttentionPerChannel(torch.autograd.Function):
    """Autograd wrapper for a (B, H, T, K) log-decay: keeps the inputs, the chunk-local sums and the states."""

    @staticmethod
    def forward(ctx, q, k, v, log_decay, chunk_size: int):
        b, h, t, dk = q.shape
        dv = v.shape[-1]
        acc = torch.float64 if v.dtype == torch.float64 else torch.float32
        target = _backend.kernel_target(v)
        config = _channel_config(chunk_size, v.dtype, target)
        q3, k3, v3 = (x.reshape(b * h, t, x.shape[-1]) for x in (q, k, v))
        g = channel_log_decay(log_decay.reshape(b * h, t, dk), config["BT"])
        out = torch.empty(b * h, t, dv, device=v.device, dtype=acc)
        states = _channel_states(k3, v3, g, config, False, acc, target)
        _channel_launch(_channel_output_kernel, q3, k3, v3, states, g, out, config, False, target)
        ctx.save_for_backward(q3, k3, v3, g, states)
        ctx.config, ctx.shape, ctx.decay_dtype = config, (b, h, t, dk, dv), log_decay.dtype
        return out.reshape(b, h, t, dv)

    @staticmethod
    def backward(ctx, d_out):
        q3, k3, v3, g, states = ctx.saved_tensors
        b, h, t, dk, dv = ctx.shape
        config, target, acc = ctx.config, _backend.kernel_target(v3), states.dtype
        do3 = d_out.reshape(b * h, t, dv).to(v3.dtype)
        r = _channel_states(q3, do3, g, config, True, acc, target)
        dq, dk_, dv_ = (torch.empty_like(x, dtype=acc) for x in (q3, k3, v3))
        _channel_launch(_channel_key_grad_kernel, do3, v3, k3, states, g, dq, config, False, target)
        _channel_launch(_channel_key_grad_kernel, v3, do3, q3, r, g, dk_, config, True, target)
        _channel_launch(_channel_output_kernel, k3, q3, do3, r, g, dv_, config, True, target)
        d_cum = q3.to(acc) * dq - k3.to(acc) * dk_  # dL/dB_{t,c}, (BH, T, K)
        d_log_decay = d_cum.flip(1).cumsum(1).flip(1)
        return (dq.to(q3.dtype).reshape(b, h, t, dk), dk_.to(k3.dtype).reshape(b, h, t, dk),
                dv_.to(v3.dtype).reshape(b, h, t, dv), d_log_decay.to(ctx.decay_dtype).reshape(b, h, t, dk), None)


def gla_chunk_triton(q, k, v, log_decay, chunk_size: int) -> torch.Tensor:
    """o (B, H, T, V) in float32 or wider for ``log_decay`` (B, H, T), one decay per step, or (B, H, T, K),
    one per key channel; no initial or final state."""
    if log_decay.ndim == 4:
        return ChunkGatedLinearAttentionPerChannel.apply(q, k, v, log_decay, chunk_size)
    return ChunkGatedLinearAttention.apply(q, k, v, log_decay, chunk_size)
