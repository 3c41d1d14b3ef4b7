"""``servopt bench`` without the public traces (a fresh install): the cells built on a trace are
skipped with one note saying what to set, the rest run and the exit status is 0; a trace that is
there but bad stays an error. And the md report records what the figures depend on."""

from __future__ import annotations

import math
import os
import re
import subprocess
from importlib import metadata
from pathlib import Path

import pandas as pd
import pytest

from servopt import cli
from servopt.benchmarks import Case, run
from servopt.benchmarks import report as report_mod
from servopt.benchmarks import runner as runner_mod
from servopt.benchmarks.harness import Bound, Outcome
from servopt.benchmarks.registry import params_label
from servopt.core import InvalidInstanceError
from servopt.instances import traces

from toy_decision import make_instance

# the quick suite's cells built on a public trace, read off benchmarks/cases/*_quick.py by hand
TRACE_CELLS = {
    ("caching_quick", params_label({"workload": "mooncake", "max_requests": 6000,
                                    "cache_share": 0.05})): "mooncake_synthetic.jsonl",
    ("capacity_quick", params_label({"workload": "azure_code", "regime": "memory"})):
        "azure2023_code.csv",
}
NOTE = "skipped: needs {}; set SERVOPT_TRACES to the folder holding it"


@pytest.fixture
def no_traces(tmp_path, monkeypatch):
    """No $SERVOPT_TRACES and no shared folder anywhere the lookup goes (a fresh machine)."""
    empty = tmp_path / "no-traces"
    empty.mkdir()
    monkeypatch.delenv("SERVOPT_TRACES", raising=False)
    monkeypatch.setattr(traces, "trace_folders", lambda: [empty])


@pytest.fixture
def instant_methods(monkeypatch):
    """Every method and bound answers at once: the instances (where the traces are read) are
    still built for real, each unit as the runner builds it."""
    monkeypatch.setattr(runner_mod, "evaluate", lambda instance, method, **kw: Outcome(1.0))
    monkeypatch.setattr(runner_mod, "compute_bound",
                        lambda instance, **kw: Bound(1.0, "lower_bound"))


def _bench(out: Path, *extra: str) -> int:
    return cli.main(["bench", "--out", str(out), "--no-plots", "--quiet", "--no-cache",
                     "--jobs", "1", *extra])


def test_quick_suite_without_traces_skips_exactly_the_trace_cells_and_exits_0(
        tmp_path, no_traces, instant_methods, capsys):
    assert _bench(tmp_path) == 0
    out, err = capsys.readouterr()
    assert "error" not in err
    frame = pd.read_csv(tmp_path / "quick.csv")
    skipped = frame[frame["status"].str.startswith("skipped")]
    assert set(zip(skipped["case"], skipped["params"], strict=True)) == set(TRACE_CELLS)
    for (case, params), trace in TRACE_CELLS.items():
        rows = frame[(frame["case"] == case) & (frame["params"] == params)]
        assert (rows["status"] == NOTE.format(trace)).all() and rows["cost"].isna().all()
        assert (rows["bound_status"] == NOTE.format(trace)).all()
    others = frame.drop(skipped.index)
    assert len(others) and (others["status"] == "ok").all()
    assert set(others["case"]) == {"batch_scheduling_quick", "caching_quick",
                                   "decode_routing_quick", "expert_placement_quick"}
    md = (tmp_path / "quick.md").read_text()
    for trace in TRACE_CELLS.values():  # one note each, in the printed text and in the report
        assert out.count(NOTE.format(trace)) == 1 and md.count(NOTE.format(trace)) == 1
    # the skipped runs are not in the tables: caching_quick's lru has its one multimodal run
    summary = report_mod.summarise(frame).set_index(["case", "method"])
    assert summary.loc[("caching_quick", "lru"), "runs"] == 1
    assert summary.loc[("caching_quick", "lru"), "status"] == "ok"
    assert "capacity_quick" not in summary.index.get_level_values("case")
    assert "## capacity: capacity_quick\n\n" + NOTE.format("azure2023_code.csv") in md


def test_quick_suite_with_the_traces_skips_nothing(tmp_path, instant_methods, capsys):
    for trace in TRACE_CELLS.values():
        if traces.shared_trace(trace) is None:
            pytest.skip(f"{trace} is not in ../shared/traces or $SERVOPT_TRACES")
    assert _bench(tmp_path, "--suite", "quick") == 0
    frame = pd.read_csv(tmp_path / "quick.csv")
    assert (frame["status"] == "ok").all() and (frame["bound_status"] == "ok").all()
    cells = set(zip(frame["case"], frame["params"], strict=True))
    assert set(TRACE_CELLS) <= cells
    assert "skipped" not in capsys.readouterr().out


def test_a_trace_that_is_there_but_bad_is_an_error_not_a_skip(tmp_path, monkeypatch,
                                                               instant_methods, capsys):
    folder = tmp_path / "traces"
    folder.mkdir()
    (folder / "mooncake_synthetic.jsonl").write_text("this is not JSON\n")
    (folder / "azure2023_code.csv").write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n0,-5,3\n")
    monkeypatch.setenv("SERVOPT_TRACES", str(folder))
    code = _bench(tmp_path / "out", "--case", "caching_quick", "--case", "capacity_quick")
    err = capsys.readouterr().err
    assert code == 1
    assert "servopt: error: caching_quick" in err and "servopt: error: capacity_quick" in err
    frame = pd.read_csv(tmp_path / "out" / "caching_quick-capacity_quick.csv")
    assert not frame["status"].str.startswith("skipped").any()
    bad = frame[frame["status"].str.startswith("error")]
    assert set(zip(bad["case"], bad["params"], strict=True)) == set(TRACE_CELLS)


