"""Run registered cases into one tidy DataFrame, with an on-disk cache and a pool of workers.

The unit of work is one method (or the bound) on one instance of a case. Each finished unit is
cached as a small JSON file named by the content hash of what determines it (case, parameters,
seed, method, keyword arguments and the source of the code involved), so an interrupted run
loses only the units in flight and a repeated run recomputes nothing. Gaps are computed when the
rows are assembled, from the cached costs and bounds.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import importlib.util
import json
import math
import numbers
import os
import stat
import sys
import traceback
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from servopt.benchmarks import cluster as dask_checks
from servopt.benchmarks.harness import (
    TABLE_COLUMNS,
    benchmark_module,
    compute_bound,
    evaluate,
    flag_below_bound,
)
from servopt.benchmarks.registry import Case, params_label
from servopt.core import InvalidInstanceError
from servopt.core.solution import relative_gap, replace_file
from servopt.instances import traces

BOUND = dask_checks.BOUND  # the method name of a case's bound row
TRACE_READS = dask_checks.TRACE_READS  # a cached row's record of the traces its run found or read
ID_COLUMNS = ["case", "decision", "params", "seed", "instance"]
SKIPPED = "skipped"  # the status of a unit that needs a public trace that is not there
MAX_JOBS = 256  # more worker processes than this is a typo, not a machine


def skip_status(trace: str) -> str:
    """The status (and report note) of a unit skipped for want of the public trace ``trace``."""
    return f"{SKIPPED}: needs {trace}; set SERVOPT_TRACES to the folder holding it"


def missing_trace(exc: BaseException, reads: dict[str, str]) -> str | None:
    """The public trace whose absence made a unit fail, else None.

    A unit is skipped, not failed, only when it raised :class:`InvalidInstanceError` naming a
    trace that its own :func:`traces.shared_trace` lookup found absent (``reads`` from
    :func:`traces.recording_reads`). A trace that is there but bad, or any other error (also
    in a unit that looked a trace up and did without it), stays an error."""
    if not isinstance(exc, InvalidInstanceError):
        return None
    text = str(exc)
    for what, digest in reads.items():
        kind, _, name = what.partition(":")
        if kind == "shared" and digest == traces.ABSENT and name and name in text:
            return name
    return None


PACKAGES = ("servopt", "servopt.instances", "servopt.models", "servopt.solvers",
            "servopt.benchmarks")  # the folders of servopt's source (cases and core inside)


def _results_script(path: Path) -> bool:
    """A script that writes a committed results table (``benchmarks/<name>.py`` with a
    ``__main__`` block): it computes no row of a registered case, so it is not hashed."""
    return path.parent.name == "benchmarks" and '__name__ == "__main__"' in path.read_text()


def _source_files(case: Case) -> list[tuple[str, Path]]:
    """(label, path) of every Python source file of servopt but the results scripts, and of the
    module that defines the case's ``make_instance`` when it lives outside servopt (a case of
    one's own)."""
    files: dict[str, Path] = {}
    for package in PACKAGES:
        root = Path(importlib.import_module(package).__file__).parent  # its __init__'s folder
        for path in root.rglob("*.py"):  # (servopt's __path__ may hold the checkout's root too)
            if not (package == "servopt.benchmarks" and _results_script(path)):
                files[f"{package}/{path.relative_to(root).as_posix()}"] = path
    make = case.make_instance
    own = getattr(sys.modules.get(getattr(make, "__module__", None) or ""), "__file__", None)
    if own and not any(Path(own).resolve() == path.resolve() for path in files.values()):
        files[f"case/{Path(own).name}"] = Path(own)
    return sorted(files.items())


