"""Chapter "HiPPO - optimal polynomial memory, and the road to S4": the public API, with input checks.

``hippo`` gives the matrices, ``discretize`` turns them into a recurrence,
``hippo_project``/``hippo_reconstruct`` run the online memory and read it back,
``ssm_kernel``/``ssm_recurrence``/``fft_conv`` are the two views of an SSM, and
``linear_scan`` is the scan under the recurrence (Triton on CUDA).
"""

from __future__ import annotations

import torch

from .. import _backend
from .._checks import choice, float_tensor, positive, whole_number
from . import memory as _memory
from . import reference as _ref
from .memory import DISCRETIZATIONS, LEGS_STARTS, LEGS_STEPS, MEASURES, legs_lti_basis

__all__ = [
    "DISCRETIZATIONS",
    "LEGS_STARTS",
    "LEGS_STEPS",
    "MEASURES",
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

def _step(fn: str, dt):
    """A step > 0: a number, or (for a diagonal system) a real tensor of per-channel steps."""
    if not isinstance(dt, torch.Tensor):
        return positive(fn, "dt", dt)
    if dt.is_complex() or not bool((dt > 0).all()) or not bool(dt.isfinite().all()):
        raise ValueError(f"{fn}: dt must be finite and > 0, got a tensor with min {dt.real.min().item()!r}")
    return dt


def _system(fn: str, A, B, C=None):
    """Check a system and return ``(B, C)`` in the shapes the reference code uses.

    Dense: A (N, N); B (N,) or the column (N, 1); C (N,) or the row (1, N)
    (the single-input single-output convention of scipy.signal), returned as
    vectors. Diagonal: A, B (and C) of one shape (..., N), real or complex.
    """
    for name, value in (("A", A), ("B", B)) + ((("C", C),) if C is not None else ()):
        if not (isinstance(value, torch.Tensor) and value.is_complex()):
            float_tensor(fn, name, value)
    if A.shape == B.shape and A.ndim >= 1:
        ok = C is None or C.shape == A.shape
    else:
        N = A.shape[0] if A.ndim == 2 else -1
        ok = A.ndim == 2 and A.shape[0] == A.shape[1] and B.shape in ((N,), (N, 1)) and (C is None or C.shape in ((N,), (1, N)))
        if ok:
            B, C = B.reshape(N), (None if C is None else C.reshape(N))
    if not ok:
        got = f"A {tuple(A.shape)}, B {tuple(B.shape)}" + ("" if C is None else f", C {tuple(C.shape)}")
        raise ValueError(
            f"{fn}: expected a dense system A (N, N), B (N,) or (N, 1), C (N,) or (1, N), or a diagonal one with "
            f"A, B, C all of shape (..., N); got {got}"
        )
    return B, C


def hippo(measure: str, N: int, *, theta: float = 1.0, dtype: torch.dtype = torch.float64):
    """``(A, B)`` of HiPPO-``measure`` with ``N`` coefficients; ``A`` carries the minus sign.

    Dynamics: ``c' = A c + B f`` for ``"legt"`` (sliding window of length
    ``theta``) and ``"lagt"`` (exponentially decaying measure);
    ``c' = (A c + B f) / t`` for ``"legs"`` (uniform over the whole history).
    """
    choice("hippo", "measure", measure, MEASURES)
    whole_number("hippo", "N", N)
    theta = positive("hippo", "theta", theta)
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"hippo: dtype must be torch.float32 or torch.float64, got {dtype}")
    return _memory.hippo_matrices(measure, N, theta=theta, dtype=dtype)


def discretize(A: torch.Tensor, B: torch.Tensor, dt, method: str = "bilinear"):
    """``(Ad, Bd)`` so that ``x_k = Ad x_{k-1} + Bd u_k`` follows ``x' = A x + B u`` with step ``dt``.

    ``method``: ``"euler"``, ``"backward_euler"``, ``"bilinear"`` or ``"zoh"``.
    ``A`` shaped like ``B`` is a diagonal, and ``dt`` may then be a tensor of
    per-channel steps of shape ``A.shape[:-1]``.
    """
    B, _ = _system("discretize", A, B)
    dt = _step("discretize", dt)
    choice("discretize", "method", method, DISCRETIZATIONS)
    return _ref._discrete(A, B, dt, method)


def hippo_project(signal: torch.Tensor, measure: str, N: int, *, dt: float, theta: float = 1.0,
                  method: str = "bilinear", legs_step: str = "reciprocal", legs_start: str = "empty") -> torch.Tensor:
    """Run the HiPPO memory over ``signal[..., k]``, the input of the step from ``k dt`` to ``(k + 1) dt``.

    Returns coefficients of shape ``(..., L, N)``; row ``k`` holds those of the
    history up to ``t = (k + 1) dt``. The recurrence holds each sample over its
    step: sampling the step's end, ``signal[..., k] = f((k + 1) dt)``, is first
    order in ``dt``; sampling its middle, ``f((k + 1/2) dt)``, second order.
    LegS takes steps of ``1/k`` (``legs_step="reciprocal"``) or ``log(k/(k-1))``
    (``"log"``, exact in ``log t``) whatever ``dt`` is, and starts from an empty
    memory (``legs_start="empty"``) or from the memory of a constant equal to
    the first sample (``"constant"``).
    """
    fn = "hippo_project"
    float_tensor(fn, "signal", signal, min_ndim=1)
    if signal.shape[-1] < 1:
        raise ValueError(f"{fn}: signal must have a non-empty last (time) axis, got shape {tuple(signal.shape)}")
    choice(fn, "measure", measure, MEASURES)
    whole_number(fn, "N", N)
    dt, theta = positive(fn, "dt", dt), positive(fn, "theta", theta)
    choice(fn, "method", method, DISCRETIZATIONS)
    choice(fn, "legs_step", legs_step, LEGS_STEPS)
    choice(fn, "legs_start", legs_start, LEGS_STARTS)
    if measure != "legs" and (legs_step, legs_start) != ("reciprocal", "empty"):
        raise ValueError(f"{fn}: legs_step and legs_start apply to measure 'legs' only, got measure {measure!r} "
                         f"with legs_step={legs_step!r}, legs_start={legs_start!r}")
    return _memory.project(signal.double(), measure, N, dt, theta=theta, method=method, legs_step=legs_step,
                           legs_start=legs_start).to(signal.dtype)


