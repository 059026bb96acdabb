"""Executable derivations: every written step is also asserted.

``assert_equal`` checks a symbolic step with SymPy; ``assert_close`` checks a
step numerically in float64 where symbols cannot reach.
"""

from __future__ import annotations

import numpy as np
import sympy


class DerivationError(AssertionError):
    """A derivation step that does not hold."""


def _as_sympy(value, name: str):
    try:
        return sympy.sympify(value, strict=True)
    except (sympy.SympifyError, TypeError) as error:
        raise TypeError(
            f"assert_equal: {name} must be a SymPy expression or matrix, got {type(value).__name__}"
        ) from error


def _shape(value):
    return value.shape if isinstance(value, sympy.MatrixBase) else "scalar"


def _is_zero(difference) -> bool:
    if isinstance(difference, sympy.MatrixBase):
        return all(sympy.simplify(entry) == 0 for entry in difference)
    return sympy.simplify(difference) == 0


def _label(step: str | None) -> str:
    return f"step {step!r}" if step else "step"


def assert_equal(lhs, rhs, *, step: str | None = None, show: bool = False) -> None:
    """Assert ``simplify(lhs - rhs) == 0``.

    On failure raise ``DerivationError`` printing both sides and their simplified
    difference. With ``show=True`` display the step as LaTeX (in a notebook).
    """
    left, right = _as_sympy(lhs, "lhs"), _as_sympy(rhs, "rhs")
    if _shape(left) != _shape(right):
        raise DerivationError(
            f"{_label(step)}: the sides have different shapes, lhs {_shape(left)} vs rhs {_shape(right)}"
        )
    difference = left - right
    if not _is_zero(difference):
        simplified = (
            difference.applyfunc(sympy.simplify)
            if isinstance(difference, sympy.MatrixBase)
            else sympy.simplify(difference)
        )
        raise DerivationError(
            f"{_label(step)} does not hold:\n"
            f"  lhs = {sympy.sstr(left)}\n"
            f"  rhs = {sympy.sstr(right)}\n"
            f"  lhs - rhs simplifies to {sympy.sstr(simplified)}"
        )
    if show:
        from IPython.display import Math, display

        display(Math(f"{sympy.latex(left)} = {sympy.latex(right)}"))


def assert_close(actual, expected, *, rtol: float = 1e-10, atol: float = 0.0, step: str | None = None) -> None:
    """Assert that two numbers or arrays agree in float64 to ``rtol``/``atol``.

    Accepts Python numbers, NumPy arrays and torch tensors (compared in float64).
    """
    a = np.asarray(_to_numpy(actual, "actual"), dtype=np.float64)
    b = np.asarray(_to_numpy(expected, "expected"), dtype=np.float64)
    if a.shape != b.shape:
        raise DerivationError(f"{_label(step)}: shapes differ, actual {a.shape} vs expected {b.shape}")
    if not np.allclose(a, b, rtol=rtol, atol=atol):
        error = np.abs(a - b)
        worst = np.unravel_index(np.argmax(error), error.shape) if error.ndim else ()
        raise DerivationError(
            f"{_label(step)} does not hold numerically (rtol={rtol}, atol={atol}):\n"
            f"  largest |actual - expected| = {error.max():.3e} at index {worst}: "
            f"actual {a[worst]!r} vs expected {b[worst]!r}"
        )


def _to_numpy(value, name: str):
    if hasattr(value, "detach"):  # torch tensor
        return value.detach().cpu().double().numpy()
    if isinstance(value, (int, float, np.ndarray, np.number, list, tuple)):
        return value
    raise TypeError(f"assert_close: {name} must be a number, array or tensor, got {type(value).__name__}")


def standard_moment(k: int):
    """E[x^k] for a zero-mean, unit-variance variable whose other moments are left symbolic."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"standard_moment: k must be a non-negative int, got {k!r}")
    return {0: sympy.Integer(1), 1: sympy.Integer(0), 2: sympy.Integer(1)}.get(k, sympy.Symbol(f"mu_{k}"))


def expectation(expr, variables, moment=standard_moment):
    """E[expr] for a polynomial in independent random ``variables`` with ``E[x^k] = moment(k)``.

    Independence lets every monomial factor: E[x^a y^b] = E[x^a] E[y^b]. No
    distribution is assumed beyond the moments that ``moment`` returns.
    """
    variables = list(variables)
    if not variables or not all(isinstance(v, sympy.Symbol) for v in variables):
        raise TypeError(f"expectation: variables must be a non-empty list of SymPy symbols, got {variables!r}")
    poly = sympy.Poly(sympy.expand(expr), *variables)
    total = sympy.Integer(0)
    for exponents, coefficient in poly.terms():
        term = coefficient
        for power in exponents:
            term *= moment(power)
        total += term
    return sympy.simplify(total)
