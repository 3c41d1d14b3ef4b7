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


def register_decision(decision: str, **modules: Any) -> None:
    """Register modules (or namespaces) for a decision, e.g. ``models=my_models``."""
    bad = set(modules) - set(LAYERS)
    if bad:
        raise ValueError(f"unknown layer(s) {sorted(bad)}; layers are {LAYERS}")
    _REGISTERED.setdefault(decision, {}).update(modules)


def unregister_decision(decision: str) -> None:
    """Forget what :func:`register_decision` registered for ``decision`` (nothing if none)."""
    _REGISTERED.pop(decision, None)


def known_decisions() -> tuple[str, ...]:
    """The five built-in decisions, then the registered ones."""
    return DECISIONS + tuple(d for d in _REGISTERED if d not in DECISIONS)


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