def code_fingerprint(case: Case) -> str:
    """sha256 over every source file of servopt but the results scripts (names and contents)
    and the module of the case's ``make_instance``: a cached row is reused only by the same
    code. (A fix anywhere, in a checker, the matrix form or a trace parser, recomputes every
    case; hashing only the decision's modules served rows of the old code after such a fix.)
    The data files a run
    reads (traces, instance JSON) are keyed per unit: each cached row records them
    (``TRACE_READS``, :func:`servopt.core.reads.recording_reads`) and is reused only while they
    are unchanged."""
    digest = hashlib.sha256()
    for label, path in _source_files(case):
        digest.update(label.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def unit_key(case: Case, params: dict[str, Any], seed: int, method: str, fingerprint: str) -> str:
    spec = {
        "case": case.name,
        "version": case.version,
        "decision": case.decision,
        "params": params_label(params),
        "seed": seed,
        "method": method,
        "evaluate_kw": params_label(case.evaluate_kw),
        "bound_kw": params_label(case.bound_kw),
        "code": fingerprint,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]


def run_unit(case: Case, params: dict[str, Any], seed: int, method: str) -> dict[str, Any]:
    """Compute one unit: the bound (``method == "__bound__"``) or one method's outcome."""
    row: dict[str, Any] = {
        "case": case.name,
        "decision": case.decision,
        "params": params_label(params),
        "seed": seed,
        "method": method,
    }
    try:
        with traces.recording_reads() as reads:
            row[TRACE_READS] = reads
            instance = case.instance(seed, params)
            row["instance"] = instance.summary()
            if method == BOUND:
                bound = compute_bound(instance, **case.bound_kw)
                row.update(cost=math.nan, bound=bound.value, bound_kind=bound.kind,
                           wall_s=bound.wall_s, status=bound.status)
            else:
                outcome = evaluate(instance, method, **case.evaluate_kw)
                row.update(cost=float(outcome.cost), wall_s=float(outcome.wall_s),
                           status=outcome.status)
                row.update({f"m:{k}": v for k, v in outcome.metrics.items()})
    except Exception as exc:  # a failing method is a row with its error, not a crashed run
        needed = missing_trace(exc, row.get(TRACE_READS, {}))
        if needed is not None:  # a public trace that is not there: skipped, with what to set
            row.update(cost=math.nan, wall_s=math.nan, status=skip_status(needed))
        else:
            row.update(cost=math.nan, wall_s=math.nan,
                       status=f"error: {type(exc).__name__}: {exc}")
            row["traceback"] = traceback.format_exc(limit=5)
        if method == BOUND:
            row.update(bound=math.nan, bound_kind=SKIPPED if needed is not None else "error")
    return row


# The most bytes a cache entry file may hold, checked (os.stat) before it is opened: a larger
# file is a bad entry (recomputed), never read into memory. Measured entries are 508-1,045 bytes
# (`servopt bench`, quick suite: 99 entries) and up to 1,185 with trace reads (`servopt bench
# --case decode_routing_trace`); a row's variable parts (params and instance text, ~20 metrics,
# a trace_reads path of at most PATH_MAX = 4,096 bytes per file read) stay far below 1 MiB,
# which is ~900x the largest measured and still read and parsed in milliseconds.
MAX_ENTRY_BYTES = 2**20

CHECKSUM = "entry_sha256"  # a cached row's digest of its own content (see :func:`_digest`)
ROW_TEXT = ("case", "decision", "params", "method", "instance", "status")  # str fields of a row
METHOD_FIELDS = {*ROW_TEXT, "seed", TRACE_READS, "cost", "wall_s"}  # (and "m:<metric>" numbers)
BOUND_FIELDS = {*METHOD_FIELDS, "bound", "bound_kind"}


def _digest(row: dict[str, Any]) -> str:
    """sha256 of a row's JSON (sorted keys, :data:`CHECKSUM` left out): it catches an entry
    changed by accident (a hand edit, a bad copy, a truncated disk), not a deliberate one, which
    can recompute it: the cache folder must be trusted (see :func:`run`)."""
    body = {k: v for k, v in row.items() if k != CHECKSUM}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=float).encode()).hexdigest()


