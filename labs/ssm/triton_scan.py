"""``h_t = a_t h_{t-1} + b_t`` as a parallel (associative) scan in Triton, forward and backward.

One step is the affine map ``h -> a h + b``; composing two steps gives another,
``(a1, b1) then (a2, b2) = (a1 a2, a2 b1 + b2)``, and composition is
associative. So ``tl.associative_scan`` can combine a whole block of steps in
``log2(BLOCK)`` rounds instead of ``BLOCK`` dependent ones. A program walks its
stretch of a row block by block, carrying the last ``h`` of each block into the
next. Every element is read once and written once.

Long rows are cut into chunks so that a few rows still fill the GPU (8 rows of
1M steps would otherwise be 8 programs on a machine with 132 SMs): a first
kernel reduces each chunk to one composed step ``(A_c, B_c)``, the same scan
over those steps gives the ``h`` entering each chunk, and then every chunk is
scanned from its own carry, all chunks at once.

The backward is the same scan run backwards in time. With ``g_t = dL/dh_t``
from outside, the total adjoint obeys ``dh_t = a_{t+1} dh_{t+1} + g_t``: a
linear scan in reverse with the coefficients shifted by one. Then
``db_t = dh_t``, ``da_t = dh_t h_{t-1}`` and ``dh0 = a_0 dh_0``.

Overflow: the running product of ``a`` can overflow (``a = 2`` for 300 steps
is ``2^300``, infinite in float32) while the state it multiplies is exactly
zero. ``inf * 0`` is NaN, so every product in the scan is taken as 0 when a
factor is exactly 0: the result is then finite whenever the true ``h`` is.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .. import _backend

SMALL_BLOCK, BLOCK = 256, 1024  # steps per block: rows up to 2048 steps use the small one
INTERPRETER_BLOCK = 64
MIN_CHUNK_BLOCKS = 4  # a chunk streams at least this many blocks
PROGRAMS_PER_SM = 4  # split rows into chunks until there are this many programs per SM


@triton.jit
def _times(x, y):
    """x * y, but exactly 0 when a factor is 0, even if the other overflowed to inf."""
    return tl.where(x == 0, x, tl.where(y == 0, y, x * y))


@triton.jit
def _compose(a1, b1, a2, b2):
    """Step (a1, b1) followed by step (a2, b2). An exactly zero b1 contributes nothing, even
    when a2 overflowed (inf * 0 would be NaN)."""
    a = tl.where(a1 == 0, a1, tl.where(a2 == 0, a2, a1 * a2))  # _times, inlined: the interpreter calls this per step
    return a, tl.where(b1 == 0, b2, a2 * b1 + b2)


@triton.jit
def _steps(a_ptr, b_ptr, row, step, end, L, sa_row, sa_t, sb_row, sb_t, reverse, FP64: tl.constexpr):
    """The (a, b) of scan steps ``step`` (a block) and their times; steps at or past ``end`` are the identity."""
    compute = tl.float64 if FP64 else tl.float32
    valid = step < end
    t = tl.where(reverse == 0, step, L - 1 - step)  # position in time
    a_t = tl.where(reverse == 0, t, t + 1)  # the backward scan multiplies by the next step's a
    a = tl.load(a_ptr + row * sa_row + a_t.to(tl.int64) * sa_t, mask=valid & (a_t < L), other=0.0).to(compute)
    a = tl.where(valid, a, 1.0)  # padding steps are the identity map, so the carry survives them
    b = tl.load(b_ptr + row * sb_row + t.to(tl.int64) * sb_t, mask=valid, other=0.0).to(compute)
    return a, b, t, valid


@triton.jit(do_not_specialize=["reverse"])
def _scan_kernel(a_ptr, b_ptr, carry_ptr, out_ptr, h_ptr, h0_ptr, da_ptr, L, chunk_len, n_chunks,
                 sa_row, sa_t, sb_row, sb_t, reverse, BLOCK: tl.constexpr, FP64: tl.constexpr):
    """Scan one chunk of one row from its carry. Forward (reverse=0): out = h. Backward (reverse=1):
    b holds g, out = dh, and da = dh * h_{t-1} (h_{-1} = h0)."""
    pid = tl.program_id(0)
    row, chunk = (pid // n_chunks).to(tl.int64), pid % n_chunks
    compute = tl.float64 if FP64 else tl.float32
    carry = tl.load(carry_ptr + row * n_chunks + chunk).to(compute)
    first = chunk * chunk_len
    end = tl.minimum(first + chunk_len, L)
    for start in range(first, end, BLOCK):
        step = start + tl.arange(0, BLOCK)  # position in scan order
        a, b, t, valid = _steps(a_ptr, b_ptr, row, step, end, L, sa_row, sa_t, sb_row, sb_t, reverse, FP64)
        a_acc, b_acc = tl.associative_scan((a, b), axis=0, combine_fn=_compose)
        h = _times(a_acc, carry) + b_acc
        tl.store(out_ptr + row * L + t, h.to(out_ptr.dtype.element_ty), mask=valid)
        backward = valid & (t < tl.where(reverse == 0, 0, L))  # fused: da_t = dh_t * h_{t-1}
        h_prev = tl.load(h_ptr + row * L + t - 1, mask=backward & (t > 0), other=0.0).to(compute)
        h_prev = tl.where(t == 0, tl.load(h0_ptr + row).to(compute), h_prev)
        tl.store(da_ptr + row * L + t, (h * h_prev).to(da_ptr.dtype.element_ty), mask=backward)
        carry = tl.sum(tl.where(tl.arange(0, BLOCK) == BLOCK - 1, h, 0.0), axis=0)


@triton.jit(do_not_specialize=["reverse"])
def _aggregate_kernel(a_ptr, b_ptr, agg_a_ptr, agg_b_ptr, L, chunk_len, n_chunks,
                      sa_row, sa_t, sb_row, sb_t, reverse, BLOCK: tl.constexpr, FP64: tl.constexpr):
    """Compose all steps of one chunk into one step (A, B): h_out = A h_in + B."""
    pid = tl.program_id(0)
    row, chunk = (pid // n_chunks).to(tl.int64), pid % n_chunks
    compute = tl.float64 if FP64 else tl.float32
    first = chunk * chunk_len
    end = tl.minimum(first + chunk_len, L)
    last = tl.arange(0, BLOCK) == BLOCK - 1
    total_a = tl.full((), 1.0, compute)
    total_b = tl.zeros((), compute)
    for start in range(first, end, BLOCK):
        step = start + tl.arange(0, BLOCK)
        a, b, t, valid = _steps(a_ptr, b_ptr, row, step, end, L, sa_row, sa_t, sb_row, sb_t, reverse, FP64)
        a_acc, b_acc = tl.associative_scan((a, b), axis=0, combine_fn=_compose)
        block_a = tl.sum(tl.where(last, a_acc, 0.0), axis=0)
        block_b = tl.sum(tl.where(last, b_acc, 0.0), axis=0)
        total_a, total_b = _compose(total_a, total_b, block_a, block_b)
    tl.store(agg_a_ptr + row * n_chunks + chunk, total_a)
    tl.store(agg_b_ptr + row * n_chunks + chunk, total_b)


def _block(L: int, target: _backend.Target) -> int:
    """Steps per block. The CPU interpreter runs a scan one step at a time, so padding costs it
    time and a block buys it nothing: it gets the smallest block that covers short rows."""
    if target.interpreter:
        return min(INTERPRETER_BLOCK, triton.next_power_of_2(L))
    return SMALL_BLOCK if L <= 2 * SMALL_BLOCK * MIN_CHUNK_BLOCKS else BLOCK


def _chunk_len(rows: int, L: int, target: _backend.Target) -> int:
    """Steps per chunk: the whole row when there are rows enough to fill the GPU, else chunks of whole blocks."""
    block = _block(L, target)
    wanted = PROGRAMS_PER_SM * target.sm_count
    if target.interpreter or rows >= wanted or L < 2 * MIN_CHUNK_BLOCKS * block:  # one program at a time
        return L
    n_chunks = min(triton.cdiv(wanted, rows), L // (MIN_CHUNK_BLOCKS * block))
    return triton.cdiv(triton.cdiv(L, n_chunks), block) * block


def _row_strides(x: torch.Tensor) -> tuple[int, int]:
    return x.stride(0), x.stride(1)


def _launch(a, b, h0, out, *, reverse: bool, h=None, da=None, chunk_len=None) -> None:
    """Scan rows of ``b`` (R, L) with coefficients ``a`` (strided, e.g. broadcast) into ``out`` (R, L)."""
    rows, L = b.shape
    compute = torch.float64 if b.dtype == torch.float64 else torch.float32
    target = _backend.kernel_target(b)
    chunk_len = _chunk_len(rows, L, target) if chunk_len is None else chunk_len
    n_chunks = triton.cdiv(L, chunk_len)
    block = _block(L, target)
    fp64 = b.dtype == torch.float64
    h0 = torch.zeros(rows, device=b.device, dtype=b.dtype) if h0 is None else h0.contiguous()
    if n_chunks == 1:
        carries = (h0 if not reverse else torch.zeros_like(h0)).to(compute)
    else:  # reduce each chunk to one step, scan those steps, and start every chunk from its carry
        agg_a = torch.empty(rows, n_chunks, device=b.device, dtype=compute)
        agg_b = torch.empty_like(agg_a)
        _backend.launch(_aggregate_kernel, (rows * n_chunks,), a, b, agg_a, agg_b, L, chunk_len, n_chunks,
                        *_row_strides(a), *_row_strides(b), int(reverse), BLOCK=block, FP64=fp64, num_warps=4)
        first = h0.to(compute) if not reverse else torch.zeros(rows, device=b.device, dtype=compute)
        ends = torch.empty_like(agg_a)
        _launch(agg_a, agg_b, first, ends, reverse=False, chunk_len=n_chunks)
        carries = torch.cat([first[:, None], ends[:, :-1]], dim=1).contiguous()
    _backend.launch(_scan_kernel, (rows * n_chunks,), a, b, carries, out, out if h is None else h, h0,
                    out if da is None else da, L, chunk_len, n_chunks,
                    *_row_strides(a), *_row_strides(b), int(reverse), BLOCK=block, FP64=fp64, num_warps=4)


class LinearScan(torch.autograd.Function):
    """Autograd wrapper over rows of shape ``(R, L)``; keeps ``a`` and ``h`` for the backward."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None, chunk_len: int | None):
        h = torch.empty(b.shape, device=b.device, dtype=b.dtype)
        _launch(a, b, h0, h, reverse=False, chunk_len=chunk_len)
        ctx.save_for_backward(a, h, h0)
        ctx.has_h0, ctx.chunk_len = h0 is not None, chunk_len
        return h

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        a, h, h0 = ctx.saved_tensors
        dh = torch.empty(h.shape, device=h.device, dtype=h.dtype)
        da = torch.empty(h.shape, device=h.device, dtype=h.dtype)
        _launch(a, g, h0, dh, reverse=True, h=h, da=da, chunk_len=ctx.chunk_len)
        dh0 = a[:, 0] * dh[:, 0] if ctx.has_h0 else None
        return da, dh, dh0, None


def linear_scan_triton(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None, *,
                       chunk_len: int | None = None) -> torch.Tensor:
    """``h_t = a_t h_{t-1} + b_t`` along the last axis with the Triton scan (same shapes as ``b``).

    ``a`` is read through its strides, so a coefficient broadcast over a state
    dimension (``expand``) is never materialised. ``chunk_len`` (steps per
    chunk) overrides the launcher's choice; tests use it to reach the chunked
    path at small sizes.
    """
    shape = b.shape
    rows = b.reshape(-1, shape[-1])
    a_rows = a.expand(shape).reshape(rows.shape)  # a view when the layout allows (an expand stays stride 0)
    h = LinearScan.apply(a_rows, rows, None if h0 is None else h0.reshape(-1), chunk_len)
    return h.reshape(shape)
