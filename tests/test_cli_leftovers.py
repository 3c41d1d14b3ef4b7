"""Leftovers of the CLI audit (R15): a stale tracebacks file, a missing bound kept in the cache,
a case named twice, a bad --scheduler let through by a cached run, an interrupted Pyomo solve
that promised an incumbent it did not have, and local Dask workers' warnings on Ctrl-C."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest

from servopt.benchmarks import caching as caching_bench
from servopt.benchmarks import registry, runner
from servopt.benchmarks.harness import Bound
from servopt.benchmarks.registry import Case
from servopt.cli import main
from servopt.core.solution import Solution
from servopt.instances import caching

SMALL = {"requests": 300, "objects": 60}  # a caching instance run in well under a second

PLUGIN = """
from servopt.benchmarks.registry import Case, register
from servopt.instances import caching

def make(*, seed):
    return caching.generate(requests=300, objects=60, seed=seed)

def make_failing(*, seed):
    raise ValueError(f"my generator broke on seed {{seed}}")

register(Case(name="{name}", decision="caching", make_instance=make, methods=("lru",),
              suites=("e13",)))
register(Case(name="{name}_fails", decision="caching", make_instance=make_failing,
              methods=("lru",), suites=("e13fail",)))
"""


@pytest.fixture(autouse=True)
def _registry_restored(monkeypatch):
    """Cases and plug-ins registered by a test are forgotten after it."""
    monkeypatch.setattr(registry, "_CASES", dict(registry._CASES))
    monkeypatch.setattr(registry, "_ORIGINS", dict(registry._ORIGINS))
    monkeypatch.setattr(registry, "_PLUGINS", {}, raising=False)


def _plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """A plug-in file registering ``NAME`` (runs) and ``NAME_fails`` (its instance raises)."""
    tag = uuid.uuid4().hex[:8]
    name = f"e13_case_{tag}"
    path = tmp_path / f"e13plugin_{tag}.py"
    path.write_text(textwrap.dedent(PLUGIN.format(name=name)))
    monkeypatch.syspath_prepend(str(tmp_path))
    return path, name


def _bench(path: Path, out: Path, *cases: str, extra: tuple[str, ...] = ()) -> int:
    argv = ["bench", "--plugin", str(path), "--out", str(out), "--no-plots", "--quiet",
            "--jobs", "1", *extra]
    for case in cases:
        argv += ["--case", case]
    return main(argv)


# -- 1. a clean rerun does not leave the last run's tracebacks behind --------------------------

def test_a_clean_rerun_removes_the_earlier_tracebacks_file(tmp_path, monkeypatch, capsys):
    path, name = _plugin(tmp_path, monkeypatch)
    out = tmp_path / "o2"
    assert _bench(path, out, f"{name}_fails", extra=("--name", "rep")) == 1
    stale = out / "rep-tracebacks.txt"
    assert "my generator broke on seed 0" in stale.read_text()
    capsys.readouterr()
    assert _bench(path, out, name, extra=("--name", "rep")) == 0
    assert (out / "rep.md").exists()
    assert not stale.exists()  # (it described the other case's failure next to this rep.md)
    assert "tracebacks" not in capsys.readouterr().out  # not listed among the files written
    # and a failing run after it writes the file again
    assert _bench(path, out, f"{name}_fails", extra=("--name", "rep")) == 1
    assert "my generator broke on seed 0" in stale.read_text()


# -- 2. a bound that did not finish is not cached; a finite one at its time limit is --------------

def _case() -> Case:
    return Case(name=f"e13_bound_{uuid.uuid4().hex[:8]}", decision="caching", grid=(SMALL,),
                methods=("lru",))


def test_a_bound_stopped_without_a_value_is_recomputed_by_the_next_run(tmp_path, monkeypatch):
    """R15: the NaN bound of an LP stopped by its time limit was cached, so a rerun on a quieter
    machine kept the missing bound."""
    case = _case()
    cache = tmp_path / "cache"
    real = caching_bench.bound(caching.generate(**SMALL, seed=0))  # the evaluator, directly
    assert math.isfinite(real.value)
    # the first run's bound LP stops at its time limit with nothing proved (caching's own
    # answer to a TimeoutError: benchmarks/caching.py bound)
    with monkeypatch.context() as patch:
        patch.setattr(runner, "compute_bound", lambda instance, **kw: Bound(
            math.nan, "none", wall_s=2.0, status="time_limit"))
        first = runner.run([case], cache_dir=cache, progress=False)
    assert math.isnan(first.loc[0, "bound"]) and first.loc[0, "bound_status"] == "time_limit"
    # the real bound, which now finishes
    second = runner.run([case], cache_dir=cache, progress=False)
    assert second.attrs["runs_cached"] == 1  # the method's row only
    assert second.loc[0, "bound"] == pytest.approx(real.value)
    assert second.loc[0, "bound_status"] == "ok"


def test_a_finite_bound_at_its_time_limit_stays_cached(tmp_path, monkeypatch):
    """A MIP's dual bound at its time limit is a proved bound: kept like any other."""
    case = _case()
    cache = tmp_path / "cache"
    monkeypatch.setattr(runner, "compute_bound", lambda instance, **kw: Bound(
        1.0, "mip_bound", wall_s=2.0, status="time_limit"))
    runner.run([case], cache_dir=cache, progress=False)
    monkeypatch.setattr(runner, "compute_bound", lambda instance, **kw: Bound(
        2.0, "mip_bound", wall_s=2.0, status="time_limit"))
    again = runner.run([case], cache_dir=cache, progress=False)
    assert again.attrs["runs_cached"] == 2
    assert again.loc[0, "bound"] == 1.0  # the first run's, from the cache


