"""Chunkwise-parallel causal linear attention in torch: quadratic inside a chunk, recurrent across.

Split the sequence into chunks of C positions. Inside chunk c the causal
product is a small C x C masked matrix product; everything before the chunk
is summarised by the state S_c = sum over earlier chunks of phi(K)^T V
(Dk x Dv), read by one matrix product. Work is O(T C D + T D^2), memory
O(T D + (T / C) D^2): between the quadratic form (C = T) and the RNN (C = 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _chunks(x: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """(B, H, T, D) -> (B, H, N, C, D), zero-padding T up to a multiple of C.

    Zero keys and values at the end contribute nothing to any earlier output.
    """
    t = x.shape[-2]
    pad = (-t) % chunk_size
    x = F.pad(x, (0, 0, 0, pad))
    return x.reshape(*x.shape[:-2], (t + pad) // chunk_size, chunk_size, x.shape[-1])


def causal_chunk_numerator(fq, fk, v, chunk_size: int) -> torch.Tensor:
    """sum_{s <= t} (phi(q_t) . phi(k_s)) v_s for every t, in float32 or wider."""
    t = fq.shape[-2]
    acc = torch.promote_types(fq.dtype, torch.float32)
    q, k, vv = (_chunks(x.to(acc), chunk_size) for x in (fq, fk, v))
    mask = torch.ones(chunk_size, chunk_size, dtype=torch.bool, device=fq.device).tril()
    intra = (q @ k.transpose(-1, -2)).masked_fill(~mask, 0.0) @ vv
    kv = k.transpose(-1, -2) @ vv  # (B, H, N, Dk, Dv): each chunk's contribution to the state
    state = kv.cumsum(dim=2) - kv  # S_c: the chunks strictly before c
    out = intra + q @ state
    return out.reshape(*out.shape[:2], -1, out.shape[-1])[:, :, :t]


def causal_denominator(fq, fk) -> torch.Tensor:
    """phi(q_t) . z_t with z_t = sum_{s <= t} phi(k_s), accumulated in float32 or wider: (B, H, T, 1)."""
    acc = torch.promote_types(fq.dtype, torch.float32)
    z = fk.to(acc).cumsum(dim=-2)
    return (fq.to(acc) * z).sum(-1, keepdim=True)


def linear_attention_chunk(fq, fk, v, *, chunk_size: int = 64, normalize: bool = True, eps: float = 1e-6,
                           numerator=causal_chunk_numerator):
    """Causal linear attention in the chunkwise form; ``numerator`` may be swapped for the Triton kernel."""
    out = numerator(fq, fk, v, chunk_size)
    if normalize:
        out = out / (causal_denominator(fq, fk) + eps)
    return out.to(v.dtype)