def hippo_reconstruct(coefficients: torch.Tensor, measure: str, times: torch.Tensor, *, t: float,
                      theta: float = 1.0) -> torch.Tensor:
    """The history rebuilt from ``coefficients`` (``(..., N)``, taken at time ``t``) at ``times``: ``(..., len(times))``.

    Zero outside the measure's support (before ``t - theta`` for LegT, before 0 for LegS).
    """
    fn = "hippo_reconstruct"
    float_tensor(fn, "coefficients", coefficients, min_ndim=1)
    float_tensor(fn, "times", times, ndim=1)
    if coefficients.shape[-1] < 1:
        raise ValueError(f"{fn}: coefficients must have shape (..., N) with N >= 1, got {tuple(coefficients.shape)}")
    choice(fn, "measure", measure, MEASURES)
    t, theta = positive(fn, "t", t), positive(fn, "theta", theta)
    return _memory.reconstruct(coefficients, measure, times, t, theta=theta)


def ssm_kernel(A, B, C, dt, L: int, *, method: str = "bilinear") -> torch.Tensor:
    """The convolution kernel ``K_k = C Ad^k Bd``, ``k = 0 .. L-1``, of the discretised SSM: ``(..., L)``.

    Dense: ``A`` (N, N), ``B`` (N,) or (N, 1), ``C`` (N,) or (1, N); the kernel is (L,).
    Diagonal (S4D): ``A``, ``B``, ``C`` of one shape (..., N), ``dt`` a number or
    per-channel steps of shape (...,); the kernel is (..., L).
    """
    B, C = _system("ssm_kernel", A, B, C)
    dt = _step("ssm_kernel", dt)
    whole_number("ssm_kernel", "L", L)
    choice("ssm_kernel", "method", method, DISCRETIZATIONS)
    return _ref.ssm_kernel(A, B, C, dt, L, method)


def ssm_recurrence(A, B, C, dt, u: torch.Tensor, *, method: str = "bilinear") -> torch.Tensor:
    """Run ``x_k = Ad x_{k-1} + Bd u_k``, ``y_k = C x_k`` over ``u[..., k]``: the output has ``u``'s shape.

    A real diagonal system runs on ``linear_scan`` (one scan per state
    channel); dense and complex systems step through a torch loop.
    """
    B, C = _system("ssm_recurrence", A, B, C)
    float_tensor("ssm_recurrence", "u", u)
    dt = _step("ssm_recurrence", dt)
    choice("ssm_recurrence", "method", method, DISCRETIZATIONS)
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
    float_tensor("fft_conv", "u", u)
    float_tensor("fft_conv", "K", K)
    if u.ndim < 1 or K.ndim < 1 or u.shape[-1] < 1 or K.shape[-1] < 1:
        raise ValueError(f"fft_conv: u and K need a non-empty last axis, got u {tuple(u.shape)}, K {tuple(K.shape)}")
    try:
        torch.broadcast_shapes(u.shape[:-1], K.shape[:-1])
    except RuntimeError as error:
        raise ValueError(
            f"fft_conv: the leading dimensions of u {tuple(u.shape)} and K {tuple(K.shape)} do not broadcast"
        ) from error
    return _ref.fft_conv(u, K)


def linear_scan(a: torch.Tensor, b: torch.Tensor, *, h0: torch.Tensor | None = None) -> torch.Tensor:
    """``h_t = a_t h_{t-1} + b_t`` along the last axis, element-wise, from ``h_{-1} = h0`` (default 0).

    ``a`` and ``b`` share shape and dtype; ``h0`` has ``b.shape[:-1]``.
    Differentiable. The Triton scan runs on CUDA (or in the interpreter with
    ``TRITON_INTERPRET=1``); elsewhere a plain torch loop.
    """
    float_tensor("linear_scan", "a", a)
    float_tensor("linear_scan", "b", b)
    if a.shape != b.shape or a.dtype != b.dtype:
        raise ValueError(
            f"linear_scan: a and b must have the same shape and dtype, got a {tuple(a.shape)} {a.dtype}, "
            f"b {tuple(b.shape)} {b.dtype}"
        )
    if b.ndim < 1 or b.shape[-1] < 1:
        raise ValueError(f"linear_scan: a and b need a non-empty last (time) axis, got shape {tuple(b.shape)}")
    if h0 is not None:
        float_tensor("linear_scan", "h0", h0)
        if h0.shape != b.shape[:-1]:
            raise ValueError(f"linear_scan: h0 must have shape {tuple(b.shape[:-1])}, got {tuple(h0.shape)}")
        h0 = h0.to(b.dtype)
    if _backend.use_triton(b) and _backend.triton_dtype_ok(b.dtype, b.device):
        from .triton_scan import linear_scan_triton

        return linear_scan_triton(a, b, h0)
    return _ref.linear_scan_reference(a, b, h0)
