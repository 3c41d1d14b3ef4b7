"""Where traces come from: ``$SERVOPT_TRACES``."""

from __future__ import annotations

import json

import pytest

from servopt import cli
from servopt.benchmarks import Case, registry
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
