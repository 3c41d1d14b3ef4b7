"""Instances of the five decisions: dataclasses, validation, JSON I/O, generators, trace loaders.

``load(path)`` reads any servopt instance file and returns the instance of its decision.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from servopt.core import Instance, InvalidInstanceError
from servopt.core.instance import parse_json, read_json_text
from servopt.core.registry import known_decisions, layer_module


class IgnoredParameterWarning(UserWarning):
    """A generator parameter was given that has no effect with the other parameters given (e.g.
    batch scheduling's ``load`` with ``arrivals="offline"``). A warning in Python, so a sweep
    that passes one set of parameters to every mode keeps running; ``servopt generate`` refuses
    it as an error."""


def warn_ignored(where: str, name: str, value: object, needs: str) -> None:
    """Warn that ``where``'s parameter ``name`` (given as ``value``) has no effect unless
    ``needs`` (the user's terms, e.g. ``"arrivals='poisson'"``)."""
    warnings.warn(f"{name}={value!r} has no effect unless {needs}: {where} ignores it",
                  IgnoredParameterWarning, stacklevel=3)


def load(path_or_text: str | Path) -> Instance:
    """Load an instance file of any decision (dispatching on its ``decision`` field)."""
    text, source = read_json_text(path_or_text)
    data = parse_json(text, source)
    if not isinstance(data, dict) or "decision" not in data:
        raise InvalidInstanceError(f"{source}: not a servopt instance (no 'decision' field)")
    decision = data["decision"]
    if decision not in known_decisions():
        raise InvalidInstanceError(
            f"{source}: unknown decision {decision!r}; known: {', '.join(known_decisions())}"
        )
    module = layer_module(decision, "instances")
    try:
        return module.Instance.from_dict(data, source=source)
    except RecursionError:
        raise InvalidInstanceError(f"{source}: the JSON is nested too deeply") from None


__all__ = ["IgnoredParameterWarning", "load", "warn_ignored"]
