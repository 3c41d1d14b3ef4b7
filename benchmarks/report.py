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

# a report, a plot or a CSV is written whole or not at all: a run interrupted while writing
# (killed, a full disk) leaves the old file or none, never half of the new one
from servopt.core.files import replace_file as write_atomic
from servopt.core.files import replace_text as write_text_atomic

SUMMARY_COLUMNS = ["case", "method", "decision", "runs", "gap_runs", "cost", "gap_mean",
                   "gap_max", "wall_s", "bound_kind", "status"]

NO_BOUND = "no bound"
NO_RUN = "no run"  # (a method none of whose runs produced a cost: its status says why)


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    """Per case and method: runs, runs with a gap, mean cost, mean / max gap, mean time, bound
    kind, statuses.

    ``runs`` counts the runs that produced a cost; ``gap_runs`` those of them that have a gap (a
    bound to compare with; ``inf``, a positive cost against a bound of 0, counts). ``gap_mean`` /
    ``gap_max`` are over the ``gap_runs`` runs only, as fractions of the bound (0.05: 5 % worse
    than the bound). ``status`` is ``ok`` when every run was ok and had a bound; else the count of
    each other status (for example ``2 unstable`` for a capacity plan that under-provisions, or an
    error) and, for runs that ran without a bound, ``no bound in 1 of 2 runs (time_limit)`` with
    why (:func:`bound_reasons`). Runs skipped for want of a public trace are left out
    (:func:`skipped_notes` says which).
    """
    if not frame.empty:
        frame = frame[~_skipped(frame["status"])]
    if frame.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    gap_run = _ran(frame) & frame["gap"].notna()
    frame = frame.assign(_gap_run=gap_run, _run_gap=frame["gap"].where(gap_run),
                         _no_bound=missing_bound(frame), _why=bound_reasons(frame))
    grouped = frame.groupby(["case", "method"], sort=False)
    out = grouped.agg(
        decision=("decision", "first"),
        runs=("cost", "count"),  # runs that produced a cost (errors are counted in status)
        gap_runs=("_gap_run", "sum"),
        cost=("cost", "mean"),
        gap_mean=("_run_gap", "mean"),  # over the gap_runs runs only: a gap on a row without
        gap_max=("_run_gap", "max"),  # a cost is no run's (R44 F2; the mean skips NaN)
        wall_s=("wall_s", "mean"),
        bound_kind=("bound_kind", lambda s: "/".join(sorted({str(v) for v in s}))),
        status=("status", _status_counts),
    ).reset_index()
    out["gap_runs"] = out["gap_runs"].astype(int)
    statuses = []
    for status, (_, rows) in zip(out["status"], grouped, strict=True):
        missing = rows[rows["_no_bound"]]
        if missing.empty:
            statuses.append(status)
            continue
        ran = int(_ran(rows).sum())
        note = (f"{NO_BOUND} in {len(missing)} of {ran} run{'s' if ran != 1 else ''} "
                f"({', '.join(dict.fromkeys(missing['_why']))})")
        statuses.append(note if status == "ok" else f"{status}; {note}")
    out["status"] = statuses
    return out[SUMMARY_COLUMNS]


def _ran(frame: pd.DataFrame) -> pd.Series:
    """Rows whose method produced a cost (an error row has none)."""
    return frame["cost"].notna()


def missing_bound(frame: pd.DataFrame) -> pd.Series:
    """Rows whose method ran but that have no gap for want of a bound: the bound is NaN (a
    hand-made frame without a ``bound`` column: the gap is NaN). A NaN gap against a bound that is
    there (a run on another instance than its bound's) is not counted: its status says why."""
    no_gap = _ran(frame) & frame["gap"].isna()
    if "bound" in frame.columns:
        no_gap &= pd.to_numeric(frame["bound"], errors="coerce").isna()
    return no_gap


