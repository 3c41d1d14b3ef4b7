"""Tables and plots from the tidy frame the runner returns."""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
from importlib import metadata, util
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    """Per case and method: runs, mean cost, mean / max gap, mean time, bound kind, statuses.

    ``status`` is ``ok`` when every run was, else the count of each other status (for example
    ``2 unstable`` for a capacity plan that under-provisions, or an error). Runs skipped for want
    of a public trace are left out (:func:`skipped_notes` says which).
    """
    if not frame.empty:
        frame = frame[~_skipped(frame["status"])]
    if frame.empty:
        return pd.DataFrame(columns=["case", "method", "runs", "cost", "gap_mean", "gap_max",
                                     "wall_s", "bound_kind", "status"])
    grouped = frame.groupby(["case", "method"], sort=False)
    out = grouped.agg(
        decision=("decision", "first"),
        runs=("cost", "count"),  # runs that produced a cost (errors are counted in status)
        cost=("cost", "mean"),
        gap_mean=("gap", "mean"),
        gap_max=("gap", "max"),
        wall_s=("wall_s", "mean"),
        bound_kind=("bound_kind", lambda s: "/".join(sorted({str(v) for v in s}))),
        status=("status", _status_counts),
    )
    return out.reset_index()


def _status_counts(statuses: pd.Series) -> str:
    counts = statuses.astype(str).str.split(":").str[0].value_counts()
    bad = counts.drop(labels=["ok", "optimal"], errors="ignore")
    return "ok" if bad.empty else ", ".join(f"{n} {s}" for s, n in bad.items())


def _skipped(statuses: pd.Series) -> pd.Series:
    return statuses.astype(str).str.startswith("skipped:")


def skipped_notes(frame: pd.DataFrame) -> dict[str, list[str]]:
    """Per case, one note per skip reason (a public trace that was not found): the reason as the
    runner wrote it, and which runs, bounds and cells it took out."""
    notes: dict[str, list[str]] = {}
    if frame.empty or "params" not in frame.columns:  # (a hand-made frame: nothing skipped)
        return notes
    runs = frame[_skipped(frame["status"])]
    bounds = frame[_skipped(frame.get("bound_status", pd.Series("", index=frame.index)))]
    bounds = bounds.drop_duplicates(["case", "params", "seed"])
    if runs.empty and bounds.empty:
        return notes
    for case in dict.fromkeys(frame["case"]):
        reasons: dict[str, tuple[int, int, list[str]]] = {}
        for source, column, index in ((runs, "status", 0), (bounds, "bound_status", 1)):
            mine = source[source["case"] == case]
            for reason, rows in mine.groupby(column, sort=False):
                counts = list(reasons.get(str(reason), (0, 0, [])))
                counts[index] += len(rows)
                counts[2] = list(dict.fromkeys([*counts[2], *map(str, rows["params"])]))
                reasons[str(reason)] = (counts[0], counts[1], counts[2])
        for reason, (n_runs, n_bounds, cells) in reasons.items():
            what = [f"{n} {w}{'s' if n != 1 else ''}" for n, w in ((n_runs, "run"),
                                                                     (n_bounds, "bound")) if n]
            where = "the cell " if len(cells) == 1 else "the cells "
            notes.setdefault(str(case), []).append(
                f"{reason} ({' and '.join(what)} of {where}{'; '.join(cells)})")
    return notes


def markdown_table(frame: pd.DataFrame, floatfmt: str = ".4g") -> str:
    """A GitHub markdown table (no extra dependency)."""

    def cell(value: Any) -> str:
        if isinstance(value, float | np.floating):
            if math.isnan(value):
                return ""
            if math.isinf(value):
                return "inf" if value > 0 else "-inf"
            return format(float(value), floatfmt)
        return str(value).replace("|", "\\|")

    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def _benchmark_attribute(decision: str, name: str, default: Any) -> Any:
    from servopt.benchmarks.harness import benchmark_module
    from servopt.core import InvalidInstanceError

    try:
        return getattr(benchmark_module(decision), name, default)
    except InvalidInstanceError:  # an unknown decision label in a hand-made frame: nothing to say
        return default


def foresight_methods(decision: str) -> tuple[str, ...]:
    """Methods of a decision that use the future (offline references, not online rules): its
    benchmark module's ``FORESIGHT``."""
    return tuple(_benchmark_attribute(decision, "FORESIGHT", ()))


def cost_line(decision: str) -> str:
    """What ``cost`` measures for a decision (its benchmark module's ``COST`` and ``SENSE``)."""
    what = _benchmark_attribute(decision, "COST", "")
    better = "higher" if _benchmark_attribute(decision, "SENSE", "min") == "max" else "lower"
    return f"cost = {what}, {better} is better; gap as a fraction of the bound." if what else ""


def format_gap_table(frame: pd.DataFrame) -> str:
    """The per-decision text shown by ``servopt bench``: per case its table and a note for each
    trace it could not find (a case whose every run was skipped has only the note)."""
    if frame.empty:
        return "(no rows)"
    summary = summarise(frame)
    notes = skipped_notes(frame)
    parts = []
    for decision, case in frame[["decision", "case"]].drop_duplicates().itertuples(index=False):
        block = summary[summary["case"] == case]
        text = f"## {decision}: {case}"
        if not block.empty:
            table = block[["method", "runs", "cost", "gap_mean", "gap_max", "wall_s",
                           "bound_kind", "status"]]
            unit = cost_line(str(decision))
            text += "\n\n" + (f"{unit}\n\n" if unit else "") + markdown_table(table)
            marked = [m for m in table["method"] if m in foresight_methods(str(decision))]
            if marked:
                text += ("\n\nOffline references that use the future (not rules one can deploy): "
                         + ", ".join(marked) + ".")
        for note in notes.get(str(case), []):
            text += f"\n\n{note}"
        parts.append(text)
    return "\n\n".join(parts)


