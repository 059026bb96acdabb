"""Chapter "Rotary position embedding": frequencies, rotations, and their relatives.

Public API:

* ``rope_frequencies`` - theta_j per pair, with linear / NTK / dynamic NTK / YaRN scaling
* ``apply_rope`` and ``apply_rope_qk`` - rotate by position (Triton on CUDA, torch elsewhere)
* ``sinusoidal_encoding``, ``alibi_slopes`` - the comparisons
* ``decay_bound`` - RoFormer's long-range bound, for any frequencies
"""

from __future__ import annotations

import torch

from .. import _backend
from .._checks import choice, float_tensor, positive, real_number, whole_number
from . import reference

__all__ = [
    "SCALINGS",
    "alibi_slopes",
    "apply_rope",
    "apply_rope_qk",
    "decay_bound",
    "rope_frequencies",
    "sinusoidal_encoding",
]

SCALINGS = (None, "linear", "ntk", "dynamic", "yarn")


def _even_size(fn: str, name: str, value) -> int:
    """A positive even int: RoPE rotates pairs of coordinates."""
    value = whole_number(fn, name, value)
    if value % 2:
        raise ValueError(f"{fn}: {name} must be even (RoPE rotates pairs of coordinates), got {value}")
    return value


def _base(fn: str, base) -> float:
    """A frequency base > 1: theta_j = base^(-2j/d) must fall from 1 as j grows."""
    return real_number(fn, "base", base, low=1.0, low_open=True)


def rope_frequencies(
    head_dim: int,
    *,
    base: float = 10000.0,
    scaling: str | None = None,
    factor: float = 1.0,
    original_max_position: int | None = None,
    seq_len: int | None = None,
    beta_fast: float = 32.0,
    beta_slow: float = 1.0,
) -> tuple[torch.Tensor, float]:
    """The rotation frequencies theta_j (float64, length ``head_dim // 2``) and the attention factor.

    ``scaling``:

    * ``None``: theta_j = base^(-2j/d) (RoFormer).
    * ``"linear"``: position interpolation, theta_j / factor.
    * ``"ntk"``: NTK-aware base, base * factor^(d / (d - 2)).
    * ``"dynamic"``: NTK whose base grows with ``seq_len`` beyond ``original_max_position``
      (the Hugging Face "dynamic" rule).
    * ``"yarn"``: per-pair blend of theta_j and theta_j / factor by a ramp between
      ``beta_fast`` and ``beta_slow`` rotations over ``original_max_position``, and the
      attention factor 0.1 ln(factor) + 1 (the Hugging Face "yarn" rule).

    The attention factor multiplies both q and k (so the logits by its square);
    it is 1 except for YaRN.
    """
    fn = "rope_frequencies"
    _even_size(fn, "head_dim", head_dim)
    base = _base(fn, base)
    choice(fn, "scaling", scaling, SCALINGS)
    factor = real_number(fn, "factor", factor, low=1.0)
    if scaling in ("ntk", "dynamic") and head_dim < 4:
        raise ValueError(f"{fn}: scaling={scaling!r} needs head_dim >= 4 (the exponent is d / (d - 2)), got {head_dim}")
    if scaling in ("dynamic", "yarn"):
        if original_max_position is None:
            raise ValueError(f"{fn}: scaling={scaling!r} needs original_max_position (the training length)")
        whole_number(fn, "original_max_position", original_max_position)
    if seq_len is not None:
        whole_number(fn, "seq_len", seq_len)
    beta_fast = positive(fn, "beta_fast", beta_fast)
    beta_slow = positive(fn, "beta_slow", beta_slow)
    if scaling == "yarn" and beta_fast <= beta_slow:
        raise ValueError(f"{fn}: beta_fast must exceed beta_slow, got beta_fast={beta_fast}, beta_slow={beta_slow}")
    return reference.scaled_inv_freq(
        head_dim, base, scaling, factor, original_max_position, seq_len, beta_fast, beta_slow
    )


