"""servopt: mathematical optimization for the control decisions inside LLM serving systems.

>>> import servopt
>>> from servopt.instances import caching
>>> solution = servopt.solve(caching.generate(seed=0), relax=True)   # doctest: +SKIP
>>> servopt.gap_table(caching.generate(seed=0))                       # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path as _Path
from typing import Any

from servopt.core import (
    DECISIONS,
    InfeasibleError,
    Instance,
    InvalidInstanceError,
    Solution,
)

__version__ = "0.1.0"

# In a source checkout the layers live beside this folder (instances/, models/, ...); an installed
# copy has them inside it. Let ``import servopt.instances`` work in both.
_root = _Path(__file__).resolve().parent.parent
if not (_Path(__file__).parent / "instances").is_dir() and (_root / "instances").is_dir():
    __path__.append(str(_root))


def solve(instance: Instance, **kwargs: Any) -> Solution:
    """Solve ``instance`` exactly (or relaxed) with HiGHS; see :func:`servopt.solvers.exact.solve`."""
    from servopt.solvers import exact

    return exact.solve(instance, **kwargs)


def gap_table(instance: Instance, methods: Any = None, **kwargs: Any) -> Any:
    """Every method's realised cost against the best bound; see :func:`servopt.benchmarks.gap_table`."""
    from servopt.benchmarks import gap_table as _gap_table

    return _gap_table(instance, methods, **kwargs)


def load(path: Any) -> Instance:
    """Load an instance file of any decision: JSON ``{"decision": ..., "schema_version": ...,
    "fields": {...}}`` with the fields of that decision's ``Instance`` (arrays as lists or
    ``{"ndarray": [...], "dtype": ...}``, tables as ``{"frame": {column: [...]}}``; the format is
    in :mod:`servopt.core.instance`). Validated on loading; raises ``InvalidInstanceError``."""
    from servopt.instances import load as _load

    return _load(path)


__all__ = [
    "DECISIONS",
    "InfeasibleError",
    "Instance",
    "InvalidInstanceError",
    "Solution",
    "__version__",
    "gap_table",
    "load",
    "solve",
]
