"""Parameter checks shared by the generators: each names the parameter and the rule it breaks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from servopt.core.errors import InvalidInstanceError


def whole_number(name: str, value: Any, *, low: int = 1, high: int | None = None) -> int:
    """``value`` as an int, refused unless it is a whole number in [low, high] (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
        raise InvalidInstanceError(f"{name} must be a whole number >= {low}, got {value!r}")
    if high is not None and value > high:
        raise InvalidInstanceError(f"{name} must be at most {high:,}, got {value:,}")
    return int(value)


def number(name: str, value: Any, ok: Callable[[float], bool], rule: str) -> float:
    """``value`` as a float, refused unless it is a real number (not a bool) with ``ok(value)``;
    ``rule`` says the range in the user's terms (NaN fails every comparison, so it is refused)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.number) or not ok(value):
        raise InvalidInstanceError(f"{name} must be {rule}, got {value!r}")
    return float(value)