def _check_rotation_inputs(fn: str, tensors: dict, positions, inv_freq) -> None:
    for name, x in tensors.items():
        float_tensor(fn, name, x, min_ndim=2)  # (..., T, D)
        if x.shape[-1] % 2:
            raise ValueError(f"{fn}: {name} must have an even head dim D (pairs are rotated), got D={x.shape[-1]}")
    first_name, first = next(iter(tensors.items()))
    for name, x in tensors.items():
        if x.shape[-2:] != first.shape[-2:] or x.device != first.device:
            raise ValueError(
                f"{fn}: {name} must share (T, D) and device with {first_name}, "
                f"got {tuple(x.shape)} on {x.device} vs {tuple(first.shape)} on {first.device}"
            )
    seq_len, dim = first.shape[-2], first.shape[-1]
    if not isinstance(positions, torch.Tensor) or positions.ndim != 1 or positions.shape[0] != seq_len:
        got = f"shape {tuple(positions.shape)}" if isinstance(positions, torch.Tensor) else type(positions).__name__
        raise ValueError(f"{fn}: positions must be a 1-D tensor of length T={seq_len}, got {got}")
    if positions.is_complex() or positions.dtype == torch.bool:
        raise TypeError(f"{fn}: positions must hold ints or floats, got dtype {positions.dtype}")
    if not isinstance(inv_freq, torch.Tensor) or inv_freq.ndim != 1 or inv_freq.shape[0] != dim // 2:
        got = f"shape {tuple(inv_freq.shape)}" if isinstance(inv_freq, torch.Tensor) else type(inv_freq).__name__
        raise ValueError(f"{fn}: inv_freq must be a 1-D tensor of length D/2={dim // 2}, got {got}")
    if positions.device != first.device or inv_freq.device != first.device:
        raise ValueError(
            f"{fn}: positions and inv_freq must be on {first.device}, got {positions.device} and {inv_freq.device}"
        )


def _triton_ok(x: torch.Tensor, positions: torch.Tensor, inv_freq: torch.Tensor) -> bool:
    no_param_grad = not (positions.requires_grad or inv_freq.requires_grad)
    return no_param_grad and _backend.triton_dtype_ok(x.dtype, x.device) and _backend.use_triton(x)


def apply_rope(x: torch.Tensor, positions: torch.Tensor, inv_freq: torch.Tensor, *, interleaved: bool = False):
    """Rotate ``x`` of shape (..., T, D): pair j at row m turns by positions[m] * inv_freq[j].

    ``interleaved=True`` pairs coordinates (2j, 2j+1) as in RoFormer; the default
    pairs (j, j + D/2) as in GPT-NeoX and Llama. Differentiable. Runs the fused
    Triton kernel where ``labs._backend`` allows it, the torch reference otherwise.
    """
    _check_rotation_inputs("apply_rope", {"x": x}, positions, inv_freq)
    if _triton_ok(x, positions, inv_freq):
        from .triton_rope import rope_qk_triton

        return rope_qk_triton(x, None, positions, inv_freq, bool(interleaved))[0]
    return reference.apply_rope(x, positions, inv_freq, bool(interleaved))


def apply_rope_qk(q, k, positions, inv_freq, *, interleaved: bool = False):
    """Rotate queries and keys together (one fused launch on CUDA); returns ``(q_rot, k_rot)``.

    ``q`` and ``k`` share T and D; their leading dims may differ (e.g. fewer key heads).
    """
    _check_rotation_inputs("apply_rope_qk", {"q": q, "k": k}, positions, inv_freq)
    if q.dtype != k.dtype:
        raise TypeError(f"apply_rope_qk: q and k must share a dtype, got {q.dtype} and {k.dtype}")
    if _triton_ok(q, positions, inv_freq):
        from .triton_rope import rope_qk_triton

        return rope_qk_triton(q, k, positions, inv_freq, bool(interleaved))
    return (
        reference.apply_rope(q, positions, inv_freq, bool(interleaved)),
        reference.apply_rope(k, positions, inv_freq, bool(interleaved)),
    )


def sinusoidal_encoding(length: int, dim: int, base: float = 10000.0) -> torch.Tensor:
    """The (length, dim) sinusoidal absolute encoding of the original Transformer, float64."""
    fn = "sinusoidal_encoding"
    length, dim, base = whole_number(fn, "length", length), _even_size(fn, "dim", dim), _base(fn, base)
    return reference.sinusoidal_encoding(length, dim, base)


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """ALiBi's per-head slopes (float64, length ``n_heads``)."""
    return reference.alibi_slopes(whole_number("alibi_slopes", "n_heads", n_heads))


def decay_bound(inv_freq: torch.Tensor, distances) -> torch.Tensor:
    """RoFormer's relative upper bound (1/(d/2)) sum_j |S_j| at each relative distance, float64.

    ``inv_freq`` holds the d/2 frequencies theta_j (from ``rope_frequencies``, scaled or not).
    """
    float_tensor("decay_bound", "inv_freq", inv_freq, ndim=1)
    if inv_freq.shape[0] < 1:
        raise ValueError("decay_bound: inv_freq must hold at least one frequency, got shape (0,)")
    distances = torch.as_tensor(distances)
    if distances.ndim != 1 or distances.is_complex() or distances.dtype == torch.bool:
        raise ValueError(
            f"decay_bound: distances must be a 1-D real sequence, got shape {tuple(distances.shape)} {distances.dtype}"
        )
    return reference.decay_bound(inv_freq, distances)