def test_a_missing_bound_cached_by_older_code_is_dropped_once(tmp_path, monkeypatch, capsys):
    """An entry an older servopt wrote for a bound without a value is recomputed and removed,
    so it is not warned of again on every later run."""
    case = _case()
    cache = tmp_path / "cache"
    runner.run([case], cache_dir=cache, progress=False)
    (key,) = [u[0] for u in runner.plan_units([case]) if u[4] == runner.BOUND]
    entry = cache / f"{key}.json"
    row = json.loads(entry.read_text())  # as an older servopt wrote it: NaN, time_limit
    row.update(bound=math.nan, bound_kind="none", status="time_limit")
    del row[runner.CHECKSUM]
    row[runner.CHECKSUM] = runner._digest(row)
    entry.write_text(json.dumps(row, sort_keys=True))
    monkeypatch.setattr(runner, "compute_bound", lambda instance, **kw: Bound(
        math.nan, "none", wall_s=2.0, status="time_limit"))  # (still out of time)
    capsys.readouterr()
    runner.run([case], cache_dir=cache, progress=False)
    assert f"ignoring cache entry {str(entry)!r}" in capsys.readouterr().err
    assert not entry.exists()
    runner.run([case], cache_dir=cache, progress=False)
    assert "ignoring cache entry" not in capsys.readouterr().err


# -- 3. a case given twice is one case, and one part of the report's name ----------------------

def test_a_case_named_twice_runs_once_under_its_own_name(tmp_path, monkeypatch, capsys):
    path, name = _plugin(tmp_path, monkeypatch)
    out = tmp_path / "b"
    assert _bench(path, out, name, name) == 0
    assert (out / f"{name}.md").exists() and (out / f"{name}.csv").exists()
    assert not list(out.glob(f"{name}-{name}*"))
    assert len(pd.read_csv(out / f"{name}.csv")) == 1  # one case x one seed x one method


# -- 4. --scheduler is checked whatever the cache holds ----------------------------------------

def test_a_bad_scheduler_is_refused_when_every_run_is_cached(tmp_path, monkeypatch, capsys):
    pytest.importorskip("dask.distributed")
    path, name = _plugin(tmp_path, monkeypatch)
    out = tmp_path / "b1"
    assert _bench(path, out, name) == 0  # every run now cached
    capsys.readouterr()
    assert _bench(path, out, name, extra=("--scheduler", "nonsense://")) == 2
    err = capsys.readouterr().err
    assert "servopt: error: --scheduler 'nonsense://': not a Dask address" in err
    # as with --no-cache (nothing cached to read)
    assert _bench(path, out, name, extra=("--scheduler", "nonsense://", "--no-cache")) == 2
    assert "--scheduler 'nonsense://': not a Dask address" in capsys.readouterr().err
    with pytest.raises(ValueError, match="not a Dask address"):
        runner.run(registry.cases(names=[name]), scheduler="nonsense://",
                   cache_dir=out / "cache", progress=False)


# -- 5. an interrupted solve says what it kept -------------------------------------------------

def _interrupted_solve(tmp_path, monkeypatch, capsys, **fields) -> tuple[int, str]:
    """``servopt solve`` of a small caching instance whose solve returns, as HiGHS does on
    Ctrl-C, an ``interrupted`` solution with ``fields`` (objective, bound, info)."""
    from servopt.solvers import exact

    file = tmp_path / "s.json"
    caching.generate(**SMALL, seed=0).to_json(file)
    info = fields.pop("info")
    solution = Solution(status="interrupted", gap=math.nan, wall_s=1.0, backend="highs",
                        info={"lp": False, **info}, **fields)
    monkeypatch.setattr(exact, "solve", lambda instance, **kw: solution)
    code = main(["solve", str(file), "--backend", "pyomo"])
    return code, capsys.readouterr().err


