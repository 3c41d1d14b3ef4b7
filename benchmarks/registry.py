"""Benchmark cases: one file in ``benchmarks/cases/`` (``servopt.benchmarks.cases``) registers one case.

A case file defines ``CASE = Case(...)``: the decision, how to make its instances (a function of
``seed`` and parameters; the decision's ``generate`` by default), the parameter grid and seeds,
the methods, and the suites it belongs to (``quick`` is the main job; ``full`` the committed
benchmark).
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import numbers
import pkgutil
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from servopt.benchmarks.cluster import BOUND
from servopt.core import Instance, InvalidInstanceError
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
        for field in ("evaluate_kw", "bound_kw"):
            value = getattr(self, field)
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                refuse(field, f"must be a dict of keyword: value, got {value!r}")
        if isinstance(self.suites, str) or not isinstance(self.suites, list | tuple) or not all(
                isinstance(s, str) for s in self.suites):
            refuse("suites", f"must be a tuple of suite names, got {self.suites!r}")
        for field, value in (("grid", grid), ("seeds", seeds), ("suites", tuple(self.suites)),
                             ("methods", methods)):
            object.__setattr__(self, field, value)

    def instance(self, seed: int, params: dict[str, Any]) -> Instance:
        make = self.make_instance or layer_module(self.decision, "instances").generate
        return make(seed=seed, **params)

    def method_list(self) -> list[str]:
        if self.methods is not None:
            return list(self.methods)
        from servopt.benchmarks.harness import method_names

        return method_names(self.decision)

    def tasks(self) -> list[tuple[dict[str, Any], int]]:
        """Every (parameter set, seed), each once (the grid and seeds hold no repeats)."""
        return [(dict(params), seed) for params in self.grid for seed in self.seeds]


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
            raise KeyError(f"no benchmark case named {unknown}; known: {sorted(found)}")
        selected = [c for c in selected if c.name in names]
    return sorted(selected, key=lambda c: (c.decision, c.name))


def suites() -> list[str]:
    return sorted({s for c in discover().values() for s in c.suites})
