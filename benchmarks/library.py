"""Build and verify the named instance library (``servopt library ...``).

``verify`` re-solves each instance with the options the manifest records and checks the
objective (and bound) within a tolerance; a file that was changed is reported, not trusted.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from servopt.core import Instance, InvalidInstanceError
from servopt.instances import library
from servopt.solvers import exact


def solve_entry(instance: Instance, solve_kw: dict[str, Any]) -> tuple[float, float, str, float]:
    """(objective, bound, bound kind, seconds) of a library solve."""
    start = time.perf_counter()
    solution = exact.solve(instance, **solve_kw)
    wall = time.perf_counter() - start
    if solve_kw.get("relax") or solution.relaxed:
        kind = "lp_relaxation"
        return math.nan, solution.objective, kind, wall
    kind = "optimal" if solution.status == "optimal" else "mip_bound"
    return solution.objective, solution.bound, kind, wall


def add(name: str, size: str, make: Callable[[], Instance], solve_kw: dict[str, Any],
        obtained: str, directory: Path = library.LIBRARY_DIR) -> library.Entry:
    """Write one instance file, solve it, and return its manifest entry."""
    if size not in library.SIZES:
        raise ValueError(f"size must be one of {library.SIZES}")
    instance = make()
    rel = Path(instance.decision) / f"{name}.json"
    (directory / rel).parent.mkdir(parents=True, exist_ok=True)
    instance.to_json(directory / rel)
    objective, bound, kind, wall = solve_entry(instance, solve_kw)
    return library.Entry(
        name=name, decision=instance.decision, size=size, file=str(rel),
        sha256=library.sha256_file(directory / rel),
        objective=None if math.isnan(objective) else objective,
        bound=None if math.isnan(bound) else bound, bound_kind=kind, solve=dict(solve_kw),
        obtained=obtained, wall_s=round(wall, 3), summary=instance.summary())


def verify(names: Iterable[str] | None = None, *, sizes: tuple[str, ...] = ("small", "medium"),
           rtol: float = 1e-5) -> pd.DataFrame:
    """Re-solve library instances and compare with the manifest.

    Returns one row per instance: ``name, decision, size, ok, recorded, found, wall_s, message``.
    ``ok`` is False when the file does not match its hash, does not load, or the re-solved value
    differs from the recorded one by more than ``rtol`` (relative).
    """
    entries = library.read_manifest()
    selected = list(names) if names else library.names(sizes=sizes)
    rows = []
    for name in selected:
        if name not in entries:
            raise InvalidInstanceError(f"no library instance named {name!r}")
        item = entries[name]
        row = {"name": name, "decision": item.decision, "size": item.size, "ok": False,
               "recorded": item.objective if item.objective is not None else item.bound,
               "found": math.nan, "wall_s": math.nan, "message": ""}
        try:
            instance = library.load(name)
            objective, bound, _, wall = solve_entry(instance, item.solve)
            found = objective if item.objective is not None else bound
            row.update(found=found, wall_s=wall)
            recorded = row["recorded"]
            if recorded is None or math.isnan(found):
                row["message"] = "nothing to compare"
            elif abs(found - recorded) <= rtol * max(1.0, abs(recorded)):
                row.update(ok=True, message="matches the manifest")
            else:
                row["message"] = f"re-solved {found:.8g} differs from recorded {recorded:.8g}"
        except (InvalidInstanceError, ValueError) as exc:
            row["message"] = str(exc)
        rows.append(row)
    return pd.DataFrame(rows)
