"""Gated linear recurrences: linear attention with decay, selective state spaces, and their duality.

Public API (inputs checked here; the math in ``reference.py`` and ``chunk.py``):

* ``gated_linear_attention(q, k, v, log_decay, *, method, chunk_size, initial_state, return_state)``
* ``selective_scan(u, delta, A, B, C, D=None, *, delta_softplus=False)``: Mamba's S6
* ``ssd(x, dt, A, B, C, *, chunk_size=64)``: Mamba-2's state space duality layer
* ``decay_mask(log_decay)``: the 1-semiseparable mask M_ts = prod_{r=s+1..t} a_r

``method="chunk"`` runs the Triton kernel (``triton_chunk.py``) on a GPU, or under
``TRITON_INTERPRET=1`` on the CPU, when no state goes in or out and the chunk fits the
kernel's tiles (one decay per step or per key channel); otherwise the torch chunked form.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import _backend
from .._checks import choice, flag, float_tensor, whole_number
from ..attention import MAX_TRITON_HEAD_DIM, TRITON_CHUNK_SIZES
from . import reference
from .chunk import gla_chunk, ssd_chunk

__all__ = ["GLA_METHODS", "decay_mask", "gated_linear_attention", "selective_scan", "ssd"]

GLA_METHODS = ("chunk", "recurrent", "quadratic")  # how the mapping is computed, never what it computes


def _same_device_and_dtype(fn: str, named: dict) -> None:
    dtypes = {name: x.dtype for name, x in named.items()}
    devices = {name: x.device for name, x in named.items()}
    if len(set(dtypes.values())) > 1:
        raise TypeError(f"{fn}: {', '.join(named)} must share one dtype, got {dtypes}")
    if len(set(devices.values())) > 1:
        raise ValueError(f"{fn}: {', '.join(named)} must be on one device, got {devices}")


def _tensors(fn: str, **named) -> None:
    """Each argument ``name=(value, ndim)`` is a floating tensor of that rank."""
    for name, (value, ndim) in named.items():
        float_tensor(fn, name, value, ndim=ndim)


def _no_growth(fn: str, name: str, log_decay: torch.Tensor) -> None:
    """A decay multiplies the state by at most 1 per step: its log must be <= 0 (and not NaN)."""
    bad = ~(log_decay <= 0)
    if bool(bad.any()):
        worst = log_decay[bad].flatten()[0].item()
        raise ValueError(f"{fn}: {name} must be <= 0 everywhere (a decay, exp(log_decay) <= 1), got {worst!r}")


def decay_mask(log_decay: torch.Tensor) -> torch.Tensor:
    """The (..., T, T) mask M_ts = exp(sum_{r=s+1..t} log_decay_r) for s <= t, 0 above the diagonal."""
    float_tensor("decay_mask", "log_decay", log_decay, min_ndim=1)
    _no_growth("decay_mask", "log_decay", log_decay)
    return reference.decay_mask(log_decay)


def gated_linear_attention(q, k, v, log_decay, *, method: str = "chunk", chunk_size: int = 64,
                           initial_state=None, return_state: bool = False):
    """o_t = q_t h_t with h_t = diag(exp(log_decay_t)) h_{t-1} + k_t^T v_t (q is not scaled: the caller scales).

    q, k (B, H, T, K); v (B, H, T, V); ``log_decay`` (B, H, T) for one decay per step or
    (B, H, T, K) for one per key channel, every entry <= 0. ``initial_state`` (B, H, K, V)
    is h_0. Returns o (B, H, T, V) in v's dtype, and the final state (B, H, K, V) in float32
    or wider when ``return_state``. ``method`` picks the computation: "chunk" (chunkwise),
    "recurrent" (one step at a time) or "quadratic" (the masked T x T form).
    """
    fn = "gated_linear_attention"
    for name, x in (("q", q), ("k", k), ("v", v)):
        float_tensor(fn, name, x, ndim=4)
    float_tensor(fn, "log_decay", log_decay)
    if q.shape != k.shape:
        raise ValueError(f"{fn}: q and k must have the same shape (B, H, T, K), got {tuple(q.shape)} and {tuple(k.shape)}")
    if v.shape[:3] != q.shape[:3]:
        raise ValueError(f"{fn}: v must be (B, H, T, V) with the (B, H, T) of q = {tuple(q.shape[:3])}, got {tuple(v.shape)}")
    if q.shape[-1] == 0 or v.shape[-1] == 0:
        raise ValueError(f"{fn}: head dimensions must be non-empty, got K={q.shape[-1]}, V={v.shape[-1]}")
    if tuple(log_decay.shape) not in (tuple(q.shape[:3]), tuple(q.shape)):
        raise ValueError(
            f"{fn}: log_decay must be (B, H, T) = {tuple(q.shape[:3])} or (B, H, T, K) = {tuple(q.shape)}, "
            f"got {tuple(log_decay.shape)}"
        )
    _same_device_and_dtype(fn, {"q": q, "k": k, "v": v})
    if log_decay.device != q.device:
        raise ValueError(f"{fn}: log_decay must be on q's device {q.device}, got {log_decay.device}")
    _no_growth(fn, "log_decay", log_decay)
    choice(fn, "method", method, GLA_METHODS)
    chunk_size = whole_number(fn, "chunk_size", chunk_size)
    flag(fn, "return_state", return_state)
    if initial_state is not None:
        float_tensor(fn, "initial_state", initial_state, ndim=4)
        wanted = (*q.shape[:2], q.shape[-1], v.shape[-1])
        if tuple(initial_state.shape) != wanted:
            raise ValueError(f"{fn}: initial_state must be (B, H, K, V) = {wanted}, got {tuple(initial_state.shape)}")
    if method == "recurrent":
        o, state = reference.gla_recurrent(q, k, v, log_decay, initial_state)
    elif method == "quadratic":
        o, state = reference.gla_quadratic(q, k, v, log_decay, initial_state)
    elif _takes_kernel(q, v, log_decay, chunk_size, initial_state, return_state):
        from .triton_chunk import gla_chunk_triton

        return gla_chunk_triton(q, k, v, log_decay, chunk_size).to(v.dtype)
    else:
        o, state = gla_chunk(q, k, v, log_decay, chunk_size=chunk_size, initial_state=initial_state)
    return (o.to(v.dtype), state) if return_state else o.to(v.dtype)


def _takes_kernel(q, v, log_decay, chunk_size, initial_state, return_state) -> bool:
    """The Triton kernel handles a decay per step (B, H, T) or per key channel (B, H, T, K), no state in
    or out, and chunks that fit its tiles."""
    fits = (
        log_decay.ndim in (3, 4)
        and initial_state is None
        and not return_state
        and chunk_size in TRITON_CHUNK_SIZES
        and max(q.shape[-1], v.shape[-1]) <= MAX_TRITON_HEAD_DIM
        and _backend.triton_dtype_ok(q.dtype, q.device)
    )
    return fits and _backend.use_triton(q)


def selective_scan(u, delta, A, B, C, D=None, *, delta_softplus: bool = False):
    """Mamba's S6: x_t = exp(delta_t A) x_{t-1} + delta_t B_t u_t, y_t = C_t x_t + D u_t, per channel.

    u, delta (batch, D_in, L); A (D_in, N), real and <= 0; B, C (batch, N, L); D (D_in,).
    ``delta_softplus`` applies softplus to delta first (as Mamba does); delta must then be
    >= 0. Returns y (batch, D_in, L) in u's dtype. Computed as a gated linear attention with
    one head per channel: q = C, k = B, v = delta u, per-channel log-decay delta A.
    """
    fn = "selective_scan"
    _tensors(fn, u=(u, 3), delta=(delta, 3), A=(A, 2), B=(B, 3), C=(C, 3))
    flag(fn, "delta_softplus", delta_softplus)
    batch, d_in, length = u.shape
    if delta.shape != u.shape:
        raise ValueError(f"{fn}: delta must have u's shape (batch, D_in, L) = {tuple(u.shape)}, got {tuple(delta.shape)}")
    if A.shape[0] != d_in:
        raise ValueError(f"{fn}: A must be (D_in, N) with D_in = {d_in}, got {tuple(A.shape)}")
    n = A.shape[1]
    for name, x in (("B", B), ("C", C)):
        if tuple(x.shape) != (batch, n, length):
            raise ValueError(f"{fn}: {name} must be (batch, N, L) = {(batch, n, length)}, got {tuple(x.shape)}")
    if D is not None:
        float_tensor(fn, "D", D, ndim=1)
        if D.shape[0] != d_in:
            raise ValueError(f"{fn}: D must be (D_in,) = ({d_in},), got {tuple(D.shape)}")
    _same_device_and_dtype(fn, {"u": u, "delta": delta, "A": A, "B": B, "C": C})
    _no_growth(fn, "A", A)
    if delta_softplus:
        delta = F.softplus(delta)
    elif bool((delta < 0).any()):
        raise ValueError(f"{fn}: delta must be >= 0 (a step size), got {delta.min().item()!r}; "
                         "pass delta_softplus=True to map a raw delta through softplus")
    acc = reference.accumulation_dtype(u, delta, A, B, C)
    # One head per channel d: (batch, D_in, L, N) keys and queries, a 1-wide value.
    q = C.to(acc).transpose(1, 2)[:, None].expand(batch, d_in, length, n)
    k = B.to(acc).transpose(1, 2)[:, None].expand(batch, d_in, length, n)
    v = (delta.to(acc) * u.to(acc))[..., None]
    log_decay = delta.to(acc)[..., None] * A.to(acc)[None, :, None, :]
    y, _ = gla_chunk(q, k, v, log_decay, chunk_size=16)  # per-channel ratios cost T x C x N: keep C small
    y = y[..., 0]
    if D is not None:
        y = y + D.to(acc)[:, None] * u.to(acc)
    return y.to(u.dtype)


def ssd(x, dt, A, B, C, *, chunk_size: int = 64):
    """Mamba-2's SSD layer with a scalar A per head (one group of B, C per head).

    x (batch, T, H, P); dt (batch, T, H), >= 0; A (H,), <= 0; B and C (batch, T, H, N).
    y_t = sum_{s <= t} (C_t . B_s) exp(A sum_{r=s+1..t} dt_r) dt_s x_s. Returns y (batch, T, H, P).
    """
    fn = "ssd"
    _tensors(fn, x=(x, 4), dt=(dt, 3), A=(A, 1), B=(B, 4), C=(C, 4))
    chunk_size = whole_number(fn, "chunk_size", chunk_size)
    batch, length, heads, _ = x.shape
    if tuple(dt.shape) != (batch, length, heads):
        raise ValueError(f"{fn}: dt must be (batch, T, H) = {(batch, length, heads)}, got {tuple(dt.shape)}")
    if tuple(A.shape) != (heads,):
        raise ValueError(f"{fn}: A must be (H,) = ({heads},), got {tuple(A.shape)}")
    if B.shape[:3] != x.shape[:3] or B.shape != C.shape:
        raise ValueError(
            f"{fn}: B and C must both be (batch, T, H, N) with (batch, T, H) = {(batch, length, heads)}, "
            f"got {tuple(B.shape)} and {tuple(C.shape)}"
        )
    _same_device_and_dtype(fn, {"x": x, "dt": dt, "A": A, "B": B, "C": C})
    _no_growth(fn, "A", A)
    if bool((dt < 0).any()):
        raise ValueError(f"{fn}: dt must be >= 0 (a step size), got {dt.min().item()!r}")
    return ssd_chunk(x, dt, A, B, C, chunk_size=chunk_size).to(x.dtype)
