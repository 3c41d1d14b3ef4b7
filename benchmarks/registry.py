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
import pkgutil
from collections.abc import Callable
from typing import Any

from servopt.core import Instance, InvalidInstanceError
from servopt.core.registry import layer_module

_CASES: dict[str, Case] = {}


@dataclasses.dataclass(frozen=True)
class Case:
    """A registered benchmark case.

    name : unique name (the file name by convention).
    decision : the decision it benchmarks.
    grid : parameter sets passed to ``make_instance`` (one task per set and seed).
    seeds : the seeds of each parameter set.
    make_instance : ``make_instance(seed=..., **params) -> Instance``; default
        ``servopt.instances.<decision>.generate``.
    methods : method names (default: the decision's default methods).
    evaluate_kw, bound_kw : keyword arguments for ``evaluate`` and ``bound``.
    suites : suites the case belongs to.
    version : bump to invalidate cached rows when the case's meaning changes.
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
        methods = self.methods
        if methods is not None and (isinstance(methods, str)
                                    or not all(isinstance(m, str) for m in methods)):
            odd = methods if isinstance(methods, str) else next(
                m for m in methods if not isinstance(m, str))
            raise InvalidInstanceError(
                f"case {self.name!r}: methods must be a tuple of POLICIES names, got {odd!r} (a "
                "registered case is cached and can run on a cluster by name; run a rule of your "
                "own with gap_table(instance, [rule]))")

    def instance(self, seed: int, params: dict[str, Any]) -> Instance:
        make = self.make_instance or layer_module(self.decision, "instances").generate
        return make(seed=seed, **params)

    def method_list(self) -> list[str]:
        if self.methods is not None:
            return list(self.methods)
        from servopt.benchmarks.harness import method_names

        return method_names(self.decision)

    def tasks(self) -> list[tuple[dict[str, Any], int]]:
        return [(dict(params), int(seed)) for params in self.grid for seed in self.seeds]


def params_label(params: dict[str, Any]) -> str:
    """A stable text label of a parameter set (sorted JSON)."""
    return json.dumps(params, sort_keys=True, default=str)


def register(case: Case) -> Case:
    """Add a case to the registry (a later case of the same name replaces it)."""
    _CASES[case.name] = case
    return case


def discover() -> dict[str, Case]:
    """Import every module of ``servopt.benchmarks.cases`` and register its ``CASE``."""
    package = importlib.import_module("servopt.benchmarks.cases")
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"servopt.benchmarks.cases.{info.name}")
        case = getattr(module, "CASE", None)
        if isinstance(case, Case):
            register(case)
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
