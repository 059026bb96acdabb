"""Rotary position embedding and its relatives, written to be read.

Everything here is plain torch in float64 where it matters (frequencies,
angles); the Triton kernel in ``triton_rope.py`` is held against
``apply_rope``.
"""

from __future__ import annotations

import math

import torch


def default_inv_freq(head_dim: int, base: float) -> torch.Tensor:
    """theta_j = base^(-2j/d) for j = 0 .. d/2 - 1 (RoFormer's frequencies), float64."""
    exponents = torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim
    return base**-exponents


def yarn_attention_factor(factor: float) -> float:
    """YaRN's sqrt(1/t) = 0.1 ln(s) + 1 for s > 1, and 1 otherwise."""
    return 0.1 * math.log(factor) + 1.0 if factor > 1 else 1.0


def yarn_correction_dim(rotations: float, head_dim: int, base: float, original_max_position: int) -> float:
    """The (fractional) pair index whose wavelength fits ``rotations`` times into the training length.

    Solves original_max_position / (2 pi base^(2j/d)) = rotations for j.
    """
    return head_dim * math.log(original_max_position / (rotations * 2 * math.pi)) / (2 * math.log(base))


def yarn_ramp(head_dim: int, base: float, original_max_position: int, beta_fast: float, beta_slow: float):
    """Per pair j, the weight of *interpolation* in YaRN (0: keep theta_j, 1: theta_j / s).

    Pairs that turn more than ``beta_fast`` times over the training length keep
    their frequency; pairs that turn fewer than ``beta_slow`` times are
    interpolated; in between a linear ramp (the bounds floored/ceiled, as in the
    Hugging Face implementation).
    """
    low = math.floor(yarn_correction_dim(beta_fast, head_dim, base, original_max_position))
    high = math.ceil(yarn_correction_dim(beta_slow, head_dim, base, original_max_position))
    low, high = max(low, 0), min(high, head_dim - 1)
    if low == high:
        high += 0.001  # avoid dividing by zero, as the reference implementation does
    j = torch.arange(head_dim // 2, dtype=torch.float64)
    return ((j - low) / (high - low)).clamp(0, 1)


def scaled_inv_freq(
    head_dim: int,
    base: float,
    scaling: str | None,
    factor: float,
    original_max_position: int | None,
    seq_len: int | None,
    beta_fast: float,
    beta_slow: float,
) -> tuple[torch.Tensor, float]:
    """The frequencies of each scaling method (inputs already checked); see ``labs.rope.rope_frequencies``."""
    d = head_dim
    if scaling is None:
        return default_inv_freq(d, base), 1.0
    if scaling == "linear":  # position interpolation: m -> m / s, i.e. theta -> theta / s
        return default_inv_freq(d, base) / factor, 1.0
    if scaling == "ntk":  # NTK-aware: stretch the base so the lowest frequency is interpolated by s
        return default_inv_freq(d, base * factor ** (d / (d - 2))), 1.0
    if scaling == "dynamic":  # NTK with a factor that grows with the current length
        length = max(seq_len or original_max_position, original_max_position)
        stretch = factor * length / original_max_position - (factor - 1)
        return default_inv_freq(d, base * stretch ** (d / (d - 2))), 1.0
    if scaling == "yarn":
        interpolate = yarn_ramp(d, base, original_max_position, beta_fast, beta_slow)
        theta = default_inv_freq(d, base)
        return theta / factor * interpolate + theta * (1 - interpolate), yarn_attention_factor(factor)
    raise AssertionError(f"unchecked scaling {scaling!r}")


def rotate_half(x: torch.Tensor, interleaved: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Split the last dimension into the two coordinates of each rotated pair."""
    if interleaved:  # RoFormer: pairs (x0, x1), (x2, x3), ...
        return x[..., 0::2], x[..., 1::2]
    half = x.shape[-1] // 2  # GPT-NeoX / Llama: pairs (x_j, x_{j + d/2})
    return x[..., :half], x[..., half:]


def merge_pairs(first: torch.Tensor, second: torch.Tensor, interleaved: bool) -> torch.Tensor:
    """Inverse of ``rotate_half``: put the pair coordinates back in their places."""
    if interleaved:
        return torch.stack((first, second), dim=-1).flatten(-2)
    return torch.cat((first, second), dim=-1)


def apply_rope(x: torch.Tensor, positions: torch.Tensor, inv_freq: torch.Tensor, interleaved: bool = False):
    """Rotate each pair (a, b) of ``x[..., m, :]`` by the angle m * theta_j, element-wise.

    (a, b) -> (a cos - b sin, a sin + b cos): the 2-D rotation R(m theta_j),
    with no matrix product. Angles are formed in float64.
    """
    return rotate(x, *rotation_tables(positions, inv_freq, x.dtype), interleaved)


def rotation_tables(positions: torch.Tensor, inv_freq: torch.Tensor, dtype: torch.dtype):
    """cos and sin of the angles m * theta_j, shape (T, D/2): formed in float64, returned in ``dtype``."""
    angles = positions.to(torch.float64)[:, None] * inv_freq.to(torch.float64)[None, :]
    return angles.cos().to(dtype), angles.sin().to(dtype)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, interleaved: bool = False):
    """Rotate each pair (a, b) of ``x`` by the angle whose cos and sin are given (broadcast against the pairs)."""
    a, b = rotate_half(x, interleaved)
    return merge_pairs(a * cos - b * sin, a * sin + b * cos, interleaved)


def rope_matrix(position: float, inv_freq: torch.Tensor, interleaved: bool = False) -> torch.Tensor:
    """The d x d rotation R_m as an explicit (block-diagonal when interleaved) matrix, float64."""
    half = inv_freq.shape[0]
    angles = position * inv_freq.to(torch.float64)
    matrix = torch.zeros(2 * half, 2 * half, dtype=torch.float64)
    for j in range(half):
        i1, i2 = (2 * j, 2 * j + 1) if interleaved else (j, j + half)
        c, s = math.cos(angles[j]), math.sin(angles[j])
        matrix[i1, i1], matrix[i1, i2], matrix[i2, i1], matrix[i2, i2] = c, -s, s, c
    return matrix


def sinusoidal_encoding(length: int, dim: int, base: float = 10000.0) -> torch.Tensor:
    """The Transformer's absolute encoding: PE[m, 2j] = sin(m w_j), PE[m, 2j+1] = cos(m w_j), w_j = base^(-2j/d)."""
    angles = torch.arange(length, dtype=torch.float64)[:, None] * default_inv_freq(dim, base)[None, :]
    return torch.stack((angles.sin(), angles.cos()), dim=-1).flatten(-2)[:, :dim]


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """ALiBi's head slopes: the geometric sequence 2^(-8/n), 2^(-16/n), ... for n a power of two.

    For other n, the slopes of the next lower power of two, followed by every
    other slope of the next higher one (as in the ALiBi reference code).
    """
    def power_of_two(n: int) -> list[float]:
        start = 2 ** (-8 / n)
        return [start ** (h + 1) for h in range(n)]

    closest = 2 ** math.floor(math.log2(n_heads))
    slopes = power_of_two(closest)
    if closest != n_heads:
        slopes += power_of_two(2 * closest)[0::2][: n_heads - closest]
    return torch.tensor(slopes, dtype=torch.float64)


def alibi_bias(slopes: torch.Tensor, length: int) -> torch.Tensor:
    """(H, T, T) additive logit bias -slope_h * (i - j) for keys j <= i (the causal part)."""
    i = torch.arange(length)
    distance = (i[:, None] - i[None, :]).clamp_min(0).to(slopes.dtype)
    return -slopes[:, None, None] * distance


def decay_bound(inv_freq: torch.Tensor, distances: torch.Tensor) -> torch.Tensor:
    """RoFormer's relative upper bound (1/(d/2)) sum_{j=1}^{d/2} |S_j|, S_j = sum_{k<j} e^{i r theta_k}, at each r.

    By Abel summation the RoPE logit at relative distance r is bounded by
    max_j |h_{j+1} - h_j| times sum_j |S_j|; with RoFormer's theta_j = base^(-2j/d)
    the bound shrinks (on average) as r grows. Any frequencies, scaled or not.
    """
    r = distances.to(torch.float64)[:, None]
    angles = r * inv_freq.to(torch.float64)[None, :]
    partial_sums = torch.cumsum(torch.polar(torch.ones_like(angles), angles), dim=-1)
    return partial_sums.abs().mean(dim=-1)