def test_an_interrupted_pyomo_solve_without_incumbent_says_pyomo_keeps_none(
        tmp_path, monkeypatch, capsys):
    """R15: objective and bound nan, then 'the incumbent and bound above are what the solver
    had'. The README: Ctrl-C keeps the incumbent on the matrix form, not through Pyomo."""
    code, err = _interrupted_solve(tmp_path, monkeypatch, capsys, objective=math.nan,
                                   bound=math.nan, info={"form": "pyomo"})
    assert code == 130
    assert "the incumbent and bound above" not in err
    assert "no incumbent: HiGHS solved through the Pyomo model, which keeps none on Ctrl-C" in err
    assert err.rstrip().endswith("and no bound")


@pytest.mark.parametrize(("objective", "bound", "form", "said"), [
    (5.0, 4.0, "matrix", "the incumbent and bound above are what the solver had"),
    (5.0, math.nan, "matrix", "the incumbent above is what the solver had (no bound was proved)"),
    (math.nan, 4.0, "matrix", "no incumbent was found before the interrupt; the bound above"),
    (math.nan, 4.0, "pyomo", "which keeps none on Ctrl-C"),
])
def test_an_interrupted_solve_names_what_it_kept(tmp_path, monkeypatch, capsys, objective, bound,
                                                 form, said):
    code, err = _interrupted_solve(tmp_path, monkeypatch, capsys, objective=objective,
                                   bound=bound, info={"form": form})
    assert code == 130 and said in err


# -- 6. Ctrl-C on a local Dask cluster: servopt's one line, no worker warnings ------------------

SLEEPY = """
import time
from pathlib import Path
from servopt.benchmarks.registry import Case, register
from servopt.instances import caching

def make(*, seed):
    Path({marker!r}).touch()  # a worker has started this unit
    time.sleep(60)
    return caching.generate(requests=300, objects=60, seed=seed)

register(Case(name="{name}", decision="caching", make_instance=make, methods=("lru",)))
"""


def test_ctrl_c_on_a_local_dask_cluster_prints_no_worker_warnings(tmp_path):
    """R15: distributed.worker.state_machine WARNING ... CancelledError lines (one per unit in
    flight) came before servopt's 'interrupted' line. R36: so did distributed's 'Port 8787 is
    already in use' UserWarning whenever another cluster held the port (the test failed under load,
    beside other clusters); it is held here on purpose."""
    pytest.importorskip("dask.distributed")
    with contextlib.ExitStack() as stack:
        holder = stack.enter_context(socket.socket())
        with contextlib.suppress(OSError):  # (already held by someone else: the same condition)
            holder.bind(("0.0.0.0", 8787))
            holder.listen()
        _ctrl_c_on_a_local_dask_cluster(tmp_path)


def _ctrl_c_on_a_local_dask_cluster(tmp_path):
    name = f"e13_sleepy_{uuid.uuid4().hex[:8]}"
    marker = tmp_path / "started"
    plugin = tmp_path / f"{name}.py"
    plugin.write_text(textwrap.dedent(SLEEPY.format(marker=str(marker), name=name)))
    process = subprocess.Popen(
        [sys.executable, "-m", "servopt.cli", "bench", "--plugin", str(plugin), "--case", name,
         "--scheduler", "local", "--jobs", "1", "--no-cache", "--quiet", "--no-plots",
         "--out", str(tmp_path / "out")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path) + os.pathsep + os.environ.get("PYTHONPATH", "")},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert marker.exists(), process.communicate(timeout=30)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, err
    lines = err.strip().splitlines()
    assert lines[0] == "servopt: interrupted; finished runs are cached and the next run resumes", err
    assert not [line for line in lines if "distributed." in line or "CancelledError" in line], err
    # (after it, Python's resource tracker may warn of a semaphore of the killed worker that it
    # cleaned up: multiprocessing's, not a distributed logger; left alone)


def test_a_rerun_without_plots_removes_the_earlier_plots(tmp_path, monkeypatch):
    # E13: a --no-plots rerun into the same --out/--name left the earlier run's PNGs beside the
    # new report, as if they were its own
    path, name = _plugin(tmp_path, monkeypatch)
    out = tmp_path / "o3"
    argv = ["bench", "--plugin", str(path), "--out", str(out), "--quiet", "--jobs", "1",
            "--case", name, "--name", "rep"]
    assert main(argv) == 0
    plots = [out / "rep-gap.png", out / "rep-cost-time.png"]
    assert all(p.exists() for p in plots)
    assert main([*argv, "--no-plots"]) == 0
    assert not any(p.exists() for p in plots) and (out / "rep.md").exists()
