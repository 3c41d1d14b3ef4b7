"""Run registered cases into one tidy DataFrame, with an on-disk cache and a pool of workers.

The unit of work is one method (or the bound) on one instance of a case. Each finished unit is
cached as a small JSON file named by the content hash of what determines it (case, parameters,
seed, method, keyword arguments and the source of the code involved), so an interrupted run
loses only the units in flight and a repeated run recomputes nothing. Gaps are computed when the
rows are assembled, from the cached costs and bounds.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import functools
import hashlib
import importlib.util
import json
import math
import numbers
import os
import pickle
import re
import stat
import sys
import tempfile
import traceback
from collections.abc import Iterable, Iterator
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


def _results_script(label: str, path: Path) -> bool:
    """A script that writes a committed results table (a module ``servopt.benchmarks.<name>``,
    ``label`` ``servopt/benchmarks/<name>.py``, with a ``__main__`` block): it computes no row of
    a registered case, so it is not hashed."""
    return label.count("/") == 2 and label.startswith("servopt/benchmarks/") and re.search(
        r"""^if __name__ == ["']__main__["']:""", path.read_text(), re.MULTILINE) is not None


def _servopt_files() -> dict[str, Path]:
    """``{label: path}`` of every Python module of servopt but the results scripts, each once,
    labelled by its module's name as a path (``servopt/instances/caching.py`` for
    ``servopt.instances.caching``, ``servopt/instances/__init__.py`` for the package): so a
    checkout (the layers beside ``servopt/``), an editable install and a wheel (all of them inside
    ``servopt/``) label the same files alike and give the same fingerprint. Only modules count:
    a ``.py`` file in a folder without ``__init__.py`` (a stray file in ``benchmarks/results``) is
    importable as no part of servopt and is not in a wheel."""
    files: dict[str, Path] = {}
    for package in PACKAGES:
        root = Path(importlib.import_module(package).__file__).parent  # its __init__'s folder
        prefix = package.replace(".", "/")
        for path in sorted(root.rglob("*.py")):  # (in a wheel "servopt" holds every layer)
            relative = path.relative_to(root)
            label = f"{prefix}/{relative.as_posix()}"
            if label in files or not all((root / folder / "__init__.py").is_file()
                                         for folder in relative.parents):
                continue
            if not _results_script(label, path):
                files[label] = path
    return files


def _copy_of_ours(file: str | None, files: dict[str, Path]) -> bool:
    """Whether ``file`` (a case's origin) is servopt's own module of another install: a
    built-in case pickled to a Dask worker names the case module of the client's servopt (a
    wheel's ``site-packages/servopt/benchmarks/cases/x.py``, a checkout's
    ``benchmarks/cases/x.py``), which on a shared machine is a file there. A byte-identical copy
    of one of this servopt's modules of the same name is hashed already (as that module), not
    again as the user's: the same code gives the same fingerprint on both sides; a copy that
    differs is the user's (and the key then differs, as it must)."""
    if not file or not isinstance(file, str):
        return False
    path = Path(file)
    if not path.is_file():
        return False
    ours = [p for p in files.values() if p.name == path.name]
    if not ours or path.resolve() in {p.resolve() for p in ours}:
        return False
    content = path.read_bytes()
    return any(p.read_bytes() == content for p in ours)


@functools.lru_cache(maxsize=1)
def _outside_folders() -> tuple[Path, ...]:
    """The folders whose modules are not followed: the standard library and site-packages
    (their versions are the environment's, reported in the provenance, not the case's code)."""
    import site
    import sysconfig

    names = ("stdlib", "platstdlib", "purelib", "platlib")
    folders = {sysconfig.get_paths().get(n) for n in names} | set(site.getsitepackages())
    folders.add(site.getusersitepackages())
    return tuple(Path(p).resolve() for p in sorted(f for f in folders if f))


class Unhashable(Exception):
    """A case's code that has neither a source file nor a code object to hash."""


def _source_files(case: Case) -> list[tuple[str, Path]]:
    """(label, path) of every source file a case's rows depend on (:func:`_case_code`)."""
    return _case_code(case)[0]


@functools.lru_cache(maxsize=512)
def _imports_of(path: Path, mtime_ns: int, size: int) -> tuple[tuple[str, int], ...]:
    """``(module, level)`` of every import statement in the file (anywhere in it, function
    bodies too; ``from m import x`` gives ``m`` and ``m.x``, as ``x`` may be a module)."""
    import ast

    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError):
        return ()
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, 0) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            found.append((base, node.level))
            found += [(f"{base}.{alias.name}" if base else alias.name, node.level)
                      for alias in node.names if alias.name != "*"]
    return tuple(found)


