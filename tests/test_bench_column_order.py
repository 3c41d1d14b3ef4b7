"""The bench frame's metric columns come in one order, whether its rows were computed, read from
the cache or both (audit R28 #3: a cached row came back with its metrics sorted, so a rerun of
the same run wrote a CSV with the same values under another header).

Reads the committed ``benchmarks/results/quick.csv`` from the source tree (a clone or the unpacked
sdist; an installed wheel does not carry the results), as README "Tests and CI" says."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from servopt.benchmarks import Case, run
from servopt.benchmarks import runner as runner_mod
from servopt.benchmarks.harness import TABLE_COLUMNS, evaluate
from servopt.instances import caching as ci

METHODS = ("lru", "belady")


def make(*, seed: int) -> ci.Instance:
    return ci.generate(requests=200, objects=30, seed=seed)


def case() -> Case:
    return Case(name="column_order_caching", decision="caching", seeds=(0, 1), make_instance=make,
                methods=METHODS)


def metric_columns(frame: pd.DataFrame) -> list[str]:
    lead = runner_mod.ID_COLUMNS + TABLE_COLUMNS
    return [c for c in frame.columns if c not in lead and c != "bound_status"]


def fresh_order() -> list[str]:
    """The evaluator's own metric order (what a computed row carries), taken from it directly."""
    order: list[str] = []
    for method in METHODS:
        order += [k for k in evaluate(make(seed=0), method).metrics if k not in order]
    return order


def test_the_evaluator_order_is_not_alphabetical():
    # (else the test below could not tell a sorted cache from a kept order)
    assert fresh_order() != sorted(fresh_order())
    # the order the committed results already use
    quick = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "quick.csv"
    columns = quick.read_text().splitlines()[0].split(",")
    assert [c for c in columns if c in fresh_order()] == fresh_order()


def test_computed_cached_and_mixed_runs_have_one_header(tmp_path):
    want = fresh_order()
    computed = run([case()], jobs=1, cache_dir=tmp_path, progress=False)
    assert computed.attrs["runs_cached"] == 0
    assert metric_columns(computed) == want

    cached = run([case()], jobs=1, cache_dir=tmp_path, progress=False)
    assert cached.attrs["runs_cached"] == cached.attrs["runs"]  # every row from the cache
    assert list(cached.columns) == list(computed.columns)

    # a mixed run: the first task's rows computed again, the second's read from the cache, and
    # the other way round (the first row seen is then a cached one)
    entries = {}
    for path in tmp_path.glob("*.json"):
        row = json.loads(path.read_text())
        entries.setdefault(row["seed"], []).append(path)
    for seed in (0, 1):
        for path in entries[seed]:
            path.unlink()
        mixed = run([case()], jobs=1, cache_dir=tmp_path, progress=False)
        assert 0 < mixed.attrs["runs_cached"] < mixed.attrs["runs"]
        assert list(mixed.columns) == list(computed.columns)

    # the CSV header, as `servopt bench` writes it, is the same too
    assert cached.to_csv(index=False).splitlines()[0] == computed.to_csv(index=False).splitlines()[0]
    pd.testing.assert_frame_equal(cached.drop(columns="wall_s").drop(columns="requests_per_s"),
                                  computed.drop(columns="wall_s").drop(columns="requests_per_s"))
