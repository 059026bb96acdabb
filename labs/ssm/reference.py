"""A linear state space model three ways: recurrence, convolution kernel, and the scan under both.

``x_k = Ad x_{k-1} + Bd u_k``, ``y_k = C x_k``. Unrolled from ``x_{-1} = 0``,
``y_k = sum_j C Ad^j Bd u_{k-j}``: a causal convolution with the kernel
``K = (C Bd, C Ad Bd, C Ad^2 Bd, ...)``. A 1-D ``A`` means a diagonal matrix
(S4D); it may be complex. Plain torch, written to be read.
"""

from __future__ import annotations

import torch

from .memory import discretize


def _discrete(A, B, dt, method):
    if is_diagonal(A, B):  # a per-channel step dt of shape (...,) broadcasts over the state axis
        dt = torch.as_tensor(dt, dtype=A.real.dtype, device=A.device)
        dt = dt[..., None] if dt.ndim else dt
    return discretize(A, B, dt, method)


def is_diagonal(A: torch.Tensor, B: torch.Tensor) -> bool:
    """A diagonal SSM stores ``A`` as a vector (or a batch of vectors) shaped like ``B``."""
    return A.shape == B.shape


def ssm_kernel(A, B, C, dt, L: int, method: str = "bilinear") -> torch.Tensor:
    """``K_k = C Ad^k Bd`` for ``k < L``: the impulse response of the discrete system."""
    Ad, Bd = _discrete(A, B, dt, method)
    if is_diagonal(A, B):  # a Vandermonde product: K_k = sum_n C_n Bd_n Ad_n^k
        k = torch.arange(L, device=A.device, dtype=A.real.dtype)
        powers = torch.exp(torch.log(Ad.to(torch.result_type(Ad, 1j)))[..., None] * k)  # Ad^k, as exp(k log Ad)
        powers = powers if Ad.is_complex() else powers.real
        return ((C * Bd)[..., None] * powers).sum(-2)
    out, x = [], Bd
    for _ in range(L):
        out.append(C @ x)
        x = Ad @ x
    return torch.stack(out, dim=-1)


def ssm_recurrence_reference(A, B, C, dt, u: torch.Tensor, method: str = "bilinear") -> torch.Tensor:
    """Run the recurrence over ``u[..., k]`` and read out ``y_k = C x_k``: shape of ``u``.

    One step at a time: the plain form that ``labs.ssm.ssm_recurrence`` uses for dense and complex
    systems, and that its fast path for real diagonal ones (``linear_scan``) is tested against.
    """
    Ad, Bd = _discrete(A, B, dt, method)
    x = u.new_zeros(*u.shape[:-1], A.shape[-1]).to(torch.result_type(Ad, u))
    ys = []
    for k in range(u.shape[-1]):
        x = (Ad * x if is_diagonal(A, B) else x @ Ad.T) + Bd * u[..., k, None]
        ys.append((x * C).sum(-1))
    return torch.stack(ys, dim=-1)


def fft_conv(u: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Causal convolution ``y_k = sum_{j<=k} K_j u_{k-j}`` via the FFT.

    Both are zero-padded to at least ``L + M - 1`` points: without the padding
    the FFT computes a circular convolution and the end of the sequence wraps
    around into its start.
    """
    L, M = u.shape[-1], K.shape[-1]
    n = 1 << (L + M - 2).bit_length()  # a power of two >= L + M - 1
    y = torch.fft.irfft(torch.fft.rfft(u, n=n) * torch.fft.rfft(K, n=n), n=n)
    return y[..., :L]


def linear_scan_reference(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor | None = None) -> torch.Tensor:
    """``h_t = a_t h_{t-1} + b_t`` along the last axis, one step at a time (``h_{-1} = h0`` or 0)."""
    h = torch.zeros_like(b[..., 0]) if h0 is None else h0.to(b.dtype)
    out = []
    for t in range(b.shape[-1]):
        h = a[..., t] * h + b[..., t]
        out.append(h)
    return torch.stack(out, dim=-1)


def linear_scan_cumsum(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The same scan with no loop, through cumulative sums in log space (needs ``a > 0``).

    ``h_t = sum_{s<=t} (prod_{s<r<=t} a_r) b_s = P_t sum_{s<=t} b_s / P_s`` with
    ``P_t = prod_{r<=t} a_r``. Dividing by ``P_s`` underflows at once, so the
    sum is taken as a ``logcumsumexp`` of ``log|b_s| - log P_s`` for the
    positive and the negative parts of ``b`` separately.

    Accuracy falls with ``L``: ``log P_t`` grows to ``L |E log a|`` and keeps
    only the dtype's relative precision, so in float32 the error grows in
    proportion to ``L`` (about 1e-2 at ``L = 65536`` on values of order one;
    ``benchmarks/scan.py`` measures it). Use float64, or the scan, for long rows.
    """
    log_p = torch.cumsum(torch.log(a), dim=-1)
    total = torch.zeros_like(b)
    for part, sign in ((b.clamp(min=0), 1.0), ((-b).clamp(min=0), -1.0)):
        total = total + sign * torch.exp(log_p + torch.logcumsumexp(torch.log(part) - log_p, dim=-1))
    return total