def _resolve(name: str, level: int, importer: Path) -> list[Path]:
    """The source files an import of ``name`` (``level`` dots, from the file ``importer``)
    runs: the module's and its parent packages' ``.py`` files, found on ``sys.path`` (or,
    relative, beside ``importer``) by path alone, without importing anything."""
    parts = [part for part in name.split(".") if part]
    if level:
        if level - 2 >= len(importer.parent.parents):  # past the top level: Python refuses it
            return []
        roots = [importer.parent.parents[level - 2] if level > 1 else importer.parent]
    else:
        roots = [Path(entry or os.getcwd()) for entry in sys.path]
    for root in roots:
        files = []
        folder = root
        for i, part in enumerate(parts):
            package, module = folder / part / "__init__.py", folder / f"{part}.py"
            if package.is_file():
                files.append(package)
                folder = folder / part
            elif module.is_file() and i == len(parts) - 1:
                files.append(module)
            else:
                break
        else:
            if files or not parts:
                return files
        if files and level == 0:
            return files  # (found the package, not the name inside it: a name, not a module)
    return []


def _loaded_modules() -> dict[Path, str]:
    """``{resolved file: module name}`` of the modules imported so far that have a file."""
    found: dict[Path, str] = {}
    for name, module in list(sys.modules.items()):
        file = _module_file(module)
        if isinstance(file, str):
            with contextlib.suppress(OSError, ValueError):
                found.setdefault(_resolved(file), name)
    return found


def _module_file(module: Any) -> Any:
    """A module's ``__file__`` read from its own dict (getattr would load a lazily imported
    module: a LazyLoader's missing dependency stopped ``servopt bench``); None if it has none."""
    try:
        return object.__getattribute__(module, "__dict__").get("__file__")
    except Exception:  # (not a module object, or no __dict__)
        return None


@functools.cache
def _resolved(file: str) -> Path:
    """``Path(file).resolve()``, once per file name in a process (a scan of ``sys.modules``
    resolved ~1,100 paths, 56 ms, at each key: test runs build hundreds of keys)."""
    return Path(file).resolve()


def _imported_files(name: str, level: int, importer: Path, loaded: dict[Path, str]) -> list[Path]:
    """The files Python actually ran for an import of ``name`` (``level`` dots) in the file
    ``importer``, when it is already imported: the module's and each parent package's
    ``__file__`` from ``sys.modules`` (a namespace package's folder has none; an editable
    install's finder or a symlink puts the file where a search of ``sys.path`` would not look).
    Empty when it is not imported yet (an import inside a function not yet run): then
    :func:`_resolve` searches by path."""
    if level:
        package = loaded.get(importer.resolve())
        if package is None:
            return []
        module = sys.modules.get(package)
        own: Any = {}
        with contextlib.suppress(Exception):  # (the module's own dict, as _module_file reads it)
            own = object.__getattribute__(module, "__dict__")
        base = own.get("__package__") or package.rpartition(".")[0]
        for _ in range(level - 1):
            base = base.rpartition(".")[0]
        name = f"{base}.{name}" if name else base
    files = []
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        module = sys.modules.get(".".join(parts[:i]))
        if module is None:
            break
        file = _module_file(module)
        if isinstance(file, str) and Path(file).is_file():
            files.append(Path(file))
    return files


def _code_digest(function: Any, seen: set[int] | None = None) -> str:
    """sha256 of a function's code object (``marshal``), defaults, and of the functions and
    plain values of its module it names: what can be hashed of a function typed into an
    interactive session (``python -c``, a REPL), which has no source file. Raises
    :class:`Unhashable` if it has no code object."""
    import marshal

    code = getattr(function, "__code__", None)
    if code is None:
        raise Unhashable(f"{getattr(function, '__qualname__', function)!r} has no source file "
                         "and no Python code object")
    seen = set() if seen is None else seen
    seen.add(id(function))
    digest = hashlib.sha256(marshal.dumps(code))
    digest.update(repr((function.__defaults__, function.__kwdefaults__)).encode())
    globals_ = getattr(function, "__globals__", {})

    def names(code: Any) -> Iterable[str]:
        yield from code.co_names
        for const in code.co_consts:
            if hasattr(const, "co_names"):
                yield from names(const)

    for name in sorted(set(names(code))):
        value = globals_.get(name)
        if callable(value) and getattr(value, "__module__", None) == function.__module__ \
                and hasattr(value, "__code__") and id(value) not in seen:
            digest.update(f"{name}:{_code_digest(value, seen)}".encode())
        elif isinstance(value, str | int | float | bool | tuple):
            digest.update(f"{name}={value!r}".encode())
    return digest.hexdigest()


