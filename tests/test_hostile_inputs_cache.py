"""The benchmark runner's cache is checked, not trusted blindly: an entry that is not the row
its unit's writer wrote is a cache miss (recomputed, overwritten, one warning line naming the
file). Before, an edited cost, a copied entry, a string cost or an empty object reached the
report (a wrong number, a lost row, a traceback)."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from shared import cache_entry, toy_cache_case

from servopt.benchmarks import run
from servopt.benchmarks import runner as runner_mod

import toy_decision  # noqa: F401  (registers the toy decision)


def _case():
    return toy_cache_case("toy_cache_case")


_entry = cache_entry


def _edit_cost(row, path, cache):
    row["cost"] = row["cost"] + 1.0  # (the digest no longer matches)
    path.write_text(json.dumps(row))


def _copy_other(row, path, cache):
    path.write_text(_entry(cache, "exact")[0].read_text())  # another method's entry


def _other_case(row, path, cache):
    row["case"] = "another_case"
    row[runner_mod.CHECKSUM] = runner_mod._digest(row)  # well-formed but another unit's
    path.write_text(json.dumps(row))


def _typed(field, value):
    def edit(row, path, cache):
        row[field] = value
        row[runner_mod.CHECKSUM] = runner_mod._digest(row)  # only the type is wrong
        path.write_text(json.dumps(row))
    return edit


def _empty(row, path, cache):
    path.write_text(json.dumps({"trace_reads": {}}))


def _nan_text(row, path, cache):
    path.write_text(path.read_text().replace(json.dumps(row["cost"]), "NaN", 1))


def _not_json(row, path, cache):
    path.write_text("{not json")


TAMPER = {
    "edited cost": _edit_cost,
    "another method's entry": _copy_other,
    "another case": _other_case,
    "cost a string": _typed("cost", "12"),
    "cost a list": _typed("cost", [1, 2]),
    "cost NaN": _typed("cost", math.nan),
    "cost true": _typed("cost", True),
    "status a number": _typed("status", 5),
    "seed a float": _typed("seed", 0.0),
    "metric a string": _typed("m:extra", "x"),
    "empty entry": _empty,
    "cost NaN in the text": _nan_text,
    "not JSON": _not_json,
}


@pytest.mark.parametrize("how", sorted(TAMPER))
def test_a_tampered_entry_is_recomputed_with_one_warning(tmp_path, capsys, computed_units, how):
    case = _case()
    clean = run([case], jobs=1, cache_dir=tmp_path, progress=False)
    path, row = _entry(tmp_path, "greedy")
    TAMPER[how](row, path, tmp_path)
    capsys.readouterr()
    computed_units.clear()
    again = run([case], jobs=1, cache_dir=tmp_path, progress=False)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and repr(str(path)) in err[0] and "recomputing" in err[0], err
    assert [unit[3] for unit in computed_units] == ["greedy"]  # only that entry was a miss
    keep = ["method", "cost", "bound", "gap", "status"]
    pd.testing.assert_frame_equal(again[keep], clean[keep])
    assert again.attrs["runs_cached"] == clean.attrs["runs"] - 1
    # overwritten with the recomputed row: the next run reads it without a warning
    run([case], jobs=1, cache_dir=tmp_path, progress=False)
    assert capsys.readouterr().err == ""


def test_a_bound_entry_with_a_text_bound_is_recomputed(tmp_path, capsys):
    case = _case()
    clean = run([case], jobs=1, cache_dir=tmp_path, progress=False)
    path, row = _entry(tmp_path, runner_mod.BOUND)
    row["bound"] = str(row["bound"])
    row[runner_mod.CHECKSUM] = runner_mod._digest(row)
    path.write_text(json.dumps(row))
    again = run([case], jobs=1, cache_dir=tmp_path, progress=False)
    assert "bound is" in capsys.readouterr().err
    assert list(again["gap"]) == list(clean["gap"]) and not again["gap"].isna().any()


def test_every_entry_the_runner_writes_passes_the_check(tmp_path, capsys):
    case = _case()
    run([case], jobs=1, cache_dir=tmp_path, progress=False)
    units = runner_mod.plan_units([case])
    for key, *unit in units:
        row = json.loads((tmp_path / f"{key}.json").read_text())
        assert runner_mod.cache_row_problem(row, tuple(unit)) is None
    # and each is read for its own unit only
    (key, *_), (_, *other) = units[0], units[1]
    assert runner_mod._read_cache(tmp_path, key, tuple(other)) is None
    assert "not this run's" in capsys.readouterr().err