def bound_reasons(frame: pd.DataFrame) -> pd.Series:
    """Per row, in a few words, why a bound would be missing: its status (``time_limit``,
    ``bound raised ValueError``, ``bound skipped``), else its kind (``bound kind none``), else
    ``no bound``."""
    blank = pd.Series("", index=frame.index)
    status = frame["bound_status"] if "bound_status" in frame.columns else blank
    kind = frame["bound_kind"] if "bound_kind" in frame.columns else blank

    def reason(bound_status: Any, bound_kind: Any) -> str:
        text = "" if pd.isna(bound_status) else str(bound_status)
        if text.startswith("error"):
            parts = text.split(":")
            return f"bound raised {parts[1].strip()}" if len(parts) > 2 else "bound raised"
        if text.startswith("skipped"):
            return "bound skipped"
        if text and text not in ("ok", "optimal"):
            return text
        kind_text = "" if pd.isna(bound_kind) else str(bound_kind)
        return f"bound kind {kind_text}" if kind_text not in ("", "error") else NO_BOUND

    return pd.Series([reason(s, k) for s, k in zip(status, kind, strict=True)],
                     index=frame.index, dtype=object)


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


def markdown_table(frame: pd.DataFrame, floatfmt: str | dict[str, str] = ".4g") -> str:
    """A GitHub markdown table (no extra dependency). ``floatfmt`` is one format for every float
    or a dict ``{column: format}`` (columns not in it: ``.4g``). NaN is a blank cell."""

    def fmt(column: Any) -> str:
        return floatfmt.get(column, ".4g") if isinstance(floatfmt, dict) else floatfmt

    def cell(value: Any, form: str) -> str:
        if isinstance(value, float | np.floating):
            if math.isnan(value):
                return ""
            if math.isinf(value):
                return "inf" if value > 0 else "-inf"
            return format(float(value), form)
        return str(value).replace("|", "\\|")

    forms = [fmt(c) for c in frame.columns]
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v, f) for v, f in zip(row, forms, strict=True)) + " |"
            for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


# the gap table's figures: costs with 6 significant digits (methods 0.1 % apart are told apart:
# 19500 and 19530 are 1.95e+04 and 1.953e+04 at 4), gaps and times with 4
TABLE_FORMATS = {"cost": ".6g", "gap_mean": ".4g", "gap_max": ".4g", "wall_s": ".4g"}

UNITS_LINE = ("Units: `gap_mean` / `gap_max` are fractions of the bound, (cost - bound) / "
              "|bound| (0.05 is 5 %; `inf`: a bound of 0), over the `gap_runs` runs that have a "
              "bound; `wall_s` is the method's mean wall-clock seconds per run.")


def units_line(decision: str) -> str:
    """:data:`UNITS_LINE` in the decision's ``SENSE``: a max decision's gap is
    (bound - cost) / |bound| (``servopt.benchmarks.harness``)."""
    if _benchmark_attribute(decision, "SENSE", "min") != "max":
        return UNITS_LINE
    return UNITS_LINE.replace("(cost - bound)", "(bound - cost)")


def missing_bound_notes(frame: pd.DataFrame) -> dict[str, str]:
    """Per case with runs that ran without a bound: one line naming how many of its instances
    (cells and seeds) have none and why, and what the table's gaps leave out."""
    if frame.empty:
        return {}
    frame = frame[~_skipped(frame["status"])]
    frame = frame.assign(_no_bound=missing_bound(frame), _why=bound_reasons(frame))
    task = [c for c in ("params", "seed") if c in frame.columns]
    notes = {}
    for case, rows in frame.groupby("case", sort=False):
        missing = rows[rows["_no_bound"]]
        if missing.empty:
            continue
        if task:
            total = len(rows[_ran(rows)].drop_duplicates(task))
            gone = missing.drop_duplicates(task)
            where = "; ".join(
                f"{r['_why']}: " + " ".join(f"{c} {r[c]}" for c in task)
                for _, r in gone.iterrows())
            what = f"{len(gone)} of {total} instance{'s' if total != 1 else ''}"
        else:
            where = ", ".join(dict.fromkeys(missing["_why"]))
            what = f"{len(missing)} of {int(_ran(rows).sum())} runs"
        notes[str(case)] = (f"No bound for {what} ({where}): their runs have no gap and "
                            "`gap_mean` / `gap_max` leave them out (`gap_runs` counts the runs "
                            "with a gap).")
    return notes