def _write_cache(cache_dir: Path, key: str, row: dict[str, Any]) -> None:
    """Cache ``row`` with its digest, unless a reader would refuse it (errors, skips, a NaN
    cost: :func:`cache_row_problem`; above :data:`MAX_ENTRY_BYTES`), which is then not written,
    and not warned of."""
    row = json.loads(json.dumps(row, default=float))  # what a reader will parse (numpy numbers
    if cache_row_problem(row, digest=False) is not None:  # as floats): the digest is of that
        return
    row[CHECKSUM] = _digest(row)
    text = json.dumps(row, sort_keys=True)
    if len(text.encode()) > MAX_ENTRY_BYTES:  # (parameters of megabytes: recomputed each run)
        return
    cache_dir.mkdir(parents=True, exist_ok=True)
    replace_file(cache_dir / f"{key}.json", lambda path: path.write_text(text))


def _real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def cache_row_problem(row: Any, unit: tuple[Case, dict[str, Any], int, str] | None = None,
                      *, digest: bool = True) -> str | None:
    """Why ``row`` (a parsed cache entry) is not a row :func:`run_unit` wrote for ``unit``
    (``(case, params, seed, method)``; None: not compared), else None.

    It must have exactly the writer's fields with their types (text, a whole seed, costs,
    bounds, wall times and metrics as numbers: a method's cost not NaN, a bound row's cost NaN,
    no negative or infinite wall time), no error or skipped status (those are never cached),
    the identity of its unit, and (``digest``) the digest of its content (:func:`_digest`)."""
    if not isinstance(row, dict):
        return f"not a JSON object but {type(row).__name__}"
    method = row.get("method")
    fields = BOUND_FIELDS if method == BOUND else METHOD_FIELDS
    missing = sorted(fields - row.keys())
    if missing:
        return f"missing {', '.join(missing)}"
    extra = sorted(k for k in row.keys() - fields - {CHECKSUM}
                   if not (isinstance(k, str) and k.startswith("m:")))
    if extra:
        return f"unknown field {extra[0]!r}"
    for name in (*ROW_TEXT, *(("bound_kind",) if method == BOUND else ())):
        if not isinstance(row[name], str):
            return f"{name} is {row[name]!r}, not text"
    if isinstance(row["seed"], bool) or not isinstance(row["seed"], int):
        return f"seed is {row['seed']!r}, not a whole number"
    reads = row[TRACE_READS]
    if not isinstance(reads, dict) or not all(isinstance(v, str) for v in reads.values()):
        return f"{TRACE_READS} is not an object of text"
    numbers_ = {"cost": row["cost"], "wall_s": row["wall_s"],
                **({"bound": row["bound"]} if method == BOUND else {}),
                **{k: v for k, v in row.items() if k.startswith("m:")}}
    for name, value in numbers_.items():
        if not _real(value):
            return f"{name} is {value!r}, not a number"
    if method == BOUND and not math.isnan(row["cost"]):
        return f"a bound row's cost is {row['cost']!r}, not NaN"
    if method != BOUND and math.isnan(row["cost"]):
        return "cost is NaN"
    if row["wall_s"] < 0 or math.isinf(row["wall_s"]):
        return f"wall_s is {row['wall_s']!r}"
    if row["status"].startswith(("error", SKIPPED)) or not row["status"]:
        return f"status {row['status']!r} is never cached"
    if unit is not None:
        case, params, seed, method_ = unit
        want = {"case": case.name, "decision": case.decision, "params": params_label(params),
                "seed": seed, "method": method_}
        for name, value in want.items():
            if row[name] != value:
                return f"{name} is {row[name]!r}, not this run's {value!r}"
    if digest and row.get(CHECKSUM) != _digest(row):
        return f"its {CHECKSUM} does not match its content (edited or damaged)"
    return None


def _too_large(size: int) -> str:
    return f"{size} bytes, more than any entry holds (at most {MAX_ENTRY_BYTES})"


