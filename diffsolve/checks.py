"""Checks of scalar arguments shared by the CLI, training, likelihood and suite files.

Each raises DiffsolveError naming the argument, the value, what was expected and the fix.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from .errors import DiffsolveError


def positive_int(value: Any, name: str, fix: str = "", *, minimum: int = 1) -> int:
    """value as an int ≥ minimum (bools and non-integers refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise DiffsolveError(f"{name} must be an integer >= {minimum}, got {value!r}" + (f"; {fix}" if fix else ""))
    return int(value)


def positive_float(value: Any, name: str, fix: str = "", *, below: float | None = None) -> float:
    """value as a finite float > 0 (and < below when given); bools and strings refused."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    if not ok or (below is not None and value >= below):
        limit = f" and < {below:g}" if below is not None else ""
        raise DiffsolveError(f"{name} must be a finite number > 0{limit}, got {value!r}" + (f"; {fix}" if fix else ""))
    return float(value)