def _case_code(case: Case) -> tuple[list[tuple[str, Path]], list[str]]:
    """What a case's rows depend on besides its fields: ``(files, names)``.

    ``files``: (label, path) of every Python source file of servopt but the results scripts,
    and of the user's code the case runs: the file that built the :class:`Case`, the module
    of ``make_instance``, the modules of everything registered for its decision
    (:func:`servopt.core.registry.registered_layers`: a module's file, or for a namespace the
    file of each function, class or policy it holds), and, followed transitively, every file
    those import (an ``import``/``from ... import`` statement anywhere in them, function bodies
    too, found on ``sys.path`` by path: see :func:`_resolve`) outside the standard library,
    site-packages and servopt. ``names``: the qualified names of ``make_instance`` and of each
    registered layer's attributes, and the plain values (``SENSE``, ``LINEAR``) they hold, so
    that swapping one function for another of the same file changes the key; a function typed
    into an interactive session (no file) is named with the hash of its code
    (:func:`_code_digest`). Raises :class:`Unhashable` for what has neither (a C callable
    defined nowhere on disk): such a case is not cached.

    The files named by the case (its origin, ``make_instance``'s and the registered layers'
    modules) are hashed wherever they are installed, with their packages' ``__init__.py``; an
    import already done is followed to the file Python loaded (:func:`_imported_files`).

    Not covered: a module imported by ``importlib.import_module(name)`` or ``__import__`` with
    a computed name, a data file a user's function reads, packages in site-packages (their
    versions are in the report's provenance), and, for a function with no file (a REPL, a
    notebook cell), its closure cells, mutable globals and helpers of other modules: bump the
    case's ``version`` or use ``--no-cache`` after changing those."""
    from types import ModuleType

    from servopt.core.registry import registered_layers

    files = _servopt_files()
    ours = {path.resolve() for path in files.values()}
    outside = _outside_folders()
    user: set[Path] = set()
    names: list[str] = []
    todo: list[Path] = []

    def add_file(file: Any, named: bool = False) -> bool:
        """Hash the file ``file`` (if it is one outside the environment, or ``named``: one the
        user named, as a case's or a registered layer's module, wherever it is installed) and
        the ``__init__.py`` of each package it sits in; False if no file."""
        if not file or not isinstance(file, str):
            return False
        path = Path(file).resolve()
        if not path.is_file():
            return False
        if path not in ours and path not in user and (named or not any(
                path.is_relative_to(f) for f in outside)):
            user.add(path)
            todo.append(path)
            folder = Path(file).absolute().parent  # (the importing side: a symlink's own folder)
            while (folder / "__init__.py").is_file():  # its packages run their __init__ first
                add_file(str(folder / "__init__.py"), named)
                folder = folder.parent
        return True

    def add_object(label: str, value: Any) -> None:
        target = value.func if isinstance(value, functools.partial) else value
        if isinstance(value, ModuleType):
            names.append(f"{label}=module {value.__name__}")
            if not add_file(getattr(value, "__file__", None), named=True) \
                    and value.__name__ not in sys.builtin_module_names:
                raise Unhashable(f"{label}: the module {value.__name__!r} has no source file")
        elif callable(target) and hasattr(target, "__module__"):
            name = f"{label}={target.__module__}.{getattr(target, '__qualname__', '?')}"
            if target is not value:  # its arguments by content (a repr shortens large arrays)
                try:
                    given = pickle.dumps((value.args, value.keywords), protocol=4)
                except Exception as exc:
                    raise Unhashable(f"{label}: the arguments of {name!r} cannot be hashed "
                                     f"({type(exc).__name__})") from None
                name += f" args {hashlib.sha256(given).hexdigest()[:16]}"
            module = sys.modules.get(target.__module__ or "")
            code = getattr(target, "__code__", None)
            if not add_file(getattr(module, "__file__", None), named=True) and not add_file(
                    getattr(code, "co_filename", None), named=True):
                if target.__module__ not in sys.builtin_module_names:  # (a builtin is fixed)
                    name += f" code {_code_digest(target)[:16]}"
            names.append(name)
        elif isinstance(value, dict):
            for key, item in value.items():
                add_object(f"{label}[{key!r}]", item)
        elif isinstance(value, str | int | float | bool | type(None) | tuple):
            names.append(f"{label}={value!r}")
        else:
            names.append(f"{label}: {type(value).__module__}.{type(value).__qualname__}")

    if not _copy_of_ours(case.origin_file, files):  # (a Case built in a REPL has none: below)
        add_file(case.origin_file, named=True)
    if case.make_instance is not None:
        add_object("make_instance", case.make_instance)
    for layer, value in sorted(registered_layers(case.decision).items()):
        if isinstance(value, ModuleType):
            add_object(layer, value)
            continue
        for attr, item in sorted(vars(value).items()):
            if attr == "__file__":  # a namespace naming its file
                add_file(item)
            elif not attr.startswith("__"):
                add_object(f"{layer}.{attr}", item)
    loaded: dict[Path, str] | None = None  # (read only when there are user files to follow)
    while todo:  # the user's files that these import, transitively
        path = todo.pop()
        info = path.stat()
        loaded = _loaded_modules() if loaded is None else loaded
        for name, level in _imports_of(path, info.st_mtime_ns, info.st_size):
            for found in _imported_files(name, level, path, loaded) or _resolve(name, level, path):
                add_file(str(found))
    # labelled by file name, ordered by content too: the same files elsewhere give the same key
    labelled = sorted((f"user/{path.name}", hashlib.sha256(path.read_bytes()).hexdigest(), path)
                      for path in user)
    return sorted(files.items()) + [(label, path) for label, _, path in labelled], names


