"""The harness on a real local Dask cluster gives the same rows as the process pool."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from servopt.benchmarks import Case, run

from toy_decision import make_instance

pytest.importorskip("dask.distributed")


def test_local_dask_cluster_matches_process_pool(tmp_path, monkeypatch):
    # spawned Dask workers import the test's toy decision by module name
    tests_dir = str(Path(__file__).parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in [tests_dir, os.environ.get("PYTHONPATH", "")] if p))
    case = Case(name="toy_dask", decision="toy_production", grid=({"products": 3},),
                seeds=(0, 1, 2), make_instance=make_instance, methods=("greedy", "exact"))
    pooled = run([case], jobs=2, progress=False)
    dask_rows = run([case], jobs=2, scheduler="local", cache_dir=tmp_path, progress=False)
    key = ["params", "seed", "method"]
    cols = ["params", "seed", "method", "cost", "bound", "bound_kind", "gap", "status"]
    a = pooled.sort_values(key).reset_index(drop=True)[cols]
    b = dask_rows.sort_values(key).reset_index(drop=True)[cols]
    pd.testing.assert_frame_equal(a, b)
    # the Dask run filled the cache: a pool run now computes nothing and returns the same rows
    again = run([case], jobs=2, cache_dir=tmp_path, progress=False)
    pd.testing.assert_frame_equal(again.sort_values(key).reset_index(drop=True)[cols], b)


def test_registered_case_on_dask_matches_process_pool():
    """A real decision's quick case (the main job's) gives identical rows both ways."""
    from servopt.benchmarks import registry

    (case,) = registry.cases(names=["expert_placement_quick"])
    pooled = run([case], jobs=2, progress=False)
    dask_rows = run([case], jobs=2, scheduler="local", progress=False)
    key = ["params", "seed", "method"]
    cols = ["params", "seed", "method", "cost", "bound", "bound_kind", "gap", "status"]
    pd.testing.assert_frame_equal(pooled.sort_values(key).reset_index(drop=True)[cols],
                                  dask_rows.sort_values(key).reset_index(drop=True)[cols])
