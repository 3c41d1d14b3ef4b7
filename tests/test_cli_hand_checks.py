"""The command line's exit codes and which option reaches which function (mutation round 2).

Each test says the hole it closes. The solver and the runner are replaced by recorders where the
question is only what the command passes on; the answers printed are checked by hand."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from servopt import cli
from servopt.core.solution import Solution

import toy_decision  # noqa: F401  (registers the toy decision)
from toy_decision import ToyInstance, generate

WYNDOR = {"profit": [3.0, 5.0], "usage": [[1, 0], [0, 2], [3, 2]], "capacity": [4, 12, 18]}


@pytest.fixture
def wyndor(tmp_path):
    path = tmp_path / "w.json"
    ToyInstance(**WYNDOR).to_json(path)
    return str(path)


@pytest.fixture
def solve_calls(monkeypatch):
    """exact.solve replaced by a recorder that returns the real solution."""
    from servopt.solvers import exact

    calls = []
    real = exact.solve

    def recording(instance, **kw):
        calls.append(kw)
        return real(instance, **kw)

    monkeypatch.setattr(exact, "solve", recording)
    return calls


def test_solve_options_reach_the_solver(wyndor, solve_calls, capsys):
    # closes: --mip-gap, --relax, --backend or --time-limit not passed on, or a default other
    # than 60 s (0 means no limit)
    assert cli.main(["solve", wyndor]) == 0
    assert solve_calls[-1] == {"relax": False, "time_limit": 60.0, "backend": "highs", "mip_gap": 1e-4}
    assert cli.main(["solve", wyndor, "--mip-gap", "0.05", "--relax", "--time-limit", "0",
                     "--backend", "pyomo"]) == 0
    assert solve_calls[-1] == {"relax": True, "time_limit": None, "backend": "pyomo", "mip_gap": 0.05}
    assert cli.main(["solve", wyndor, "--time-limit", "2.5"]) == 0
    assert solve_calls[-1]["time_limit"] == 2.5
    assert "objective 36" in capsys.readouterr().out  # Wyndor's optimum, by hand


def test_prices_option_sets_how_many_prices_are_shown(wyndor, capsys):
    # closes: --prices N ignored. Wyndor's capacity prices are 0, 1.5, 1 (by hand): the largest
    # one is row 1, the two largest rows 1 and 2
    assert cli.main(["solve", wyndor, "--prices", "1"]) == 0
    out = capsys.readouterr().out
    assert "capacity[1] = 1.5" in out and "capacity[2]" not in out
    assert cli.main(["solve", wyndor, "--prices", "2"]) == 0
    out = capsys.readouterr().out
    assert "capacity[1] = 1.5" in out and "capacity[2] = 1" in out and "capacity[0]" not in out


@pytest.mark.parametrize(("status", "code"), [("interrupted", 130), ("error", 1), ("optimal", 0),
                                              ("time_limit", 0)])
def test_solve_exit_code_follows_the_solution_status(wyndor, monkeypatch, capsys, status, code):
    # closes: an interrupted solve (Ctrl-C inside HiGHS) exiting other than 130, or a solver
    # failure exiting 0; a time-limited solve with an incumbent and a bound is a result (0); a
    # solver failure is a job that ran but failed: 1, as the module docstring's table says
    from servopt.solvers import exact

    value = math.nan if status in ("interrupted", "error") else 30.0
    sol = Solution(status=status, objective=value, bound=value if status != "time_limit" else 40.0,
                   gap=math.nan, wall_s=0.0)
    monkeypatch.setattr(exact, "solve", lambda *a, **k: sol)
    got = cli.main(["solve", wyndor])
    assert got == code
    err = capsys.readouterr().err
    assert ("interrupted" in err) == (status == "interrupted")


def test_ctrl_c_anywhere_exits_130_and_a_bad_option_2(monkeypatch, capsys, tmp_path):
    # closes: KeyboardInterrupt or a ValueError mapped to another exit status
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_generate", interrupted)
    assert cli.main(["generate", "toy_production", "-o", str(tmp_path / "x.json")]) == 130
    assert capsys.readouterr().err == "servopt: interrupted\n"
    monkeypatch.undo()
    assert cli.main(["generate", "toy_production", "-o", str(tmp_path / "x.json"), "--seed", "-1"]) == 2
    assert capsys.readouterr().err == "servopt: error: --seed must be >= 0, got -1\n"


def test_generate_passes_the_seed(tmp_path, capsys):
    # closes: --seed not reaching the generator (every seed would write the same instance)
    for seed in (0, 3):
        out = tmp_path / f"g{seed}.json"
        assert cli.main(["generate", "toy_production", "--seed", str(seed), "-o", str(out)]) == 0
        assert ToyInstance.from_json(out).content_hash() == generate(seed=seed).content_hash()


@pytest.fixture
def run_calls(monkeypatch):
    """runner.run replaced by a recorder returning an empty table (nothing is computed)."""
    from servopt.benchmarks import runner

    calls = []

    def recording(cases, **kw):
        calls.append((cases, kw))
        return runner.assemble([])

    monkeypatch.setattr(runner, "run", recording)
    return calls


def test_bench_options_reach_the_runner_and_name_the_report(tmp_path, run_calls, capsys):
    # closes: --jobs, --scheduler, --no-cache or --quiet not passed on, and a --case run's report
    # named after the suite instead of the case
    out = tmp_path / "res"
    assert cli.main(["bench", "--case", "toy_case_x", "--out", str(out), "--no-plots"]) == 2  # unknown
    assert cli.main(["bench", "--case", "batch_scheduling_quick", "--out", str(out), "--no-plots",
                     "--jobs", "3", "--no-cache", "--quiet"]) == 0
    cases, kw = run_calls[-1]
    assert [c.name for c in cases] == ["batch_scheduling_quick"]
    assert kw == {"jobs": 3, "scheduler": None, "cache_dir": None, "progress": False}
    assert (out / "batch_scheduling_quick.md").exists() and not (out / "quick.md").exists()
    assert cli.main(["bench", "--case", "batch_scheduling_quick", "--out", str(out), "--no-plots",
                     "--scheduler", "local", "--name", "mine"]) == 0
    cases, kw = run_calls[-1]
    assert kw == {"jobs": 2, "scheduler": "local", "cache_dir": out / "cache", "progress": True}
    assert (out / "mine.md").exists()


def test_bench_refuses_a_suite_and_a_case_together(run_calls, capsys):
    # closes: --suite silently ignored when --case is given
    assert cli.main(["bench", "--suite", "full", "--case", "batch_scheduling_quick"]) == 2
    assert "give --suite or --case, not both" in capsys.readouterr().err
    assert run_calls == []


def test_library_verify_exits_1_when_an_instance_fails(monkeypatch, capsys):
    # closes: a failed verification exiting 0
    from servopt.benchmarks import library as lib_bench

    table = pd.DataFrame([{"name": "a", "ok": True, "wall_s": 0.1, "message": "matches"},
                          {"name": "b", "ok": False, "wall_s": 0.2, "message": "differs"}])
    monkeypatch.setattr(lib_bench, "verify", lambda names=None, sizes=(): table)
    assert cli.main(["library", "verify"]) == 1
    assert "1 of 2 library instances verified" in capsys.readouterr().out
    monkeypatch.setattr(lib_bench, "verify", lambda names=None, sizes=(): table.iloc[:1])
    assert cli.main(["library", "verify"]) == 0


def test_library_without_an_action_lists_the_library(capsys):
    # `servopt library` alone was an argparse error; it lists, as `servopt library list` does
    from servopt.instances import library

    assert cli.main(["library"]) == 0
    shown = capsys.readouterr().out
    assert cli.main(["library", "list"]) == 0
    assert shown == capsys.readouterr().out
    assert all(name in shown for name in library.names())
    assert cli.main(["library", "list", "--all"]) == 2  # --all was silently ignored
    assert "--all applies to library verify" in capsys.readouterr().err


def test_a_bad_out_folder_is_refused_before_any_work(tmp_path, monkeypatch, capsys):
    # closes: --out checked only after the whole run (hours lost with --no-cache)
    from servopt.benchmarks import runner

    monkeypatch.setattr(runner, "run", lambda *a, **k: pytest.fail("ran before checking --out"))
    taken = tmp_path / "taken.csv"
    taken.write_text("x\n")
    assert cli.main(["bench", "--case", "capacity_quick", "--out", str(taken)]) == 2
    assert f"--out {taken}: a file, not a folder" in capsys.readouterr().err
    assert cli.main(["solve", "bs_offline_10", "--out", str(taken)]) == 2
    err = capsys.readouterr()
    assert "a file, not a folder" in err.err and "status" not in err.out  # nothing solved
    assert cli.main(["solve", "bs_offline_10", "--out", ""]) == 2  # not the current folder
    assert "--out: an empty path" in capsys.readouterr().err


def test_capacity_trace_counts_dropped_requests_and_refuses_an_empty_path(tmp_path, capsys):
    # 3 requests over 2 s; the one without a prompt is dropped and said so; the rate is the
    # kept requests' share of the trace's rate: (3 - 1) / 2 s x 2/3 = 0.667 req/s
    trace = tmp_path / "log.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:03,100,10\n"
                     "2023-11-16 18:17:04,0,5\n2023-11-16 18:17:05,200,20\n")
    assert cli.main(["capacity", "--trace", str(trace), "--kv-tokens", "100000"]) == 0
    out = capsys.readouterr().out
    assert "1 of 3 requests without a prompt or an output dropped" in out
    assert "rate 0.6667 req/s" in out
    assert cli.main(["capacity", "--trace", "", "--kv-tokens", "100000"]) == 2
    assert "--trace: an empty path" in capsys.readouterr().err


def test_solve_says_when_the_time_limit_left_no_time_for_prices(wyndor, monkeypatch, capsys):
    # a MIP whose budget ran out before its price LP has no prices: the CLI says why
    from servopt.solvers import exact

    for skipped in (True, False):
        sol = Solution(status="time_limit", objective=30.0, bound=40.0, gap=math.nan, wall_s=5.0,
                       info={"prices_skipped": "time_limit"} if skipped else {})
        monkeypatch.setattr(exact, "solve", lambda *a, s=sol, **k: s)
        assert cli.main(["solve", wyndor, "--time-limit", "5"]) == 0
        out = capsys.readouterr().out
        assert "time limit of 5 s reached with an incumbent and a proved bound" in out
        assert ("no time for the price LP" in out) == skipped