def bound_status_notes(frame: pd.DataFrame) -> dict[str, str]:
    """Per case whose bounds carry a note (a bound that has a value but says something about it:
    decode routing's "busy-time bound: KV can bind ...", expert placement's "makespan bound
    kept ..."): one line with each note and on how many of the case's instances, so that a
    reader of the md knows which gaps are measured against a weaker bound (the CSV has them in
    ``bound_status``)."""
    if frame.empty or "bound_status" not in frame.columns or "bound" not in frame.columns:
        return {}
    task = [c for c in ("params", "seed") if c in frame.columns]
    frame = frame[pd.to_numeric(frame["bound"], errors="coerce").notna()]
    notes = {}
    for case, rows in frame.groupby("case", sort=False):
        tasks = rows.drop_duplicates(task) if task else rows
        text = tasks["bound_status"].astype(str)
        noted = tasks[~text.isin(["ok", "optimal", "nan", "None", ""]) & ~_skipped(text)
                      & ~text.str.startswith("error")]
        if noted.empty:
            continue
        # notes that differ only in their figures are one note ("model too large (… columns,
        # … memory-row entries)"): the CSV has each instance's own
        shapes = noted["bound_status"].astype(str).str.replace(r"\d[\d,.]*", "…", regex=True)
        shapes = shapes.replace({"time_limit": "time_limit (the solver's bound when its time "
                                               "limit stopped it)"})
        counts = shapes.value_counts(sort=False)
        notes[str(case)] = "Bound notes (the CSV's `bound_status` has each instance's): " + "; ".join(
            f"{why} ({n} of {len(tasks)} instance{'s' if len(tasks) != 1 else ''})"
            for why, n in counts.items()) + "."
    return notes


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
    bounds = missing_bound_notes(frame)
    said = bound_status_notes(frame)
    parts = []
    for decision, case in frame[["decision", "case"]].drop_duplicates().itertuples(index=False):
        block = summary[summary["case"] == case]
        text = f"## {decision}: {case}"
        if not block.empty:
            table = block[["method", "runs", "cost", "gap_runs", "gap_mean", "gap_max",
                           "wall_s", "bound_kind", "status"]]
            table = table.astype({"gap_mean": object, "gap_max": object})
            # (not blank): no run produced a cost, or runs did but had no bound
            table.loc[table["gap_runs"] == 0, ["gap_mean", "gap_max"]] = NO_BOUND
            table.loc[table["runs"] == 0, ["gap_mean", "gap_max"]] = NO_RUN
            unit = cost_line(str(decision))
            text += "\n\n" + (f"{unit}\n\n" if unit else "") + markdown_table(
                table, TABLE_FORMATS)
            text += "\n\n" + units_line(str(decision))
            if str(case) in bounds:
                text += "\n\n" + bounds[str(case)]
            if str(case) in said:
                text += "\n\n" + said[str(case)]
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
    """Refuse (exit with one line) to run the results script ``script`` (a
    ``benchmarks/<name>.py`` that reads or writes ``benchmarks/results``) anywhere but in its
    source checkout, from that checkout's root:

    - when ``script`` is not the file that the imported servopt would run as
      ``servopt.benchmarks.<name>``: ``python other/benchmarks/X.py`` puts other/benchmarks/
      first on ``sys.path``, not other/, so ``import servopt`` finds the installed (editable)
      copy and the script would report that copy's figures under its own name;
    - when there is no ``results`` folder beside ``script``: an installed copy (a wheel ships
      the scripts as ``servopt.benchmarks.<name>`` but not ``benchmarks/results``), whose
      scripts would stop on a missing file or write their tables into site-packages;
    - when the working directory is not the root of the script's checkout (its
      ``benchmarks/results`` missing or another folder's): the scripts' default paths
      (``benchmarks/results/...``) are relative to it."""
    import servopt

    script = Path(script).resolve()
    spec = util.find_spec(f"servopt.benchmarks.{script.stem}")
    found = Path(spec.origin).resolve() if spec is not None and spec.origin else None
    root = script.parent.parent
    if found != script:
        sys.exit(f"{script.name}: imported servopt from {Path(servopt.__file__).resolve().parent}, "
                 f"not from this checkout {root}; run it as PYTHONPATH={root} python "
                 f"{script} (or pip install -e {root})")
    results = script.parent / "results"
    if not results.is_dir():
        sys.exit(f"{script.name}: the results scripts need a source checkout of servopt (git "
                 f"clone or unpacked sdist), run from its root as python benchmarks/{script.name};"
                 f" this servopt at {script.parent.parent} is installed, with no "
                 f"benchmarks/results")
    here = Path.cwd() / "benchmarks" / "results"
    if not here.is_dir() or here.resolve() != results.resolve():
        sys.exit(f"{script.name}: run it from the root of its source checkout (cd {root}), not "
                 f"from {Path.cwd()}, which has "
                 f"{'another' if here.is_dir() else 'no'} benchmarks/results")


