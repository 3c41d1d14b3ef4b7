"""Where each layer finds a decision's module: ``servopt.<layer>.<decision>`` or a registered one.

The five built-in decisions live at ``servopt.instances.<d>``, ``servopt.models.<d>``,
``servopt.solvers.<d>`` and ``servopt.benchmarks.<d>``. A new decision (for example one defined
in a test or a notebook) can be plugged in with :func:`register_decision`.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from servopt.core.errors import InvalidInstanceError
from servopt.core.instance import DECISIONS

LAYERS = ("instances", "models", "solvers", "benchmarks")
_REGISTERED: dict[str, dict[str, Any]] = {}


def register_decision(decision: str, *, replace: bool = False, **modules: Any) -> None:
    """Register modules (or namespaces) for a decision, e.g. ``models=my_models``.

    A layer of one of the five built-in decisions is replaced only with ``replace=True``: an
    override changes the numbers of the decision's built-in cases and gap tables in this process
    (what each layer reaches: below), so it must be meant, not a plug-in's name clash. (The
    benchmark cache keys a row by the source of every registered layer, so an override's rows
    are never served to a plain run, nor a plain run's to an override: see
    ``servopt.benchmarks.runner.code_fingerprint``.)
    What an override of a built-in decision reaches:

    - ``benchmarks``: its ``evaluate`` and ``bound`` score every case, ``gap_table`` row and bench
      run of the decision.
    - ``solvers``: its ``POLICIES`` (required, a dict) is where every method name of the
      decision is looked up: a case's and ``gap_table``'s name checks, and the built-in
      evaluator's run (``make_policy`` and the like), so ``POLICIES["lru"] = Mine`` makes the
      ``lru`` row Mine's and a name it adds runs. Only ``POLICIES``: the built-in bound and the
      built-in rules keep calling the built-in solvers' other functions (e.g. caching's LP).
    - ``instances``: its ``generate`` makes the instances of a case without ``make_instance``,
      its ``Instance.from_dict`` reads the decision's files (``servopt.instances.load``); the
      built-in evaluators still refuse an instance that is not their ``Instance`` or a subclass.
    - ``models`` is refused: the built-in solvers and evaluators build their LPs and bounds from
      the built-in model module directly, so a replaced one would change ``servopt.solve`` and
      nothing else. Register the model under a new decision name instead.

    Registering a decision again (a plug-in module reloaded, or a second override) replaces the
    layers given and keeps the others: ``instances=a`` then ``benchmarks=b`` registers both, and
    ``instances=c`` after that replaces ``a`` and keeps ``b``. :func:`unregister_decision`
    forgets them all."""
    bad = set(modules) - set(LAYERS)
    if bad:
        raise ValueError(f"unknown layer(s) {sorted(bad)}; layers are {LAYERS}")
    if not isinstance(decision, str) or not decision:
        raise ValueError(f"a decision's name must be non-empty text, got {decision!r}")
    if decision in DECISIONS and "models" in modules:
        raise ValueError(
            f"register_decision: the models layer of the built-in decision {decision!r} cannot be "
            f"replaced: its solvers and evaluator use servopt.models.{decision} directly, so only "
            "servopt.solve would use yours; register your model under a new decision name (the "
            "instances, solvers' POLICIES and benchmarks layers of a built-in decision can be "
            "replaced, with replace=True)")
    if decision in DECISIONS and modules and not replace:
        raise ValueError(
            f"register_decision: {decision!r} is a built-in decision; replacing its "
            f"{', '.join(sorted(modules))} layer(s) changes every {decision} result in this "
            "process: pass replace=True if that is meant, or register under a new name")
    if decision in DECISIONS and "solvers" in modules and not isinstance(
            getattr(modules["solvers"], "POLICIES", None), dict):
        raise ValueError(
            f"register_decision: a solvers override of {decision!r} needs POLICIES, a dict "
            "{method name: policy}: the decision's method names are looked up there (copy "
            f"servopt.solvers.{decision}.POLICIES and change or add entries)")
    _REGISTERED.setdefault(decision, {}).update(modules)


def registered_layers(decision: str) -> dict[str, Any]:
    """``{layer: module or namespace}`` registered for ``decision`` (empty for a built-in one
    left as it is): what the benchmark cache must hash besides servopt's own files."""
    return dict(_REGISTERED.get(decision, {}))


def unregister_decision(decision: str) -> None:
    """Forget what :func:`register_decision` registered for ``decision`` (nothing if none)."""
    _REGISTERED.pop(decision, None)


def known_decisions() -> tuple[str, ...]:
    """The five built-in decisions, then the registered ones."""
    return DECISIONS + tuple(d for d in _REGISTERED if d not in DECISIONS)


def with_start_sources(decision: str) -> None:
    """Import a built-in decision's evaluator, ``servopt.benchmarks.<decision>``, which fills the
    hooks its model reads for a start (decode routing's ``START_ROUTINGS``: its routers' routings,
    from the evaluator's simulator, a layer above the model). ``servopt.solvers.exact.solve``
    calls it (``exact.fill_start_hooks``; so do ``servopt.solve`` and ``servopt solve``, through
    it) before it solves, so each gives the same answer whatever was imported before; nothing
    for a plug-in."""
    if decision in DECISIONS:
        layer_module(decision, "benchmarks")


def layer_module(decision: str, layer: str) -> ModuleType | Any:
    """The module of ``decision`` in ``layer``; a clear error when there is none."""
    if layer in _REGISTERED.get(decision, {}):
        return _REGISTERED[decision][layer]
    if decision not in DECISIONS:
        raise InvalidInstanceError(
            f"unknown decision {decision!r}; known: {', '.join(known_decisions())}"
        )
    try:
        return importlib.import_module(f"servopt.{layer}.{decision}")
    except ModuleNotFoundError as exc:
        if exc.name == f"servopt.{layer}.{decision}":
            raise InvalidInstanceError(
                f"the {decision} decision has no {layer} module in this version of servopt"
            ) from None
        raise
