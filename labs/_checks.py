"""Argument checks that every public ``labs`` function shares.

Each takes ``(fn, name, value, ...)``: the public function's name, the argument's
name, and the value received, so every error reads
``fn: name must be <what was expected>, got <what was given>``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
"""The floating dtypes every kernel and reference in the book accepts."""


def whole_number(fn: str, name: str, value, *, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum`` (bools refused), else a ValueError naming ``fn`` and ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        wanted = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{fn}: {name} must be {wanted}, got {value!r}")
    return int(value)


def _bound_text(low, high, low_open: bool, high_open: bool) -> str:
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    return " and ".join(parts)


def real_number(
    fn: str, name: str, value, *, low: float | None = None, high: float | None = None,
    low_open: bool = False, high_open: bool = False,
) -> float:
    """``value`` as a finite float within the bounds (``*_open`` excludes the bound), else a ValueError.

    Bools and non-real values (strings, complex, tensors) are refused.
    """
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        bounds = _bound_text(low, high, low_open, high_open)
        wanted = "a finite real number" + (f" {bounds}" if bounds else "")
        raise ValueError(f"{fn}: {name} must be {wanted}, got {value!r}")
    return float(value)


def positive(fn: str, name: str, value) -> float:
    """``value`` as a finite float > 0, else a ValueError naming ``fn`` and ``name``."""
    return real_number(fn, name, value, low=0.0, low_open=True)


def choice(fn: str, name: str, value, options: Iterable):
    """``value`` if it is one of ``options``, else a ValueError listing them."""
    options = tuple(options)
    if isinstance(value, (list, dict, set)) or value not in options:
        raise ValueError(f"{fn}: {name} must be one of {', '.join(map(repr, options))}; got {value!r}")
    return value


def flag(fn: str, name: str, value) -> bool:
    """``value`` if it is a bool, else a TypeError (a truthy string or 0/1 is a likely mistake)."""
    if not isinstance(value, bool):
        raise TypeError(f"{fn}: {name} must be True or False, got {type(value).__name__} ({value!r})")
    return value


def float_tensor(fn: str, name: str, value, *, ndim: int | None = None, min_ndim: int = 0) -> torch.Tensor:
    """``value`` if it is a floating torch tensor (one of ``FLOAT_DTYPES``) of the given rank, else an error."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, got {type(value).__name__}")
    if value.dtype not in FLOAT_DTYPES:
        wanted = ", ".join(str(d).removeprefix("torch.") for d in FLOAT_DTYPES)
        raise TypeError(f"{fn}: {name} must have a floating dtype ({wanted}), got {value.dtype}")
    if ndim is not None and value.ndim != ndim:
        raise ValueError(f"{fn}: {name} must have {ndim} dimensions, got shape {tuple(value.shape)}")
    if value.ndim < min_ndim:
        raise ValueError(f"{fn}: {name} must have at least {min_ndim} dimensions, got shape {tuple(value.shape)}")
    return value


def generator(fn: str, name: str, value) -> torch.Generator:
    """``value`` if it is a torch.Generator, else a TypeError: every random draw in labs names its stream."""
    if not isinstance(value, torch.Generator):
        raise TypeError(
            f"{fn}: {name} must be a torch.Generator (e.g. labs.generator(\"stream name\")), "
            f"got {type(value).__name__}"
        )
    return value
