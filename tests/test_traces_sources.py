"""Where traces come from: ``$SERVOPT_TRACES``, and the benchmark cache keyed on the traces a
run actually reads (and only those)."""

from __future__ import annotations

import json

import pytest

from servopt import cli
from servopt.benchmarks import Case, registry, run
from servopt.benchmarks import runner as runner_mod
from servopt.core import InvalidInstanceError
from servopt.instances import traces

import toy_decision


def _lines(*requests: tuple[int, int]) -> str:
    """A Mooncake trace of (input_length, output_length) requests, one 512-token block each."""
    return "".join(json.dumps({"timestamp": 100 * i, "input_length": n, "output_length": m,
                               "hash_ids": [i]}) + "\n" for i, (n, m) in enumerate(requests))


def make_from_trace(*, seed: int) -> toy_decision.ToyInstance:
    """A toy instance with one product per request of the shared ``toy_trace.jsonl``."""
    path = traces.shared_trace("toy_trace.jsonl")
    if path is None:
        raise InvalidInstanceError("toy_trace.jsonl not found")
    return toy_decision.generate(products=len(traces.read_mooncake(path)), seed=seed)


GENERATED = Case(name="toy_generated_src", decision="toy_production",
                 make_instance=toy_decision.make_instance, methods=("greedy",))
FROM_TRACE = Case(name="toy_trace_src", decision="toy_production", make_instance=make_from_trace,
                  methods=("greedy",))


@pytest.fixture
def folders(tmp_path, monkeypatch):
    """Two trace folders with different ``toy_trace.jsonl``; ``$SERVOPT_TRACES`` names the first."""
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    (one / "toy_trace.jsonl").write_text(_lines((100, 5), (200, 6), (300, 7)))
    (two / "toy_trace.jsonl").write_text(_lines((100, 5), (200, 6), (300, 7), (400, 8)))
    monkeypatch.setenv("SERVOPT_TRACES", str(one))
    return one, two


# ---------------------------------------------------------------------------------------------
# $SERVOPT_TRACES
# ---------------------------------------------------------------------------------------------
def test_a_servopt_traces_that_names_no_folder_is_refused(tmp_path, monkeypatch):
    # it used to fall back silently to ../shared/traces: the user's own traces were never read
    missing = tmp_path / "my traces"
    monkeypatch.setenv("SERVOPT_TRACES", str(missing))
    with pytest.raises(InvalidInstanceError) as err:
        traces.shared_trace("azure2023_code.csv")
    assert str(err.value).startswith(f"SERVOPT_TRACES={missing}: no such folder")
    assert "\n" not in str(err.value)
    afile = tmp_path / "azure2023_code.csv"
    afile.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n0,5,3\n")
    monkeypatch.setenv("SERVOPT_TRACES", str(afile))
    with pytest.raises(InvalidInstanceError, match=r"SERVOPT_TRACES=.*azure2023_code.csv: a file, not "
                                                   r"a folder"):
        traces.shared_trace("azure2023_code.csv")


def test_a_servopt_traces_folder_is_searched_first(folders, monkeypatch):
    one, _ = folders
    assert traces.shared_trace("toy_trace.jsonl") == one / "toy_trace.jsonl"
    monkeypatch.setenv("SERVOPT_TRACES", "")  # empty: as if unset
    assert traces.shared_trace("toy_trace.jsonl") is None


def test_without_servopt_traces_an_absent_shared_folder_is_none_so_tests_skip(tmp_path, monkeypatch):
    # tests skip on None: a machine without ../shared/traces must not raise
    monkeypatch.delenv("SERVOPT_TRACES", raising=False)
    package = tmp_path / "a" / "b" / "c" / "d" / "e"
    package.mkdir(parents=True)
    monkeypatch.setattr(traces, "__file__", str(package / "traces.py"))
    monkeypatch.chdir(package)
    assert traces.shared_trace("azure2023_code.csv") is None
    assert traces.shared_trace("mooncake_synthetic.jsonl") is None


