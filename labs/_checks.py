"""Input checks that several chapters' public functions share."""

from __future__ import annotations

import numbers


def whole_number(fn: str, name: str, value, *, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum`` (bools refused), else a ValueError naming ``fn`` and ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        wanted = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{fn}: {name} must be {wanted}, got {value!r}")
    return int(value)
