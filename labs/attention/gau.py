"""The gated attention unit (GAU) and FLASH's mixed chunk attention (Hua et al., 2022).

A GAU replaces a Transformer layer's attention + feed-forward pair with one
gated block: ``O = (U * A V) W_o`` with ``U = silu(X W_u)``, ``V = silu(X W_v)``.
Queries and keys come from one small shared projection ``Z = silu(X W_z)``
(width ``s``), each with its own per-dimension scale and offset, and the
attention weights are ``relu(q . k / sqrt(s))^2`` instead of a softmax.
Mixed chunk attention keeps that quadratic form inside chunks of ``C``
positions and uses linear attention (another scale/offset of ``Z``) across
chunks: linear in ``T``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def squared_relu_attention(q, k, v, *, causal: bool = False) -> torch.Tensor:
    """relu(q k^T / sqrt(s))^2 v / T: the GAU's quadratic attention on (B, T, s) queries and keys."""
    t = q.shape[-2]
    weights = torch.relu(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])) ** 2 / t
    if causal:
        weights = weights.tril()
    return weights @ v


def mixed_chunk_weights(q, k, q_lin, k_lin, *, chunk_size: int, causal: bool = False) -> torch.Tensor:
    """The (B, T, T) weight matrix that mixed chunk attention applies to V, built explicitly (reference).

    Same chunk: relu(q_t . k_s / sqrt(s))^2 / C (s <= t when causal). Other chunks:
    q_lin_t . k_lin_s / T (only earlier chunks when causal).
    """
    t = q.shape[-2]
    chunk = torch.arange(t, device=q.device) // chunk_size
    same = chunk[:, None] == chunk[None, :]
    quad = torch.relu(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])) ** 2 / chunk_size
    lin = q_lin @ k_lin.transpose(-1, -2) / t
    weights = torch.where(same, quad, lin)
    if causal:
        weights = weights.tril()  # also removes every later chunk of the linear part
    return weights


def mixed_chunk_attention(q, k, q_lin, k_lin, v, *, chunk_size: int, causal: bool = False) -> torch.Tensor:
    """FLASH's mixed chunk attention in O(T C s + T s e): quadratic inside chunks, linear across them.

    ``q, k, q_lin, k_lin`` are ``(B, T, s)``, ``v`` is ``(B, T, e)``. ``T`` is
    zero-padded to a multiple of ``chunk_size``; padded keys and values are zero
    and change nothing. The causal (decoder) form carries the linear part as a
    running state ``sum k_lin^T v`` over completed chunks, like an RNN.
    """
    t = q.shape[-2]
    pad = (-t) % chunk_size

    def chunks(x):
        x = F.pad(x, (0, 0, 0, pad))
        return x.reshape(x.shape[0], -1, chunk_size, x.shape[-1])

    qc, kc, qlc, klc, vc = (chunks(x) for x in (q, k, q_lin, k_lin, v))
    quad = torch.relu(qc @ kc.transpose(-1, -2) / math.sqrt(q.shape[-1])) ** 2 / chunk_size
    if causal:
        quad = quad.tril()
    kv = klc.transpose(-1, -2) @ vc / t  # (B, N, s, e): each chunk's linear summary
    if causal:
        state = kv.cumsum(dim=1) - kv  # completed chunks only
    else:
        total = kv.sum(dim=1, keepdim=True)
        state = total - kv  # every other chunk; the own chunk is handled quadratically
    out = quad @ vc + qlc @ state
    return out.reshape(out.shape[0], -1, out.shape[-1])[:, :t]


class GAU(nn.Module):
    """A gated attention unit: one block in place of attention + feed-forward.

    ``chunk_size=None`` gives the GAU's quadratic squared-ReLU attention; an
    integer gives FLASH's mixed chunk attention. Projections have no bias, so
    the parameter count is ``3 d e + d s + 2 s n_qk`` with ``e = expansion * d``.
    """

    def __init__(self, d_model: int, *, expansion: int = 2, s: int = 128, causal: bool = False,
                 chunk_size: int | None = None):
        super().__init__()
        e = expansion * d_model
        self.causal, self.chunk_size = causal, chunk_size
        self.to_uv = nn.Linear(d_model, 2 * e, bias=False)
        self.to_z = nn.Linear(d_model, s, bias=False)
        n_qk = 2 if chunk_size is None else 4  # (q, k), plus (q_lin, k_lin) for mixed chunks
        self.gamma = nn.Parameter(1 + 0.02 * torch.randn(n_qk, s))
        self.beta = nn.Parameter(torch.zeros(n_qk, s))
        self.to_out = nn.Linear(e, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, v = F.silu(self.to_uv(x)).chunk(2, dim=-1)
        z = F.silu(self.to_z(x))
        qk = z.unsqueeze(-2) * self.gamma + self.beta  # (B, T, n_qk, s): cheap per-dim transforms of one Z
        if self.chunk_size is None:
            attended = squared_relu_attention(qk[..., 0, :], qk[..., 1, :], v, causal=self.causal)
        else:
            q, k, q_lin, k_lin = qk.unbind(-2)
            attended = mixed_chunk_attention(q, k, q_lin, k_lin, v, chunk_size=self.chunk_size, causal=self.causal)
        return self.to_out(u * attended)
