"""Chapter "Linear attention": softmax attention, its linear relatives, and a chunked GPU kernel.

Public API (inputs checked here, math in ``reference.py``, ``chunk.py``,
``gau.py``, the kernel in ``triton_chunk.py``):

* ``softmax_attention(q, k, v, *, causal, scale)``
* ``linear_attention(q, k, v, *, causal, feature_map, normalize, method, chunk_size, eps)``
* ``favor_features(x, projection, *, is_query)``, ``random_projection(n_features, dim, *, generator, orthogonal)``
* ``GAU`` and ``mixed_chunk_attention`` (FLASH)
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .. import _backend
from .._checks import choice, flag, float_tensor, real_number, whole_number
from .._checks import generator as check_generator
from . import reference
from .chunk import causal_chunk_numerator, linear_attention_chunk
from .gau import GAU, mixed_chunk_weights, squared_relu_attention
from .gau import mixed_chunk_attention as _mixed_chunk_attention
from .reference import (
    FEATURE_MAPS,
    attention_entropy,
    attention_weights,
    linear_attention_weights,
    positive_mse,
    rms_norm,
    trig_features,
    trig_mse,
)

__all__ = [
    "FEATURE_MAPS",
    "GAU",
    "LINEAR_ATTENTION_METHODS",
    "attention_entropy",
    "attention_weights",
    "favor_attention",
    "favor_features",
    "linear_attention",
    "linear_attention_weights",
    "mixed_chunk_attention",
    "mixed_chunk_weights",
    "positive_mse",
    "random_projection",
    "rms_norm",
    "softmax_attention",
    "squared_relu_attention",
    "trig_features",
    "trig_mse",
]

LINEAR_ATTENTION_METHODS = ("auto", "quadratic", "recurrent", "chunk")  # how linear_attention computes, never what
TRITON_CHUNK_SIZES = (16, 32, 64, 128)  # tl.dot needs >= 16; the chunk's T x T tile must fit on chip
MAX_TRITON_HEAD_DIM = 256  # one program holds a whole Dk-wide tile; wider heads use torch


def _check_qkv(fn: str, q, k, v) -> None:
    """q, k: (B, H, T, Dk); v: (B, H, T, Dv); same dtype and device."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        float_tensor(fn, name, x, ndim=4)
    if q.shape != k.shape:
        raise ValueError(f"{fn}: q and k must have the same shape (B, H, T, Dk), got {tuple(q.shape)} and {tuple(k.shape)}")
    if v.shape[:3] != q.shape[:3]:
        raise ValueError(
            f"{fn}: v must be (B, H, T, Dv) with the (B, H, T) of q = {tuple(q.shape[:3])}, got {tuple(v.shape)}"
        )
    if q.shape[-1] == 0 or v.shape[-1] == 0:
        raise ValueError(f"{fn}: head dimensions must be non-empty, got Dk={q.shape[-1]}, Dv={v.shape[-1]}")
    if not (q.dtype == k.dtype == v.dtype):
        raise TypeError(f"{fn}: q, k, v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"{fn}: q, k, v must be on one device, got {q.device}, {k.device}, {v.device}")


def softmax_attention(q, k, v, *, causal: bool = False, scale: float | None = None) -> torch.Tensor:
    """softmax(scale q k^T) v over (B, H, T, D) tensors; ``scale`` defaults to 1 / sqrt(Dk)."""
    _check_qkv("softmax_attention", q, k, v)
    flag("softmax_attention", "causal", causal)
    if scale is not None:
        scale = real_number("softmax_attention", "scale", scale)
    return reference.softmax_attention(q, k, v, causal=causal, scale=scale)


def _feature_map(name_or_fn) -> Callable[[torch.Tensor], torch.Tensor]:
    if callable(name_or_fn):
        return name_or_fn
    if isinstance(name_or_fn, str) and name_or_fn in FEATURE_MAPS:
        return FEATURE_MAPS[name_or_fn]
    raise ValueError(
        f"linear_attention: feature_map must be one of {sorted(FEATURE_MAPS)} or a callable, got {name_or_fn!r}"
    )


def _chunk_numerator(fq: torch.Tensor, chunk_size: int):
    """The Triton kernel where the backend allows it and the chunk fits its tiles, else torch."""
    fits = (
        chunk_size in TRITON_CHUNK_SIZES
        and fq.shape[-1] <= MAX_TRITON_HEAD_DIM
        and _backend.triton_dtype_ok(fq.dtype, fq.device)
    )
    if fits and _backend.use_triton(fq):
        from .triton_chunk import causal_chunk_numerator_triton

        return causal_chunk_numerator_triton
    return causal_chunk_numerator


def linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    *,
    causal: bool = False,
    feature_map: str | Callable = "elu+1",
    normalize: bool = True,
    method: str = "auto",
    chunk_size: int = 64,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Attention with sim(q, k) = phi(q) . phi(k) in place of exp(q . k / sqrt(d)).

    ``o_t = sum_s sim(q_t, k_s) v_s / sum_s sim(q_t, k_s)`` (sums over s <= t
    when ``causal``; without ``normalize`` no division). ``method`` picks how
    it is computed, never what: ``"quadratic"`` materialises the T x T matrix,
    ``"recurrent"`` runs the RNN over time, ``"chunk"`` the chunkwise-parallel
    form (the Triton kernel on a GPU). ``"auto"`` is ``"chunk"``. Non-causal
    attention needs no recurrence: there ``"recurrent"`` and ``"chunk"`` both
    compute ``phi(Q) (phi(K)^T V)``.
    """
    fn = "linear_attention"
    _check_qkv(fn, q, k, v)
    flag(fn, "causal", causal)
    flag(fn, "normalize", normalize)
    phi = _feature_map(feature_map)
    choice(fn, "method", method, LINEAR_ATTENTION_METHODS)
    whole_number(fn, "chunk_size", chunk_size)
    eps = real_number(fn, "eps", eps, low=0.0)
    fq, fk = phi(q), phi(k)
    if not isinstance(fq, torch.Tensor) or fq.shape[:-1] != q.shape[:-1] or fk.shape != fq.shape:
        raise ValueError(
            f"{fn}: feature_map must map (B, H, T, Dk) to (B, H, T, M) tensors, got "
            f"{getattr(fq, 'shape', type(fq).__name__)} for q of shape {tuple(q.shape)}"
        )
    if method == "quadratic":
        return reference.linear_attention_quadratic(fq, fk, v, causal=causal, normalize=normalize, eps=eps)
    if method == "recurrent" or not causal:
        return reference.linear_attention_recurrent(fq, fk, v, causal=causal, normalize=normalize, eps=eps)
    return linear_attention_chunk(
        fq, fk, v, chunk_size=chunk_size, normalize=normalize, eps=eps, numerator=_chunk_numerator(fq, chunk_size)
    )


def random_projection(n_features: int, dim: int, *, generator: torch.Generator, orthogonal: bool = True,
                      dtype=torch.float32) -> torch.Tensor:
    """``(n_features, dim)`` random directions w ~ N(0, I) for FAVOR+, in orthogonal blocks by default.

    Every draw comes from ``generator``.
    """
    for name, value in (("n_features", n_features), ("dim", dim)):
        whole_number("random_projection", name, value)
    flag("random_projection", "orthogonal", orthogonal)
    check_generator("random_projection", "generator", generator)
    return reference.random_projection(n_features, dim, orthogonal=orthogonal, generator=generator, dtype=dtype)


def favor_features(x: torch.Tensor, projection: torch.Tensor, *, is_query: bool, stabilize: bool = True):
    """FAVOR+ positive random features: E[phi(q) . phi(k)] = exp(q . k) (before stabilisation).

    ``x`` is ``(..., D)``, ``projection`` is ``(m, D)`` from ``random_projection``
    (or a batch of them, ``(..., m, D)``); returns ``(..., m)``. Scale queries and keys by ``D ** -0.25`` first to
    estimate softmax attention's ``exp(q . k / sqrt(D))``.
    """
    fn = "favor_features"
    float_tensor(fn, "x", x, min_ndim=1)
    float_tensor(fn, "projection", projection, min_ndim=2)
    if projection.shape[-1] != x.shape[-1]:
        raise ValueError(
            f"{fn}: projection has {projection.shape[-1]} columns but x has D = {x.shape[-1]}; expected (m, {x.shape[-1]})"
        )
    flag(fn, "is_query", is_query)
    flag(fn, "stabilize", stabilize)
    return reference.favor_features(x, projection, is_query=is_query, stabilize=stabilize)


def favor_attention(q, k, v, projection, *, causal: bool = False, method: str = "auto", chunk_size: int = 64,
                    eps: float = 1e-6) -> torch.Tensor:
    """Performer attention: softmax attention estimated with FAVOR+ features of q, k scaled by Dk^(-1/4)."""
    _check_qkv("favor_attention", q, k, v)
    scale = q.shape[-1] ** -0.25
    fq = favor_features(q * scale, projection, is_query=True)
    fk = favor_features(k * scale, projection, is_query=False)
    return linear_attention(fq, fk, v, causal=causal, feature_map="identity", method=method,
                            chunk_size=chunk_size, eps=eps)


def mixed_chunk_attention(q, k, q_lin, k_lin, v, *, chunk_size: int, causal: bool = False) -> torch.Tensor:
    """FLASH mixed chunk attention on (B, T, s) queries/keys and (B, T, e) values (see ``gau.py``)."""
    fn = "mixed_chunk_attention"
    for name, x in (("q", q), ("k", k), ("q_lin", q_lin), ("k_lin", k_lin), ("v", v)):
        float_tensor(fn, name, x, ndim=3)
    for name, x in (("k", k), ("q_lin", q_lin), ("k_lin", k_lin)):
        if x.shape != q.shape:
            raise ValueError(f"{fn}: {name} must have the shape of q {tuple(q.shape)}, got {tuple(x.shape)}")
    if v.shape[:2] != q.shape[:2]:
        raise ValueError(f"{fn}: v must be (B, T, e) with the (B, T) of q = {tuple(q.shape[:2])}, got {tuple(v.shape)}")
    whole_number(fn, "chunk_size", chunk_size)
    flag(fn, "causal", causal)
    return _mixed_chunk_attention(q, k, q_lin, k_lin, v, chunk_size=chunk_size, causal=causal)
