"""The harness on a real local Dask cluster gives the same rows as the process pool."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from servopt.benchmarks import Case, run
from servopt.benchmarks import runner as runner_mod

from toy_decision import make_instance

pytest.importorskip("dask.distributed")

_run_unit = runner_mod.run_unit


def run_unit_on_a_worker(*args):
    """run_unit that refuses to run in the test process (Dask workers inherit its pid in
    SERVOPT_TEST_PROCESS and have their own)."""
    if str(os.getpid()) == os.environ.get("SERVOPT_TEST_PROCESS"):
        raise AssertionError("a unit ran in the test process, not on a Dask worker")
    return _run_unit(*args)


def _no_pool(*args):
    raise AssertionError("the Dask run fell back to the process pool")


def _on_dask_only(monkeypatch):
    """From here on units may only run on Dask workers (which import this module by name)."""
    tests_dir = str(Path(__file__).parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in [tests_dir, os.environ.get("PYTHONPATH", "")] if p))
    monkeypatch.setenv("SERVOPT_TEST_PROCESS", str(os.getpid()))
    monkeypatch.setattr(runner_mod, "_run_pool", _no_pool)
    monkeypatch.setattr(runner_mod, "run_unit", run_unit_on_a_worker)


def test_local_dask_cluster_matches_process_pool(tmp_path, monkeypatch):
    # spawned Dask workers import the test's toy decision by module name
    tests_dir = str(Path(__file__).parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in [tests_dir, os.environ.get("PYTHONPATH", "")] if p))
    case = Case(name="toy_dask", decision="toy_production", grid=({"products": 3},),
                seeds=(0, 1, 2), make_instance=make_instance, methods=("greedy", "exact"))
    pooled = run([case], jobs=2, progress=False)
    _on_dask_only(monkeypatch)
    dask_rows = run([case], jobs=2, scheduler="local", cache_dir=tmp_path, progress=False)
    key = ["params", "seed", "method"]
    cols = ["params", "seed", "method", "cost", "bound", "bound_kind", "gap", "status"]
    a = pooled.sort_values(key).reset_index(drop=True)[cols]
    b = dask_rows.sort_values(key).reset_index(drop=True)[cols]
    pd.testing.assert_frame_equal(a, b)
    # the Dask run filled the cache: a pool run now computes nothing (the pool and run_unit
    # refuse to run) and returns the same rows
    again = run([case], jobs=2, cache_dir=tmp_path, progress=False)
    pd.testing.assert_frame_equal(again.sort_values(key).reset_index(drop=True)[cols], b)


def test_registered_case_on_dask_matches_process_pool(monkeypatch):
    """A real decision's quick case (the main job's) gives identical rows both ways."""
    from servopt.benchmarks import registry

    (case,) = registry.cases(names=["expert_placement_quick"])
    pooled = run([case], jobs=2, progress=False)
    _on_dask_only(monkeypatch)
    dask_rows = run([case], jobs=2, scheduler="local", progress=False)
    key = ["params", "seed", "method"]
    cols = ["params", "seed", "method", "cost", "bound", "bound_kind", "gap", "status"]
    pd.testing.assert_frame_equal(pooled.sort_values(key).reset_index(drop=True)[cols],
                                  dask_rows.sort_values(key).reset_index(drop=True)[cols])
