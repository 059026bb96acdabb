"""Chapter "HiPPO - optimal polynomial memory, and the road to S4": the public API, with input checks.

``hippo`` gives the matrices, ``discretize`` turns them into a recurrence,
``hippo_project``/``hippo_reconstruct`` run the online memory and read it back,
``ssm_kernel``/``ssm_recurrence``/``fft_conv`` are the two views of an SSM, and
``linear_scan`` is the scan under the recurrence (Triton on CUDA).
"""

from __future__ import annotations

import math

import torch

from .. import _backend
from .._checks import whole_number
from . import memory as _memory
from . import reference as _ref
from .memory import MEASURES, METHODS, legs_lti_basis

__all__ = [
    "MEASURES",
    "METHODS",
    "discretize",
    "fft_conv",
    "hippo",
    "hippo_project",
    "hippo_reconstruct",
    "legs_lti_basis",
    "linear_scan",
    "ssm_kernel",
    "ssm_recurrence",
]

_REAL = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _measure(fn: str, measure) -> None:
    if measure not in MEASURES:
        raise ValueError(f"{fn}: measure must be one of {MEASURES}, got {measure!r}")


def _method(fn: str, method) -> None:
    if method not in METHODS:
        raise ValueError(f"{fn}: method must be one of {METHODS}, got {method!r}")


def _size(fn: str, name: str, value) -> None:
    whole_number(fn, name, value)


def _positive(fn: str, name: str, value) -> None:
    if isinstance(value, torch.Tensor):
        if value.is_complex() or not bool((value > 0).all()):
            raise ValueError(f"{fn}: {name} must be > 0, got a tensor with min {value.real.min().item()!r}")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{fn}: {name} must be a finite number > 0, got {value!r}")


def _tensor(fn: str, name: str, value, *, complex_ok: bool = False) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(value).__name__}")
    if not (value.dtype in _REAL or (complex_ok and value.is_complex())):
        kinds = "a real or complex floating" if complex_ok else "a real floating"
        raise TypeError(f"{fn}: {name} must be {kinds} tensor, got dtype {value.dtype}")


def _system(fn: str, A, B, C=None) -> None:
    """Dense: A (N, N), B (N,), C (N,). Diagonal: A, B (and C) of one shape (..., N)."""
    for name, value in (("A", A), ("B", B)) + ((("C", C),) if C is not None else ()):
        _tensor(fn, name, value, complex_ok=True)
    if A.shape == B.shape and A.ndim >= 1:
        ok = C is None or C.shape == A.shape
    else:
        ok = A.ndim == 2 and A.shape[0] == A.shape[1] and B.shape == A.shape[:1] and (C is None or C.shape == B.shape)
    if not ok:
        got = f"A {tuple(A.shape)}, B {tuple(B.shape)}" + ("" if C is None else f", C {tuple(C.shape)}")
        raise ValueError(
            f"{fn}: expected a dense system A (N, N), B (N,), C (N,) or a diagonal one with A, B, C "
            f"all of shape (..., N); got {got}"
        )


def hippo(measure: str, N: int, *, theta: float = 1.0, dtype: torch.dtype = torch.float64):
    """``(A, B)`` of HiPPO-``measure`` with ``N`` coefficients; ``A`` carries the minus sign.

    Dynamics: ``c' = A c + B f`` for ``"legt"`` (sliding window of length
    ``theta``) and ``"lagt"`` (exponentially decaying measure);
    ``c' = (A c + B f) / t`` for ``"legs"`` (uniform over the whole history).
    """
    _measure("hippo", measure)
    _size("hippo", "N", N)
    _positive("hippo", "theta", theta)
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"hippo: dtype must be torch.float32 or torch.float64, got {dtype}")
    return _memory.hippo_matrices(measure, N, theta=theta, dtype=dtype)


def discretize(A: torch.Tensor, B: torch.Tensor, dt, method: str = "bilinear"):
    """``(Ad, Bd)`` so that ``x_k = Ad x_{k-1} + Bd u_k`` follows ``x' = A x + B u`` with step ``dt``.

    ``method``: ``"euler"``, ``"backward_euler"``, ``"bilinear"`` or ``"zoh"``.
    ``A`` shaped like ``B`` is a diagonal, and ``dt`` may then be a tensor of
    per-channel steps of shape ``A.shape[:-1]``.
    """
    _system("discretize", A, B)
    _positive("discretize", "dt", dt)
    _method("discretize", method)
    return _ref._discrete(A, B, dt, method)


def hippo_project(signal: torch.Tensor, measure: str, N: int, *, dt: float, theta: float = 1.0,
                  method: str = "bilinear") -> torch.Tensor:
    """Run the HiPPO memory over ``signal[..., k] = f(k dt)``: coefficients of shape ``(..., L, N)``.

    Row ``k`` holds the coefficients of the history up to ``t = (k + 1) dt``.
    LegS takes steps of ``1/k`` whatever ``dt`` is (it has no timescale).
    """
    _tensor("hippo_project", "signal", signal)
    if signal.ndim < 1 or signal.shape[-1] < 1:
        raise ValueError(f"hippo_project: signal must have a non-empty last (time) axis, got shape {tuple(signal.shape)}")
    _measure("hippo_project", measure)
    _size("hippo_project", "N", N)
    _positive("hippo_project", "dt", dt)
    _positive("hippo_project", "theta", theta)
    _method("hippo_project", method)
    return _memory.project_reference(signal.double(), measure, N, dt, theta=theta, method=method).to(signal.dtype)


