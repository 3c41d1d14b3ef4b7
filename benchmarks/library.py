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
    """(objective, bound, bound kind, seconds) of a library solve.

    With ``relax=True`` the objective is nan and the bound is the LP relaxation's value.
    """
    start = time.perf_counter()
    solution = exact.solve(instance, **solve_kw)
    wall = time.perf_counter() - start
    if solution.status == "interrupted":
        raise KeyboardInterrupt("the solver was interrupted")
    if solution.status == "error":  # (a Ctrl-C inside HiGHS is "interrupted": exact notes it)
        raise RuntimeError("the solver stopped without a solution (a solver failure): "
                           "verification stopped, nothing was judged")
    if solve_kw.get("relax"):
        return math.nan, solution.objective, "lp_relaxation", wall
    kind = "optimal" if solution.status == "optimal" and abs(solution.gap) <= 1e-6 else "mip_bound"
    return solution.objective, solution.bound, kind, wall


def _close(a: float | None, b: float | None, rtol: float) -> bool:
    if a is None or b is None or math.isnan(a) or math.isnan(b):
        return a is None and b is None
    return abs(a - b) <= rtol * max(1.0, abs(a), abs(b))


def _needed(bound_kind: str) -> tuple[str, ...]:
    """The recorded values :func:`check` compares for an entry of this kind."""
    return {"optimal": ("objective",), "lp_relaxation": ("bound",)}.get(
        bound_kind, ("objective", "bound"))


def check(item: library.Entry, objective: float, bound: float, rtol: float) -> tuple[bool, str]:
    """Does a re-solve agree with the manifest? Optima and LP values must match; a MIP's
    (bound, incumbent) interval must be consistent with the recorded one.

    A recorded value the comparison needs that is null fails the check (nothing to compare
    with). A re-solve that found no incumbent (or no bound) leaves its interval open on that
    side: it can still contradict the recorded interval through the end it did find.
    """
    missing = [field for field in _needed(item.bound_kind) if getattr(item, field) is None]
    if missing:
        return False, (f"library instance {item.name!r}: the manifest records no "
                       f"{' and no '.join(missing)} for this {item.bound_kind} entry, so there is "
                       "nothing to check the re-solve against (rebuild the entry)")
    obj = None if math.isnan(objective) else objective
    if item.bound_kind in ("optimal", "lp_relaxation"):
        recorded = item.objective if item.bound_kind == "optimal" else item.bound
        found = obj if item.bound_kind == "optimal" else bound
        if _close(found, recorded, rtol):
            return True, f"{item.bound_kind} value {found:.8g} matches the manifest"
        return False, f"re-solved {item.bound_kind} value {found} differs from recorded {recorded}"
    assert item.bound is not None and item.objective is not None  # (_needed: both)
    if math.isnan(objective) and math.isnan(bound):
        return False, (f"library instance {item.name!r}: the re-solve found neither an "
                       f"objective nor a bound (recorded bound {item.bound:.8g}, objective "
                       f"{item.objective:.8g})")
    sense_min = item.bound <= item.objective
    if sense_min:
        lo_new = -math.inf if math.isnan(bound) else bound
        hi_new = math.inf if math.isnan(objective) else objective
        lo_old, hi_old = item.bound, item.objective
    else:
        lo_new = -math.inf if math.isnan(objective) else objective
        hi_new = math.inf if math.isnan(bound) else bound
        lo_old, hi_old = item.objective, item.bound
    slack = rtol * max(1.0, abs(hi_old))
    note = (" (the re-solve found no incumbent)" if math.isnan(objective)
            else " (the re-solve found no bound)" if math.isnan(bound) else "")
    if lo_new <= hi_old + slack and lo_old <= hi_new + slack:
        return True, (f"interval [{lo_new:.8g}, {hi_new:.8g}]{note} consistent with "
                      f"[{lo_old:.8g}, {hi_old:.8g}]")
    return False, (f"interval [{lo_new:.8g}, {hi_new:.8g}]{note} contradicts recorded "
                   f"[{lo_old:.8g}, {hi_old:.8g}]")


def add(name: str, size: str, make: Callable[[], Instance], solve_kw: dict[str, Any],
        obtained: str, directory: Path | None = None) -> library.Entry:
    """Write one instance file, solve it, and return its manifest entry."""
    if size not in library.SIZES:
        raise ValueError(f"size must be one of {library.SIZES}")
    directory = directory or library.LIBRARY_DIR
    instance = make()
    objective, bound, kind, wall = solve_entry(instance, solve_kw)
    values = {"objective": None if math.isnan(objective) else objective,
              "bound": None if math.isnan(bound) else bound}
    missing = [field for field in _needed(kind) if values[field] is None]
    if missing:  # (checked before the file is written: a refused solve changes nothing)
        raise RuntimeError(
            f"library instance {name!r}: the solve with {dict(solve_kw)} found no "
            f"{' and no '.join(missing)} (a {kind} entry records {' and '.join(_needed(kind))}), "
            "so there is nothing to record (give the solve more time: a larger time_limit)")
    rel = Path(instance.decision) / f"{name}.json"
    (directory / rel).parent.mkdir(parents=True, exist_ok=True)
    instance.to_json(directory / rel)
    return library.Entry(
        name=name, decision=instance.decision, size=size, file=str(rel),
        sha256=library.sha256_file(directory / rel), objective=values["objective"],
        bound=values["bound"], bound_kind=kind, solve=dict(solve_kw),
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
            found = objective if item.bound_kind == "optimal" else bound
            ok, message = check(item, objective, bound, rtol)
            row.update(found=found, wall_s=wall, ok=ok, message=message)
        except (InvalidInstanceError, ValueError) as exc:
            row["message"] = str(exc)
        rows.append(row)
    return pd.DataFrame(rows)
