"""``servopt bench --list``: every registered case with its decision, suites and runs, computing
nothing (R42: case names were only to be found in the error for an unknown --case)."""

from __future__ import annotations

import pytest

from servopt.benchmarks import Case, registry, runner
from servopt.cli import main


def test_list_names_every_registered_case_and_its_decision(capsys):
    assert main(["bench", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line.split()[1] for line in lines[1:-1]}
    assert rows == {case.name: case.decision for case in registry.cases()}
    assert {"caching_quick", "capacity_full"} <= set(rows)


def test_list_counts_runs_as_the_runner_does(monkeypatch, capsys, tmp_path):
    # by hand: 2 parameter sets x 3 seeds x (2 methods + the bound row) = 18 runs
    mine = Case(name="mine", decision="caching", grid=({"requests": 8}, {"requests": 9}),
                seeds=(0, 1, 2), methods=("lru", "fifo"), suites=("own",), description="two rules")
    small = Case(name="small", decision="caching", grid=({"requests": 8},), methods=("lru",))
    monkeypatch.setattr(registry, "cases", lambda *a, **k: [mine, small])
    assert main(["bench", "--list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split() == ["mine", "caching", "own", "18", "two", "rules"]
    assert out[2].split() == ["small", "caching", "full", "2"]
    # and the runner's own count of the small case: its one method and its bound
    assert runner.run([small], cache_dir=None, progress=False).attrs["runs"] == 2


@pytest.mark.parametrize("extra", [["--case", "caching_quick"], ["--suite", "quick"]])
def test_list_takes_no_case_or_suite(extra, capsys):
    assert main(["bench", "--list", *extra]) == 2
    assert "--list lists every registered case" in capsys.readouterr().err
