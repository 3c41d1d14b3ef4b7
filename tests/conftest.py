"""Shared fixtures."""

from __future__ import annotations

import pytest

from servopt.benchmarks import runner as runner_mod


@pytest.fixture
def computed_units(monkeypatch):
    """The units the runner computes (rather than reads from its cache) during the test."""
    calls: list[tuple] = []
    original = runner_mod.run_unit

    def counting(*args):
        calls.append(args)
        return original(*args)

    monkeypatch.setattr(runner_mod, "run_unit", counting)
    return calls
