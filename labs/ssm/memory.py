"""HiPPO: the matrices, their discretisations, and online projection/reconstruction.

Convention: ``A`` carries the minus sign, so the dynamics read ``c' = A c + B f``
(LegT, LagT) and ``c' = (A c + B f) / t`` (LegS). Coefficients are taken in an
orthonormal basis, so a history is rebuilt as ``sum_n c_n g_n(s)``.
Everything here is plain torch, written to be read; float64 by default. The
inputs are not checked here: ``labs.ssm``'s public functions check them first.
"""

from __future__ import annotations

import math

import torch

MEASURES = ("legs", "legt", "lagt")
DISCRETIZATIONS = ("euler", "backward_euler", "bilinear", "zoh")


def hippo_matrices(measure: str, N: int, *, theta: float = 1.0, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """The closed forms ``(A, B)`` derived in the chapter (``theta``: the LegT window length)."""
    n = torch.arange(N, dtype=dtype)
    r = torch.sqrt(2 * n + 1)
    row, col = n[:, None], n[None, :]
    if measure == "legs":
        A = -torch.where(row > col, r[:, None] * r[None, :], torch.where(row == col, row + 1, 0.0))
        B = r.clone()
    elif measure == "legt":
        sign = torch.where(row > col, 1.0, (-1.0) ** (row - col))
        A = -(r[:, None] * sign * r[None, :]) / theta
        B = r / theta
    else:  # lagt
        A = -torch.tril(torch.ones(N, N, dtype=dtype))
        B = torch.ones(N, dtype=dtype)
    return A, B


def discretize(A: torch.Tensor, B: torch.Tensor, dt: float, method: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Ad, Bd)`` with ``c_k = Ad c_{k-1} + Bd f_k``.

    An ``A`` shaped like ``B`` is a diagonal (S4D), discretised element-wise.
    """
    if A.shape == B.shape:
        if method == "euler":
            return 1 + dt * A, dt * B
        if method == "backward_euler":
            return 1 / (1 - dt * A), dt * B / (1 - dt * A)
        if method == "bilinear":
            return (1 + dt / 2 * A) / (1 - dt / 2 * A), dt * B / (1 - dt / 2 * A)
        Ad = torch.exp(dt * A)  # zoh: Bd = A^{-1} (e^{dt A} - 1) B
        return Ad, (Ad - 1) / A * B
    eye = torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    if method == "euler":
        return eye + dt * A, dt * B
    if method == "backward_euler":
        return torch.linalg.inv(eye - dt * A), torch.linalg.solve(eye - dt * A, dt * B)
    if method == "bilinear":
        return torch.linalg.solve(eye - dt / 2 * A, eye + dt / 2 * A), torch.linalg.solve(eye - dt / 2 * A, dt * B)
    # zoh, without inverting A: exp(dt [[A, B], [0, 0]]) = [[e^{dt A}, int_0^dt e^{sA} ds B], [0, 1]]
    N = A.shape[-1]
    block = torch.zeros(N + 1, N + 1, dtype=A.dtype, device=A.device)
    block[:N, :N], block[:N, N] = A, B
    E = torch.linalg.matrix_exp(dt * block)
    return E[:N, :N], E[:N, N]


LEGS_STEPS = ("reciprocal", "log")
LEGS_STARTS = ("empty", "constant")


def legs_steps(A: torch.Tensor, B: torch.Tensor, L: int, method: str, *, step: str = "reciprocal"
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """LegS's time-varying transitions: step k (1-based) discretises ``c' = A c + B f`` with step ``h_k``.

    ``t c' = A c + B f`` is time-invariant in ``tau = log t``; sampled at
    ``t_k = k dt``, the step in ``tau`` is ``h_k = log(k / (k - 1))`` (``step="log"``),
    which ``h_k = 1/k`` (``step="reciprocal"``) approximates to first order.
    Neither depends on ``dt``: LegS has no timescale to tune. The first step
    (``k = 1``, from ``t = 0``) is infinitely long in ``tau``; both take ``h_1 = 1``.
    Returns stacked ``(Ad_k, Bd_k)`` of shapes ``(L, N, N)`` and ``(L, N)``.
    """
    k = torch.arange(1, L + 1, dtype=torch.float64)
    h = 1 / k if step == "reciprocal" else torch.log(k / (k - 1).clamp(min=1 / math.e))  # h_1 = log(e) = 1
    steps = [discretize(A, B, hk.item(), method) for hk in h]
    return torch.stack([s[0] for s in steps]), torch.stack([s[1] for s in steps])


def project(f: torch.Tensor, measure: str, N: int, dt: float, *, theta: float = 1.0, method: str = "bilinear",
            legs_step: str = "reciprocal", legs_start: str = "empty") -> torch.Tensor:
    """Online HiPPO coefficients of samples ``f[..., k]``, one per step ``[k dt, (k + 1) dt]``: shape ``(..., L, N)``.

    Row ``k`` summarises the history up to ``t = (k + 1) dt`` under ``measure``.
    The recurrence treats ``f[..., k]`` as the input held over step ``k``:
    feeding ``f((k + 1) dt)`` (the step's end) lags by half a step and is first
    order in ``dt``; ``f((k + 1/2) dt)`` (its middle) is second order.
    LegS only: ``legs_step`` as in ``legs_steps``; ``legs_start="constant"``
    starts from the memory of a signal constant at ``f[..., 0]`` over the first
    step, instead of running the first step from an empty memory.
    """
    A, B = hippo_matrices(measure, N, theta=theta, dtype=f.dtype)
    L = f.shape[-1]
    if measure == "legs":
        Ads, Bds = legs_steps(A, B, L, method, step=legs_step)
    else:
        Ad, Bd = discretize(A, B, dt, method)
        Ads, Bds = Ad.expand(L, N, N), Bd.expand(L, N)
    c = f.new_zeros(*f.shape[:-1], N)
    first = 0
    if measure == "legs" and legs_start == "constant":  # a constant's LegS memory is (1, 0, ..., 0): A e_0 + B = 0
        c[..., 0], first = f[..., 0], 1
    out = [c] * first
    for k in range(first, L):
        c = c @ Ads[k].T + f[..., k, None] * Bds[k]
        out.append(c)
    return torch.stack(out, dim=-2)


def legendre(n_max: int, x: torch.Tensor) -> torch.Tensor:
    """``P_0(x) .. P_{n_max-1}(x)`` stacked on a new last axis (Bonnet's recurrence)."""
    values = [torch.ones_like(x), x]
    for n in range(1, n_max - 1):
        values.append(((2 * n + 1) * x * values[n] - n * values[n - 1]) / (n + 1))
    return torch.stack(values[:n_max], dim=-1)


def laguerre(n_max: int, x: torch.Tensor) -> torch.Tensor:
    """``L_0(x) .. L_{n_max-1}(x)`` stacked on a new last axis (three-term recurrence)."""
    values = [torch.ones_like(x), 1 - x]
    for n in range(1, n_max - 1):
        values.append(((2 * n + 1 - x) * values[n] - n * values[n - 1]) / (n + 1))
    return torch.stack(values[:n_max], dim=-1)


def basis(measure: str, N: int, s: torch.Tensor, t: float, *, theta: float = 1.0) -> torch.Tensor:
    """The orthonormal basis ``g_n(s)`` at time ``t``, shape ``(len(s), N)``; zero outside the measure's support."""
    r = torch.sqrt(2 * torch.arange(N, dtype=s.dtype) + 1)
    if measure == "legs":
        inside = (s >= 0) & (s <= t)
        g = r * legendre(N, 2 * s / t - 1)
    elif measure == "legt":
        inside = (s >= t - theta) & (s <= t)
        g = r * legendre(N, 2 * (s - t) / theta + 1)
    else:
        inside = s <= t
        g = laguerre(N, t - s)
    return torch.where(inside[:, None], g, 0.0)


def reconstruct(c: torch.Tensor, measure: str, s: torch.Tensor, t: float, *, theta: float = 1.0) -> torch.Tensor:
    """The history rebuilt from coefficients ``c`` (``(..., N)``) at times ``s``: ``sum_n c_n g_n(s)``."""
    return c @ basis(measure, c.shape[-1], s.to(c.dtype), t, theta=theta).T


def exact_coefficients(f, measure: str, N: int, t: float, *, theta: float = 1.0, nodes: int = 256) -> torch.Tensor:
    """The continuous projection ``c_n(t) = int f(s) g_n(s) dmu(s)`` by Gauss-Legendre quadrature, float64 ``(N,)``.

    ``f`` maps a float64 tensor of times to values. LegS and LegT only (their
    measures are uniform on an interval). ``nodes`` points integrate a
    polynomial of degree ``2 nodes - 1`` exactly: for a smooth ``f`` the result
    is the projection to float64 precision.
    """
    if measure not in ("legs", "legt"):
        raise ValueError(f"exact_coefficients: measure must be 'legs' or 'legt', got {measure!r}")
    x, w = (torch.from_numpy(v) for v in __import__("numpy").polynomial.legendre.leggauss(nodes))
    start = t - theta if measure == "legt" else 0.0
    s = start + (x + 1) / 2 * (t - start)  # nodes mapped to [start, t]
    weights = w / 2  # the uniform measure's density 1/(t - start) times ds = (t - start)/2 dx
    return (weights * f(s)) @ basis(measure, N, s, t, theta=theta)


def legs_lti_basis(N: int, t: torch.Tensor) -> torch.Tensor:
    """Closed form of ``e^{tA} B`` for LegS's ``(A, B)`` used as a time-invariant SSM (as S4 does).

    ``K_n(t) = sqrt(2n+1) e^{-t} P_n(2 e^{-t} - 1)``: LegS in the warped time
    ``tau = log t`` (Gu et al., 2023, "How to Train Your HiPPO"). Shape ``(len(t), N)``.
    """
    r = torch.sqrt(2 * torch.arange(N, dtype=t.dtype) + 1)
    decay = torch.exp(-t)
    return r * decay[:, None] * legendre(N, 2 * decay - 1)