def hippo_reconstruct(coefficients: torch.Tensor, measure: str, times: torch.Tensor, *, t: float,
                      theta: float = 1.0) -> torch.Tensor:
    """The history rebuilt from ``coefficients`` (``(..., N)``, taken at time ``t``) at ``times``: ``(..., len(times))``.

    Zero outside the measure's support (before ``t - theta`` for LegT, before 0 for LegS).
    """
    _tensor("hippo_reconstruct", "coefficients", coefficients)
    _tensor("hippo_reconstruct", "times", times)
    if coefficients.ndim < 1 or coefficients.shape[-1] < 1:
        raise ValueError(f"hippo_reconstruct: coefficients must have shape (..., N) with N >= 1, got {tuple(coefficients.shape)}")
    if times.ndim != 1:
        raise ValueError(f"hippo_reconstruct: times must be 1-D, got shape {tuple(times.shape)}")
    _measure("hippo_reconstruct", measure)
    _positive("hippo_reconstruct", "t", t)
    _positive("hippo_reconstruct", "theta", theta)
    return _memory.reconstruct_reference(coefficients, measure, times, t, theta=theta)


def ssm_kernel(A, B, C, dt, L: int, *, method: str = "bilinear") -> torch.Tensor:
    """The convolution kernel ``K_k = C Ad^k Bd``, ``k = 0 .. L-1``, of the discretised SSM: ``(..., L)``."""
    _system("ssm_kernel", A, B, C)
    _positive("ssm_kernel", "dt", dt)
    _size("ssm_kernel", "L", L)
    _method("ssm_kernel", method)
    return _ref.ssm_kernel_reference(A, B, C, dt, L, method)


def ssm_recurrence(A, B, C, dt, u: torch.Tensor, *, method: str = "bilinear") -> torch.Tensor:
    """Run ``x_k = Ad x_{k-1} + Bd u_k``, ``y_k = C x_k`` over ``u[..., k]``: the output has ``u``'s shape.

    A real diagonal system runs on ``linear_scan`` (one scan per state
    channel); dense and complex systems step through a torch loop.
    """
    _system("ssm_recurrence", A, B, C)
    _tensor("ssm_recurrence", "u", u)
    _positive("ssm_recurrence", "dt", dt)
    _method("ssm_recurrence", method)
    if u.ndim < 1 or u.shape[-1] < 1:
        raise ValueError(f"ssm_recurrence: u must have a non-empty last (time) axis, got shape {tuple(u.shape)}")
    if _ref.is_diagonal(A, B) and not A.is_complex() and not u.is_complex():
        Ad, Bd = _ref._discrete(A, B, dt, method)
        b = Bd[..., None] * u[..., None, :]  # (..., N, L): each state channel is its own scan
        x = linear_scan(Ad[..., None].expand(b.shape).to(b.dtype), b)
        return (C[..., None] * x).sum(-2)
    return _ref.ssm_recurrence_reference(A, B, C, dt, u, method)


def fft_conv(u: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Causal convolution ``y_k = sum_{j<=k} K_j u_{k-j}`` along the last axis, by zero-padded FFT."""
    _tensor("fft_conv", "u", u)
    _tensor("fft_conv", "K", K)
    if u.ndim < 1 or K.ndim < 1 or u.shape[-1] < 1 or K.shape[-1] < 1:
        raise ValueError(f"fft_conv: u and K need a non-empty last axis, got u {tuple(u.shape)}, K {tuple(K.shape)}")
    try:
        torch.broadcast_shapes(u.shape[:-1], K.shape[:-1])
    except RuntimeError as error:
        raise ValueError(
            f"fft_conv: the leading dimensions of u {tuple(u.shape)} and K {tuple(K.shape)} do not broadcast"
        ) from error
    return _ref.fft_conv_reference(u, K)


def linear_scan(a: torch.Tensor, b: torch.Tensor, *, h0: torch.Tensor | None = None) -> torch.Tensor:
    """``h_t = a_t h_{t-1} + b_t`` along the last axis, element-wise, from ``h_{-1} = h0`` (default 0).

    ``a`` and ``b`` share shape and dtype; ``h0`` has ``b.shape[:-1]``.
    Differentiable. The Triton scan runs on CUDA (or in the interpreter with
    ``TRITON_INTERPRET=1``); elsewhere a plain torch loop.
    """
    _tensor("linear_scan", "a", a)
    _tensor("linear_scan", "b", b)
    if a.shape != b.shape or a.dtype != b.dtype:
        raise ValueError(
            f"linear_scan: a and b must have the same shape and dtype, got a {tuple(a.shape)} {a.dtype}, "
            f"b {tuple(b.shape)} {b.dtype}"
        )
    if b.ndim < 1 or b.shape[-1] < 1:
        raise ValueError(f"linear_scan: a and b need a non-empty last (time) axis, got shape {tuple(b.shape)}")
    if h0 is not None:
        _tensor("linear_scan", "h0", h0)
        if h0.shape != b.shape[:-1]:
            raise ValueError(f"linear_scan: h0 must have shape {tuple(b.shape[:-1])}, got {tuple(h0.shape)}")
        h0 = h0.to(b.dtype)
    if _backend.use_triton(b) and _backend.triton_dtype_ok(b.dtype, b.device):
        from .triton_scan import linear_scan_triton

        return linear_scan_triton(a, b, h0)
    return _ref.linear_scan_reference(a, b, h0)
