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


@pytest.fixture
def saved_figures(monkeypatch):
    """The matplotlib figures saved during the test (``write_plots``: [gap figure, trade-off
    figure]), kept for reading back through their artists; they are written too."""
    from matplotlib.figure import Figure

    figures = []
    original = Figure.savefig

    def keep(self, *args, **kwargs):
        figures.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    return figures
