"""The chunkwise form of a gated linear recurrence in torch, and Mamba-2's SSD in its own layout.

Split T into chunks of C steps. Inside a chunk the output is a small masked
quadratic form; across chunks a (K, V) state carries the past. With b_t the
log-decay summed from the chunk's start to t (inclusive), every factor the
algorithm needs is a ratio exp(b_t - b_s) with t >= s, or exp(b_t) and
exp(b_C - b_s): exponents that are never positive, so nothing overflows however
long the chunk or strong the decay. (Splitting the ratio as
(q_t e^{b_t}) (k_s e^{-b_s}) would save the (C, C, K) tensor of per-channel
ratios but overflow once b_s < -88 in float32.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .reference import accumulation_dtype, per_channel


def _chunks(x: torch.Tensor, chunk_size: int, dim: int = -2) -> torch.Tensor:
    """Split ``dim`` (the time axis) into (T / C, C), zero-padding T up to a multiple of C.

    Padded steps have zero keys and values and log-decay 0 (no decay), so they change
    neither the earlier outputs nor the final state.
    """
    dim = dim % x.ndim
    t = x.shape[dim]
    pad = (-t) % chunk_size
    widths = [0, 0] * (x.ndim - 1 - dim) + [0, pad]
    x = F.pad(x, widths)
    return x.reshape(*x.shape[:dim], (t + pad) // chunk_size, chunk_size, *x.shape[dim + 1:])


def gla_chunk(q, k, v, log_decay, *, chunk_size: int = 64, initial_state=None):
    """The chunkwise form: returns (o (B, H, T, V), final state (B, H, K, V)), in float32 or wider."""
    acc = accumulation_dtype(q, k, v, log_decay)
    t = q.shape[-2]
    scalar = log_decay.ndim == 3
    qc, kc, vc = (_chunks(x.to(acc), chunk_size) for x in (q, k, v))  # (B, H, N, C, .)
    g = _chunks(log_decay.to(acc).unsqueeze(-1) if scalar else log_decay.to(acc), chunk_size)
    cum = g.cumsum(-2)  # b_t within each chunk: (B, H, N, C, 1 or K)
    causal = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=q.device).tril()
    if scalar:
        ratio = (cum[..., :, None, 0] - cum[..., None, :, 0]).masked_fill(~causal, float("-inf")).exp()
        intra = ((qc @ kc.transpose(-1, -2)) * ratio) @ vc  # (B, H, N, C, V)
    else:
        ratio = (cum[..., :, None, :] - cum[..., None, :, :]).masked_fill(~causal[..., None], float("-inf")).exp()
        intra = torch.einsum("bhntc,bhnsc,bhntsc->bhnts", qc, kc, ratio) @ vc
    total = cum[..., -1:, :]  # b_C: the whole chunk's log-decay, (B, H, N, 1, 1 or K)
    q_in = qc * cum.exp()  # q_t e^{b_t}: reads the state as it stood at the chunk's start
    k_out = kc * (total - cum).exp()  # k_s e^{b_C - b_s}: writes into the state at the chunk's end
    state = torch.zeros(q.shape[0], q.shape[1], k.shape[-1], v.shape[-1], dtype=acc, device=q.device)
    if initial_state is not None:
        state = initial_state.to(acc)
    outs = []
    for c in range(qc.shape[2]):  # N sequential steps of a (K, V) state, not T
        outs.append(intra[:, :, c] + q_in[:, :, c] @ state)
        state = total[:, :, c, 0, :, None].exp() * state + k_out[:, :, c].transpose(-1, -2) @ vc[:, :, c]
    o = torch.stack(outs, dim=2).reshape(*q.shape[:2], -1, v.shape[-1])[:, :, :t]
    return o, state


def ssd_chunk(x, dt, A, B, C, *, chunk_size: int = 64):
    """Mamba-2's SSD with one scalar A per head, in its own layout and its four steps.

    x (batch, T, H, P), dt (batch, T, H), A (H,), B and C (batch, T, H, N). The
    scalar log-decay is dt * A; the input written to the state is x * dt.

    1. inside each chunk, the masked quadratic form (C B^T * L) (x dt);
    2. each chunk's own state at its end;
    3. the states passed from chunk to chunk (a short recurrence over chunks);
    4. each position reads the state its chunk started from.
    """
    acc = accumulation_dtype(x, dt, A, B, C)
    length = x.shape[1]
    x, dt, A, B, C = (z.to(acc) for z in (x, dt, A, B, C))
    a = dt * A  # (batch, T, H): log-decay per step
    xs = x * dt[..., None]
    # (batch, T, H, .) -> (batch, H, N_chunks, C, .)
    xc, bc, cc = (_chunks(z.transpose(1, 2), chunk_size) for z in (xs, B, C))
    ac = _chunks(a.transpose(1, 2), chunk_size, dim=-1)  # (batch, H, N_chunks, C)
    cum = ac.cumsum(-1)
    causal = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=x.device).tril()
    seg = (cum[..., :, None] - cum[..., None, :]).masked_fill(~causal, float("-inf")).exp()
    y_diag = ((cc @ bc.transpose(-1, -2)) * seg) @ xc  # step 1
    to_end = (cum[..., -1:] - cum).exp()  # (batch, H, N_chunks, C)
    chunk_states = (bc * to_end[..., None]).transpose(-1, -2) @ xc  # step 2: (batch, H, N_chunks, N, P)
    chunk_decay = cum[..., -1].exp()  # (batch, H, N_chunks)
    states, running = [], torch.zeros_like(chunk_states[:, :, 0])
    for c in range(chunk_states.shape[2]):  # step 3: the state entering chunk c
        states.append(running)
        running = chunk_decay[:, :, c, None, None] * running + chunk_states[:, :, c]
    entering = torch.stack(states, dim=2)
    y_off = (cc * cum.exp()[..., None]) @ entering  # step 4
    y = (y_diag + y_off).reshape(x.shape[0], x.shape[2], -1, x.shape[3])[:, :, :length]
    return y.transpose(1, 2)