def code_fingerprint(case: Case) -> str | None:
    """sha256 over every file of :func:`_case_code` (names and contents) and the qualified
    names it lists: a cached row is reused only by the same code. (A fix anywhere in servopt,
    in a checker, the matrix form or a trace parser, recomputes every case; hashing only the
    decision's modules served rows of the old code after such a fix, and hashing only
    servopt's files served a registered override's rows to a plain run.) None when some of the
    case's code has no source file (:class:`Unhashable`): its units are then not cached.
    The data files a run reads (traces, instance JSON) are keyed per unit: each cached row
    records them (``TRACE_READS``, :func:`servopt.core.reads.recording_reads`) and is reused
    only while they are unchanged."""
    try:
        files, names = _source_files(case), _case_code(case)[1]
    except Unhashable:
        return None
    digest = hashlib.sha256()
    for label, path in files:
        digest.update(label.encode() + b"\0" + path.read_bytes() + b"\0")
    for name in names:
        digest.update(name.encode() + b"\0")
    return digest.hexdigest()[:16]


def uncacheable_reason(case: Case) -> str | None:
    """Why ``case`` is not cached (some of its code has no source file), else None."""
    try:
        _case_code(case)
    except Unhashable as exc:
        return str(exc)
    return None


def own_sources(cases: Iterable[Case]) -> dict[str, str]:
    """``{file: sha256 (12 hex)}`` of the source files outside servopt that the cases' rows
    depend on (:func:`_case_code`): the state of one's own code, for a report's provenance
    (a git commit names only servopt's)."""
    found: dict[str, str] = {}
    for case in cases:
        try:
            files, _ = _case_code(case)
        except Unhashable:
            continue
        for label, path in files:
            if label.startswith("user/") and str(path) not in found:
                found[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    return found


CACHE_FORMAT = 3  # in every key: 2 added the instance's content hash to each row, 3 keeps
# the evaluator's metric order in an entry (2's entries hold them sorted: never read again)


def unit_key(case: Case, params: dict[str, Any], seed: int, method: str,
             fingerprint: str | None) -> str:
    spec = {
        "format": CACHE_FORMAT,
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


INSTANCE_HASH = "instance_hash"  # a row's Instance.content_hash() of the instance it ran on
TRACEBACK = "traceback"  # an error row's traceback (innermost TRACEBACK_FRAMES frames)
ERROR_AT = "error_at"  # an error row's "file:line" (see :func:`error_at`)
TRACEBACK_FRAMES = 8


def error_at(exc: BaseException) -> str:
    """``file:line`` where ``exc`` was raised: the innermost frame outside the standard library
    and site-packages (the user's or servopt's line that called numpy, not numpy's), else the
    innermost frame; ``""`` without a traceback."""
    frames = traceback.extract_tb(exc.__traceback__)
    outside = _outside_folders()
    for frame in reversed(frames):
        path = Path(frame.filename).resolve()
        if not any(path.is_relative_to(folder) for folder in outside):
            return f"{frame.filename}:{frame.lineno}"
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else ""


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
            row[INSTANCE_HASH] = instance.content_hash()  # (assemble compares it with the bound's)
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
            # the innermost frames: the failing line of the user's code, not servopt's callers
            row[TRACEBACK] = traceback.format_exc(limit=-TRACEBACK_FRAMES)
            row[ERROR_AT] = error_at(exc)
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
ROW_TEXT = ("case", "decision", "params", "method", "instance", "instance_hash",
            "status")  # str fields of a row
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
    cost, a bound without a finite value: :func:`cache_row_problem`; above
    :data:`MAX_ENTRY_BYTES`), which is then not written, and not warned of; an entry of
    ``key`` already there (written by an older servopt that cached it) is then removed, so it
    is not read, warned of and recomputed on every run."""
    row = json.loads(json.dumps(row, default=float))  # what a reader will parse (numpy numbers
    if cache_row_problem(row, digest=False) is not None:  # as floats): the digest is of that
        with contextlib.suppress(OSError):
            (cache_dir / f"{key}.json").unlink()
        return
    row[CHECKSUM] = _digest(row)
    # in the row's own order, not sorted: a reader gets the metrics in the evaluator's order,
    # as a computed row has them, so a rerun from the cache gives the same CSV columns
    # (:func:`assemble` orders them by first appearance); sorted keys put them alphabetically
    text = json.dumps(row)
    if len(text.encode()) > MAX_ENTRY_BYTES:  # (parameters of megabytes: recomputed each run)
        return
    cache_dir.mkdir(parents=True, exist_ok=True)
    replace_file(cache_dir / f"{key}.json", lambda path: path.write_text(text))


def _errno_words(exc: OSError) -> str:
    """``ENOSPC: No space left on device`` for an OSError with an errno, else its text."""
    import errno

    name = errno.errorcode.get(exc.errno or 0)
    return f"{name}: {exc.strerror}" if name and exc.strerror else str(exc)


def _check_cache_folder(cache: Path) -> None:
    """Refuse (``ValueError``) a cache folder that is a file or cannot be created or written,
    before any run, as the command line checks ``--out``."""
    if cache.exists() and not cache.is_dir():
        raise ValueError(f"the cache folder {cache} is a file, not a folder (move it away, or "
                         "run with --no-cache)")
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=cache):
            pass
    except OSError as exc:
        raise ValueError(f"the cache folder {cache} is not a writable folder "
                         f"({_errno_words(exc)}; or run with --no-cache)") from None


def _real(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def cache_row_problem(row: Any, unit: tuple[Case, dict[str, Any], int, str] | None = None,
                      *, digest: bool = True) -> str | None:
    """Why ``row`` (a parsed cache entry) is not a row :func:`run_unit` wrote for ``unit``
    (``(case, params, seed, method)``; None: not compared), else None.

    It must have exactly the writer's fields with their types (text, a whole seed, costs,
    bounds, wall times and metrics as numbers: a method's cost not NaN, a bound row's cost NaN
    and its bound finite, no negative or infinite wall time), no error or skipped status (those
    are never cached; nor is a bound without a finite value, which a rerun may find in time),
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
    if method == BOUND and not math.isfinite(row["bound"]):
        # a bound stopped by its time limit (NaN, status time_limit) depends on the machine's
        # load: a rerun, perhaps on a quieter machine, computes it again instead of keeping the
        # missing bound for good. A finite bound stays cached whatever its status (a MIP's dual
        # bound at its time limit is still proved); one always missing is recomputed each run.
        return f"a bound row without a finite value ({row['bound']!r}) is never cached"
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
    ``skipped: needs FILE; ...`` (see :func:`missing_trace`), not an error. A method row whose
    instance is not the one its bound ran on (a non-deterministic ``make_instance``) has an
    ``error: instance differs ...`` status (see :func:`assemble`). ``frame.attrs`` holds
    ``runs`` (units planned), ``runs_cached`` (of them, read from the cache) and
    ``tracebacks`` (each failed unit's ``error_at`` file:line and innermost frames). A case
    whose code cannot be hashed (:func:`uncacheable_reason`) is run but not cached, said once
    on stderr.
    """
    from tqdm.auto import tqdm

    if isinstance(jobs, bool) or not isinstance(jobs, numbers.Integral) or not 1 <= jobs <= MAX_JOBS:
        raise ValueError(f"jobs must be a whole number of worker processes from 1 to {MAX_JOBS}, "
                         f"got {jobs!r}")
    if scheduler is not None:  # checked whatever the cache holds: a run all read from the cache
        check_scheduler(scheduler)  # must not accept an address the next run would refuse
    cache = Path(cache_dir) if cache_dir is not None else None
    cases = list(cases)
    units = plan_units(cases)
    uncached: set[str] = set()  # cases with code that has no source file: never cached
    if cache is not None:
        for case in cases:
            reason = uncacheable_reason(case)
            if reason is not None:
                uncached.add(case.name)
                print(f"servopt bench: case {case.name} is not cached: {reason}, so a cached row "
                      "could not be told from one of other code", file=sys.stderr, flush=True)
    results: dict[str, dict[str, Any]] = {}
    todo = []
    for unit in units:
        cached = None if unit[1].name in uncached else _read_cache(cache, unit[0], unit[1:])
        if cached is not None:
            results[unit[0]] = cached
        else:
            todo.append(unit)
    jobs = max(1, min(int(jobs), len(todo)))  # a worker per unit at most: idle ones cost start-up
    bar = tqdm(total=len(units), initial=len(units) - len(todo), disable=not progress,
               desc="servopt bench", unit="run")

    names = {unit[0]: unit[1].name for unit in units}
    if cache is not None and todo:  # before the runs: a bad cache folder must not lose them
        _check_cache_folder(cache)
    caching = [cache is not None]

    def done(key: str, row: dict[str, Any]) -> None:
        results[key] = row
        if caching[0] and names[key] not in uncached:
            try:
                _write_cache(cache, key, row)
            except OSError as exc:  # (a disk filling up): the cache only saves time, the run
                caching[0] = False  # goes on and writes its tables; said once
                bar.clear()
                print(f"servopt bench: cannot write the cache in {cache} ("
                      f"{_errno_words(exc)}); continuing without it: the runs from here on are "
                      "not cached", file=sys.stderr, flush=True)
        bar.update(1)

    try:
        if not todo:
            pass
        elif scheduler is not None:
            _run_dask(todo, scheduler, jobs, done)
        elif jobs <= 1:
            with noting_signals() as seen:
                for key, case, params, seed, method in todo:
                    row = run_unit(case, params, seed, method)
                    if seen:  # a solver absorbed the Ctrl-C / SIGTERM (an ``interrupted``
                        # solve: HiGHS cancelled, a price of 0, an early incumbent): this row is
                        # not the unit's, so it is neither kept nor cached, and the run stops
                        raise KeyboardInterrupt("interrupted during "
                                                + unit_label(case, params, seed, method))
                    done(key, row)
        else:
            _run_pool(todo, jobs, done)
    finally:
        bar.close()
    frame = assemble([results[u[0]] for u in units if u[0] in results])
    frame.attrs.update(runs=len(units), runs_cached=len(units) - len(todo), jobs=jobs)
    return frame


def unit_label(case: Case, params: dict[str, Any], seed: int, method: str) -> str:
    """A unit in the user's terms, as the Dask path's one-line errors name it."""
    return dask_checks._unit_words(case.name, method, seed) + (
        f", params {params_label(params)}" if params else "")


@contextlib.contextmanager
def noting_signals() -> Iterator[list[int]]:
    """Within the block, SIGINT and SIGTERM are noted (the list yielded gets their numbers) and
    then handled as before: the handler in place (Python's KeyboardInterrupt, the CLI's
    :class:`~servopt.cli.Terminated`) is called. Units run in this process need it: a solver
    that catches the KeyboardInterrupt to cancel HiGHS (status ``interrupted``) would otherwise
    hide the signal from the run, which went on and cached the unit's row (a bid price learned
    as 0). Only in the main thread and for handlers that are Python functions (an ignored or
    default signal is left alone); the handler is put back unless it was changed meanwhile (the
    CLI's first SIGTERM puts SIGTERM's default back, and that stays)."""
    import signal
    import threading

    seen: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield seen
        return
    installed: dict[int, tuple[Any, Any]] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        handler = signal.getsignal(signum)
        if not callable(handler):
            continue

        def note(number: int, frame: Any, handler: Any = handler) -> None:
            seen.append(number)
            handler(number, frame)

        signal.signal(signum, note)
        installed[signum] = (handler, note)
    try:
        yield seen
    finally:
        for signum, (handler, note) in installed.items():
            if signal.getsignal(signum) is note:
                signal.signal(signum, handler)


PARENT_POLL_S = 1.0  # how often a worker checks for its parent where the kernel cannot tell it


def _init_worker(parent: int) -> None:
    """Set up a pool worker: Ctrl-C is left to the parent (which stops the workers and keeps what
    finished), SIGTERM ends it (not the handler a forked worker inherits from the CLI), it dies
    with its parent ``parent`` (a pid) instead of computing on, orphaned, after a kill -9, and it
    has its own Pyomo output lock (:func:`_own_pyomo_output_lock`)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _own_pyomo_output_lock()
    die_with_parent(parent)


