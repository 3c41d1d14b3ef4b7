"""Evaluators (one module per decision), the optimality-gap harness, the case registry and runner.

``gap_table(instance)`` puts every method's realised cost next to the best provable bound;
``run(cases(suite="quick"))`` runs registered cases into one tidy frame.
"""

from servopt.benchmarks.harness import Bound, Outcome, evaluate, gap_table
from servopt.benchmarks.registry import Case, cases, register
from servopt.benchmarks.runner import run

__all__ = ["Bound", "Case", "Outcome", "cases", "evaluate", "gap_table", "register", "run"]
