"""Chunked causal linear attention in Triton, forward and backward.

The kernels compute the numerator ``o_t = sum_{s <= t} (phi(q_t) . phi(k_s)) v_s``
(the normaliser is one cumulative sum, left to torch) chunk by chunk, with
chunks of ``BT`` positions:

1. ``_state_kernel``: the state before each chunk, ``S_c = sum over earlier
   chunks of k^T v`` (``Dk x Dv``). One program per (batch x head, tile of the
   state) walks the chunks in order, storing the running sum before adding
   each chunk's ``k_c^T v_c``.
2. ``_forward_kernel``: ``o_c = tril(q_c k_c^T) v_c + q_c S_c``, one program
   per (batch x head, chunk, block of value columns).

The backward pass needs nothing new. With ``dS_c`` the state of the *later*
chunks (``_state_kernel`` run backwards over ``(q, do)``),

``dq_c = tril(do_c v_c^T) k_c + do_c S_c^T``,
``dk_c = triu(v_c do_c^T) q_c + v_c dS_c^T``,
``dv_c = triu(k_c q_c^T) do_c + k_c dS_c``:

each is the forward formula with other operands, a transposed state (its
strides swapped) and, for ``dk`` and ``dv``, the mask flipped to upper
triangular (``reverse=1``). So the one forward kernel computes all three.

Precision, chosen for a GPU (the CPU interpreter ignores it):

* float16/bfloat16 inputs stay 16-bit in every ``tl.dot`` (tensor cores) with
  float32 accumulation; the masked scores are rounded to the input type before
  the second dot. The state is kept in float32 (a sum over many chunks
  overflows float16); for its dot each state tile is scaled by a power of two
  into float16's range and rounded to the input type (``_state_dot``), so that
  dot is 16-bit too, on every GPU (a T4 has no TF32). The numerator is
  returned in float32.
* float32 inputs request ``input_precision="ieee"``: Triton's default for fp32
  dots on sm_80+ is TF32, which would round every operand to 10 bits.
* float64 stays float64 throughout.

Every tile size, warp count and pipeline depth is chosen per GPU generation
by ``_config`` from a table (``_TILES``) so that it fits the target's
registers and shared memory; ``tests/labs/test_compile.py`` compiles every
choice for sm_75, sm_80 and sm_90. The programs of a launch all sit on grid
axis 0 (up to 2^31 - 1; axes 1 and 2 stop at 65535), so any batch x heads fits.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .. import _backend


@triton.jit
def _tile(ptr, rows, cols, n_rows, n_cols, s_row, s_col):
    """A (rows x cols) tile of a strided (n_rows, n_cols) matrix, zero outside."""
    mask = (rows[:, None] < n_rows) & (cols[None, :] < n_cols)
    return tl.load(ptr + rows[:, None].to(tl.int64) * s_row + cols[None, :] * s_col, mask=mask, other=0.0)


@triton.jit
def _dot(a, b, acc, PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    """``acc + a @ b``. UPCAST: the CPU interpreter's bf16 dot is wrong, so it gets fp32 operands (exact)."""
    if UPCAST:
        a, b = a.to(tl.float32), b.to(tl.float32)
    return tl.dot(a, b, acc, input_precision=PRECISION)