def _own_pyomo_output_lock() -> None:
    """Give this forked process its own ``pyomo.common.dependencies.capture_output_lock``.

    Once ``multiprocessing`` is imported, Pyomo makes that lock a ``multiprocessing.Lock``, which a
    forked worker shares with its parent. A worker killed (or terminated with the pool) while
    inside Pyomo's ``capture_output`` left it held for good, and every later Pyomo solve in the
    parent waited 200 s and raised "Deadlock starting capture_output" (E35: a test run hung). The
    lock guards this process's own file descriptors, so a process-local lock is enough."""
    dependencies = sys.modules.get("pyomo.common.dependencies")
    if dependencies is not None:  # (not imported yet: the worker makes its own when it imports)
        import threading

        dependencies.capture_output_lock = threading.Lock()


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


UnitKilledError = dask_checks.UnitKilledError  # a unit's worker was killed: exit status 1
KEPT = "the runs that finished are cached (unless --no-cache) and the next run resumes"


def _pool_unit(folder: str, key: str, case: Case, params: dict[str, Any], seed: int,
               method: str) -> dict[str, Any]:
    """(In a pool worker.) :func:`run_unit`, with the unit's key in ``folder/<pid>`` while it
    runs, so the parent can name the unit of a worker that was killed."""
    mark = Path(folder) / str(os.getpid())
    mark.write_text(key)
    row = run_unit(case, params, seed, method)
    mark.unlink()
    return row


