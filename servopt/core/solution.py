"""Solution of an exact or relaxed solve, and the one place where dual signs are normalised.

Sign convention for prices (everywhere in servopt)
---------------------------------------------------
The price of an inequality row is the improvement of the optimal objective per unit by which
the row is relaxed (one more unit of capacity). It is therefore >= 0 for every resource, in a
min or a max problem alike. The price of an equality row is the derivative of the optimal
objective in the row's right-hand side (the marginal cost of one more unit of demand in a min
problem). Solver-specific conventions are turned into this one by :func:`normalise_dual`.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from servopt.core.errors import InvalidInstanceError
from servopt.core.files import replace_file  # (the benchmark runner imports it from here)
from servopt.core.instance import DuplicateKeyError, unique_keys

Sense = Literal["min", "max"]
Row = Literal["le", "ge", "eq"]
Convention = Literal["pyomo", "cvxpy"]

STATUSES = ("optimal", "time_limit", "interrupted", "unbounded", "error")  # infeasible raises InfeasibleError
# where a bound comes from (``info["bound_kind"]``, and the gap tables' column)
BOUND_KINDS = ("optimal", "mip_bound", "lp_relaxation", "lower_bound", "simulated", "none")


def _check_sense(sense: Any) -> None:
    # as MatrixModel: "minimize" or "MIN" was read as "max" and flipped every sign
    if sense not in ("min", "max"):
        raise ValueError(f"sense must be 'min' or 'max', got {sense!r}")


def normalise_dual(dual: Any, *, sense: Sense, row: Row, convention: Convention) -> Any:
    """Turn a solver's dual into a servopt price (see the module docstring).

    ``convention="pyomo"``: the dual is d(objective)/d(rhs) of the row ``body <= ub`` /
    ``body >= lb`` / ``body == rhs`` (Pyomo with HiGHS). ``convention="cvxpy"``: CVXPY's
    Lagrange multiplier, >= 0 for inequalities in both senses, and for an equality
    ``lhs == rhs`` minus d(objective)/d(rhs) when minimising, plus it when maximising.
    Works elementwise on floats, arrays and Series. A sense, row or convention other than the
    ones named here is a ValueError.
    """
    _check_sense(sense)
    if row not in ("le", "ge", "eq"):
        raise ValueError(f"row must be 'le', 'ge' or 'eq', got {row!r}")
    if convention == "pyomo":
        if row == "eq":
            return dual
        relax_sign = 1.0 if (sense == "min") == (row == "ge") else -1.0
        return relax_sign * dual
    if convention == "cvxpy":
        if row == "eq":
            return -dual if sense == "min" else dual
        return dual
    raise ValueError(f"unknown dual convention {convention!r}")


def clean_prices(price: pd.Series, *, inequality: bool, tol: float = 1e-7) -> pd.Series:
    """Round solver noise: inequality prices that are negative within ``tol`` become exactly 0
    (and -0.0 becomes 0.0 everywhere)."""
    price = price + 0.0
    if inequality:
        scale = max(1.0, float(np.abs(price.to_numpy()).max(initial=0.0)))
        values = price.to_numpy(dtype=float).copy()
        values[(values < 0) & (values > -tol * scale)] = 0.0
        price = pd.Series(values, index=price.index, name=price.name)
    return price


# relative difference below which a value and its bound are the same number (relative_gap)
GAP_RTOL = 1e-9


def relative_gap(value: float, bound: float, sense: Sense = "min") -> float:
    """(value - bound) / |bound| for a min problem, (bound - value) / |bound| for a max problem.

    0 when they are equal to ``GAP_RTOL`` of the larger magnitude (solver noise; relative, so the
    same in any unit: 3e-12 against a bound of 2.7e-12 is a gap of 0.11, as 3 against 2.7),
    ``inf`` when the bound is 0 or infinite and the value is worse than it, ``-inf`` when it is
    better (a cost below a bound of 0 is below it, whatever its size), ``nan`` when either is
    unknown. A gap's sign is always the sign of ``value - bound`` (``bound - value`` for max).
    ``sense`` other than ``min`` or ``max`` is a ValueError.
    """
    _check_sense(sense)
    if value is None or bound is None or math.isnan(value) or math.isnan(bound):
        return math.nan
    diff = value - bound if sense == "min" else bound - value
    if math.isinf(bound) and not math.isinf(value):  # (the tolerance below would call it 0)
        return math.copysign(math.inf, diff)
    # (0 against 0: exactly equal; an infinite value is never within tolerance of a finite bound)
    if math.isfinite(diff) and abs(diff) <= GAP_RTOL * max(abs(value), abs(bound)):
        return 0.0
    if bound == 0:
        return math.copysign(math.inf, diff)
    return diff / abs(bound)


def objective_unit(decision: str) -> str:
    """The unit of ``decision``'s model objective and bound (its models module's
    ``OBJECTIVE_UNIT``, e.g. ``"rounds"``); ``""`` when it declares none or the decision has no
    models module (a plug-in's, a solution not tied to a decision)."""
    if not decision:
        return ""
    from servopt.core.registry import layer_module

    try:
        module = layer_module(decision, "models")
    except (InvalidInstanceError, ImportError):  # (a plug-in's models that fail to import: the
        return ""  # solve said so; a summary line does not)
    unit = getattr(module, "OBJECTIVE_UNIT", "")
    return unit if isinstance(unit, str) else ""


@dataclasses.dataclass
class Solution:
    """Outcome of a solve.

    Attributes
    ----------
    status : one of ``optimal`` (solved to the requested ``mip_gap``: ``gap`` says what is left),
        ``time_limit``, ``interrupted`` (Ctrl-C; the incumbent is kept), ``unbounded``, ``error``
        (no solution; also a MIP whose incumbent, rounded to whole numbers, breaks a row:
        ``info["incumbent_rejected"]`` says which, the bound is kept).
    objective : value of the incumbent (nan if none was found), in the model's units.
    bound : the proved bound (equals ``objective`` for an LP solved to optimality; for a MIP
        solved to ``mip_gap`` > 0 it may differ by up to that gap).
    gap : relative gap between objective and bound (see :func:`relative_gap`).
    wall_s : wall-clock seconds of build plus solve.
    decisions : primal decisions as pandas objects indexed like the instance.
    prices : constraint family name -> price Series, in the convention of this module; NaN
        where a row has no price (a MIP's binding row over integer variables only: with the
        integers fixed at the incumbent nothing in it can move; ``info["prices_note"]`` names the families,
        and ``relax=True`` gives the LP's prices).
    sense : ``min`` or ``max``.
    relaxed : True when this is an LP relaxation.
    backend : ``highs``, ``pyomo`` (HiGHS through the Pyomo model) or ``cvxpy``;
        ``info["form"]`` says whether HiGHS solved the ``matrix`` or the ``pyomo`` form.
    """

    status: str
    objective: float
    bound: float
    gap: float
    wall_s: float
    decisions: dict[str, pd.Series | pd.DataFrame] = dataclasses.field(default_factory=dict)
    prices: dict[str, pd.Series] = dataclasses.field(default_factory=dict)
    sense: Sense = "min"
    relaxed: bool = False
    backend: str = "highs"
    decision: str = ""
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def optimal(self) -> bool:
        return self.status == "optimal"

    def top_prices(self, n: int = 5, *, per_family: bool = False) -> pd.DataFrame:
        """The ``n`` largest prices by magnitude (family, index, price), over all constraint
        families or, with ``per_family``, the ``n`` largest of each family in turn (so a family of
        large equality duals cannot hide the capacity rows). Rows with no price (NaN: a MIP's binding
        rows over integer variables only, ``info["prices_note"]``) are left out."""
        parts = []
        for family, series in self.prices.items():
            series = series[~np.isnan(series.to_numpy(dtype=float))]
            if len(series) == 0:
                continue
            top = series.iloc[np.argsort(-np.abs(series.to_numpy(dtype=float)), kind="stable")[:n]]
            parts.append(pd.DataFrame({"family": family, "index": list(top.index),
                                       "price": top.to_numpy(dtype=float)}))
        if not parts:
            return pd.DataFrame(columns=["family", "index", "price"])
        frame = pd.concat(parts, ignore_index=True)
        if per_family:
            return frame
        order = frame["price"].abs().sort_values(ascending=False, kind="stable").index
        return frame.loc[order].head(n).reset_index(drop=True)

    def summary(self) -> str:
        """One line: decision, kind, backend, status, objective and bound (with the model's
        objective unit, :func:`objective_unit`, when the decision has one), gap and seconds."""
        kind = "LP relaxation" if self.relaxed else "model"
        unit = objective_unit(self.decision)
        return (
            f"{self.decision or 'solve'} {kind} [{self.backend}]: status={self.status} "
            f"objective={self.objective:.6g} bound={self.bound:.6g}{f' ({unit})' if unit else ''} "
            f"gap={self.gap:.3%} time={self.wall_s:.2f}s"
        )

    def save(self, directory: str | Path) -> Path:
        """Write the solution as files: ``solution.json`` (status, objective, bound, gap, time,
        sense, backend, form, decision, instance fingerprint, the model's note; NaN as null, an infinite value
        (a gap against a bound of 0) as "Infinity" / "-Infinity"; and per table the
        dtypes of its index levels and values, its row count and a digest of its labels), one
        ``prices/<family>.csv`` and one ``decisions/<name>.csv`` per entry, with the index levels
        as leading columns (read back with :meth:`load`, or ``pd.read_csv(path,
        index_col=list(range(levels)))``; a DataFrame such as decode routing's request x worker
        share is written long, one row per cell, its column levels after the row levels, and
        ``solution.json`` records its column labels in order, their level names and kinds and
        each column's value kind, so that :meth:`load` rebuilds it; a DataFrame with a repeated
        row or column label is refused, since its long form could not be put back, as are index
        level names that repeat each other or the table's name and None column labels). Level
        names come back as text, and in a text column None comes back as "" (both are an empty
        cell). Every table is checked before anything is written; then the earlier
        ``solution.json`` and the tables it listed are removed (and only those: other files in the
        folders are left alone), and the new ``solution.json`` is written last, so a save refused
        or interrupted half-way leaves a folder :meth:`load` refuses, never a mix of two
        solutions. A ``prices`` or ``decisions`` folder
        that is a symbolic link, or not a folder, is refused (``InvalidInstanceError``), and each
        file is written beside its place and then moved there (a symbolic link in its place is
        replaced, not followed), so nothing outside ``directory`` is written or removed. Returns
        the directory. A table name other than letters, digits and _ (``../x``, ``my-pin``: the
        name of a row a user added to a model) is refused before anything is written: it names
        the table's file, and :meth:`load` reads only such names."""
        for folder, frames in (("prices", self.prices), ("decisions", self.decisions)):
            for name in frames:
                if not _plain_name(name):
                    raise InvalidInstanceError(
                        f"Solution.save: {folder} name {name!r} is not a plain name (letters, "
                        f"digits, _, with dots between parts as in a Block's blk.pin): it names "
                        f"the file {folder}/<name>.csv, and load reads only such names; rename "
                        "the table (for a row you added to a model, its component, or the "
                        "indexed Block holding it: b[1].pin has no plain name)")
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        for folder in ("prices", "decisions"):
            sub = out / folder
            if sub.is_symlink() or (sub.exists() and not sub.is_dir()):
                raise InvalidInstanceError(
                    f"Solution.save: {sub} is {'a symbolic link' if sub.is_symlink() else 'not a folder'}"
                    "; save writes and removes its tables there: remove it or choose another folder")
        stale = _saved_tables(out)
        head = {"decision": self.decision, "status": self.status, "objective": self.objective,
                "bound": self.bound, "gap": self.gap, "wall_s": self.wall_s, "sense": self.sense,
                "relaxed": self.relaxed, "backend": self.backend, "form": self.info.get("form"),
                "instance": self.info.get("instance"), "note": self.info.get("note"),
                "lp": self.info.get("lp"), "bound_kind": self.info.get("bound_kind"),
                "prices_note": self.info.get("prices_note"),
                "prices": sorted(self.prices), "decisions": sorted(self.decisions)}
        head = {k: (None if math.isnan(v) else _INFINITE[v > 0]) if isinstance(v, float)
                and not math.isfinite(v) else v for k, v in head.items()}
        # every table is checked and put in its written form before anything in ``out`` changes,
        # and the old solution.json goes first: a save refused or interrupted half-way leaves a
        # folder load refuses, never the old header over a mix of old and new tables
        ready: list[tuple[str, str, pd.DataFrame, list[Any], pd.Series, dict | None]] = []
        for folder, frames in (("prices", self.prices), ("decisions", self.decisions)):
            for name, frame in frames.items():
                where = f"{folder}/{name}"
                columns = None
                if isinstance(frame, pd.DataFrame):  # written long; its columns go in the json
                    columns = _columns_meta(frame, where)
                    kinds = set(columns["values"])
                    try:
                        frame = (frame if len(kinds) == 1 else frame.astype(object)).stack(
                            list(range(frame.columns.nlevels)), future_stack=True)
                    except ValueError as exc:  # (pandas refuses a label it cannot stack)
                        raise InvalidInstanceError(f"Solution.save: {where}'s columns cannot be "
                                                   f"written one row per cell ({exc})") from None
                table = frame.to_frame(name=name)
                header = [n if n is not None else f"level_{k}" for k, n in enumerate(table.index.names)]
                if len({str(n) for n in header} | {name}) != len(header) + 1:
                    raise InvalidInstanceError(
                        f"Solution.save: {where}'s index level names ({', '.join(map(str, header))}) "
                        f"must differ from each other and from the table's name {name!r}: they "
                        "are the CSV's column names")
                ready.append((folder, name, table, header, frame, columns))
        (out / "solution.json").unlink(missing_ok=True)
        tables: dict[str, dict[str, Any]] = {}
        for folder, frames in (("prices", self.prices), ("decisions", self.decisions)):
            for name in stale[folder]:
                (out / folder / f"{name}.csv").unlink(missing_ok=True)
            if frames:
                (out / folder).mkdir(exist_ok=True)
            tables[folder] = {}
        for folder, name, table, header, frame, columns in ready:
            where = f"{folder}/{name}"
            replace_file(out / folder / f"{name}.csv", lambda path, table=table, header=header:
                         table.to_csv(path, index=True, index_label=header))
            levels = [table.index.get_level_values(k) for k in range(table.index.nlevels)]
            kinds = set(columns["values"]) if columns is not None else set()
            tables[folder][name] = {
                "rows": len(table),
                "values": _dtype_kind(frame, f"{where} values") if columns is None
                else (columns["values"][0] if len(kinds) == 1 else "text"),  # (read per column)
                "levels": [_dtype_kind(level, f"{where} index level {k}")
                           for k, level in enumerate(levels)],
                "labels_sha256": _labels_digest(_read_text(out / folder / f"{name}.csv"))}
            if columns is not None:
                tables[folder][name]["columns"] = columns
            if folder == "prices" and (missing := _no_price_rows(frame)):
                tables[folder][name]["no_price"] = missing  # (load allows exactly these NaN)
        head["tables"] = tables
        text = json.dumps(head, indent=1) + "\n"
        replace_file(out / "solution.json", lambda path: path.write_text(text))
        return out

    @classmethod
    def load(cls, directory: str | Path) -> Solution:
        """Read back a solution written by :meth:`save` (e.g. LP prices solved offline, to build
        a bid-price rule elsewhere). Prices and decisions come back as they were saved: a Series
        or a DataFrame (its columns in their order, each column of its kind, its rows in the
        order they first appear in the file), with the same labels and label types (an empty
        text label reads back as ""). Raises ``InvalidInstanceError`` for a folder that is not a saved
        solution or a file that does not match its ``solution.json`` (a missing, added or
        relabelled row, a value or label of another type, a price that is empty, NaN or
        infinite beyond the rows saved with no price (NaN, counted in ``solution.json``), a
        DataFrame's cell that is missing or listed twice). Values may be edited, and
        rows re-sorted: rows are matched by label."""
        folder = Path(directory)
        head_path = folder / "solution.json"
        if not head_path.is_file():
            raise InvalidInstanceError(f"{folder} has no solution.json: not a folder written by "
                                       "Solution.save, or a save that was refused or interrupted "
                                       "before it finished (save again)")
        def finite(text: str) -> float:  # a JSON number; 1e400 would otherwise read as inf
            value = float(text)
            if not math.isfinite(value):
                raise InvalidInstanceError(f"{head_path}: the number {text} is beyond a float's "
                                           'range (an infinite value is written "Infinity")')
            return value

        def constant(text: str) -> float:  # NaN, Infinity: not JSON; save writes null/"Infinity"
            raise InvalidInstanceError(f"{head_path}: {text} is not a JSON value (save writes "
                                       'an unknown number as null, an infinite one as "Infinity")')

        try:  # (the instance reader's guards: a key given twice, nesting too deep; R44 F5)
            head = json.loads(head_path.read_text(encoding="utf-8-sig"), parse_float=finite,
                              parse_constant=constant, object_pairs_hook=unique_keys)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidInstanceError(f"{head_path} is not valid JSON ({exc})") from None
        except DuplicateKeyError as exc:
            raise InvalidInstanceError(f"{head_path}: {exc} (which value is meant?)") from None
        except RecursionError:
            raise InvalidInstanceError(f"{head_path}: the JSON is nested too deeply") from None
        if not isinstance(head, dict) or head.get("status") not in STATUSES:
            raise InvalidInstanceError(f"{head_path} is not a saved solution (status must be one "
                                       f"of {', '.join(STATUSES)})")
        stray = sorted(set(head) - _HEAD_KEYS, key=str)
        if stray:  # a typo'd "objectve" would otherwise read as no objective at all
            raise InvalidInstanceError(f"{head_path}: unknown key(s) {stray}; save writes only "
                                       f"{sorted(_HEAD_KEYS)}")
        if "objective" not in head:  # save always writes it (null when there is none)
            raise InvalidInstanceError(f"{head_path}: objective is missing (save writes it, null "
                                       "when the solve found none)")

        def number(key: str) -> float:
            value = head.get(key)
            if value is None:
                return math.nan
            if isinstance(value, str) and value in _INFINITE.values():
                return math.inf if value == _INFINITE[True] else -math.inf
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidInstanceError(f"{head_path}: {key} must be a number, null, "
                                           f'"Infinity" or "-Infinity", got {value!r}')
            try:
                return float(value)
            except OverflowError:  # a whole number beyond a float's range
                raise InvalidInstanceError(f"{head_path}: {key} {value} is beyond a float's "
                                           "range") from None

        meta = head.get("tables", {})
        if not isinstance(meta, dict):
            raise InvalidInstanceError(f"{head_path}: tables must be an object")
        for kind in ("prices", "decisions"):
            if not isinstance(meta.get(kind, {}), dict):
                raise InvalidInstanceError(f"{head_path}: tables.{kind} must be an object (table "
                                           f"name -> its rows and kinds), got {meta[kind]!r}")
            for name, entry in meta.get(kind, {}).items():
                _check_table_meta(entry, f"{head_path}: tables.{kind}.{name}")

        def tables(kind: str) -> dict[str, pd.Series]:
            names = head.get(kind, [])
            if not isinstance(names, list):
                raise InvalidInstanceError(f"{head_path}: {kind} must be a list of names")
            out = {}
            for name in names:
                if not _plain_name(name):
                    raise InvalidInstanceError(f"{head_path}: {kind} name {name!r} is not a "
                                               "plain name (letters, digits, _, dots between "
                                               "parts)")
                out[name] = _read_table(folder / kind / f"{name}.csv", name,
                                        (meta.get(kind) or {}).get(name))
                if kind == "prices":
                    table = out[name]
                    _check_finite(table.stack(list(range(table.columns.nlevels)), future_stack=True)
                                  .rename(name) if isinstance(table, pd.DataFrame) else table,
                                  folder / kind / f"{name}.csv",
                                  no_price=((meta.get(kind) or {}).get(name) or {}).get("no_price", 0))
            return out

        sense = head.get("sense", "min")
        if sense not in ("min", "max"):
            raise InvalidInstanceError(f"{head_path}: sense must be min or max, got {sense!r}")
        relaxed = head.get("relaxed", False)
        if not isinstance(relaxed, bool):
            raise InvalidInstanceError(f"{head_path}: relaxed must be true or false, got {relaxed!r}")
        objective, bound, gap = number("objective"), number("bound"), number("gap")
        expected = relative_gap(objective, bound, sense)
        # (a gap of 0 within 1e-9 absolute: the rule files were saved with before GAP_RTOL; +inf
        # for a value below a bound of 0: the sign files were saved with before 2ff6719)
        legacy = ((gap == 0 and abs(objective - bound) <= 1e-9 * max(1.0, abs(bound)))
                  or (gap == math.inf and expected == -math.inf))
        if (not math.isnan(gap) and not legacy
                and not math.isclose(gap, expected, rel_tol=1e-6, abs_tol=1e-9)):
            raise InvalidInstanceError(
                f"{head_path}: gap {gap!r} does not match objective {objective!r} and bound "
                f"{bound!r} ({sense}: relative_gap gives {expected!r}); the file was edited")
        info = {key: head[key] for key in ("form", "instance", "note", "prices_note")
                if head.get(key) is not None}
        if head.get("lp") is not None:  # whether the model solved was an LP: its duals are prices
            if not isinstance(head["lp"], bool):
                raise InvalidInstanceError(f"{head_path}: lp must be true or false, got {head['lp']!r}")
            info["lp"] = head["lp"]
        if head.get("bound_kind") is not None:
            if head["bound_kind"] not in BOUND_KINDS:
                raise InvalidInstanceError(f"{head_path}: bound_kind must be one of "
                                           f"{', '.join(BOUND_KINDS)}, got {head['bound_kind']!r}")
            info["bound_kind"] = head["bound_kind"]
        info["loaded_from"] = str(folder)
        return cls(status=head["status"], objective=objective, bound=bound,
                   gap=gap, wall_s=number("wall_s"), decisions=tables("decisions"),
                   prices=tables("prices"), sense=sense, relaxed=relaxed,
                   backend=str(head.get("backend", "highs")), decision=str(head.get("decision", "")),
                   info=info)

    def __repr__(self) -> str:
        families = ", ".join(f"{k}[{len(v)}]" for k, v in self.prices.items())
        return f"<Solution {self.summary()} prices: {families or 'none'}>"


_INFINITE = {True: "Infinity", False: "-Infinity"}  # solution.json's infinite numbers
_HEAD_KEYS = frozenset({"decision", "status", "objective", "bound", "gap", "wall_s", "sense",
                        "relaxed", "backend", "form", "instance", "note", "lp", "bound_kind",
                        "prices_note",
                        "prices", "decisions", "tables"})  # what save writes in solution.json
_KINDS = ("int", "float", "float32", "bool", "text", "none")  # a saved column's kinds


def _plain_name(name: Any) -> bool:
    """A table name as save writes it: letters, digits and _, in parts joined by single dots (a
    Pyomo Block's row is ``blk.pin``, solvers/exact.py); no path separator, no empty part, so
    no ``.`` or ``..``."""
    return isinstance(name, str) and all(part.replace("_", "").isalnum()
                                         for part in name.split("."))


def _check_table_meta(entry: Any, where: str) -> None:
    """solution.json's record of one table: its row count and the kinds of its values and index
    levels (each one of :data:`_KINDS`)."""
    if not isinstance(entry, dict):
        raise InvalidInstanceError(f"{where} must be an object (rows, values, levels), got {entry!r}")
    rows = entry.get("rows")
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
        raise InvalidInstanceError(f"{where}.rows must be a whole number >= 0, got {rows!r}")
    values, levels = entry.get("values", "float"), entry.get("levels")
    if not isinstance(levels, list) or not levels:
        raise InvalidInstanceError(f"{where}.levels must be a list of kinds, got {levels!r}")
    for field, kind in [("values", values)] + [(f"levels[{k}]", v) for k, v in enumerate(levels)]:
        if not isinstance(kind, str) or kind not in _KINDS:
            raise InvalidInstanceError(f"{where}.{field} must be one of {', '.join(_KINDS)}, "
                                       f"got {kind!r}")
    no_price = entry.get("no_price", 0)
    if isinstance(no_price, bool) or not isinstance(no_price, int) or not 0 <= no_price <= rows:
        raise InvalidInstanceError(f"{where}.no_price must be a whole number of rows from 0 to "
                                   f"{rows}, got {no_price!r}")
    digest = entry.get("labels_sha256")
    if digest is not None and not isinstance(digest, str):
        raise InvalidInstanceError(f"{where}.labels_sha256 must be text, got {digest!r}")
    if "columns" in entry:
        _check_columns_meta(entry["columns"], len(levels), f"{where}.columns")


def _check_columns_meta(columns: Any, index_levels: int, where: str) -> None:
    """solution.json's record of a DataFrame's columns (see :func:`_columns_meta`)."""
    if not isinstance(columns, dict):
        raise InvalidInstanceError(f"{where} must be an object (names, levels, labels, values), "
                                   f"got {columns!r}")
    names, levels = columns.get("names"), columns.get("levels")
    labels, values = columns.get("labels"), columns.get("values")
    if not isinstance(levels, list) or not levels or any(k not in _KINDS for k in levels):
        raise InvalidInstanceError(f"{where}.levels must be a list of kinds ({', '.join(_KINDS)})"
                                   f", got {levels!r}")
    if len(levels) >= index_levels:
        raise InvalidInstanceError(f"{where}: {len(levels)} column level(s) leave no row level "
                                   f"among the table's {index_levels} label columns")
    if not isinstance(names, list) or len(names) != len(levels) or \
            any(n is not None and not isinstance(n, str) for n in names):
        raise InvalidInstanceError(f"{where}.names must be a list of {len(levels)} texts or "
                                   f"nulls, got {names!r}")
    if not isinstance(labels, list) or any(
            not isinstance(label, list) or len(label) != len(levels)
            or not all(isinstance(part, str) for part in label) for label in labels):
        raise InvalidInstanceError(f"{where}.labels must be a list of column labels, each a list "
                                   f"of {len(levels)} texts, got {labels!r}")
    if not isinstance(values, list) or len(values) != len(labels) or \
            any(k not in _KINDS for k in values):
        raise InvalidInstanceError(f"{where}.values must be a list of {len(labels)} kinds "
                                   f"({', '.join(_KINDS)}), one per column, got {values!r}")


def _shown(label: Any) -> str:
    """A row or column label as a message shows it: ``1``, ``'gpu0'``, ``3, 'z'``."""
    parts = label if isinstance(label, tuple) else (label,)
    return ", ".join(repr(p) if isinstance(p, str) else str(p.item() if isinstance(p, np.generic) else p)
                     for p in parts)


def _columns_meta(frame: pd.DataFrame, where: str) -> dict[str, Any]:
    """What :meth:`Solution.load` needs to rebuild a DataFrame from its long form: the column
    levels' names and kinds, the column labels in order (as the CSV writes them) and each
    column's value kind. A repeated row or column label is refused, and a frame without columns
    (its long form would have no rows, so its row labels would be lost)."""
    if frame.shape[1] == 0 and frame.shape[0] > 0:
        raise InvalidInstanceError(f"Solution.save: {where} is a DataFrame with {frame.shape[0]} "
                                   "rows and no columns; it is written one row per cell, which "
                                   "would lose its rows: save it as a Series")
    for axis, labels in (("row", frame.index), ("column", frame.columns)):
        if not labels.is_unique:
            repeated = labels[labels.duplicated()].tolist()[0]
            raise InvalidInstanceError(
                f"Solution.save: {where} repeats the {axis} label {_shown(repeated)}; a DataFrame is "
                "written one row per cell, which could not be put back together")
    columns = frame.columns
    if any(pd.isna(columns.get_level_values(k)).any() for k in range(columns.nlevels)):
        raise InvalidInstanceError(f"Solution.save: {where} has a column label that is None or "
                                   "NaN; a DataFrame is written one row per cell, labelled by "
                                   "its column: name every column")
    names = [None if n is None else str(n) for n in columns.names]
    kinds = [_dtype_kind(columns.get_level_values(k), f"{where} column level {k}")
             for k in range(columns.nlevels)]
    buffer = io.StringIO()
    columns.to_frame(index=False).to_csv(buffer, index=False, quoting=csv.QUOTE_ALL)  # ("": a line)
    buffer.seek(0)
    text = pd.read_csv(buffer, dtype=str, keep_default_na=False) if len(columns) else None
    labels = [] if text is None else [list(row) for row in text.itertuples(index=False)]
    values = [_dtype_kind(frame.iloc[:, k], f"{where} column {columns[k]!r}")
              for k in range(len(columns))]
    return {"names": names, "levels": kinds, "labels": labels, "values": values}


def _saved_tables(out: Path) -> dict[str, list[str]]:
    """The prices and decisions tables an earlier save in ``out`` listed in its solution.json
    (plain names only; none when there is no readable solution.json)."""
    found: dict[str, list[str]] = {"prices": [], "decisions": []}
    try:
        head = json.loads((out / "solution.json").read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return found
    if isinstance(head, dict):
        for kind in found:
            names = head.get(kind)
            if isinstance(names, list):
                found[kind] = [n for n in names if _plain_name(n)]
    return found
_INT64_MIN, _INT64_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)


def _no_price_rows(price: Any) -> int:
    """How many cells of a price table are NaN (rows with no price: :class:`Solution`)."""
    try:
        values = np.asarray(price, dtype=float)
    except (TypeError, ValueError):
        return 0
    return int(np.isnan(values).sum())


def _check_finite(price: pd.Series, path: Path, no_price: int = 0) -> None:
    """A loaded price table holds finite numbers only, but for the ``no_price`` rows saved as NaN
    (a MIP's rows with no price: :class:`Solution`): a solver's duals are finite, so another
    empty, NaN or infinite cell was edited in, and a rule built on it would route or admit by
    garbage."""
    try:
        values = price.to_numpy(dtype=float)
    except (TypeError, ValueError):
        raise InvalidInstanceError(f"{path}: prices must be numbers") from None
    bad = ~np.isfinite(values)
    if no_price and int(np.isnan(values).sum()) == no_price:
        bad &= ~np.isnan(values)  # the rows saved with no price
    if bad.any():
        k = int(np.argmax(bad))
        label = price.index[k] if isinstance(price.index, pd.MultiIndex) else (price.index[k],)
        where = ", ".join(f"{name} {value}" if name else str(value)
                          for name, value in zip(price.index.names, label, strict=True)
                          if value is not None)
        where = f" for {where}" if where else ""
        raise InvalidInstanceError(f"{path}: the {price.name} price{where} is {values[k]} "
                                   f"({int(bad.sum())} of {len(values)} rows not finite): a price "
                                   "must be a finite number; re-solve or correct the file")


def _dtype_kind(values: Any, what: str) -> str:
    """How a column is written and read back: int, float, bool, text, or none (an unnamed scalar
    row's label); a column mixing kinds is refused, since CSV would not keep them apart."""
    dtype = values.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int"
    if dtype == np.float32:  # written at float32's shortest repr: read back as float32
        return "float32"
    if pd.api.types.is_float_dtype(dtype):
        return "float"
    present = [v for v in values if not (v is None or (isinstance(v, float) and math.isnan(v)))]
    if not present:
        return "none"
    for kind, types in (("bool", (bool, np.bool_)), ("text", (str,)),
                        ("int", (int, np.integer)), ("float", (int, float, np.integer, np.floating))):
        if all(isinstance(v, types) for v in present) and (
                kind == "bool" or not any(isinstance(v, bool | np.bool_) for v in present)):
            if kind == "int" and any(not _INT64_MIN <= v <= _INT64_MAX for v in present):
                raise InvalidInstanceError(f"Solution.save: {what} holds an integer beyond 64 "
                                           "bits, which Solution.load could not read back")
            return kind
    raise InvalidInstanceError(f"Solution.save: {what} mixes value types "
                               f"({', '.join(sorted({type(v).__name__ for v in present}))}), "
                               "which a CSV file cannot keep apart")


def _read_text(path: Path) -> pd.DataFrame:
    """A saved table with every cell as text (a label "000" or "NA" stays what it was)."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (ValueError, pd.errors.ParserError) as exc:
        raise InvalidInstanceError(f"{path} is not a readable CSV ({exc})") from None


def _labels_digest(frame: pd.DataFrame) -> str:
    """SHA-256 of a saved table's row labels (every column but the last, as text), in sorted
    order: unchanged when rows are re-sorted, changed when a label is."""
    columns = [frame[c] for c in frame.columns[:-1]]
    if not columns:
        return ""
    rows = columns[0].str.cat(columns[1:], sep="\x1f") if len(columns) > 1 else columns[0]
    return hashlib.sha256("\n".join(sorted(rows.tolist())).encode()).hexdigest()


def _read_table(path: Path, name: str, meta: Any) -> pd.Series | pd.DataFrame:
    """One saved price or decision table, its columns typed as :meth:`Solution.save` recorded
    (a DataFrame when ``meta`` records its columns)."""
    if not path.is_file():
        raise InvalidInstanceError(f"{path} is missing (solution.json lists it)")
    frame = _read_text(path)
    if frame.shape[1] < 2 or frame.columns[-1] != name:
        raise InvalidInstanceError(f"{path}: expected index columns, then a column {name!r}")
    levels = list(frame.columns[:-1])
    if meta is None:  # saved before the types were recorded: numbers where every label parses
        meta = {"rows": len(frame), "values": "float", "levels": [
            "int" if frame[c].str.fullmatch(r"-?\d+").all() else "text" for c in levels]}
    if not isinstance(meta, dict) or len(meta.get("levels", ())) != len(levels):
        raise InvalidInstanceError(f"{path}: its columns do not match solution.json")
    if meta.get("rows") != len(frame):
        raise InvalidInstanceError(f"{path} has {len(frame)} rows; solution.json says "
                                   f"{meta.get('rows')}: the file was changed")

    def typed(column: pd.Series, kind: str, what: str) -> Any:
        text = column.to_numpy(dtype=object)
        missing = text == ""  # NaN and NA are written as empty cells
        try:
            if kind == "int":
                if missing.any():
                    return pd.array([None if m else int(v) for v, m in zip(text, missing, strict=True)],
                                    dtype="Int64")
                return text.astype(np.int64)
            if kind in ("float", "float32"):
                values = np.where(missing, "nan", text).astype(float)
                return values.astype(np.float32) if kind == "float32" else values
            if kind == "bool":
                if not np.isin(text[~missing], ["True", "False"]).all():
                    raise ValueError("not True/False")
                if missing.any():
                    return pd.array([None if m else v == "True" for v, m in zip(text, missing, strict=True)],
                                    dtype="boolean")
                return text == "True"
        except (ValueError, TypeError, OverflowError):
            raise InvalidInstanceError(f"{path}: {what} must be {kind} values") from None
        if kind == "none":  # saved with no value at all: a value here was written by hand
            if not missing.all():
                raise InvalidInstanceError(f"{path}: {what} must be empty (solution.json: no "
                                           f"values), but holds {text[~missing][0]!r}")
            return np.array([None] * len(text), dtype=object)
        return text  # text: an empty cell reads back as ""

    index_columns = [typed(frame[c], kind, f"index column {c!r}")
                     for c, kind in zip(levels, meta["levels"], strict=True)]
    if "labels_sha256" in meta and meta["labels_sha256"] != _labels_digest(frame):
        raise InvalidInstanceError(f"{path}: its row labels ({', '.join(map(str, levels))}) are not "
                                   "the ones saved (solution.json records their digest): a label "
                                   "was changed")
    names = [None if str(c).startswith("level_") else c for c in levels]

    def labelled(arrays: list[Any], names: list[Any]) -> pd.Index:
        return (pd.MultiIndex.from_arrays(arrays, names=names) if len(arrays) > 1
                else pd.Index(arrays[0], name=names[0]))

    if "columns" not in meta:
        values = typed(frame[name], meta.get("values", "float"), f"column {name!r}")
        return pd.Series(values, index=labelled(index_columns, names), name=name)
    # a DataFrame written long: the last len(columns.levels) label columns are its column labels
    spec = meta["columns"]
    split = len(index_columns) - len(spec["levels"])
    columns = labelled([typed(pd.Series([label[k] for label in spec["labels"]], dtype=object),
                              kind, f"solution.json's column level {k}")
                        for k, kind in enumerate(spec["levels"])], spec["names"])
    if not columns.is_unique:
        raise InvalidInstanceError(f"{path}: solution.json lists a column label twice")
    row_keys = labelled(index_columns[:split], names[:split])
    rows = row_keys.unique()
    at_row = rows.get_indexer(row_keys)
    column_keys = labelled(index_columns[split:], names[split:])
    at_column = columns.get_indexer(column_keys)
    if (at_column < 0).any():
        k = int(np.argmax(at_column < 0))
        raise InvalidInstanceError(f"{path}: line {k + 2} has the column label "
                                   f"{_shown(column_keys[k])}, which solution.json does not list "
                                   f"(its columns: {', '.join(_shown(c) for c in columns)})")
    # every cell exactly once, found in memory of the file's size (rows x columns can be huge)
    cells = at_row.astype(np.int64) * len(columns) + at_column
    twice = pd.Index(cells).duplicated()
    short = len(cells) < len(rows) * len(columns)
    if twice.any() or short:
        if twice.any():
            k = int(cells[np.argmax(twice)])
        else:
            listed = np.sort(cells)
            gaps = np.flatnonzero(listed != np.arange(len(listed)))
            k = int(gaps[0]) if len(gaps) else len(listed)
        raise InvalidInstanceError(
            f"{path}: the cell of row {_shown(rows[k // len(columns)])} and column "
            f"{_shown(columns[k % len(columns)])} is {'listed twice' if twice.any() else 'missing'}")
    grid = np.empty((len(rows), len(columns)), dtype=object)
    grid[at_row, at_column] = frame[name].to_numpy(dtype=object)
    out = pd.DataFrame({k: typed(pd.Series(grid[:, k], dtype=object), kind,
                                 f"column {name!r} for {columns[k]!r}")
                        for k, kind in enumerate(spec["values"])}, index=rows)
    out.columns = columns
    return out
