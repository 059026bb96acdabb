"""Check cells for exercises: compare a reader's formula with a numeric ground truth.

The check never contains the answer: it evaluates the reader's SymPy
expression at sample points and compares with numbers computed another way
(a simulation, or the package's own functions).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import sympy


def check_formula(answer, truth: Callable[..., float], points: list[dict], *, rtol: float = 1e-6) -> bool:
    """Print whether ``answer`` (a SymPy expression) matches ``truth(**point)`` at every point.

    ``answer`` may be None (not attempted). Returns True only when all points agree.
    """
    if answer is None:
        print("Not attempted yet: assign your expression and run this cell again.")
        return False
    try:
        expr = sympy.sympify(answer)
    except (sympy.SympifyError, TypeError):
        print(f"Your answer must be a SymPy expression, got {type(answer).__name__}.")
        return False
    missing = {s.name for s in expr.free_symbols} - set().union(*points)
    if missing:
        print(f"Your answer uses symbols the exercise does not define: {sorted(missing)}.")
        return False
    for point in points:
        value = complex(expr.subs({s: point[s.name] for s in expr.free_symbols}).evalf())
        expected = float(truth(**point))
        if abs(value.imag) > 1e-12 or not math.isclose(value.real, expected, rel_tol=rtol, abs_tol=1e-12):
            print(f"Not quite: at {point} your expression gives {value.real:.6g}, but it should be {expected:.6g}.")
            return False
    print(f"Correct: your expression matches at all {len(points)} test points.")
    return True