LIBRARIES = ("numpy", "pandas", "pyomo", "highspy", "cvxpy")


def load_average() -> str:
    """The 1, 5 and 15 minute load averages and the CPU count (``unknown`` where the system
    does not say)."""
    try:
        one, five, fifteen = os.getloadavg()
    except (AttributeError, OSError):
        return f"unknown ({os.cpu_count()} CPUs)"
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f} (1 / 5 / 15 min) on {os.cpu_count()} CPUs"


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def git_state(folder: str | Path | None = None) -> str:
    """``<commit> (clean)`` or ``<commit> (dirty: M modified, U untracked)`` for the git checkout
    holding the servopt package (or ``folder``), else ``not a git checkout`` (an installed copy)."""
    if folder is None:
        import servopt

        folder = Path(servopt.__file__).resolve().parent
    folder = Path(folder)

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True,
                              timeout=30, check=False)

    try:  # the package's own file must be tracked: a copy in site-packages inside some other
        # checkout (a virtual environment in a project folder) is not this project's commit
        if git("ls-files", "--error-unmatch", "__init__.py").returncode != 0:
            return "not a git checkout"
        commit = git("rev-parse", "HEAD").stdout.strip()
        changes = git("status", "--porcelain").stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return "unknown (git not available)"
    untracked = sum(line.startswith("??") for line in changes)
    modified = len(changes) - untracked
    state = "clean" if not changes else f"dirty: {modified} modified, {untracked} untracked"
    return f"{commit or 'unknown'} ({state})"


def checkout_line() -> str:
    """``servopt <commit> (clean|dirty: ...)``: the code a results file was made with, as
    :func:`git_state` of the servopt that was imported (the commit names it; a scratch clone's
    folder would mean nothing to a reader), or ``servopt <state> at <folder>`` when that servopt
    is not a git checkout."""
    import servopt

    package = Path(servopt.__file__).resolve().parent
    state = git_state(package)
    return f"servopt {state} at {package}" if state.startswith(("not ", "unknown")) else \
        f"servopt {state}"


def require_checkout(script: str | Path) -> None:
    """Refuse (exit with one line) when the benchmark script ``script`` is not the file that the
    imported servopt would run as ``servopt.benchmarks.<name>``: ``python other/benchmarks/X.py``
    puts other/benchmarks/ first on ``sys.path``, not other/, so ``import servopt`` finds the
    installed (editable) copy and the script would report that copy's figures under its own name."""
    import servopt

    script = Path(script).resolve()
    spec = util.find_spec(f"servopt.benchmarks.{script.stem}")
    found = Path(spec.origin).resolve() if spec is not None and spec.origin else None
    if found != script:
        root = script.parent.parent
        sys.exit(f"{script.name}: imported servopt from {Path(servopt.__file__).resolve().parent}, "
                 f"not from this checkout {root}; run it as PYTHONPATH={root} python "
                 f"{script} (or pip install -e {root})")


def write_md(path: str | Path, text: str) -> Path:
    """Write a results md at ``path`` (its folder created if missing) with
    :func:`checkout_line` as the line after its title (its first line)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    title, _, rest = text.partition("\n")
    rest = rest.lstrip("\n")
    path.write_text(f"{title}\n\n{checkout_line()}\n" + (f"\n{rest}" if rest else ""))
    return path


def environment() -> dict[str, str]:
    """What benchmark figures depend on besides the code: servopt's version and git commit,
    Python and the numerical libraries' versions (``not installed`` if absent)."""
    import servopt

    state = git_state()
    where = state if state.startswith(("not ", "unknown")) else f"git {state}"
    return {
        "servopt": f"{getattr(servopt, '__version__', _version('servopt'))}, {where}",
        "Python": f"{platform.python_version()} ({platform.python_implementation()}, "
                  f"{platform.system()} {platform.machine()})",
        **{name: _version(name) for name in LIBRARIES},
    }


def write_reports(frame: pd.DataFrame, out_dir: str | Path, name: str,
                  command: str | None = None,
                  provenance: dict[str, str] | None = None) -> list[Path]:
    """Write ``<name>.csv`` (every row) and ``<name>.md`` (summary per case); return the paths.
    ``provenance`` (for example :func:`environment` plus the load averages of the run) is listed
    under the md header, one ``- key: value`` line each."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / f"{name}.csv", out / f"{name}.md"
    frame.to_csv(csv_path, index=False)
    lines = [f"# servopt benchmark: {name}", ""]
    if command:
        lines += [f"Regenerate with `{command}`.", ""]
    if provenance:
        lines += ["Run on:", ""] + [f"- {key}: {value}" for key, value in provenance.items()]
        lines += [""]
    lines += ["`cost` is the mean over a case's runs, whose instances can differ in scale; "
              "`gap_mean` / `gap_max` (each run against its own bound) are the figures to compare.",
              ""]
    lines += [format_gap_table(frame), ""]
    md_path.write_text("\n".join(lines))
    return [csv_path, md_path]
