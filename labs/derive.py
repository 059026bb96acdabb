"""Executable derivations: every written step is also asserted.

``assert_equal`` checks a symbolic step with SymPy; ``assert_close`` checks a
step numerically in float64 where symbols cannot reach; ``assert_less``,
``assert_at_most`` and ``assert_between`` check inequalities. Every check
prints both sides when it fails, so no chapter needs a bare ``assert``.

Every verdict goes through ``judge``: with ``LABS_CHECK_LOG=<file>`` each one
is appended there as a JSON line, and with ``LABS_CHECKS=report`` a failing
check prints its message instead of raising, so a run can list every check
that fails (``make seeds`` uses both).
"""

from __future__ import annotations

import json
import os

import numpy as np
import sympy


class DerivationError(AssertionError):
    """A derivation step or an empirical claim that does not hold."""


def judge(ok: bool, step: str | None, kind: str, message: str) -> bool:
    """Record one check's verdict; raise ``DerivationError(message)`` if it failed (unless reporting).

    Returns ``ok``. The one place every check in ``labs`` ends, so that a log of
    verdicts and the report mode cover all of them.
    """
    log = os.environ.get("LABS_CHECK_LOG", "").strip()
    if log:
        with open(log, "a") as out:
            out.write(json.dumps({"step": step, "kind": kind, "ok": bool(ok), "message": "" if ok else message}) + "\n")
    if not ok:
        if os.environ.get("LABS_CHECKS", "raise") == "report":
            print(f"CHECK FAILED ({kind}): {message}")
        else:
            raise DerivationError(message)
    return bool(ok)


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
    holds = _is_zero(difference)
    if not holds:
        simplified = (
            difference.applyfunc(sympy.simplify)
            if isinstance(difference, sympy.MatrixBase)
            else sympy.simplify(difference)
        )
        judge(False, step, "equal", (
            f"{_label(step)} does not hold:\n"
            f"  lhs = {sympy.sstr(left)}\n"
            f"  rhs = {sympy.sstr(right)}\n"
            f"  lhs - rhs simplifies to {sympy.sstr(simplified)}"
        ))
        return
    judge(True, step, "equal", "")
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
        judge(False, step, "close", (
            f"{_label(step)} does not hold numerically (rtol={rtol}, atol={atol}):\n"
            f"  largest |actual - expected| = {error.max():.3e} at index {worst}: "
            f"actual {a[worst]!r} vs expected {b[worst]!r}"
        ))
        return
    judge(True, step, "close", "")


def _inequality(kind: str, actual, bound, holds, relation: str, step: str | None) -> None:
    a = np.asarray(_to_numpy(actual, "actual"), dtype=np.float64)
    b = np.asarray(_to_numpy(bound, "bound"), dtype=np.float64)
    try:
        a_full, b_full = np.broadcast_arrays(a, b)
    except ValueError:
        raise DerivationError(f"{_label(step)}: shapes do not broadcast, actual {a.shape} vs bound {b.shape}") from None
    ok = holds(a_full, b_full)  # NaN compares False, so a NaN never passes
    if ok.all():
        judge(True, step, kind, "")
        return
    failing = np.argwhere(~ok) if ok.ndim else np.zeros((1, 0), dtype=int)
    worst = tuple(int(i) for i in failing[0])
    count = f" ({len(failing)} of {ok.size} entries fail; first shown)" if ok.ndim else ""
    judge(False, step, kind, (
        f"{_label(step)} does not hold: expected actual {relation} bound{count}\n"
        f"  actual = {float(a_full[worst])!r}, bound = {float(b_full[worst])!r}" + (f" at index {worst}" if worst else "")
    ))


def assert_less(actual, bound, *, step: str | None = None) -> None:
    """Assert ``actual < bound`` (element-wise, broadcasting), printing both sides on failure."""
    _inequality("less", actual, bound, np.less, "<", step)


def assert_at_most(actual, bound, *, step: str | None = None) -> None:
    """Assert ``actual <= bound`` (element-wise, broadcasting), printing both sides on failure."""
    _inequality("at_most", actual, bound, np.less_equal, "<=", step)


def assert_greater(actual, bound, *, step: str | None = None) -> None:
    """Assert ``actual > bound`` (element-wise, broadcasting), printing both sides on failure."""
    _inequality("greater", actual, bound, np.greater, ">", step)


def assert_at_least(actual, bound, *, step: str | None = None) -> None:
    """Assert ``actual >= bound`` (element-wise, broadcasting), printing both sides on failure."""
    _inequality("at_least", actual, bound, np.greater_equal, ">=", step)


def assert_between(actual, low, high, *, step: str | None = None) -> None:
    """Assert ``low <= actual <= high`` (element-wise), printing the value and the range on failure."""
    a = np.asarray(_to_numpy(actual, "actual"), dtype=np.float64)
    lo = np.asarray(_to_numpy(low, "low"), dtype=np.float64)
    hi = np.asarray(_to_numpy(high, "high"), dtype=np.float64)
    if np.any(lo > hi):
        raise ValueError(f"assert_between: low must be <= high, got low={low!r}, high={high!r}")
    _inequality("between", a, lo, np.greater_equal, ">= low", step)
    _inequality("between", a, hi, np.less_equal, "<= high", step)


def assert_true(condition, *, step: str, detail: str = "") -> None:
    """Assert a boolean fact that is not a comparison of numbers (a set equality, a dtype).

    ``detail`` says what was found, for the failure message.
    """
    if not isinstance(condition, (bool, np.bool_)):
        raise TypeError(f"assert_true: condition must be a bool, got {type(condition).__name__}")
    judge(bool(condition), step, "true", f"{_label(step)} does not hold" + (f": {detail}" if detail else ""))


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
