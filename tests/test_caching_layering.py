"""Imports only go downward: benchmarks -> solvers -> models -> instances -> servopt.core.

Every module of ``instances/``, ``models/`` and ``solvers/`` (found where the imported package
keeps them, so in a checkout or an install alike) is parsed (not imported) and each of
its ``import`` statements, at module level or inside a function, is checked against its layer:
a module may import its own layer and the layers below it, never one above (the caching rule's
warm-up replay once imported the evaluator's simulator from inside a method).
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

LAYERS = ("core", "instances", "models", "solvers", "benchmarks")  # bottom to top
CHECKED = ("instances", "models", "solvers")
FOLDERS = {layer: Path(importlib.import_module(f"servopt.{layer}").__file__).parent
           for layer in CHECKED}  # (not tests/../<layer>, which an installed copy lacks: R54 F3)


def upward_imports(source: str, layer: str) -> list[str]:
    """The ``servopt.<layer>`` modules imported by ``source`` that sit above ``layer``."""
    rank = LAYERS.index(layer)
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
            if node.module == "servopt":  # from servopt import benchmarks
                names = [f"servopt.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "servopt" and len(parts) > 1 and parts[1] in LAYERS \
                    and LAYERS.index(parts[1]) > rank:
                found.append(f"line {node.lineno}: {name}")
    return found


MODULES = sorted(f"{layer}/{path.name}" for layer in CHECKED
                 for path in FOLDERS[layer].glob("*.py"))


def test_every_layer_has_modules():
    for layer in CHECKED:
        assert any(m.startswith(f"{layer}/") for m in MODULES), layer
    assert "solvers/caching.py" in MODULES


@pytest.mark.parametrize("module", MODULES)
def test_no_upward_import(module):
    layer, name = module.split("/")
    assert upward_imports((FOLDERS[layer] / name).read_text(), layer) == []


@pytest.mark.parametrize(("source", "layer", "upward"), [
    # the old warm-up replay: a lazy import inside a method
    ("class R:\n    def tune(self):\n        from servopt.benchmarks.caching import simulate\n",
     "solvers", ["line 3: servopt.benchmarks.caching"]),
    ("from servopt import benchmarks, core\n", "models", ["line 1: servopt.benchmarks"]),
    ("import servopt.solvers.caching as cs\n", "instances", ["line 1: servopt.solvers.caching"]),
    ("from servopt.models import caching\n", "solvers", []),  # downward
    ("from servopt.solvers.exact import new_highs\n", "solvers", []),  # same layer
    ("from servopt.core import InvalidInstanceError\nimport numpy\n", "instances", []),
])
def test_the_check_flags_upward_imports(source, layer, upward):
    assert upward_imports(source, layer) == upward