def _killed(folder: Path, processes: list, units: dict[str, tuple]) -> UnitKilledError:
    """The error for a pool broken by a worker's death: the unit that worker ran, found by its
    mark in ``folder`` (its exit a signal other than the SIGTERM with which the pool stops the
    others, or a status other than 0), else every unit then running."""
    import signal

    def named(key: str) -> str:
        _, case, params, seed, method = units[key]
        return unit_label(case, params, seed, method)

    running: dict[int, str] = {}
    for mark in folder.iterdir():
        with contextlib.suppress(OSError, ValueError):
            running[int(mark.name)] = mark.read_text()
    dead = [(p.pid, p.exitcode) for p in processes
            if p.exitcode not in (None, 0, -signal.SIGTERM)]
    for pid, code in dead:
        if running.get(pid) in units:
            if code > 0:  # (os._exit in the unit's code or a library)
                return UnitKilledError(f"{named(running[pid])} ended the worker process that ran "
                                       f"it (exit status {code}); {KEPT}")
            try:
                how = f"signal {-code}: {signal.Signals(-code).name}"
            except ValueError:
                how = f"signal {-code}"
            return UnitKilledError(
                f"{named(running[pid])} killed the worker process that ran it ({how}: out of "
                f"memory, a crash in a solver or a kill?); {KEPT}")
    which = "; ".join(named(key) for key in running.values() if key in units)
    return UnitKilledError(
        "a worker process died (killed, out of memory or crashed) while running "
        + (which or "a unit") + f"; {KEPT}")


