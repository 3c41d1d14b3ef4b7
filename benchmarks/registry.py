"""Benchmark cases: one file in ``benchmarks/cases/`` (``servopt.benchmarks.cases``) registers one case.

A case file defines ``CASE = Case(...)``: the decision, how to make its instances (a function of
``seed`` and parameters; the decision's ``generate`` by default), the parameter grid and seeds,
the methods, and the suites it belongs to (``quick`` is the main job; ``full`` the committed
benchmark).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import math
import numbers
import os
import pkgutil
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from servopt.benchmarks.cluster import BOUND
from servopt.core import Instance, InvalidInstanceError
from servopt.core.checks import closest_names, synonym_hint
from servopt.core.registry import layer_module

_CASES: dict[str, Case] = {}


@dataclasses.dataclass(frozen=True)
class Case:
    """A registered benchmark case.

    name : unique name (the file name by convention); a second case of the name from another
        module is refused by :func:`register`.
    decision : the decision it benchmarks (a built-in or a registered one).
    grid : parameter sets (dicts) passed to ``make_instance`` (one task per set and seed), no
        set twice; values are numbers, text, True/False, None or lists of them (numpy scalars are
        stored as the Python numbers they hold: see :func:`grid_value`).
    seeds : the seeds of each parameter set: whole numbers >= 0, none twice.
    make_instance : ``make_instance(seed=..., **params) -> Instance``; default
        ``servopt.instances.<decision>.generate``.
    methods : names from the decision's ``POLICIES`` (or its evaluator's ``DEFAULT_METHODS``),
        none twice, never the runner's bound row ``"__bound__"`` (default: the decision's default
        methods).
    evaluate_kw, bound_kw : keyword arguments for ``evaluate`` and ``bound``.
    suites : suites the case belongs to.
    version : bump to invalidate cached rows when the case's meaning changes.

    A declaration that breaks one of these is refused when the case is built, by an
    :class:`InvalidInstanceError` naming the case and the field.
    """

    name: str
    decision: str
    grid: tuple[dict[str, Any], ...] = ({},)
    seeds: tuple[int, ...] = (0,)
    make_instance: Callable[..., Instance] | None = None
    methods: tuple[str, ...] | None = None
    evaluate_kw: dict[str, Any] = dataclasses.field(default_factory=dict)
    bound_kw: dict[str, Any] = dataclasses.field(default_factory=dict)
    suites: tuple[str, ...] = ("full",)
    description: str = ""
    version: int = 1

    def __post_init__(self) -> None:
        """Check the declaration when the case is built (a case file's mistake names the case and
        the field here, not a traceback or silently repeated rows at run time) and store the
        sequences as tuples."""
        name = self.name
        if not isinstance(name, str) or not name:
            raise InvalidInstanceError(f"a case's name must be non-empty text, got {name!r}")

        def refuse(field: str, text: str) -> None:
            raise InvalidInstanceError(f"case {name!r}: {field} {text}")

        def sequence(field: str, value: Any, what: str) -> tuple[Any, ...]:
            if isinstance(value, str | bytes | dict) or not isinstance(value, list | tuple):
                refuse(field, f"must be a tuple of {what}, got {value!r}")
            if not value:
                refuse(field, f"is empty: a case needs at least one of {what}")
            return tuple(value)

        def repeated(values: list[Any]) -> Any:
            seen: set[Any] = set()
            for value in values:
                if value in seen:
                    return value
                seen.add(value)
            return None

        if not isinstance(self.decision, str):
            refuse("decision", f"must be a decision's name, got {self.decision!r}")
        try:
            layer_module(self.decision, "benchmarks")  # an unknown decision is refused by name
        except InvalidInstanceError as exc:
            raise InvalidInstanceError(f"case {name!r}: {exc}") from None
        grid = sequence("grid", self.grid, "parameter sets (dicts)")
        for params in grid:
            if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
                refuse("grid", f"must hold parameter sets (dicts of keyword: value), got {params!r}")
        grid = tuple({key: grid_value(value, lambda text, key=key: refuse("grid", f"{key!r}: {text}"))
                      for key, value in params.items()} for params in grid)
        twice = repeated([params_label(p) for p in grid])
        if twice is not None:
            refuse("grid", f"repeats the parameter set {twice} (each task would run twice)")
        seeds = sequence("seeds", self.seeds, "whole-number seeds")
        for seed in seeds:
            if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
                refuse("seeds", f"must be whole numbers, got {seed!r}")
            if seed < 0:  # every generator refuses it, task by task, at run time
                refuse("seeds", f"must be whole numbers >= 0, got {seed!r}")
        seeds = tuple(int(s) for s in seeds)
        twice = repeated(list(seeds))
        if twice is not None:
            refuse("seeds", f"repeats seed {twice} (each of its tasks would run twice)")
        methods = self.methods
        if methods is not None and (isinstance(methods, str)
                                    or not isinstance(methods, list | tuple)
                                    or not all(isinstance(m, str) for m in methods)):
            odd = methods if isinstance(methods, str) or not isinstance(methods, list | tuple) \
                else next(m for m in methods if not isinstance(m, str))
            refuse("methods", f"must be a tuple of POLICIES names, got {odd!r} (a "
                   "registered case is cached and can run on a cluster by name; run a rule of your "
                   "own with gap_table(instance, [rule]))")
        if methods is not None:
            methods = sequence("methods", methods, "method names")
            twice = repeated(list(methods))
            if twice is not None:
                refuse("methods", f"repeats {twice!r} (its rows would be counted twice)")
            from servopt.benchmarks.harness import known_methods

            known = known_methods(self.decision)
            for method in methods:
                if method == BOUND:
                    refuse("methods", f"may not hold {BOUND!r}, the runner's name of the bound row")
                if known is not None and method not in known:
                    refuse("methods", f"{method!r} is not a {self.decision} method; known: "
                           f"{', '.join(known)}")
        make = self.make_instance
        if make is not None and not callable(make):
            refuse("make_instance", f"must be a function make_instance(seed=..., **params), got "
                   f"{make!r}")
        if make is None:
            try:
                make = layer_module(self.decision, "instances").generate
            except (InvalidInstanceError, AttributeError):  # a plug-in without generators
                make = None
        if make is not None:
            _check_grid_keys(grid, make, refuse, self.decision)
        for field in ("evaluate_kw", "bound_kw"):
            value = getattr(self, field)
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                refuse(field, f"must be a dict of keyword: value, got {value!r}")
            # an option the evaluator does not take, or a value its check refuses, names the
            # case here rather than failing every task at run time
            check = getattr(getattr(layer_module(self.decision, "benchmarks"),
                                    field.removesuffix("_kw"), None), "check_options", None)
            if check is not None:
                try:
                    check(**value)
                except InvalidInstanceError as exc:
                    refuse(field, f"is refused: {exc}")
        if isinstance(self.suites, str) or not isinstance(self.suites, list | tuple) or not all(
                isinstance(s, str) for s in self.suites):
            refuse("suites", f"must be a tuple of suite names, got {self.suites!r}")
        for field, value in (("grid", grid), ("seeds", seeds), ("suites", tuple(self.suites)),
                             ("methods", methods)):
            object.__setattr__(self, field, value)
        # the file whose code built the case (not a field: the cache hashes its source)
        object.__setattr__(self, "_origin_file", _building_file())

    @property
    def origin_file(self) -> str | None:
        """The source file of the code that built this case (a script, a case module), if it
        has one (not a REPL's or ``python -c``'s)."""
        return getattr(self, "_origin_file", None)

    def instance(self, seed: int, params: dict[str, Any]) -> Instance:
        """``make_instance(seed=seed, **params)``, refused (:class:`InvalidInstanceError`) unless
        it is a servopt :class:`Instance` of this case's decision: another decision's instance
        would be scored by that decision's evaluator against this case's name."""
        make = self.make_instance or layer_module(self.decision, "instances").generate
        instance = make(seed=seed, **params)
        where = f"case {self.name} ({self.decision}): make_instance"
        if not isinstance(instance, Instance):
            raise InvalidInstanceError(f"{where} returned a {type(instance).__name__}, not a "
                                       "servopt Instance")
        if instance.decision != self.decision:
            raise InvalidInstanceError(f"{where} returned a {instance.decision} instance, not a "
                                       f"{self.decision} one")
        return instance

    def method_list(self) -> list[str]:
        if self.methods is not None:
            return list(self.methods)
        from servopt.benchmarks.harness import method_names

        return method_names(self.decision)

    def tasks(self) -> list[tuple[dict[str, Any], int]]:
        """Every (parameter set, seed), each once (the grid and seeds hold no repeats)."""
        return [(dict(params), seed) for params in self.grid for seed in self.seeds]


def _check_grid_keys(grid: tuple[dict[str, Any], ...], make: Callable[..., Any],
                     refuse: Callable[[str, str], None], decision: str) -> None:
    """Refuse a grid key ``make`` (the case's ``make_instance``) does not take, with the close
    name if there is one, or what ``decision`` calls the quantity another decision names so
    (:func:`servopt.core.checks.synonym_hint`), and the key ``seed`` (the case's ``seeds`` give
    it); nothing when ``make`` takes ``**params`` or has no signature Python can read."""
    try:
        parameters = inspect.signature(make).parameters.values()
    except (TypeError, ValueError):
        return
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters)
    accepted = [p.name for p in parameters
                if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "seed"]
    for params in grid:
        for key in params:
            if key == "seed":
                refuse("grid", "may not set 'seed': the case's seeds give each task its seed")
            if not takes_any and key not in accepted:
                close = closest_names(key, accepted)
                synonym = synonym_hint(key, decision, accepted)
                name = getattr(make, "__qualname__", None) or type(make).__name__
                refuse("grid", f"key {key!r} is not a parameter of make_instance ({name})"
                       + (f"; {synonym}" if synonym else
                          f"; did you mean {close[0]!r}?" if close else "")
                       + f"; it takes: {', '.join(accepted) or 'no parameters besides seed'}")


def _building_file() -> str | None:
    """The source file of the code that is building a :class:`Case` (the first frame outside
    this module and ``dataclasses``, whose ``replace`` builds one too), if it has one."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_globals.get("__name__") not in (__name__, "dataclasses"):
            file = frame.f_globals.get("__file__")
            return str(file) if isinstance(file, str) and Path(file).is_file() else None
        frame = frame.f_back
    return None


def grid_value(value: Any, refuse: Callable[[str], None]) -> Any:
    """A grid parameter's value as a plain JSON value: None, True/False, a whole number, a finite
    number, text, or a list or tuple of them; a numpy scalar becomes the Python number it holds
    (np.int64(20) is 20, so its params label is 20, not the text "20"). Anything else (an array,
    a dict, an object, NaN or an infinity) is refused by ``refuse(text)``: the runner labels,
    caches and compares parameter sets by their JSON text, which only these keep exact."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) and math.isfinite(value):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, list | tuple):
        return type(value)(grid_value(v, refuse) for v in value) if type(value) in (list, tuple) \
            else tuple(grid_value(v, refuse) for v in value)
    refuse(f"must be a number, text, True/False, None or a list of them (a parameter set is "
           f"labelled and cached by its JSON text), got {value!r} ({type(value).__name__})")
    return value


def params_label(params: dict[str, Any]) -> str:
    """A stable text label of a parameter set (sorted JSON)."""
    return json.dumps(params, sort_keys=True, default=str)


_ORIGINS: dict[str, str] = {}  # case name -> the module that registered it


def register(case: Case, module: str | None = None) -> Case:
    """Add a case to the registry under its name; ``module`` is where it comes from (default:
    the calling module). The same module may register the name again (a reload replaces the
    case); a case of a name already registered from another module is refused (an
    :class:`InvalidInstanceError` naming both modules), so a file of one's own cannot silently
    take over a built-in case."""
    if not isinstance(case, Case):
        raise InvalidInstanceError(f"register() takes a benchmark Case, got {type(case).__name__}")
    if module is None:
        module = sys._getframe(1).f_globals.get("__name__", "?")
    first = _ORIGINS.get(case.name)
    if first is not None and first != module and case.name in _CASES:
        raise InvalidInstanceError(
            f"benchmark case {case.name!r} is defined twice: in {first} and in {module}; "
            "rename one (a case's name is its file's name by convention)")
    _ORIGINS[case.name] = module
    _CASES[case.name] = case
    return case


_PLUGINS: dict[str, str] = {}  # a --plugin (a file's absolute path) -> the module it imported


def load_plugin(spec: str) -> ModuleType:
    """Import a plug-in module named on the command line (``servopt bench --plugin``): a module
    name importable from the working folder or ``PYTHONPATH`` (``mycases``, ``pkg.cases``), or
    the path of a ``.py`` file, whose folder is put first on ``sys.path`` so that it is imported
    by its plain name (as a Dask worker must import it to unpickle its functions). It registers
    its cases (``register(Case(...))`` or a ``CASE``) and decisions (``register_decision``) as it
    is imported. Only modules the user names are imported: never one named in a data file.
    An unimportable one is an :class:`ImportError` naming it."""
    if not isinstance(spec, str) or not spec.strip():
        raise ImportError(f"--plugin {spec!r}: give a module name or the path of a .py file")
    name = spec
    if spec.endswith(".py") or "/" in spec or os.sep in spec:
        path = Path(spec).expanduser().resolve()
        if path.suffix != ".py" or not path.is_file():
            raise ImportError(f"--plugin {spec}: no such .py file")
        if not path.stem.isidentifier():
            raise ImportError(f"--plugin {spec}: {path.name!r} is not importable as a module "
                              "name (rename it to letters, digits and _)")
        name = path.stem
        spec = str(path)  # (absolute: a Dask worker loads the same file)
        folder = str(path.parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        loaded = sys.modules.get(name)
        where = getattr(loaded, "__file__", None)
        if loaded is not None and (where is None or Path(where).resolve() != path):
            raise ImportError(f"--plugin {spec}: a module named {name!r} is already imported "
                              f"from {where or 'elsewhere'}; rename the file")
    elif "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # (the servopt script's path does not hold the folder)
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name and not name.startswith(f"{exc.name}."):
            raise
        raise ImportError(f"--plugin {spec}: no module named {name!r} in the working folder or "
                          "on PYTHONPATH (or give the path of its .py file)") from None
    case = getattr(module, "CASE", None)
    if isinstance(case, Case):
        register(case, module.__name__)
    _PLUGINS[spec] = module.__name__
    return module


def load_plugins(specs: list[str]) -> list[str]:
    """:func:`load_plugin` each of ``specs`` (run on each Dask worker before any unit); returns
    the modules' names."""
    return [load_plugin(spec).__name__ for spec in specs]


def plugins() -> dict[str, str]:
    """``{--plugin: module name}`` of the plug-ins loaded in this process (a file's path made
    absolute), in the order loaded: what a Dask worker must load too."""
    return dict(_PLUGINS)


def discover() -> dict[str, Case]:
    """Import every module of ``servopt.benchmarks.cases`` and register its ``CASE`` (two
    modules defining a case of one name: refused by :func:`register`)."""
    package = importlib.import_module("servopt.benchmarks.cases")
    for info in pkgutil.iter_modules(package.__path__):
        name = f"servopt.benchmarks.cases.{info.name}"
        module = importlib.import_module(name)
        case = getattr(module, "CASE", None)
        if isinstance(case, Case):
            register(case, name)
    return dict(_CASES)


def cases(suite: str | None = None, names: list[str] | None = None) -> list[Case]:
    """Registered cases, optionally of one suite and/or with given names."""
    found = discover()
    selected = [c for c in found.values() if suite is None or suite in c.suites]
    if names:
        unknown = sorted(set(names) - set(found))
        if unknown:
            raise KeyError(f"no benchmark case named {unknown}; known: {sorted(found)}. A case "
                           "of one's own is a module that registers it (register(Case(...))): "
                           "load it with --plugin MODULE (a module name on PYTHONPATH or a .py "
                           "path; see the README, 'Adding a decision, case or method')")
        selected = [c for c in selected if c.name in names]
    return sorted(selected, key=lambda c: (c.decision, c.name))


def suites() -> list[str]:
    return sorted({s for c in discover().values() for s in c.suites})
