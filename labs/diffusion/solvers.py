"""ODE solvers for the probability-flow ODE: fixed-step Euler and Heun, and an adaptive
Dormand-Prince 5(4) pair with error control, all on a whole batch at once."""

from __future__ import annotations

from collections.abc import Callable

import torch

OdeFn = Callable[[torch.Tensor, float], torch.Tensor]

# Dormand & Prince (1980): nodes c, stage weights a, 5th-order weights b, and b - b*
# (5th minus embedded 4th order), whose combination estimates the local error.
_C = [0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0]
_A = [
    [],
    [1 / 5],
    [3 / 40, 9 / 40],
    [44 / 45, -56 / 15, 32 / 9],
    [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
    [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
    [35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84],
]
_B = [35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0]
_B_STAR = [5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40]
_E = [b - bs for b, bs in zip(_B, _B_STAR)]


def fixed_step(f: OdeFn, y: torch.Tensor, times: torch.Tensor, method: str = "euler",
               on_step: Callable[[torch.Tensor], None] | None = None) -> tuple[torch.Tensor, int]:
    """Integrate dy/dt = f(y, t) over the grid ``times`` (any direction); return (y_end, evaluations).

    ``on_step(y)`` is called after every step (to record a trajectory)."""
    nfe = 0
    for t0, t1 in zip(times[:-1].tolist(), times[1:].tolist()):
        h = t1 - t0
        k1 = f(y, t0)
        if method == "euler":
            y, nfe = y + h * k1, nfe + 1
        else:  # heun: the trapezoid rule with an Euler predictor
            k2 = f(y + h * k1, t1)
            y, nfe = y + 0.5 * h * (k1 + k2), nfe + 2
        if on_step is not None:
            on_step(y)
    return y, nfe


def dormand_prince(f: OdeFn, y: torch.Tensor, t0: float, t1: float, *, rtol: float = 1e-5, atol: float = 1e-5,
                   first_step: float | None = None, max_steps: int = 10_000,
                   on_step: Callable[[torch.Tensor], None] | None = None) -> tuple[torch.Tensor, int, list[float]]:
    """Adaptive RK45 from t0 to t1 (either direction); return (y(t1), evaluations, accepted times).

    A step is accepted when the RMS over all entries of error / (atol + rtol max(|y|, |y_new|))
    is at most 1; the next step is scaled by 0.9 err^(-1/5), kept within [0.2, 10]x.
    The 7th stage equals the next step's first (FSAL), so an accepted step costs 6 evaluations.
    """
    direction = 1.0 if t1 >= t0 else -1.0
    span = abs(t1 - t0)
    h = min(first_step or 0.01 * span, span)
    t, accepted, nfe = t0, [t0], 1
    k1 = f(y, t)
    for _ in range(max_steps):
        if abs(t1 - t) <= 1e-12 * max(1.0, span):
            return y, nfe, accepted
        h = min(h, abs(t1 - t))
        step = direction * h
        ks = [k1]
        for i in range(1, 7):
            yi = y + step * sum(a * k for a, k in zip(_A[i], ks))
            ks.append(f(yi, t + _C[i] * step))
        nfe += 6
        y_new = yi  # the 7th stage's input is the 5th-order solution (its a-row equals b)
        error = step * sum(e * k for e, k in zip(_E, ks) if e != 0.0)
        scale = atol + rtol * torch.maximum(y.abs(), y_new.abs())
        err = torch.sqrt(torch.mean((error / scale) ** 2)).item()
        if err <= 1.0:
            t, y, k1 = t + step, y_new, ks[6]
            accepted.append(t)
            if on_step is not None:
                on_step(y)
        factor = 10.0 if err == 0 else min(10.0, max(0.2, 0.9 * err ** (-1 / 5)))
        h *= factor if err <= 1.0 else min(1.0, factor)
    raise RuntimeError(f"dormand_prince: no convergence within {max_steps} steps (t = {t:.4g}, h = {h:.3g})")