def write_md(path: str | Path, text: str) -> Path:
    """Write a results md at ``path`` (its folder created if missing) with
    :func:`checkout_line` as the line after its title (its first line)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    title, _, rest = text.partition("\n")
    rest = rest.lstrip("\n")
    return write_text_atomic(path, f"{title}\n\n{checkout_line()}\n" + (f"\n{rest}" if rest else ""))


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


def md_text(frame: pd.DataFrame, name: str, command: str | None = None,
            provenance: dict[str, str] | list[str] | None = None,
            notes: list[str] | None = None, extra: str = "") -> str:
    """The md report of the runner's rows ``frame``: title, ``Regenerate with`` ``command``,
    ``notes`` (paragraphs), the ``Run on:`` lines (``provenance``: ``key: value`` pairs, or lines
    as they are), the units paragraph, :func:`format_gap_table`, then ``extra`` (md sections)."""
    lines = [f"# servopt benchmark: {name}", ""]
    if command:
        lines += [f"Regenerate with `{command}`.", ""]
    for note in notes or []:
        lines += [note, ""]
    if provenance:
        items = provenance.items() if isinstance(provenance, dict) else None
        lines += ["Run on:", ""] + ([f"- {key}: {value}" for key, value in items] if items
                                    else list(provenance))
        lines += [""]
    lines += [_COST_LINE + "over the `gap_runs` runs that have a bound (a run without one is "
              "named in `status`). Gaps are fractions of the bound (0.05 is 5 %), here and in the "
              "CSV's `gap` column; `wall_s` is seconds.", ""]
    lines += [format_gap_table(frame), ""]
    if extra:
        lines += [extra.strip("\n"), ""]
    return "\n".join(lines)


_COST_LINE = ("`cost` is the mean over a case's runs, whose instances can differ in scale; "
              "`gap_mean` / `gap_max` (each run against its own bound) are the figures to compare, ")


def write_reports(frame: pd.DataFrame, out_dir: str | Path, name: str,
                  command: str | None = None,
                  provenance: dict[str, str] | None = None) -> list[Path]:
    """Write ``<name>.csv`` (every row) and ``<name>.md`` (summary per case), each whole or not at
    all (:func:`write_atomic`); return the paths.
    ``provenance`` (for example :func:`environment` plus the load averages of the run) is listed
    under the md header, one ``- key: value`` line each."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / f"{name}.csv", out / f"{name}.md"
    write_atomic(csv_path, lambda temporary: frame.to_csv(temporary, index=False))
    write_text_atomic(md_path, md_text(frame, name, command, provenance))
    return [csv_path, md_path]


# the columns of every row the runner writes (a plug-in's metrics add more)
ROW_COLUMNS = ("case", "decision", "params", "seed", "method", "cost", "bound", "bound_kind",
               "gap", "wall_s", "status")