def _run_pool(todo: list, jobs: int, done: Any) -> None:
    import multiprocessing

    context = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")
    pool = cf.ProcessPoolExecutor(max_workers=jobs, mp_context=context,
                                  initializer=_init_worker, initargs=(os.getpid(),))
    with tempfile.TemporaryDirectory(prefix="servopt-pool-") as folder:
        futures = {pool.submit(_pool_unit, folder, k, c, p, s, m): k for k, c, p, s, m in todo}
        processes = list((getattr(pool, "_processes", None) or {}).values())
        kept: set[Any] = set()
        try:
            for future in cf.as_completed(futures):
                done(futures[future], future.result())
                kept.add(future)
        except cf.process.BrokenProcessPool:  # a worker was killed: name its unit, keep the
            pool.shutdown(wait=True)  # rows that finished (the pool has stopped the others)
            for future, key in futures.items():
                if future not in kept and future.done() and not future.cancelled() \
                        and future.exception() is None:
                    done(key, future.result())
            raise _killed(Path(folder), processes, {u[0]: u for u in todo}) from None
        except BaseException:
            # interrupted: stop the units in flight now rather than waiting for them
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    pool.shutdown(wait=True)


def check_scheduler(scheduler: str) -> None:
    """Refuse a ``scheduler`` that cannot be used: dask.distributed missing (RuntimeError), or
    neither ``"local"`` nor a Dask address (ValueError naming ``--scheduler``). The address is
    checked as written, not connected to."""
    try:
        import dask.distributed  # noqa: F401
    except ImportError:
        raise RuntimeError("--scheduler needs dask.distributed: pip install 'servopt[dask]'") from None
    dask_checks.check_address(scheduler)  # a mistyped address names --scheduler


CONNECT_S = 30.0  # seconds to reach a Dask scheduler, its handshake included


def connect(scheduler: str, wait_s: float | None = None) -> Any:
    """A ``dask.distributed.Client`` of the scheduler at ``scheduler``, within ``wait_s`` s
    (default :data:`CONNECT_S`), else one line (``RuntimeError``) saying what was reached.

    Dask's own ``timeout`` covers the TCP connection only: a server that accepts it and never
    answers Dask's handshake (an HTTP server, the dashboard's port 8787 given for the
    scheduler's 8786) made the client wait for ever, so the client is made in a thread waited
    on with a deadline. A server that answers something else made Dask read a frame length
    from its bytes and fail to allocate exabytes (a MemoryError the command line took for a
    large instance): that is also said as what it is."""
    import threading

    from dask.distributed import Client

    wait_s = CONNECT_S if wait_s is None else float(wait_s)
    got: dict[str, Any] = {}
    gave_up = threading.Event()

    def make() -> None:
        try:
            client = Client(scheduler, timeout=wait_s)
        except BaseException as exc:  # (raised again in the caller's thread)
            got["error"] = exc
            return
        if gave_up.is_set():  # too late: the caller has reported it
            with contextlib.suppress(Exception):
                client.close()
            return
        got["client"] = client

    thread = threading.Thread(target=make, name="servopt-dask-connect", daemon=True)
    thread.start()
    thread.join(wait_s + min(wait_s, 5.0))  # (Dask's own timeout, on an address nobody
    # listens at, first)
    if thread.is_alive():
        gave_up.set()
        raise RuntimeError(
            f"--scheduler {scheduler}: something accepted the connection but no Dask scheduler "
            f"answered within {wait_s:g} s (the dashboard's port, 8787 by default, instead of "
            "the scheduler's, 8786? an HTTP or other server?); check the address and that "
            "`dask scheduler` runs there")
    error = got.get("error")
    if isinstance(error, MemoryError):  # a frame length read from a stranger's bytes
        raise RuntimeError(
            f"--scheduler {scheduler}: the server there answered, but not as a Dask scheduler "
            "(the dashboard's port, 8787 by default, instead of the scheduler's, 8786? an HTTP "
            "or other server?); check the address") from None
    if error is not None:
        raise error
    return got["client"]


def _run_dask(todo: list, scheduler: str, jobs: int, done: Any) -> None:
    check_scheduler(scheduler)
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler == "local":
        import signal

        # the worker processes inherit an ignored Ctrl-C: the parent stops them and keeps what
        # finished, without a traceback from every worker
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            # no dashboard address: the scheduler's HTTP server would still try port 8787 and,
            # when another cluster holds it, print a UserWarning before servopt's own lines;
            # a free port on the loopback interface, never all interfaces
            cluster = LocalCluster(n_workers=max(1, jobs), threads_per_worker=1, processes=True,
                                   dashboard_address="127.0.0.1:0")
        finally:
            signal.signal(signal.SIGINT, previous)
        client = Client(cluster)
    else:
        client = connect(scheduler)
    # a lost scheduler or a KilledWorker is one line (also while the client closes)
    with dask_checks.dask_errors(todo, scheduler):
        try:
            # every worker has servopt and the client's code, or nothing is submitted
            from servopt.benchmarks.registry import plugins

            codes = dask_checks.check_workers(client, [u[1] for u in todo],
                                              plugins=list(plugins()))
            futures = {client.submit(dask_checks.on_worker, run_unit, c, p, s, m,
                                     key=f"{dask_checks.KEY_PREFIX}{k}", pure=False): (k, c)
                       for k, c, p, s, m in todo}
            for future in as_completed(futures):
                key, case = futures[future]
                # a row computed by other code or on other traces than the client's stops the run
                done(key, dask_checks.checked_row(future.result(), codes[case.name]))
        except KeyboardInterrupt:  # (Ctrl-C, or SIGTERM as the CLI raises it)
            if cluster is not None:  # our own workers write to our terminal
                quiet_workers(client)
            raise
        finally:  # (shutting down cancels what still runs: dask's warnings about it are noise)
            import logging

            logging.getLogger("distributed").setLevel(logging.ERROR)
            client.close()
            if cluster is not None:
                cluster.close()


