"""The chapter's math as plain torch: slow, clear, float64-friendly.

Shapes follow the book: queries and keys are ``(B, H, T, Dk)``, values
``(B, H, T, Dv)``. Every linear-attention form here takes *feature-mapped*
queries and keys (``phi(q)``, ``phi(k)``); the public ``linear_attention``
applies the feature map first.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def softmax_attention(q, k, v, *, causal: bool = False, scale: float | None = None) -> torch.Tensor:
    """softmax(scale q k^T) v, with the T x T matrix of weights materialised."""
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    logits = scale * q @ k.transpose(-1, -2)
    if causal:
        logits = logits.masked_fill(_future(q.shape[-2], q.device), float("-inf"))
    return torch.softmax(logits, dim=-1) @ v


def attention_weights(q, k, *, causal: bool = False, scale: float | None = None) -> torch.Tensor:
    """The softmax attention matrix softmax(scale q k^T), for inspection."""
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    logits = scale * q @ k.transpose(-1, -2)
    if causal:
        logits = logits.masked_fill(_future(q.shape[-2], q.device), float("-inf"))
    return torch.softmax(logits, dim=-1)


def _future(t: int, device) -> torch.Tensor:
    """Boolean (T, T) mask, True where the key comes after the query."""
    return torch.ones(t, t, dtype=torch.bool, device=device).triu(1)


# --- feature maps: sim(q, k) = phi(q) . phi(k) -------------------------------------------------


def elu_plus_one(x: torch.Tensor) -> torch.Tensor:
    """phi(x) = elu(x) + 1 > 0 (Katharopoulos et al., 2020)."""
    return F.elu(x) + 1


FEATURE_MAPS = {"elu+1": elu_plus_one, "relu": torch.relu, "identity": lambda x: x}


# --- three forms of (normalised) linear attention --------------------------------------------


def linear_attention_quadratic(fq, fk, v, *, causal: bool = False, normalize: bool = True, eps: float = 1e-6):
    """(phi(Q) phi(K)^T) V, materialising the T x T similarity matrix like softmax attention does."""
    sim = fq @ fk.transpose(-1, -2)
    if causal:
        sim = sim.masked_fill(_future(fq.shape[-2], fq.device), 0.0)
    out = sim @ v
    if normalize:
        out = out / (sim.sum(-1, keepdim=True) + eps)
    return out


def linear_attention_recurrent(fq, fk, v, *, causal: bool = False, normalize: bool = True, eps: float = 1e-6):
    """The RNN form: S_t = S_{t-1} + phi(k_t) v_t^T, z_t = z_{t-1} + phi(k_t), o_t = phi(q_t)^T S_t / phi(q_t)^T z_t.

    Non-causal attention has no recurrence: every query reads the final state.
    """
    if not causal:
        state, z = fk.transpose(-1, -2) @ v, fk.sum(-2)
        out = fq @ state
        den = (fq * z.unsqueeze(-2)).sum(-1, keepdim=True)
        return out / (den + eps) if normalize else out
    b, h, t, dk = fq.shape
    state = fq.new_zeros(b, h, dk, v.shape[-1])
    z = fq.new_zeros(b, h, dk)
    outs = []
    for i in range(t):
        state = state + fk[:, :, i, :, None] * v[:, :, i, None, :]
        z = z + fk[:, :, i]
        o = (fq[:, :, i, :, None] * state).sum(-2)
        if normalize:
            o = o / ((fq[:, :, i] * z).sum(-1, keepdim=True) + eps)
        outs.append(o)
    return torch.stack(outs, dim=2)


# --- FAVOR+: positive random features for exp(q . k) -----------------------------------------


def random_projection(n_features: int, dim: int, *, generator: torch.Generator, orthogonal: bool = True,
                      dtype=torch.float32):
    """``(n_features, dim)`` Gaussian directions w ~ N(0, I); orthogonal blocks when asked.

    Orthogonal rows come from the QR decomposition of Gaussian blocks of ``dim``
    rows, each row rescaled to the length of an independent Gaussian vector, so
    every row is still marginally N(0, I) but rows in a block are exactly
    orthogonal (Choromanski et al., 2021).
    """
    if not orthogonal:
        return torch.randn(n_features, dim, generator=generator, dtype=dtype)
    blocks = []
    for _ in range(math.ceil(n_features / dim)):
        gaussian = torch.randn(dim, dim, generator=generator, dtype=torch.float64)
        q, r = torch.linalg.qr(gaussian)
        q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)  # make the decomposition unique (Haar)
        blocks.append(q.T)
    rows = torch.cat(blocks)[:n_features]
    lengths = torch.randn(n_features, dim, generator=generator, dtype=torch.float64).norm(dim=-1, keepdim=True)
    return (rows * lengths).to(dtype)


def favor_features(x: torch.Tensor, projection: torch.Tensor, *, is_query: bool, stabilize: bool = True):
    """phi(x) = exp(W x - |x|^2 / 2) / sqrt(m), so that E[phi(q) . phi(k)] = exp(q . k).

    ``projection`` is ``(m, D)``, or ``(..., m, D)`` to draw several sets at once.

    With ``stabilize`` a constant is subtracted inside the exponent before it is
    taken: per row for queries, one for all keys. Either cancels between the
    numerator and the normaliser of attention, and it keeps exp from overflowing.
    """
    wx = x @ projection.transpose(-1, -2).to(x.dtype)
    exponent = wx - 0.5 * (x * x).sum(-1, keepdim=True)
    if stabilize:
        if is_query:
            exponent = exponent - wx.amax(dim=-1, keepdim=True).detach()
        else:
            exponent = exponent - wx.amax(dim=(-1, -2), keepdim=True).detach()
    return torch.exp(exponent) / math.sqrt(projection.shape[-2])


def trig_features(x: torch.Tensor, projection: torch.Tensor) -> torch.Tensor:
    """The trigonometric random features exp(|x|^2/2) [sin(Wx), cos(Wx)] / sqrt(m) of Rahimi and Recht."""
    wx = x @ projection.transpose(-1, -2).to(x.dtype)
    scale = torch.exp(0.5 * (x * x).sum(-1, keepdim=True)) / math.sqrt(projection.shape[-2])
    return scale * torch.cat([torch.sin(wx), torch.cos(wx)], dim=-1)


def positive_mse(x, y, m: int):
    """Mean squared error of the m-feature positive estimator of exp(x . y) (i.i.d. features)."""
    sm = torch.exp((x * y).sum(-1))
    s2 = ((x + y) ** 2).sum(-1)
    return sm**2 * torch.expm1(s2) / m


def trig_mse(x, y, m: int):
    """Mean squared error of the m-frequency trigonometric estimator of exp(x . y)."""
    sm = torch.exp((x * y).sum(-1))
    s2 = ((x + y) ** 2).sum(-1)
    d2 = ((x - y) ** 2).sum(-1)
    return torch.exp(s2) / sm**2 * (-torch.expm1(-d2)) ** 2 / (2 * m)


# --- what attention does with its weights -----------------------------------------------------


def attention_entropy(weights: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of each row of attention weights, (..., T, T) -> (..., T)."""
    return -(weights * torch.log(weights.clamp_min(1e-30))).sum(-1)


def linear_attention_weights(fq, fk, *, causal: bool = False, eps: float = 1e-6):
    """The implied weights phi(q_i) . phi(k_j) / sum_l phi(q_i) . phi(k_l) of normalised linear attention."""
    sim = fq @ fk.transpose(-1, -2)
    if causal:
        sim = sim.masked_fill(_future(fq.shape[-2], fq.device), 0.0)
    return sim / (sim.sum(-1, keepdim=True) + eps)


def rms_norm(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """x / rms(x) over the last dimension, without a learned gain."""
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps)
