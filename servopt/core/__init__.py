"""Shared types every servopt layer uses: errors, the Instance base, Solution and prices."""

from servopt.core.errors import InfeasibleError, InvalidInstanceError
from servopt.core.instance import DECISIONS, Instance
from servopt.core.solution import Solution, normalise_dual, relative_gap

__all__ = [
    "DECISIONS",
    "InfeasibleError",
    "Instance",
    "InvalidInstanceError",
    "Solution",
    "normalise_dual",
    "relative_gap",
]