@triton.jit
def _state_tile(s_ptr, DA, DB, n_blocks_b, ss_bh, ss_a, ss_b, BA: tl.constexpr, BB: tl.constexpr):
    """A state kernel's program: its batch x head ``i_bh``, its (BA x BB) tile's columns of a and of b, and
    the tile's pointers into S (chunk 0; chunk c is + c * ss_c) and mask. Shared with the gated kernels
    (``labs.recurrent.triton_chunk``), whose state kernels split the work the same way."""
    pid = tl.program_id(0)
    n_blocks = tl.cdiv(DA, BA) * n_blocks_b
    i_bh, i_ab = (pid // n_blocks).to(tl.int64), pid % n_blocks
    cols_a = (i_ab // n_blocks_b) * BA + tl.arange(0, BA)
    cols_b = (i_ab % n_blocks_b) * BB + tl.arange(0, BB)
    s_tile = s_ptr + i_bh * ss_bh + cols_a[:, None] * ss_a + cols_b[None, :] * ss_b
    s_mask = (cols_a[:, None] < DA) & (cols_b[None, :] < DB)
    return i_bh, cols_a, cols_b, s_tile, s_mask


@triton.jit
def _state_kernel(a_ptr, b_ptr, s_ptr, T, DA, DB, NT, n_blocks_b, reverse,
                  sa_bh, sa_t, sa_d, sb_bh, sb_t, sb_d, ss_bh, ss_c, ss_a, ss_b,
                  BT: tl.constexpr, BA: tl.constexpr, BB: tl.constexpr,
                  PRECISION: tl.constexpr, UPCAST: tl.constexpr):
    """S[c] = sum over the chunks before c (after c when reverse) of a_c^T b_c, one (BA x BB) tile."""
    i_bh, cols_a, cols_b, s_tile, s_mask = _state_tile(s_ptr, DA, DB, n_blocks_b, ss_bh, ss_a, ss_b, BA, BB)
    acc = tl.float64 if s_ptr.dtype.element_ty == tl.float64 else tl.float32
    state = tl.zeros((BA, BB), dtype=acc)
    for i in range(NT):
        c = tl.where(reverse == 0, i, NT - 1 - i)
        tl.store(s_tile + c.to(tl.int64) * ss_c, state.to(s_ptr.dtype.element_ty), mask=s_mask)
        rows = c * BT + tl.arange(0, BT)
        a = _tile(a_ptr + i_bh * sa_bh, rows, cols_a, T, DA, sa_t, sa_d)
        b = _tile(b_ptr + i_bh * sb_bh, rows, cols_b, T, DB, sb_t, sb_d)
        state = _dot(tl.trans(a), b, state, PRECISION, UPCAST)


@triton.jit
def _state_dot(q, s, UPCAST: tl.constexpr):
    """q @ s for a float32 state tile s and a 16-bit q, as a 16-bit dot: s is scaled by a power of
    two so that its largest entry lies in [2^14, 2^15) (inside float16's range), rounded to q's type
    (11 significant bits in float16, as many as TF32), and the product scaled back (exactly)."""
    top = tl.max(tl.max(tl.abs(s), axis=1), axis=0)
    scale = tl.exp2(tl.floor(tl.log2(tl.where(top > 0, top, 16384.0))) - 14.0)
    return _dot(q, (s / scale).to(q.dtype), tl.zeros((q.shape[0], s.shape[1]), tl.float32), "ieee", UPCAST) * scale


@triton.jit
def _forward_kernel(q_ptr, k_ptr, v_ptr, s_ptr, o_ptr, T, DK, DV, NT, n_blocks_v, reverse,
                    sq_bh, sq_t, sq_d, sk_bh, sk_t, sk_d, sv_bh, sv_t, sv_d,
                    ss_bh, ss_c, ss_k, ss_v, so_bh, so_t, so_d,
                    BT: tl.constexpr, BK: tl.constexpr, BV: tl.constexpr,
                    PRECISION: tl.constexpr, SCALED_STATE: tl.constexpr, UPCAST: tl.constexpr):
    """o_c = mask(q_c k_c^T) v_c + q_c S_c for one chunk c and one block of value columns.

    mask keeps s <= t (causal), or s >= t when ``reverse`` (the backward's dk and dv).
    """
    pid = tl.program_id(0)
    i_bh = (pid // (NT * n_blocks_v)).to(tl.int64)
    i_c, i_v = (pid // n_blocks_v) % NT, pid % n_blocks_v
    offs_t = tl.arange(0, BT)
    rows = i_c * BT + offs_t
    cols_v = i_v * BV + tl.arange(0, BV)
    acc = tl.float64 if s_ptr.dtype.element_ty == tl.float64 else tl.float32
    # Intra-chunk: scores = q_c k_c^T, summed over column blocks of q and k, masked, times v_c.
    scores = tl.zeros((BT, BT), dtype=acc)
    for start in range(0, DK, BK):
        cols_k = start + tl.arange(0, BK)
        q = _tile(q_ptr + i_bh * sq_bh, rows, cols_k, T, DK, sq_t, sq_d)
        k = _tile(k_ptr + i_bh * sk_bh, rows, cols_k, T, DK, sk_t, sk_d)
        scores = _dot(q, tl.trans(k), scores, PRECISION, UPCAST)  # (t, s)
    keep = tl.where(reverse == 0, offs_t[:, None] >= offs_t[None, :], offs_t[:, None] <= offs_t[None, :])
    v = _tile(v_ptr + i_bh * sv_bh, rows, cols_v, T, DV, sv_t, sv_d)
    scores = tl.where(keep, scores, 0.0).to(v.dtype)  # 16-bit scores for a 16-bit tensor-core dot
    out = _dot(scores, v, tl.zeros((BT, BV), dtype=acc), PRECISION, UPCAST)
    # Inter-chunk: + q_c S_c. A second sweep over q (from cache) keeps one accumulator live at a time.
    state = s_ptr + i_bh * ss_bh + i_c.to(tl.int64) * ss_c
    for start in range(0, DK, BK):
        cols_k = start + tl.arange(0, BK)
        q = _tile(q_ptr + i_bh * sq_bh, rows, cols_k, T, DK, sq_t, sq_d)
        s = _tile(state, cols_k, cols_v, DK, DV, ss_k, ss_v)
        if SCALED_STATE:
            out += _state_dot(q, s, UPCAST)
        else:
            out = _dot(q, s, out, PRECISION, False)
    mask = (rows[:, None] < T) & (cols_v[None, :] < DV)
    tl.store(o_ptr + i_bh * so_bh + rows[:, None].to(tl.int64) * so_t + cols_v[None, :] * so_d,
             out.to(o_ptr.dtype.element_ty), mask=mask)


# Tiles and warps per GPU generation, input type and chunk length (the chunk's T x T scores tile is
# the big one): (BK, BV, warps) for _forward_kernel, (BA, BB, warps) for _state_kernel. Chosen by
# compiling candidates for sm_75, sm_80 and sm_90, largest tiles first, and keeping the first with
# no register spills and shared memory within the target; tests/labs/test_compile.py holds every
# entry to that. A chunk length missing from a row is above what that GPU holds: the launcher uses
# the longest one it has (the result is the same; only the work split changes).
# sm_75 (T4) has no tensor-core path in Triton: every dot is FMA, hence the small tiles.
_TILES = {
    "sm75": {
        "16": {"forward": {16: (32, 32, 4), 32: (32, 64, 4)}, "state": {16: (64, 64, 4), 32: (32, 64, 4)}},
        "fp32": {"forward": {16: (32, 64, 4), 32: (32, 64, 4), 64: (64, 64, 8)},
                 "state": {16: (64, 64, 4), 32: (64, 64, 4), 64: (64, 64, 8)}},
        "fp64": {"forward": {16: (32, 32, 4), 32: (32, 64, 4), 64: (32, 64, 8)},
                 "state": {16: (64, 64, 4), 32: (64, 64, 4), 64: (64, 64, 8)}},
    },
    # sm_80 (A100); also sm_86/89/120 (99 KB of shared memory: every entry here stays under it).
    "sm80": {
        "16": {"forward": {16: (64, 64, 4), 32: (64, 64, 4), 64: (64, 64, 8), 128: (64, 64, 8)},
               "state": {16: (64, 64, 4), 32: (64, 64, 4), 64: (64, 64, 8), 128: (64, 64, 8)}},
        "fp32": {"forward": {16: (32, 64, 4), 32: (32, 64, 4), 64: (16, 32, 8)},
                 "state": {16: (64, 64, 4), 32: (64, 64, 4), 64: (32, 64, 8)}},
        "fp64": {"forward": {16: (64, 64, 4), 32: (64, 64, 4), 64: (64, 64, 8)},
                 "state": {16: (64, 64, 4), 32: (64, 64, 4), 64: (64, 64, 8)}},
    },
    # sm_90 (H100, H200) and sm_100 (B200): 227 KB of shared memory.
    "sm90": {
        "16": {"forward": {16: (64, 64, 4), 32: (64, 64, 4), 64: (64, 64, 8), 128: (64, 64, 8)},
               "state": {16: (64, 64, 4), 32: (64, 64, 4), 64: (64, 64, 8), 128: (64, 64, 8)}},
        "fp32": {"forward": {16: (32, 64, 4), 32: (32, 64, 4), 64: (64, 64, 8), 128: (32, 32, 8)},
                 "state": {16: (64, 64, 4), 32: (64, 64, 4), 64: (64, 64, 8), 128: (64, 64, 8)}},
        "fp64": {"forward": {16: (64, 64, 4), 32: (64, 64, 4), 64: (64, 64, 8), 128: (32, 32, 8)},
                 "state": {16: (64, 64, 4), 32: (32, 32, 4), 64: (64, 64, 8), 128: (32, 64, 8)}},
    },
}


def _generation(target: _backend.Target) -> str:
    major = target.capability[0]
    if major < 8:
        return "sm75"
    return "sm90" if major in (9, 10) else "sm80"


def _config(chunk_size: int, dtype: torch.dtype, target: _backend.Target, tiles: dict | None = None) -> dict:
    """The chunk length, tiles, warps and pipeline stages for ``chunk_size`` on ``target``.

    ``tiles`` is a table shaped like ``_TILES`` (default), for a kernel built the same way.
    """
    kind = "16" if dtype in (torch.float16, torch.bfloat16) else "fp64" if dtype == torch.float64 else "fp32"
    table = (_TILES if tiles is None else tiles)[_generation(target)][kind]
    bt = max(c for c in table["forward"] if c <= max(chunk_size, min(table["forward"])))
    bk, bv, warps = table["forward"][bt]
    ba, bb, state_warps = table["state"][bt]
    # The state kernel's loop over chunks is software-pipelined: each stage buffers one chunk of a
    # and b in shared memory. Keep the buffers within half the target's shared memory.
    per_stage = bt * (ba + bb) * (torch.finfo(dtype).bits // 8)
    stages = max(1, min(3, target.shared_memory // 2 // per_stage))
    return {"BT": bt, "forward": {"BK": bk, "BV": bv, "num_warps": warps, "num_stages": 1},
            "state": {"BA": ba, "BB": bb, "num_warps": state_warps, "num_stages": stages}}


def _precisions(dtype: torch.dtype, target: _backend.Target) -> dict:
    """Every dot is IEEE: 16-bit operands with fp32 accumulation, or fp32/fp64 operands (no TF32)."""
    sixteen = dtype in (torch.float16, torch.bfloat16)
    return {"PRECISION": "ieee", "SCALED_STATE": sixteen, "UPCAST": target.interpreter and dtype == torch.bfloat16}


def _strides3(x: torch.Tensor) -> tuple[int, int, int]:
    return x.stride(0), x.stride(1), x.stride(2)


def _states(a, b, config, reverse, acc, target):
    """(BH, NT, Da, Db): the state before (after, when reverse) each chunk."""
    bh, t, da = a.shape
    db = b.shape[-1]
    bt, tiles = config["BT"], config["state"]
    nt = triton.cdiv(t, bt)
    states = torch.empty(bh, nt, da, db, device=a.device, dtype=acc)
    prec = _precisions(a.dtype, target)
    n_blocks_b = triton.cdiv(db, tiles["BB"])
    grid = (bh * triton.cdiv(da, tiles["BA"]) * n_blocks_b,)
    _backend.launch(_state_kernel, grid, a, b, states, t, da, db, nt, n_blocks_b, int(reverse),
                    *_strides3(a), *_strides3(b), *states.stride(),
                    BT=bt, PRECISION=prec["PRECISION"], UPCAST=prec["UPCAST"], **tiles)
    return states


def _chunk_output(q, k, v, states, out, config, reverse, target, transpose_state=False):
    """out = mask(q k^T) v + q S per chunk (S transposed when ``transpose_state``)."""
    bh, t, dk = q.shape
    dv = v.shape[-1]
    nt = states.shape[1]
    ss = states.stride()
    ss = (ss[0], ss[1], ss[3], ss[2]) if transpose_state else ss
    tiles = config["forward"]
    n_blocks_v = triton.cdiv(dv, tiles["BV"])
    _backend.launch(_forward_kernel, (bh * nt * n_blocks_v,), q, k, v, states, out, t, dk, dv, nt, n_blocks_v,
                    int(reverse), *_strides3(q), *_strides3(k), *_strides3(v), *ss, *_strides3(out),
                    BT=config["BT"], **_precisions(q.dtype, target), **tiles)
    return out


class ChunkLinearAttention(torch.autograd.Function):
    """Autograd wrapper: the forward keeps the (feature-mapped) inputs and the chunk states."""

    @staticmethod
    def forward(ctx, fq, fk, v, chunk_size: int):
        b, h, t, dk = fq.shape
        dv = v.shape[-1]
        acc = torch.float64 if v.dtype == torch.float64 else torch.float32
        target = _backend.kernel_target(v)
        config = _config(chunk_size, v.dtype, target)
        q3, k3, v3 = (x.reshape(b * h, t, x.shape[-1]) for x in (fq, fk, v))  # views where the layout allows
        out = torch.empty(b * h, t, dv, device=v.device, dtype=acc)
        states = _states(k3, v3, config, False, acc, target)
        _chunk_output(q3, k3, v3, states, out, config, False, target)
        ctx.save_for_backward(q3, k3, v3, states)
        ctx.config, ctx.shape = config, (b, h, t, dk, dv)
        return out.reshape(b, h, t, dv)

    @staticmethod
    def backward(ctx, d_out):
        q3, k3, v3, states = ctx.saved_tensors
        b, h, t, dk, dv = ctx.shape
        config, target = ctx.config, _backend.kernel_target(v3)
        do3 = d_out.reshape(b * h, t, dv).to(v3.dtype)  # 16-bit inputs: a 16-bit gradient for the dots
        d_states = _states(q3, do3, config, True, states.dtype, target)
        dq = _chunk_output(do3, v3, k3, states, torch.empty_like(q3), config, False, target, transpose_state=True)
        dk_ = _chunk_output(v3, do3, q3, d_states, torch.empty_like(k3), config, True, target, transpose_state=True)
        dv_ = _chunk_output(k3, q3, do3, d_states, torch.empty_like(v3), config, True, target)
        return dq.reshape(b, h, t, dk), dk_.reshape(b, h, t, dk), dv_.reshape(b, h, t, dv), None


def causal_chunk_numerator_triton(fq, fk, v, chunk_size: int) -> torch.Tensor:
    """The Triton version of ``chunk.causal_chunk_numerator`` (same arguments, same result)."""
    return ChunkLinearAttention.apply(fq, fk, v, chunk_size)