@pytest.mark.parametrize("build", [
    lambda: __import__("servopt.benchmarks.caching", fromlist=["x"]).make_instance(
        workload="mooncake", max_requests=10),
    lambda: __import__("servopt.benchmarks.capacity", fromlist=["x"]).make_cell(
        workload="azure_code", regime="memory"),
])
def test_a_missing_trace_says_to_set_servopt_traces(no_traces, build):
    with pytest.raises(InvalidInstanceError, match="set SERVOPT_TRACES to the folder holding it"):
        build()


def _looks_up(trace: str, message: str):
    def make(*, seed: int = 0, **params):
        traces.shared_trace(trace)  # looked up (and absent) ...
        raise InvalidInstanceError(message)  # ... then a failure of its own
    return make


def test_only_a_failure_naming_the_absent_trace_is_a_skip(tmp_path, no_traces):
    def case(name, make):
        return Case(name=name, decision="toy_production", grid=({"products": 3},),
                    make_instance=make, methods=("greedy",))

    frame = run([case("names_it", _looks_up("x.csv", "x.csv not found")),
                 case("other_error", _looks_up("x.csv", "products must be >= 1")),
                 case("no_lookup", _looks_up_nothing),
                 case("fine", make_instance)], jobs=1, cache_dir=tmp_path, progress=False)
    status = frame.set_index("case")["status"]
    assert status["names_it"] == NOTE.format("x.csv")
    assert status["other_error"].startswith("error: InvalidInstanceError: products must")
    assert status["no_lookup"].startswith("error: InvalidInstanceError: x.csv")
    assert status["fine"] == "ok"
    bound_kind = frame.set_index("case")["bound_kind"]
    assert bound_kind["names_it"] == "skipped" and bound_kind["other_error"] == "error"
    assert math.isnan(frame.set_index("case").loc["names_it", "cost"])
    # like errors, skips are not cached: the run with the trace there computes them
    assert len(list(tmp_path.glob("*.json"))) == 2  # the bound and greedy of "fine"
    notes = report_mod.skipped_notes(frame)
    assert list(notes) == ["names_it"]
    assert notes["names_it"] == [NOTE.format("x.csv") + ' (1 run and 1 bound of the cell '
                                 '{"products": 3})']


def _looks_up_nothing(*, seed: int = 0, **params):
    raise InvalidInstanceError("x.csv not found")  # names a trace it never looked up


def _git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@t",
                           *args], capture_output=True, text=True, check=True).stdout.strip()


def test_git_state_of_a_checkout_by_hand(tmp_path):
    try:
        _git(tmp_path, "init", "-q")
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git is not available")
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("x = 1\n")
    assert report_mod.git_state(package) == "not a git checkout"  # not tracked yet
    _git(tmp_path, "add", "pkg/__init__.py")
    _git(tmp_path, "commit", "-q", "-m", "one")
    commit = _git(tmp_path, "rev-parse", "HEAD")
    assert report_mod.git_state(package) == f"{commit} (clean)"
    (package / "__init__.py").write_text("x = 2\n")
    (tmp_path / "notes.txt").write_text("scratch\n")
    assert report_mod.git_state(package) == f"{commit} (dirty: 1 modified, 1 untracked)"
    elsewhere = tmp_path.parent / f"{tmp_path.name}-copy"
    elsewhere.mkdir()
    (elsewhere / "__init__.py").write_text("x = 1\n")
    assert report_mod.git_state(elsewhere) == "not a git checkout"


def test_report_header_says_what_the_figures_depend_on(tmp_path, monkeypatch, capsys):
    from servopt.benchmarks import registry

    case = Case(name="toy_case", decision="toy_production", grid=({"products": 3},),
                make_instance=make_instance, methods=("greedy",))
    monkeypatch.setattr(registry, "cases", lambda suite=None, names=None: [case])
    loads = iter([(1.5, 2.25, 3.0), (4.0, 5.0, 6.5)])  # at start, at end
    monkeypatch.setattr(os, "getloadavg", lambda: next(loads))
    assert _bench(tmp_path, "--case", "toy_case") == 0
    md = (tmp_path / "toy_case.md").read_text()
    header = md.split("`cost` is the mean")[0]
    for package in ("numpy", "pandas", "pyomo", "highspy", "cvxpy"):
        assert f"- {package}: {metadata.version(package)}\n" in header
    assert re.search(r"- Python: 3\.\d+\.\d+ ", header)
    assert re.search(r"- servopt: \S+, (git [0-9a-f]{40} \((clean|dirty: \d+ modified, \d+ "
                     r"untracked)\)|not a git checkout)\n", header)
    cpus = os.cpu_count()
    assert f"- load average at start: 1.50 / 2.25 / 3.00 (1 / 5 / 15 min) on {cpus} CPUs" in header
    assert f"- load average at end: 4.00 / 5.00 / 6.50 (1 / 5 / 15 min) on {cpus} CPUs" in header
    assert "from the cache" not in header  # --no-cache
    capsys.readouterr()
    # a second run with the cache: the header says its figures were computed earlier
    loads = iter([(0.0, 0.0, 0.0)] * 4)
    cli.main(["bench", "--case", "toy_case", "--out", str(tmp_path), "--no-plots", "--quiet",
              "--jobs", "1"])
    cli.main(["bench", "--case", "toy_case", "--out", str(tmp_path), "--no-plots", "--quiet",
              "--jobs", "1"])
    md = (tmp_path / "toy_case.md").read_text()
    assert "- from the cache: 2 of 2 runs" in md