def read_rows(csv_path: str | Path) -> pd.DataFrame:
    """The rows of ``NAME.csv`` as ``servopt bench`` wrote them; a file that is not such a CSV is
    refused (``ValueError``) naming what it lacks."""
    path = Path(csv_path)
    if path.suffix != ".csv":
        raise ValueError(f"{path}: not a .csv file (servopt bench writes NAME.csv and NAME.md)")
    try:
        frame = pd.read_csv(path, dtype={"params": str, "status": str, "bound_kind": str})
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a CSV servopt bench wrote ({exc})") from None
    missing = [c for c in ROW_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: not rows servopt bench wrote (no column {', '.join(missing)})")
    if frame.empty:  # (a header alone: every column reads as text, which would say less)
        raise ValueError(f"{path}: a header and no rows: servopt bench writes a row per run")
    for column in ("cost", "bound", "gap", "wall_s"):
        if not pd.api.types.is_numeric_dtype(frame[column]):
            raise ValueError(f"{path}: column {column} holds text, not numbers")
    _check_rows(frame, path)
    _check_gaps(frame, path)
    return frame


def _check_rows(frame: pd.DataFrame, path: Path) -> None:
    """Refuse a row no run writes: a negative or infinite ``wall_s`` (a failed or skipped run
    has none, NaN), or an empty ``status`` (every run names one: ``ok``, an error, a skip)."""
    wall, status = frame["wall_s"], frame["status"]
    bad_wall = (wall < 0) | np.isinf(wall)
    bad_status = status.isna() | (status.astype(str).str.strip() == "")
    bad = np.flatnonzero(bad_wall.to_numpy() | bad_status.to_numpy())
    if bad.size:
        i = int(bad[0])
        row = frame.iloc[i]
        problem = (f"wall_s {float(row['wall_s'])!r}: a run's seconds are 0 or more (NaN when it has "
                   "none)" if bad_wall.iloc[i] else
                   "an empty status: every run names one (ok, an error, a skip)")
        raise ValueError(f"{path}: data row {i + 1} (case {row['case']}, method "
                         f"{row['method']}, params {row['params']}, seed {row['seed']}): "
                         f"{problem}; the file was edited or is not as servopt bench wrote it")


def _check_gaps(frame: pd.DataFrame, path: Path) -> None:
    """Refuse a row whose ``gap`` is not the gap of its ``cost`` and ``bound``
    (:func:`servopt.core.solution.relative_gap` in its decision's ``SENSE``, as the runner
    computes it), to a relative 1e-6: an edited or corrupted row would otherwise move
    ``gap_mean`` with nothing to show. A gap may be empty where both are there (a run on
    another instance than its bound's has none); a gap without a cost or a bound is refused.
    For a decision this servopt does not know (a plug-in not loaded) either sense is taken.

    Refused, not recomputed: ``servopt report`` renders what the run wrote and computes nothing,
    and a CSV whose gaps disagree with its own costs would go on saying another number than
    its md; the user should know the file changed and decide which column to trust."""
    from servopt.core.solution import relative_gap

    senses: dict[Any, tuple[str, ...]] = {}
    for i, (decision, cost, bound, gap) in enumerate(
            frame[["decision", "cost", "bound", "gap"]].itertuples(index=False)):
        if pd.isna(gap):
            continue
        if decision not in senses:
            sense = _benchmark_attribute(str(decision), "SENSE", None)
            senses[decision] = (sense,) if sense in ("min", "max") else ("min", "max")
        expected = [relative_gap(float(cost), float(bound), sense) for sense in senses[decision]]
        if any(gap == e or math.isclose(gap, e, rel_tol=1e-6, abs_tol=1e-12) for e in expected):
            continue
        row = frame.iloc[i]
        what = (f"its {'cost' if pd.isna(cost) else 'bound'} is empty: no run has a gap without "
                "both" if math.isnan(expected[0]) else
                f"it is not the gap of its cost {cost!r} and bound {bound!r} "
                f"({' or '.join(senses[decision])}: relative_gap gives "
                f"{' or '.join(repr(e) for e in expected)})")
        raise ValueError(f"{path}: data row {i + 1} (case {row['case']}, method {row['method']}, "
                         f"params {row['params']}, seed {row['seed']}): gap {gap!r}, but {what}; "
                         "the file was edited or is not as servopt bench wrote it (run the "
                         "bench again, or restore the row)")


def render_md(csv_path: str | Path, code: str | None = None, out_dir: str | Path | None = None
              ) -> Path:
    """Write ``NAME.md`` beside ``NAME.csv`` (or into ``out_dir``, leaving the md beside the CSV
    as it is: the notes kept are still read from it) (rows ``servopt bench`` wrote) again in this
    version's layout, from the CSV's rows alone: nothing is computed. Of the earlier md, the
    ``Regenerate with`` command, the ``Run on:`` lines (they describe the run that computed the
    rows), paragraphs written into its header by hand and sections other than the gap tables
    (``## decision: case``) are kept; a paragraph says when and by which servopt it was rendered.
    ``code`` names the servopt that renders (default :func:`checkout_line`, which counts md files
    rendered earlier in the same batch as changes: give it once for a batch).
    A file that is not such a CSV is refused (``ValueError``) naming what it lacks."""
    path = Path(csv_path)
    frame = read_rows(path)
    target, text = _md_files(path, out_dir)
    command, notes, provenance, extra = None, [], [], ""
    if text is not None:
        head, *sections = text.split("\n## ")
        tables = {f"{d}: {c}" for d, c in frame[["decision", "case"]].drop_duplicates().itertuples(
            index=False)}
        extra = "\n".join("## " + x.rstrip("\n") + "\n" for x in sections
                          if x.partition("\n")[0].strip() not in tables)
        for paragraph in head.split("\n\n")[1:]:
            paragraph = paragraph.strip("\n")
            if paragraph.startswith("Run on:"):
                provenance = _block(paragraph.splitlines()[1:])
            elif (paragraph.startswith("Regenerate with `") and paragraph.endswith("`.")
                  and paragraph.count("`") == 2):
                command = paragraph[len("Regenerate with `"):-2]
            elif paragraph.startswith("- ") and not provenance and "Run on:" in head:
                provenance = _block(paragraph.splitlines())
            elif paragraph and not paragraph.startswith(("`cost` is the mean", "Rendered from `")):
                notes.append(paragraph)
    run = "the run under \"Run on\"" if provenance else \
        "an earlier run (the CSV's git history says which)"
    notes.append(f"Rendered from `{path.name}` by `servopt report` with {code or checkout_line()}: the "
                 f"rows are those {run} computed; nothing was recomputed.")
    return write_text_atomic(target, md_text(frame, path.stem, command, provenance, notes, extra))


def check_renderable(csv_path: str | Path, out_dir: str | Path | None = None) -> None:
    """Refuse (``ValueError``) what :func:`render_md` would refuse for ``csv_path``, writing
    nothing: its rows, the md beside it and the md's target. ``servopt report`` checks every file
    so before it writes the first md."""
    read_rows(csv_path)
    _md_files(Path(csv_path), out_dir)


def _md_files(path: Path, out_dir: str | Path | None) -> tuple[Path, str | None]:
    """Where :func:`render_md` writes ``path``'s md, and the text of the md beside ``path`` (None:
    there is none); a folder in the target's place or an md that cannot be read is refused."""
    md_path = path.with_suffix(".md")
    target = md_path if out_dir is None else Path(out_dir) / md_path.name
    if target.is_dir():  # (os.replace would fail naming its temporary file: R44 F6)
        raise ValueError(f"{target}: a folder where servopt report writes the md: move it, or "
                         "render into another folder with --out")
    if not md_path.is_file():
        return target, None
    try:
        return target, md_path.read_text()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{md_path}: the md beside the CSV is not {exc.encoding} text "
                         f"({exc.reason} at byte {exc.start}); report keeps its notes: fix "
                         "or remove it") from None
    except OSError as exc:
        raise ValueError(f"{md_path}: the md beside the CSV cannot be read "
                         f"({exc.strerror or exc}); report keeps its notes: fix or remove "
                         "it") from None


def _block(lines: list[str]) -> list[str]:
    """The ``- ...`` lines at the start of ``lines`` (after blank ones)."""
    block = []
    for line in lines:
        if line.startswith("- "):
            block.append(line)
        elif block or line.strip():
            break
    return block