def test_servopt_bench_names_the_missing_folder_in_one_line_and_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(registry._CASES, GENERATED.name, GENERATED)
    monkeypatch.setattr(registry, "discover", lambda: dict(registry._CASES))
    missing = tmp_path / "nowhere"
    monkeypatch.setenv("SERVOPT_TRACES", str(missing))
    code = cli.main(["bench", "--case", GENERATED.name, "--out", str(tmp_path / "out"), "--no-plots",
                     "--quiet"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.splitlines() == [f"servopt: error: SERVOPT_TRACES={missing}: no such folder (set it to "
                                "the folder holding the traces, or unset it)"]
    assert not (tmp_path / "out" / "cache").exists()  # stopped before any run


# ---------------------------------------------------------------------------------------------
# The benchmark cache keys a run on the traces it reads, and only those
# ---------------------------------------------------------------------------------------------
def _cached(cache, case):
    return [runner_mod._read_cache(cache, unit[0]) for unit in runner_mod.plan_units([case])]


def test_a_case_that_reads_no_trace_keeps_its_cache_when_the_trace_folder_changes(
        tmp_path, folders, monkeypatch, computed_units):
    # its rows were recomputed whenever any file in any trace folder changed or appeared
    one, two = folders
    cache = tmp_path / "cache"
    first = run([GENERATED], cache_dir=cache, progress=False)
    assert len(computed_units) == 2  # the bound and greedy
    keys = [u[0] for u in runner_mod.plan_units([GENERATED])]
    (one / "new_trace.csv").write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n0,5,3\n")
    (one / "toy_trace.jsonl").write_text(_lines((1, 1)))
    monkeypatch.setenv("SERVOPT_TRACES", str(two))
    assert [u[0] for u in runner_mod.plan_units([GENERATED])] == keys
    assert all(row is not None and row[runner_mod.TRACE_READS] == {} for row in _cached(cache, GENERATED))
    computed_units.clear()
    again = run([GENERATED], cache_dir=cache, progress=False)
    assert computed_units == []
    assert again["cost"].tolist() == first["cost"].tolist()
    assert runner_mod.TRACE_READS not in again.columns


def test_a_case_that_reads_a_trace_is_recomputed_when_that_trace_changes(
        tmp_path, folders, monkeypatch, computed_units):
    one, two = folders
    cache = tmp_path / "cache"
    first = run([FROM_TRACE], cache_dir=cache, progress=False)
    assert first["instance"].str.contains("3 products").all(), first["instance"].tolist()
    reads = _cached(cache, FROM_TRACE)[0][runner_mod.TRACE_READS]
    assert sorted(reads) == ["file:" + str((one / "toy_trace.jsonl").resolve()), "shared:toy_trace.jsonl"]
    # another file in the folder is not read by the case: its rows stay
    (one / "other.csv").write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n0,5,3\n")
    computed_units.clear()
    run([FROM_TRACE], cache_dir=cache, progress=False)
    assert computed_units == []
    # its own trace changes: recomputed, on the new data
    (one / "toy_trace.jsonl").write_text(_lines((100, 5), (200, 6), (300, 7), (400, 8), (500, 9)))
    assert _cached(cache, FROM_TRACE) == [None, None]
    changed = run([FROM_TRACE], cache_dir=cache, progress=False)
    assert len(computed_units) == 2
    assert changed["instance"].str.contains("5 products").all()
    # the same name found in another folder is other data too
    computed_units.clear()
    monkeypatch.setenv("SERVOPT_TRACES", str(two))
    other = run([FROM_TRACE], cache_dir=cache, progress=False)
    assert len(computed_units) == 2 and other["instance"].str.contains("4 products").all()
    # and a trace that disappeared is not served from the cache (the run is skipped, naming it)
    (two / "toy_trace.jsonl").unlink()
    monkeypatch.setenv("SERVOPT_TRACES", str(one))
    (one / "toy_trace.jsonl").unlink()
    computed_units.clear()
    gone = run([FROM_TRACE], cache_dir=cache, progress=False)
    assert len(computed_units) == 2
    assert gone["status"].str.startswith("skipped: needs toy_trace.jsonl;").all()


def test_a_cached_row_without_its_trace_record_is_recomputed(tmp_path, folders, computed_units):
    # rows cached before the runner recorded reads say nothing of their data: not reused
    cache = tmp_path / "cache"
    run([GENERATED], cache_dir=cache, progress=False)
    for path in cache.glob("*.json"):
        row = json.loads(path.read_text())
        del row[runner_mod.TRACE_READS]
        path.write_text(json.dumps(row))
    computed_units.clear()
    run([GENERATED], cache_dir=cache, progress=False)
    assert len(computed_units) == 2