def _read_cache(cache_dir: Path | None, key: str,
                unit: tuple[Case, dict[str, Any], int, str] | None = None) -> dict[str, Any] | None:
    """The cached row of ``key``, or None to compute it: no entry, an entry on other trace data,
    or a bad one (one warning line naming the file on stderr, and the recomputed row replaces
    it): not a regular file, above :data:`MAX_ENTRY_BYTES` (told by its stat, never read), or not
    a row written for ``unit`` (:func:`cache_row_problem`)."""
    if cache_dir is None:
        return None
    path = cache_dir / f"{key}.json"
    if not path.exists():
        return None
    problem: str | None = None
    try:
        info = path.stat()  # checked before opening: a FIFO blocks, a huge file fills memory
        if not stat.S_ISREG(info.st_mode):
            problem = "not a regular file"
        elif info.st_size > MAX_ENTRY_BYTES:
            problem = _too_large(info.st_size)
        else:
            with open(path, "rb") as handle:
                data = handle.read(MAX_ENTRY_BYTES + 1)  # (grown since the stat: still capped)
            if len(data) > MAX_ENTRY_BYTES:
                problem = _too_large(len(data))
            else:
                row = json.loads(data.decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        problem = f"unreadable: {type(exc).__name__}"
    if problem is None:
        problem = cache_row_problem(row, unit)
    if problem is not None:
        print(f"servopt bench: ignoring cache entry {str(path)!r} ({problem}); recomputing it",
              file=sys.stderr, flush=True)
        return None
    if not traces.reads_unchanged(row[TRACE_READS]):
        return None  # computed on other trace data
    del row[CHECKSUM]  # (the cache's, not a column of the results)
    return row


def plan_units(cases: Iterable[Case]) -> list[tuple[str, Case, dict[str, Any], int, str]]:
    """Every (key, case, params, seed, method) of the given cases, the bound first per task.

    Two cases of one name are refused (an :class:`InvalidInstanceError`): their rows would share
    (case, params, seed, method) and be joined twice; a :class:`Case` itself holds no repeats."""
    traces.trace_folders()  # a $SERVOPT_TRACES naming no folder stops here, before any run
    units = []
    cases = list(cases)
    names = [case.name for case in cases]
    for name in names:
        if names.count(name) > 1:
            raise InvalidInstanceError(f"benchmark case {name!r} is given twice in one run")
    for case in cases:
        fingerprint = code_fingerprint(case)
        for params, seed in case.tasks():
            for method in [BOUND, *case.method_list()]:
                units.append((unit_key(case, params, seed, method, fingerprint), case, params,
                              seed, method))
    return units


def run(
    cases: Iterable[Case],
    *,
    jobs: int = 1,
    scheduler: str | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Run cases and return one tidy frame (one row per case x params x seed x method).

    jobs : worker processes, 1 to ``MAX_JOBS`` (1 runs in this process); never more are started
        than there are units to compute (``frame.attrs["jobs"]`` says how many were).
    scheduler : a Dask scheduler address, or ``"local"`` to start a local Dask cluster with
        ``jobs`` workers (capped the same way); ``None`` uses a process pool.
    cache_dir : where finished units are cached (``None``: no cache). The folder must be
        trusted: an entry that is not a row written for its unit (wrong fields or types, another
        case, params, seed or method, a digest that does not match: :func:`cache_row_problem`)
        is recomputed with a warning, but one edited on purpose, digest recomputed, is used.

    A unit that needs a public trace that is not found is a row with status
    ``skipped: needs FILE; ...`` (see :func:`missing_trace`), not an error. ``frame.attrs``
    holds ``runs`` (units planned) and ``runs_cached`` (of them, read from the cache).
    """
    from tqdm.auto import tqdm

    if isinstance(jobs, bool) or not isinstance(jobs, numbers.Integral) or not 1 <= jobs <= MAX_JOBS:
        raise ValueError(f"jobs must be a whole number of worker processes from 1 to {MAX_JOBS}, "
                         f"got {jobs!r}")
    cache = Path(cache_dir) if cache_dir is not None else None
    units = plan_units(cases)
    results: dict[str, dict[str, Any]] = {}
    todo = []
    for unit in units:
        cached = _read_cache(cache, unit[0], unit[1:])
        if cached is not None:
            results[unit[0]] = cached
        else:
            todo.append(unit)
    jobs = max(1, min(int(jobs), len(todo)))  # a worker per unit at most: idle ones cost start-up
    bar = tqdm(total=len(units), initial=len(units) - len(todo), disable=not progress,
               desc="servopt bench", unit="run")

    def done(key: str, row: dict[str, Any]) -> None:
        results[key] = row
        if cache is not None:
            _write_cache(cache, key, row)
        bar.update(1)

    try:
        if not todo:
            pass
        elif scheduler is not None:
            _run_dask(todo, scheduler, jobs, done)
        elif jobs <= 1:
            for key, case, params, seed, method in todo:
                done(key, run_unit(case, params, seed, method))
        else:
            _run_pool(todo, jobs, done)
    finally:
        bar.close()
    frame = assemble([results[u[0]] for u in units if u[0] in results])
    frame.attrs.update(runs=len(units), runs_cached=len(units) - len(todo), jobs=jobs)
    return frame


PARENT_POLL_S = 1.0  # how often a worker checks for its parent where the kernel cannot tell it


def _init_worker(parent: int) -> None:
    """Set up a pool worker: Ctrl-C is left to the parent (which stops the workers and keeps what
    finished), SIGTERM ends it (not the handler a forked worker inherits from the CLI), and it
    dies with its parent ``parent`` (a pid) instead of computing on, orphaned, after a kill -9."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    die_with_parent(parent)


def die_with_parent(parent: int) -> str:
    """Make this process end when the process ``parent`` does; returns how (``"pdeathsig"`` or
    ``"poll"``).

    Linux: the kernel sends SIGKILL the moment the parent dies (``prctl(PR_SET_PDEATHSIG)``), even
    in the middle of a solver's C code; a worker has nothing to clean up (the parent writes the
    cache), so SIGKILL, which no library's handler can catch, is the right signal. Elsewhere, or
    if prctl is unavailable: a daemon thread checks ``os.getppid()`` every ``PARENT_POLL_S`` s and
    exits the process (``os._exit``) once the parent is gone (the worker is re-parented). Either
    way, a parent that died before this ran is caught by the same check, at once."""
    how = "poll"
    if sys.platform.startswith("linux"):
        try:
            import ctypes
            import signal

            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_pdeathsig = 1  # <linux/prctl.h>
            if libc.prctl(pr_set_pdeathsig, int(signal.SIGKILL), 0, 0, 0) == 0:
                how = "pdeathsig"
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # the parent died before the kernel (or the thread) watched it
        os._exit(1)
    if how == "poll":
        import threading
        import time

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(PARENT_POLL_S)
            os._exit(1)

        threading.Thread(target=watch, name="servopt-parent-watch", daemon=True).start()
    return how


def _run_pool(todo: list, jobs: int, done: Any) -> None:
    import multiprocessing

    context = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")
    pool = cf.ProcessPoolExecutor(max_workers=jobs, mp_context=context,
                                  initializer=_init_worker, initargs=(os.getpid(),))
    futures = {pool.submit(run_unit, c, p, s, m): k for k, c, p, s, m in todo}
    try:
        for future in cf.as_completed(futures):
            done(futures[future], future.result())
    except BaseException:
        # interrupted: stop the units in flight now rather than waiting for them
        for process in list(getattr(pool, "_processes", {}).values()):
            process.terminate()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _run_dask(todo: list, scheduler: str, jobs: int, done: Any) -> None:
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise RuntimeError("--scheduler needs dask.distributed: pip install 'servopt[dask]'") from None
    dask_checks.check_address(scheduler)  # a mistyped address names --scheduler
    cluster = None
    if scheduler == "local":
        import signal

        # the worker processes inherit an ignored Ctrl-C: the parent stops them and keeps what
        # finished, without a traceback from every worker
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            cluster = LocalCluster(n_workers=max(1, jobs), threads_per_worker=1, processes=True,
                                   dashboard_address=None)
        finally:
            signal.signal(signal.SIGINT, previous)
        client = Client(cluster)
    else:
        client = Client(scheduler, timeout=30)
    # a lost scheduler or a KilledWorker is one line (also while the client closes)
    with dask_checks.dask_errors(todo, scheduler):
        try:
            # every worker has servopt and the client's code, or nothing is submitted
            codes = dask_checks.check_workers(client, [u[1] for u in todo])
            futures = {client.submit(dask_checks.on_worker, run_unit, c, p, s, m,
                                     key=f"{dask_checks.KEY_PREFIX}{k}", pure=False): (k, c)
                       for k, c, p, s, m in todo}
            for future in as_completed(futures):
                key, case = futures[future]
                # a row computed by other code or on other traces than the client's stops the run
                done(key, dask_checks.checked_row(future.result(), codes[case.name]))
        finally:  # (shutting down cancels what still runs: dask's warnings about it are noise)
            import logging

            logging.getLogger("distributed").setLevel(logging.ERROR)
            client.close()
            if cluster is not None:
                cluster.close()


def assemble(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Join method rows with their task's bound and compute gaps; metrics become plain columns.

    Each (case, params, seed) has one bound row and each (case, params, seed, method) one row:
    a repeat is refused (an :class:`InvalidInstanceError` naming it), never joined twice."""
    if not rows:
        return pd.DataFrame(columns=ID_COLUMNS + TABLE_COLUMNS)
    frame = pd.DataFrame(rows)
    unit = ["case", "params", "seed", "method"]
    counts = frame.groupby(unit, sort=False, dropna=False).size()
    if (counts > 1).any():
        (case, params, seed, method), times = next((k, n) for k, n in counts.items() if n > 1)
        what = "bound" if method == BOUND else f"method {method!r}"
        raise InvalidInstanceError(
            f"case {case!r}, params {params}, seed {seed}: {times} rows of the {what}, not one "
            "(a case with repeated seeds, methods or parameter sets, or two cases of one name?)")
    for column in ("bound", "bound_kind"):  # (rows cached before bound errors carried them)
        if column not in frame.columns:
            frame[column] = math.nan
    bounds = frame[frame["method"] == BOUND]
    methods = frame[frame["method"] != BOUND].drop(columns=["bound", "bound_kind"], errors="ignore")
    task = ["case", "params", "seed"]
    keep = [*task, "bound", "bound_kind", "status"]
    bound_cols = (bounds[keep] if not bounds.empty else pd.DataFrame(columns=keep)).rename(
        columns={"status": "bound_status"})  # (a bound that raised says so here)
    out = methods.merge(bound_cols, on=task, how="left", validate="many_to_one")
    senses = {d: getattr(benchmark_module(d), "SENSE", "min") for d in out["decision"].unique()}
    out["gap"] = [
        relative_gap(c, b, senses[d]) if isinstance(b, float | int) else math.nan
        for c, b, d in zip(out["cost"], out["bound"], out["decision"], strict=True)
    ]
    out["status"] = [flag_below_bound(g, s) for g, s in zip(out["gap"], out["status"], strict=True)]
    out.columns = [c[2:] if c.startswith("m:") else c for c in out.columns]
    lead = [c for c in ID_COLUMNS + TABLE_COLUMNS if c in out.columns]
    rest = [c for c in out.columns if c not in lead and c not in ("traceback", TRACE_READS)]
    return out[lead + rest].reset_index(drop=True)
