"""Gated linear recurrences as written in the chapter: the recurrence and the masked quadratic form.

Shapes: q, k (B, H, T, K); v (B, H, T, V); ``log_decay`` (B, H, T) for one decay
per step (RetNet, Mamba-2, simple GLA) or (B, H, T, K) for one per key channel
(GLA). The state h_t (B, H, K, V) follows

    h_t = diag(exp(log_decay_t)) h_{t-1} + k_t^T v_t,    o_t = q_t h_t.

Both forms compute in float32 or wider and are the slow, clear references the
chunked form and the kernel are held against.
"""

from __future__ import annotations

import torch


def accumulation_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float32, or float64 if any input is float64: 16-bit inputs never accumulate in 16 bits."""
    dtype = torch.float32
    for x in tensors:
        dtype = torch.promote_types(dtype, x.dtype)
    return dtype


def per_channel(log_decay: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """A scalar decay per step (B, H, T) broadcast over the key channels: (B, H, T, K)."""
    return log_decay if log_decay.ndim == 4 else log_decay.unsqueeze(-1).expand_as(k)


def gla_recurrent(q, k, v, log_decay, initial_state=None):
    """The recurrence, one step at a time: returns (o (B, H, T, V), final state (B, H, K, V))."""
    acc = accumulation_dtype(q, k, v, log_decay)
    q, k, v = q.to(acc), k.to(acc), v.to(acc)
    decay = per_channel(log_decay.to(acc), k).exp()  # (B, H, T, K)
    b, h, t, dk = k.shape
    state = torch.zeros(b, h, dk, v.shape[-1], dtype=acc, device=q.device)
    if initial_state is not None:
        state = initial_state.to(acc).clone()
    outs = []
    for step in range(t):
        state = decay[:, :, step, :, None] * state + k[:, :, step, :, None] * v[:, :, step, None, :]
        outs.append(q[:, :, step, None, :] @ state)  # (B, H, 1, V)
    o = torch.cat(outs, dim=2) if outs else v.new_zeros(v.shape)
    return o, state


def decay_mask(log_decay: torch.Tensor) -> torch.Tensor:
    """M_ts = prod_{r=s+1..t} a_r for s <= t, else 0, from a scalar log-decay (..., T): (..., T, T).

    Formed as exp(b_t - b_s) with b the cumulative log-decay, masked to -inf above the
    diagonal before the exponential, so no entry ever overflows.
    """
    cum = log_decay.cumsum(-1)
    diff = cum[..., :, None] - cum[..., None, :]
    t = log_decay.shape[-1]
    causal = torch.ones(t, t, dtype=torch.bool, device=log_decay.device).tril()
    return diff.masked_fill(~causal, float("-inf")).exp()


def gla_quadratic(q, k, v, log_decay, initial_state=None):
    """O = ((Q K^T) * M) V, plus what the initial state contributes: (o, final state).

    With per-channel decay the mask depends on the channel, so the scores are
    sum_c q_tc k_sc exp(b_tc - b_sc): a (T, T, K) tensor, fine for a reference.
    """
    acc = accumulation_dtype(q, k, v, log_decay)
    q, k, v, log_decay = q.to(acc), k.to(acc), v.to(acc), log_decay.to(acc)
    if log_decay.ndim == 3:
        scores = (q @ k.transpose(-1, -2)) * decay_mask(log_decay)
        cum = log_decay.cumsum(-1).unsqueeze(-1).expand_as(k)  # (B, H, T, K)
    else:
        cum = log_decay.cumsum(-2)  # (B, H, T, K)
        t = q.shape[-2]
        causal = torch.ones(t, t, dtype=torch.bool, device=q.device).tril()[..., None]
        ratio = (cum[..., :, None, :] - cum[..., None, :, :]).masked_fill(~causal, float("-inf")).exp()
        scores = torch.einsum("bhtc,bhsc,bhtsc->bhts", q, k, ratio)
    o = scores @ v
    total = cum[..., -1, :] if q.shape[-2] else torch.zeros_like(k[..., 0, :])  # (B, H, K)
    # The final state: every k_s^T v_s decayed from s to T, plus the decayed initial state.
    carry = (total[..., None, :] - cum).exp()  # (B, H, T, K)
    state = (k * carry).transpose(-1, -2) @ v
    if initial_state is not None:
        h0 = initial_state.to(acc)
        o = o + (q * cum.exp()) @ h0
        state = state + total.exp()[..., None] * h0
    return o, state


def selective_scan_recurrent(u, delta, A, B, C, D=None):
    """Mamba's S6, one step at a time: x_t = exp(delta_t A) x_{t-1} + delta_t B_t u_t, y_t = C_t x_t + D u_t.

    u, delta (batch, D_in, L); A (D_in, N); B, C (batch, N, L); D (D_in,). Returns y (batch, D_in, L).
    """
    acc = accumulation_dtype(u, delta, A, B, C)
    u, delta, A, B, C = (x.to(acc) for x in (u, delta, A, B, C))
    batch, d_in, length = u.shape
    x = torch.zeros(batch, d_in, A.shape[-1], dtype=acc, device=u.device)
    ys = []
    for t in range(length):
        dt = delta[:, :, t, None]  # (batch, D_in, 1)
        x = (dt * A).exp() * x + dt * B[:, None, :, t] * u[:, :, t, None]
        ys.append((x * C[:, None, :, t]).sum(-1))
    y = torch.stack(ys, dim=-1) if ys else u.new_zeros(u.shape)
    if D is not None:
        y = y + D.to(acc)[:, None] * u
    return y
