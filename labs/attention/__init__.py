"""Chapter "Linear attention": softmax attention, its linear relatives, and a chunked GPU kernel.

Public API (inputs checked here, math in ``reference.py``, ``chunk.py``,
``gau.py``, the kernel in ``triton_chunk.py``):

* ``softmax_attention(q, k, v, *, causal, scale)``
* ``linear_attention(q, k, v, *, causal, feature_map, normalize, method, chunk_size, eps)``
* ``favor_features(x, projection, *, is_query)``, ``random_projection(n_features, dim, *, orthogonal, generator)``
* ``GAU`` and ``mixed_chunk_attention`` (FLASH)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from .. import _backend
from .._checks import whole_number
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
    "METHODS",
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

METHODS = ("auto", "quadratic", "recurrent", "chunk")
TRITON_CHUNK_SIZES = (16, 32, 64, 128)  # tl.dot needs >= 16; the chunk's T x T tile must fit on chip
MAX_TRITON_HEAD_DIM = 256  # one program holds a whole Dk-wide tile; wider heads use torch
_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _check_tensor(fn: str, name: str, x, ndim: int) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{fn}: {name} must be a floating tensor (fp16/bf16/fp32/fp64), got dtype {x.dtype}")
    if x.ndim != ndim:
        raise ValueError(f"{fn}: {name} must have {ndim} dimensions, got shape {tuple(x.shape)}")


def _check_qkv(fn: str, q, k, v) -> None:
    """q, k: (B, H, T, Dk); v: (B, H, T, Dv); same dtype and device."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        _check_tensor(fn, name, x, 4)
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


def _check_flag(fn: str, name: str, value) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{fn}: {name} must be True or False, got {value!r}")


def softmax_attention(q, k, v, *, causal: bool = False, scale: float | None = None) -> torch.Tensor:
    """softmax(scale q k^T) v over (B, H, T, D) tensors; ``scale`` defaults to 1 / sqrt(Dk)."""
    _check_qkv("softmax_attention", q, k, v)
    _check_flag("softmax_attention", "causal", causal)
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale)):
        raise ValueError(f"softmax_attention: scale must be None or a finite real number, got {scale!r}")
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
    _check_flag(fn, "causal", causal)
    _check_flag(fn, "normalize", normalize)
    phi = _feature_map(feature_map)
    if method not in METHODS:
        raise ValueError(f"{fn}: method must be one of {METHODS}, got {method!r}")
    whole_number(fn, "chunk_size", chunk_size)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not (eps >= 0 and math.isfinite(eps)):
        raise ValueError(f"{fn}: eps must be a finite number >= 0, got {eps!r}")
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


def random_projection(n_features: int, dim: int, *, orthogonal: bool = True, generator=None,
                      dtype=torch.float32) -> torch.Tensor:
    """``(n_features, dim)`` random directions w ~ N(0, I) for FAVOR+, in orthogonal blocks by default."""
    for name, value in (("n_features", n_features), ("dim", dim)):
        whole_number("random_projection", name, value)
    _check_flag("random_projection", "orthogonal", orthogonal)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"random_projection: generator must be a torch.Generator or None, got {type(generator).__name__}")
    return reference.random_projection(n_features, dim, orthogonal=orthogonal, generator=generator, dtype=dtype)


def favor_features(x: torch.Tensor, projection: torch.Tensor, *, is_query: bool, stabilize: bool = True):
    """FAVOR+ positive random features: E[phi(q) . phi(k)] = exp(q . k) (before stabilisation).

    ``x`` is ``(..., D)``, ``projection`` is ``(m, D)`` from ``random_projection``
    (or a batch of them, ``(..., m, D)``); returns ``(..., m)``. Scale queries and keys by ``D ** -0.25`` first to
    estimate softmax attention's ``exp(q . k / sqrt(D))``.
    """
    fn = "favor_features"
    if not isinstance(x, torch.Tensor) or x.dtype not in _FLOAT_DTYPES or x.ndim < 1:
        raise TypeError(f"{fn}: x must be a floating tensor of shape (..., D), got {type(x).__name__}")
    if not isinstance(projection, torch.Tensor) or projection.ndim < 2:
        raise TypeError(f"{fn}: projection must be a (m, D) tensor, got {getattr(projection, 'shape', projection)!r}")
    if projection.shape[-1] != x.shape[-1]:
        raise ValueError(
            f"{fn}: projection has {projection.shape[-1]} columns but x has D = {x.shape[-1]}; expected (m, {x.shape[-1]})"
        )
    _check_flag(fn, "is_query", is_query)
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
        _check_tensor(fn, name, x, 3)
    for name, x in (("k", k), ("q_lin", q_lin), ("k_lin", k_lin)):
        if x.shape != q.shape:
            raise ValueError(f"{fn}: {name} must have the shape of q {tuple(q.shape)}, got {tuple(x.shape)}")
    if v.shape[:2] != q.shape[:2]:
        raise ValueError(f"{fn}: v must be (B, T, e) with the (B, T) of q = {tuple(q.shape[:2])}, got {tuple(v.shape)}")
    whole_number(fn, "chunk_size", chunk_size)
    _check_flag(fn, "causal", causal)
    return _mixed_chunk_attention(q, k, q_lin, k_lin, v, chunk_size=chunk_size, causal=causal)