QUIET_WAIT_S = 2.0  # the longest an interrupted run waits for its local workers to go quiet


def _quiet_distributed_logs() -> None:
    """(Run on each worker.) Log only the ``distributed`` errors from now on."""
    import logging

    logging.getLogger("distributed").setLevel(logging.ERROR)


def quiet_workers(client: Any, wait_s: float = QUIET_WAIT_S) -> bool:
    """Have the workers of ``client`` log only errors, before an interrupted run shuts them
    down: closing cancels the units in flight, and each worker warned of it on stderr
    (``distributed.worker.state_machine - WARNING - Async instruction ... ended with
    CancelledError``) above the one line that says the run was interrupted. Waits at most
    ``wait_s`` s (a worker busy in a solver's C code may not answer; the shutdown goes on
    regardless); returns whether every worker answered."""
    import threading

    answered: list[bool] = []

    def call() -> None:
        with contextlib.suppress(Exception):
            client.run(_quiet_distributed_logs)
            answered.append(True)

    thread = threading.Thread(target=call, name="servopt-quiet-workers", daemon=True)
    thread.start()
    thread.join(wait_s)
    return bool(answered)


def assemble(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Join method rows with their task's bound and compute gaps; metrics become plain columns.

    The metric columns come in order of first appearance over the rows (in plan order), each
    row's metrics in its evaluator's order: a cached row keeps that order (:func:`_write_cache`),
    so a run from the cache, or partly from it, has the columns of a fresh one.

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
    out["status"] = _instance_mismatches(out, bounds)
    senses = {d: getattr(benchmark_module(d), "SENSE", "min") for d in out["decision"].unique()}
    out["gap"] = [
        relative_gap(c, b, senses[d]) if isinstance(b, float | int) else math.nan
        for c, b, d in zip(out["cost"], out["bound"], out["decision"], strict=True)
    ]
    mismatch = out["status"].astype(str).str.startswith(MISMATCH)
    out.loc[mismatch, "gap"] = math.nan  # (a gap against another instance's bound means nothing)
    out["status"] = [flag_below_bound(g, s, senses[d])
                     for g, s, d in zip(out["gap"], out["status"], out["decision"], strict=True)]
    out.columns = [c[2:] if c.startswith("m:") else c for c in out.columns]
    lead = [c for c in ID_COLUMNS + TABLE_COLUMNS if c in out.columns]
    hidden = (TRACEBACK, ERROR_AT, TRACE_READS, INSTANCE_HASH)
    rest = [c for c in out.columns if c not in lead and c not in hidden]
    result = out[lead + rest].reset_index(drop=True)
    result.attrs["tracebacks"] = _tracebacks(frame)
    return result


MISMATCH = "error: instance differs"  # the status of a row run on another instance than its bound


def _instance_mismatches(out: pd.DataFrame, bounds: pd.DataFrame) -> list[str]:
    """Each method row's status, or an error if its instance (content hash) is not the one its
    task's bound ran on (or, without a bound's, the task's first method row's): the case's
    ``make_instance`` gave different instances for one seed and parameters, so the row's cost,
    gap and ranking compare different problems."""
    if INSTANCE_HASH not in out.columns:
        return list(out["status"])
    reference: dict[tuple, str] = {}
    if INSTANCE_HASH in bounds.columns:
        for case, params, seed, digest in bounds[["case", "params", "seed", INSTANCE_HASH]].itertuples(
                index=False):
            if isinstance(digest, str):
                reference[(case, params, seed)] = digest
    statuses = []
    for case, params, seed, digest, status in out[["case", "params", "seed", INSTANCE_HASH,
                                                   "status"]].itertuples(index=False):
        task = (case, params, seed)
        if not isinstance(digest, str):
            statuses.append(status)
            continue
        against = "the bound's"
        if task not in reference:
            reference[task] = digest
            against = "the first method's"
        if digest != reference[task]:
            statuses.append(f"{MISMATCH} from {against} (content hash {digest[:12]} against "
                            f"{reference[task][:12]}): make_instance gave another instance for "
                            f"seed {seed}, params {params}; it must be deterministic in its "
                            "arguments (seed its random generator from seed)")
        else:
            statuses.append(status)
    return statuses


def _tracebacks(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """The error rows' tracebacks (``case``, ``params``, ``seed``, ``method``, ``error_at``,
    ``traceback``), the bound's too: ``frame.attrs["tracebacks"]`` of :func:`assemble`."""
    if TRACEBACK not in frame.columns:
        return []
    rows = frame[frame[TRACEBACK].apply(lambda t: isinstance(t, str))]
    columns = ["case", "params", "seed", "method", ERROR_AT, TRACEBACK]
    return [dict(zip(columns, values, strict=True))
            for values in rows.reindex(columns=columns).itertuples(index=False)]
