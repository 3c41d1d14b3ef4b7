"""The gap harness, the case registry, the cached runner and the CLI, on the toy decision."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pandas as pd
import pytest

from servopt import cli
from servopt.benchmarks import Case, gap_table, run
from servopt.benchmarks import report as report_mod
from servopt.benchmarks import runner as runner_mod

import toy_decision
from toy_decision import ToyInstance, make_instance

WYNDOR = {"profit": [3.0, 5.0], "usage": [[1, 0], [0, 2], [3, 2]], "capacity": [4, 12, 18]}


def test_gap_table_columns_and_values():
    inst = ToyInstance(**WYNDOR)
    table = gap_table(inst)
    assert list(table.columns[:7]) == ["method", "cost", "bound", "bound_kind", "gap", "wall_s",
                                       "status"]
    rows = table.set_index("method")
    assert rows.loc["exact", "cost"] == pytest.approx(36.0)
    assert rows.loc["exact", "gap"] == pytest.approx(0.0, abs=1e-9)
    # greedy by hand: best profit per unit of tightest resource is product 2 (5 / 2 = 2.5 vs 3 / 3);
    # x2 = min(12 / 2, 18 / 2) = 6 -> profit 30, gap (36 - 30) / 36 for a max decision
    assert rows.loc["greedy", "cost"] == pytest.approx(30.0)
    assert rows.loc["greedy", "gap"] == pytest.approx(6 / 36)
    assert rows.loc["nothing", "gap"] == pytest.approx(1.0)
    assert rows.loc["greedy", "utilisation"] == pytest.approx(1.0)


def test_gap_table_method_arguments():
    inst = ToyInstance(**WYNDOR)
    one = gap_table(inst, "greedy")  # a single name, not its letters
    assert list(one["method"]) == ["greedy"] and one.loc[0, "cost"] == pytest.approx(30.0)  # by hand
    with pytest.raises(ValueError, match="at least one method"):
        gap_table(inst, [])
    from servopt.instances import caching

    with pytest.raises(ValueError, match="unexpected keyword argument 'bogus'"):
        gap_table(caching.generate(requests=300), ["lru"], bogus=1)  # no evaluator option 'bogus'


def test_gap_table_passes_keywords_and_refuses_clashing_metrics(monkeypatch):
    from servopt.benchmarks.harness import Bound, Outcome, benchmark_module

    toy = benchmark_module("toy_production")
    seen = {}
    original = toy.evaluate

    def evaluate(instance, method, **kw):
        seen[method] = kw
        return original(instance, method)

    monkeypatch.setattr(toy, "bound", lambda instance, **kw: Bound(kw["value"], "lower_bound"))
    monkeypatch.setattr(toy, "evaluate", evaluate)
    table = gap_table(ToyInstance(**WYNDOR), ["greedy"], bound_kw={"value": 40.0}, horizon=7)
    # bound 40 from bound_kw; greedy makes 30 (by hand, above): max gap (40 - 30) / 40
    assert table.loc[0, "bound"] == 40.0 and table.loc[0, "gap"] == pytest.approx(0.25)
    assert seen == {"greedy": {"horizon": 7}}
    # a metric named like a table column would overwrite it: refused
    monkeypatch.setattr(toy, "evaluate", lambda instance, method, **kw: Outcome(1.0, {"bound": 2.0}))
    with pytest.raises(ValueError, match="clashes"):
        gap_table(ToyInstance(**WYNDOR), ["greedy"], bound_kw={"value": 40.0})
    # a bound must say what kind of bound it is
    with pytest.raises(ValueError, match="bound kind 'guess'"):
        Bound(1.0, "guess")


def _case(name="toy_case", seeds=(0, 1)):
    return Case(name=name, decision="toy_production", grid=({"products": 3}, {"products": 4}),
                seeds=seeds, make_instance=make_instance, methods=("greedy", "exact"))


def test_runner_rows_match_gap_table(tmp_path):
    frame = run([_case()], jobs=1, cache_dir=tmp_path, progress=False)
    assert len(frame) == 2 * 2 * 2
    for (params, seed), block in frame.groupby(["params", "seed"]):
        inst = make_instance(seed=seed, **json.loads(params))
        direct = gap_table(inst, ["greedy", "exact"]).set_index("method")
        got = block.set_index("method")
        for method in ("greedy", "exact"):
            assert got.loc[method, "cost"] == pytest.approx(direct.loc[method, "cost"])
            assert got.loc[method, "gap"] == pytest.approx(direct.loc[method, "gap"], abs=1e-9)


def test_cache_resumes_and_recomputes_nothing(tmp_path, computed_units):
    first = run([_case()], jobs=1, cache_dir=tmp_path, progress=False)
    computed_units.clear()
    files = sorted(tmp_path.glob("*.json"))
    assert len(files) == 4 * 3  # 4 tasks x (bound + 2 methods)
    # interrupted run: lose some units, then resume; only the lost ones are computed again
    for path in files[:5]:
        path.unlink()
    second = run([_case()], jobs=1, cache_dir=tmp_path, progress=False)
    assert len(computed_units) == 5
    computed_units.clear()
    third = run([_case()], jobs=1, cache_dir=tmp_path, progress=False)
    assert computed_units == []
    for frame in (second, third):
        pd.testing.assert_frame_equal(
            frame.drop(columns="wall_s"), first.drop(columns="wall_s"), check_like=True)


TEST_PROCESS = os.getpid()
_run_unit = runner_mod.run_unit


def run_unit_elsewhere(*args):
    """run_unit that refuses to run in the test process (a worker has another pid)."""
    if os.getpid() == TEST_PROCESS:
        raise AssertionError("a unit ran in the test process, not in a worker")
    return _run_unit(*args)


def test_process_pool_gives_the_same_rows(tmp_path, monkeypatch):
    serial = run([_case()], jobs=1, progress=False)
    monkeypatch.setattr(runner_mod, "run_unit", run_unit_elsewhere)  # jobs=2 must use workers
    pooled = run([_case()], jobs=2, progress=False)
    key = ["params", "seed", "method"]
    a = serial.sort_values(key).reset_index(drop=True)
    b = pooled.sort_values(key).reset_index(drop=True)
    pd.testing.assert_series_equal(a["cost"], b["cost"])
    pd.testing.assert_series_equal(a["gap"], b["gap"])


def test_corrupt_cache_file_is_recomputed(tmp_path, computed_units):
    first = run([_case(seeds=(0,))], jobs=1, cache_dir=tmp_path, progress=False)
    computed_units.clear()
    broken = sorted(tmp_path.glob("*.json"))[0]
    broken.write_text('{"method": "gree')  # e.g. a disk filled up mid-write
    again = run([_case(seeds=(0,))], jobs=1, cache_dir=tmp_path, progress=False)
    assert len(computed_units) == 1
    pd.testing.assert_frame_equal(again.drop(columns="wall_s"), first.drop(columns="wall_s"),
                                  check_like=True)


def _broken(instance):
    raise RuntimeError("broken_method gave up")


def test_failing_method_is_a_row_not_a_crash(tmp_path, monkeypatch):
    # (an unknown name is refused when the Case is built: tests/test_harness_registry_inputs.py)
    monkeypatch.setitem(toy_decision.POLICIES, "broken_method", _broken)
    case = Case(name="toy_bad", decision="toy_production", make_instance=make_instance,
                methods=("greedy", "broken_method"))
    frame = run([case], jobs=1, cache_dir=tmp_path, progress=False)
    bad = frame.set_index("method").loc["broken_method"]
    assert bad["status"].startswith("error") and math.isnan(bad["cost"])
    # errors are not cached: a fixed method would be retried next time
    assert len(list(tmp_path.glob("*.json"))) == 2


def test_code_change_invalidates_cache(tmp_path, monkeypatch):
    case = _case(seeds=(0,))
    run([case], jobs=1, cache_dir=tmp_path, progress=False)
    monkeypatch.setattr(runner_mod, "code_fingerprint", lambda case: "changed")
    units = runner_mod.plan_units([case])
    assert all(runner_mod._read_cache(tmp_path, u[0]) is None for u in units)


def test_reports(tmp_path):
    frame = run([_case()], jobs=1, progress=False)
    paths = report_mod.write_reports(frame, tmp_path, "toy", command="servopt bench")
    text = (tmp_path / "toy.md").read_text()
    assert "| method |" in text and "greedy" in text and "servopt bench" in text
    assert "cost = profit, higher is better" in text  # the toy decision's COST and SENSE
    assert pd.read_csv(paths[0]).shape[0] == len(frame)
    from servopt.benchmarks import plots

    pngs = plots.write_plots(frame, tmp_path, "toy")
    assert all(p.stat().st_size > 1000 for p in pngs)


# -- CLI ----------------------------------------------------------------------------------------
def test_cli_solve(tmp_path, capsys):
    path = tmp_path / "w.json"
    ToyInstance(**WYNDOR).to_json(path)
    assert cli.main(["solve", str(path)]) == 0
    out = capsys.readouterr().out
    assert "status    optimal" in out and "objective 36" in out and "capacity[1] = 1.5" in out
    assert cli.main(["solve", str(path), "--backend", "cvxpy"]) == 0
    out = capsys.readouterr().out
    assert "objective 36" in out and "problem   LP [cvxpy]" in out and "Running HiGHS" not in out


def test_cli_solve_writes_the_solution_as_files(tmp_path, capsys):
    from servopt.instances import decode_routing
    from servopt.solvers import exact

    path = tmp_path / "w.json"
    ToyInstance(**WYNDOR).to_json(path)
    assert cli.main(["solve", str(path), "--out", str(tmp_path / "wyndor")]) == 0
    head = json.loads((tmp_path / "wyndor" / "solution.json").read_text())
    assert head["status"] == "optimal" and head["objective"] == pytest.approx(36.0)
    assert head["prices"] == ["capacity"] and head["form"] == "pyomo"
    prices = pd.read_csv(tmp_path / "wyndor" / "prices" / "capacity.csv", index_col=0)
    assert prices.index.name == "resource"
    np.testing.assert_allclose(prices["capacity"], [0.0, 1.5, 1.0], atol=1e-7)  # by hand
    # a multi-level family reads back as the solution's own Series; an IP without a bound
    # writes null, not NaN (not JSON)
    inst = decode_routing.generate_steps(requests=8, workers=2)
    sol = exact.solve(inst, relax=True)
    out = sol.save(tmp_path / "dr")
    back = pd.read_csv(out / "prices" / "step_load.csv", index_col=[0, 1])["step_load"]
    pd.testing.assert_series_equal(back, sol.prices["step_load"], check_names=False)
    worker = pd.read_csv(out / "decisions" / "worker.csv", index_col=0)["worker"]
    assert worker.tolist() == sol.decisions["worker"].tolist()
    share = pd.read_csv(out / "decisions" / "x.csv", index_col=[0, 1])["x"]  # request x worker
    assert list(share.index.names) == ["request", "worker"]
    assert share.unstack().to_numpy() == pytest.approx(sol.decisions["x"].to_numpy())
    # a second save into the same folder leaves no table of the first behind (one that
    # solution.json listed), and keeps a file save did not write
    head = json.loads((out / "solution.json").read_text())
    (out / "solution.json").write_text(json.dumps({**head, "prices": [*head["prices"], "old_family"]}))
    (out / "prices" / "old_family.csv").write_text("gap,old_family\n0,1.0\n")
    (out / "prices" / "mine.csv").write_text("k,v\n0,1.0\n")
    sol.save(out)
    assert not (out / "prices" / "old_family.csv").exists()
    assert (out / "prices" / "mine.csv").exists()
    sol.bound = float("nan")
    assert json.loads((sol.save(tmp_path / "nan") / "solution.json").read_text())["bound"] is None


def test_cli_solve_says_what_it_solved_and_refuses_bad_options(tmp_path, capsys):
    from servopt.instances import batch_scheduling

    path = tmp_path / "b.json"
    batch_scheduling.generate(n=6, seed=1).to_json(path)
    assert cli.main(["solve", str(path), "--backend", "cvxpy"]) == 2  # an IP: CVXPY has only the LP
    assert "add --relax" in capsys.readouterr().err
    assert cli.main(["solve", str(path), "--backend", "cvxpy", "--relax"]) == 0
    assert "problem   LP relaxation (a bound) [cvxpy]" in capsys.readouterr().out
    assert cli.main(["solve", str(path)]) == 0
    assert "problem   MIP" in capsys.readouterr().out
    # expert placement's CVXPY form is another model (a placement's dispatch LP): one clear answer,
    # not "add --relax" followed by "not with relax"
    for extra in ([], ["--relax"]):
        assert cli.main(["solve", "ep_tiny", "--backend", "cvxpy", *extra]) == 2
        err = capsys.readouterr().err
        assert "dispatch LP of a given placement" in err and "--backend highs" in err, err
    for bad in (["--prices", "-3"], ["--mip-gap", "-1"], ["--mip-gap", "nan"], ["--time-limit", "-5"]):
        assert cli.main(["solve", str(path), *bad]) == 2, bad
        assert capsys.readouterr().err.startswith("servopt: error: --")
    assert cli.main(["bench", "--suite", "no_such_suite"]) == 2
    assert "no benchmark case is registered for suite 'no_such_suite'" in capsys.readouterr().err


def test_cli_generate(tmp_path, capsys):
    path = tmp_path / "g.json"
    assert cli.main(["generate", "toy_production", "products=5", "-o", str(path), "--seed",
                     "3"]) == 0
    assert ToyInstance.from_json(path).profit.shape == (5,)
    assert cli.main(["generate", "toy_production", "colour=red", "-o", str(path)]) == 2
    assert "colour" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [(["solve", "/no/such/file.json"], "no such file"),
     (["generate", "no_decision", "-o", "x.json"], "no_decision"),
     (["bench", "--case", "no_such_case"], "no_such_case"),
     (["bench", "--jobs", "0", "--case", "toy_case"], "--jobs must be >= 1"),
     (["capacity", "--workload", "code", "--rate", "5", "--step-ms", "-1"], "--step-ms must be"),
     (["capacity", "--trace", "/", "--rate", "3"], "a folder, not a trace file")],
)
def test_cli_errors_are_one_line(argv, capsys):
    argv, says = argv
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("servopt: error:") and err.count("\n") == 1
    assert "Traceback" not in err and says in err


def test_registered_decision_is_known():
    assert toy_decision.DECISION in __import__("servopt").core.registry.known_decisions()


def test_cli_generate_refuses_text_for_a_number(tmp_path, capsys):
    assert cli.main(["generate", "toy_production", "products=many", "-o",
                     str(tmp_path / "g.json")]) == 2
    assert "products must be a number, got 'many'" in capsys.readouterr().err


def test_cli_generate_names_unknown_parameters(tmp_path, capsys):
    out = str(tmp_path / "g.json")
    assert cli.main(["generate", "toy_production", "colour=red", "-o", out]) == 2
    err = capsys.readouterr().err
    assert "unknown parameter 'colour'" in err and "products" in err and "Traceback" not in err
    assert cli.main(["generate", "toy_production", "seed=3", "-o", out]) == 2
    assert "--seed 3" in capsys.readouterr().err


def test_cli_closed_pipe_is_quiet():
    """``servopt library list | head -0``: the reader is gone before the first write."""
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "import sys, servopt.cli; sys.exit(servopt.cli.main())",
                              "library", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    child.stdout.close()
    err = child.stderr.read().decode()
    assert child.wait(timeout=120) == 0
    assert "Traceback" not in err and "error" not in err.lower()


def test_cli_generate_other_generator_and_params_after_options(tmp_path, capsys):
    from servopt.instances import decode_routing

    out = tmp_path / "s.json"
    assert cli.main(["generate", "decode_routing", "--generator", "steps", "requests=6", "workers=2",
                     "-o", str(out)]) == 0
    stream = decode_routing.Instance.from_json(out)
    assert stream.arrival_unit == "step" and len(stream.requests) == 6 and stream.workers == 2
    assert cli.main(["generate", "decode_routing", "--generator", "nope", "-o", str(out)]) == 2
    assert "generators: default, steps" in capsys.readouterr().err
    # name=value items after an option are still the generator's parameters
    assert cli.main(["generate", "toy_production", "--seed", "3", "products=4", "-o", str(out)]) == 0
    assert ToyInstance.from_json(out).profit.shape == (4,)


def test_gap_table_labels_your_own_policies():
    from servopt.instances import batch_scheduling as bi
    from servopt.solvers import batch_scheduling as bs

    class LargestFirst(bs.Policy):
        name = "largest_first"

        def admit(self, state):
            order = state.waiting[np.argsort(-state.prompt[state.waiting], kind="stable")]
            return bs.admit_with_watermark(state, order, 0.0)

    inst = bi.generate(12, seed=0)
    table = gap_table(inst, ["fcfs", LargestFirst(), bs.BidPrice(), bs.BidPrice(patience=0.5)])
    # an object named like a built-in is numbered even with no row of the built-in: a row labelled
    # bid_price is always the rule named bid_price (tests/test_harness_registry_inputs.py)
    assert table["method"].tolist() == ["fcfs", "largest_first", "bid_price#2", "bid_price#3"]
    # a built-in name keeps its label; the object named like it is numbered
    mixed = gap_table(inst, [bs.FCFS(watermark=0.0), "fcfs"])
    assert mixed["method"].tolist() == ["fcfs#2", "fcfs"]
    named = gap_table(inst, {"mine": LargestFirst(), "vllm": "fcfs"})
    assert named["method"].tolist() == ["mine", "vllm"]
    assert named["cost"].tolist() == table["cost"].iloc[[1, 0]].tolist()


def test_gap_table_keeps_the_traceback_of_a_policy_bug():
    from servopt.instances import batch_scheduling as bi
    from servopt.solvers import batch_scheduling as bs

    class Buggy(bs.Policy):
        def admit(self, state):
            return np.sort(state.waiting, reversed=True)  # a bug inside the policy

    # the bug is the method's error row (as in servopt bench), a warning naming it, and the
    # traceback down to the policy's line in table.attrs["tracebacks"]
    with pytest.warns(RuntimeWarning, match="method 'Buggy' failed: TypeError: .*reversed"):
        table = gap_table(bi.generate(12, seed=0), [Buggy()])
    assert table.loc[0, "status"].startswith("error: TypeError") and math.isnan(table.loc[0, "cost"])
    assert "reversed=True" in table.attrs["tracebacks"]["Buggy"]


def test_reports_mark_the_methods_that_use_the_future():
    rows = [{"case": "c", "decision": "caching", "method": m, "cost": 1.0, "gap": 0.1,
             "wall_s": 0.0, "bound_kind": "lp_relaxation", "status": "ok"}
            for m in ("lru", "belady", "bid_price", "static")]
    text = report_mod.format_gap_table(pd.DataFrame(rows))
    assert "not rules one can deploy): belady, static." in text
    rows = [dict(r, decision="capacity") for r in rows[:1]]
    assert "not rules one can deploy" not in report_mod.format_gap_table(pd.DataFrame(rows))


@pytest.mark.parametrize(("decision", "future", "online"), [
    # Belady (both) reads the next request times, static the true popularity, lp_schedule the
    # offline LP over the whole sequence; hindsight plans with the true output lengths
    ("caching", ["belady", "belady_size", "static", "lp_schedule"], ["lru", "gdsf", "bid_price"]),
    ("batch_scheduling", ["hindsight"], ["fcfs", "bid_price"]),
])
def test_reports_mark_every_foresight_method_and_only_those(decision, future, online):
    rows = [{"case": "c", "decision": decision, "method": m, "cost": 1.0, "gap": 0.1,
             "wall_s": 0.0, "bound_kind": "lp_relaxation", "status": "ok"} for m in online + future]
    text = report_mod.format_gap_table(pd.DataFrame(rows))
    assert text.endswith("not rules one can deploy): " + ", ".join(future) + ".")


def test_runs_that_beat_the_bound_are_marked_below_bound_in_both_paths():
    # the runner's assembly (a min decision): 9 against a bound of 10 is below it, 12 is not;
    # an error row keeps its own status
    task = {"case": "c", "decision": "batch_scheduling", "params": "{}", "seed": 0}
    rows = [{**task, "method": runner_mod.BOUND, "cost": math.nan, "bound": 10.0,
             "bound_kind": "lower_bound", "wall_s": 0.0, "status": "ok"},
            {**task, "method": "a", "cost": 9.0, "wall_s": 0.0, "status": "ok"},
            {**task, "method": "b", "cost": 12.0, "wall_s": 0.0, "status": "ok"},
            {**task, "method": "c", "cost": 8.0, "wall_s": 0.0, "status": "time_limit"}]
    out = runner_mod.assemble(rows).set_index("method")
    assert out.loc["a", "status"] == "below_bound" and out.loc["a", "gap"] == pytest.approx(-0.1)
    assert out.loc["b", "status"] == "ok" and out.loc["c", "status"] == "time_limit"
    # gap_table's rows (a max decision): 40 of profit against a proved optimum of 36 is "below"
    # the bound in the gap's sense; the optimum itself and an infeasible run are not marked
    from servopt.benchmarks.harness import Bound, Outcome, outcome_row

    best = Bound(36.0, "optimal")
    assert outcome_row("m", Outcome(cost=40.0, wall_s=0.0), best, "max")["status"] == "above_bound"
    assert outcome_row("m", Outcome(cost=36.0, wall_s=0.0), best, "max")["status"] == "ok"
    assert outcome_row("m", Outcome(cost=40.0, wall_s=0.0, status="infeasible"), best,
                       "max")["status"] == "infeasible"


def test_bench_with_failed_runs_writes_its_table_and_exits_1(tmp_path, monkeypatch, capsys):
    from servopt.benchmarks import registry
    from servopt.benchmarks.harness import benchmark_module

    monkeypatch.setitem(toy_decision.POLICIES, "broken_method", _broken)
    bad = Case(name="toy_bad", decision="toy_production", make_instance=make_instance,
               methods=("greedy", "broken_method"))
    monkeypatch.setattr(registry, "cases", lambda suite=None, names=None: [bad])
    code = cli.main(["bench", "--case", "toy_bad", "--out", str(tmp_path), "--no-plots", "--quiet",
                     "--no-cache"])
    err = capsys.readouterr().err
    assert code == 1 and "servopt: error: toy_bad: 1 run(s) failed" in err and "broken_method" in err
    assert (tmp_path / "toy_bad.md").exists()
    # every bound failing too: still a table (bound nan), not a crash on missing columns
    toy = benchmark_module("toy_production")

    def broken(instance, **kw):
        raise ValueError("the bound failed")

    monkeypatch.setattr(toy, "bound", broken)
    frame = run([bad], jobs=1, progress=False)
    assert frame["bound"].isna().all() and (frame["method"] == "greedy").any()
    assert frame["bound_status"].str.contains("the bound failed").all()
    good = Case(name="toy_good", decision="toy_production", make_instance=make_instance,
                methods=("greedy",))
    monkeypatch.setattr(registry, "cases", lambda suite=None, names=None: [good])
    code = cli.main(["bench", "--case", "toy_good", "--out", str(tmp_path), "--no-plots", "--quiet",
                     "--no-cache"])
    err = capsys.readouterr().err
    assert code == 1 and "toy_good: 1 bound(s) failed" in err and "the bound failed" in err
    summary = report_mod.summarise(frame).set_index("method")
    assert summary.loc["greedy", "runs"] == 1 and summary.loc["broken_method", "runs"] == 0


def test_cli_solve_that_finds_nothing_exits_1_and_library_verify_stops_on_a_stopped_solver(
        tmp_path, monkeypatch, capsys):
    from servopt.benchmarks import library as verify_mod
    from servopt.core.solution import Solution
    from servopt.solvers import exact

    path = tmp_path / "w.json"
    ToyInstance(**WYNDOR).to_json(path)
    nothing = Solution(status="time_limit", objective=math.nan, bound=math.nan, gap=math.nan,
                       wall_s=1.0)
    monkeypatch.setattr(exact, "solve", lambda *a, **k: nothing)
    assert cli.main(["solve", str(path), "--time-limit", "1"]) == 1
    assert "nothing found within the time limit" in capsys.readouterr().err
    stopped = Solution(status="error", objective=math.nan, bound=math.nan, gap=math.nan, wall_s=1.0)
    monkeypatch.setattr(exact, "solve", lambda *a, **k: stopped)
    # a solver failure: stop, never "FAIL" the instance and go on to the next; a Ctrl-C
    # ("interrupted") stops with 130
    with pytest.raises(RuntimeError, match="nothing was judged"):
        verify_mod.verify(["bs_offline_10"])
    assert cli.main(["library", "verify", "bs_offline_10"]) == 2
    assert "verification stopped" in capsys.readouterr().err
    interrupted = Solution(status="interrupted", objective=math.nan, bound=math.nan,
                           gap=math.nan, wall_s=1.0)
    monkeypatch.setattr(exact, "solve", lambda *a, **k: interrupted)
    assert cli.main(["library", "verify", "bs_offline_10"]) == 130


def test_other_trace_data_leaves_a_case_that_reads_no_trace_cached(tmp_path, monkeypatch):
    # the cache keys a run on the traces it reads (tests/test_traces_sources.py): the toy case
    # reads none, so another trace folder leaves its rows valid
    case = _case(seeds=(0,))
    cache = tmp_path / "cache"
    run([case], jobs=1, cache_dir=cache, progress=False)
    units = runner_mod.plan_units([case])
    assert all(runner_mod._read_cache(cache, u[0]) is not None for u in units)
    other = tmp_path / "traces"
    other.mkdir()
    (other / "azure2023_code.csv").write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n0,5,3\n")
    monkeypatch.setenv("SERVOPT_TRACES", str(other))
    units = runner_mod.plan_units([case])
    assert all(runner_mod._read_cache(cache, u[0]) is not None for u in units)


def test_a_run_just_below_the_bound_is_flagged():
    # mutation testing: flag_below_bound with a 1e-3 tolerance went unnoticed. relative_gap already
    # rounds solver noise (|diff| <= 1e-9 |bound|) to 0, so any gap left below 0 beats a proved
    # bound: 999.5 against 1000 is -0.05% and must be flagged, 1000 - 1e-7 (noise) must not.
    from servopt.benchmarks.harness import Bound, Outcome, outcome_row

    bound = Bound(1000.0, "lower_bound")
    row = outcome_row("m", Outcome(cost=999.5, wall_s=0.0), bound, "min")
    assert row["gap"] == pytest.approx(-5e-4)
    assert row["status"] == "below_bound"
    noise = outcome_row("m", Outcome(cost=1000.0 - 1e-7, wall_s=0.0), bound, "min")
    assert noise["gap"] == 0.0 and noise["status"] == "ok"


# ---------------------------------------------------------------------------------------------
# Mutation round 2: cache keys, report summaries and the library check (each test says the hole
# it closes)
# ---------------------------------------------------------------------------------------------
def test_the_cache_key_changes_with_everything_that_determines_a_run():
    # closes: a key that ignores the seed, the params, the method, the evaluate / bound keywords,
    # the case version or the code (a stale row would be served for another run), or that
    # depends on the order the params were written in
    import dataclasses

    case = Case(name="toy_key", decision="toy_production", make_instance=make_instance,
                evaluate_kw={"horizon": 3}, bound_kw={"limit": 1})
    key = runner_mod.unit_key
    base = key(case, {"products": 3, "resources": 2}, 0, "greedy", "code1")
    assert key(case, {"resources": 2, "products": 3}, 0, "greedy", "code1") == base
    others = [key(case, {"products": 4, "resources": 2}, 0, "greedy", "code1"),
              key(case, {"products": 3, "resources": 2}, 1, "greedy", "code1"),
              key(case, {"products": 3, "resources": 2}, 0, "exact", "code1"),
              key(case, {"products": 3, "resources": 2}, 0, "greedy", "code2"),
              key(dataclasses.replace(case, evaluate_kw={"horizon": 4}), {"products": 3, "resources": 2}, 0,
                  "greedy", "code1"),
              key(dataclasses.replace(case, bound_kw={"limit": 2}), {"products": 3, "resources": 2}, 0,
                  "greedy", "code1"),
              key(dataclasses.replace(case, version=2), {"products": 3, "resources": 2}, 0, "greedy",
                  "code1")]
    assert len({base, *others}) == 1 + len(others)


def test_the_code_fingerprint_covers_the_solve_layer_and_the_decisions_modules():
    # closes: the exact solver (or a decision's own modules) left out of what invalidates the cache
    # (a built-in case: one built here would add this test file, as the file that built it)
    from servopt.benchmarks import registry

    (case,) = registry.cases(names=["batch_scheduling_quick"])
    # the labels name files by module path, the same in a checkout, an unpacked sdist and an
    # installed wheel (paths relative to the checkout broke outside one: E48)
    sources = runner_mod._source_files(case)
    files = [label for label, _ in sources]
    for layer in ("instances", "models", "solvers", "benchmarks"):
        assert f"servopt/{layer}/batch_scheduling.py" in files
    assert "servopt/solvers/exact.py" in files and "servopt/benchmarks/harness.py" in files
    assert "servopt/core/solution.py" in files and "servopt/core/instance.py" in files
    # and what every decision stands on: the checks, the matrix form, the trace parsers
    assert {"servopt/core/checks.py", "servopt/core/matrix.py",
            "servopt/instances/traces.py"} <= set(files)
    assert not any("tests" in path.parts for _, path in sources)
    # the scripts that write results tables compute no case's rows: editing one keeps the cache
    assert not any(path.name == "capacity_knee.py" for _, path in sources)
    assert "servopt/benchmarks/report.py" in files
    assert "servopt/benchmarks/cases/batch_scheduling_quick.py" in files


def test_cases_come_sorted_by_decision_then_name(monkeypatch):
    # closes: the registry's order (the report's order) depending on file discovery or on the
    # order cases were registered in: one registered last, of the first decision, comes first
    from servopt.benchmarks import registry

    late = Case(name="aa_registered_last", decision="batch_scheduling", suites=("mutation_round_2",))
    registry.discover()
    monkeypatch.setitem(registry._CASES, late.name, late)
    assert registry.cases(suite="mutation_round_2") == [late]
    found = registry.cases()
    assert found[0] is late
    assert [(c.decision, c.name) for c in found] == sorted((c.decision, c.name) for c in found)
    assert len({c.decision for c in found}) >= 5
    quick = registry.cases(suite="quick")
    assert quick and all("quick" in c.suites for c in quick)


def test_summary_of_runs_by_hand():
    # closes: gap_mean not the mean, gap_max not the max, runs counting error rows, 'optimal'
    # counted as a bad status, error messages not grouped by kind, and the cases / methods
    # re-sorted instead of kept in run order
    rows = []
    for seed, (gap, status) in enumerate([(0.0, "ok"), (0.3, "optimal"), (0.0, "ok")]):
        rows.append({"case": "z_case", "decision": "toy_production", "method": "zeta", "seed": seed,
                     "cost": 10.0 + seed, "gap": gap, "wall_s": 1.0, "bound_kind": "optimal",
                     "status": status})
    for seed, status in enumerate(["error: ValueError: a", "error: KeyError: b", "time_limit"]):
        rows.append({"case": "z_case", "decision": "toy_production", "method": "alpha", "seed": seed,
                     "cost": math.nan if status.startswith("error") else 4.0, "gap": 0.5, "wall_s": 2.0,
                     "bound_kind": "mip_bound" if seed else "optimal", "status": status})
    rows.append({"case": "a_case", "decision": "toy_production", "method": "zeta", "seed": 0, "cost": 1.0,
                 "gap": 0.0, "wall_s": 0.0, "bound_kind": "optimal", "status": "ok"})
    summary = report_mod.summarise(pd.DataFrame(rows))
    assert list(zip(summary["case"], summary["method"], strict=True)) == [
        ("z_case", "zeta"), ("z_case", "alpha"), ("a_case", "zeta")]
    zeta = summary.iloc[0]
    assert zeta["runs"] == 3 and zeta["cost"] == pytest.approx(11.0)  # (10 + 11 + 12) / 3
    assert zeta["gap_mean"] == pytest.approx(0.1) and zeta["gap_max"] == pytest.approx(0.3)
    assert zeta["status"] == "ok" and zeta["bound_kind"] == "optimal"
    alpha = summary.iloc[1]
    assert alpha["runs"] == 1  # two of its three runs raised: no cost
    assert alpha["status"] == "2 error, 1 time_limit"
    assert alpha["bound_kind"] == "mip_bound/optimal"


def test_cost_line_says_which_way_is_better():
    # closes: 'higher' / 'lower' swapped (toy is a max decision, batch scheduling a min one)
    assert report_mod.cost_line("toy_production") == (
        "cost = profit, higher is better; gap as a fraction of the bound.")
    assert "lower is better" in report_mod.cost_line("batch_scheduling")
    assert report_mod.cost_line("no_such_decision") == ""


def test_default_methods_leave_out_the_slow_references():
    # closes: a decision's DEFAULT_METHODS ignored (every policy, hindsight too, in the gap table)
    from servopt.benchmarks import batch_scheduling as bench
    from servopt.benchmarks.harness import method_names

    assert method_names("batch_scheduling") == list(bench.DEFAULT_METHODS)
    assert "hindsight" not in method_names("batch_scheduling")
    assert method_names("toy_production") == ["nothing", "greedy", "exact"]  # no DEFAULT_METHODS: all


@pytest.mark.parametrize(("recorded", "found", "ok"), [
    # a min MIP recorded as [bound 90, incumbent 100]: a re-solve in [95, 98] is consistent, one
    # whose incumbent 80 is below the recorded bound 90 contradicts it, and so does one whose
    # bound 105 is above the recorded incumbent 100
    ((100.0, 90.0), (98.0, 95.0), True),
    ((100.0, 90.0), (80.0, 70.0), False),
    ((100.0, 90.0), (110.0, 105.0), False),
    # a max MIP [incumbent 50, bound 60]
    ((50.0, 60.0), (52.0, 58.0), True),
    ((50.0, 60.0), (65.0, 70.0), False),
])
def test_library_check_of_a_mip_interval_by_hand(recorded, found, ok):
    # closes: only one side of the interval overlap checked
    from servopt.benchmarks import library as lib_bench
    from servopt.instances import library

    objective, bound = recorded
    entry = library.Entry(name="x", decision="toy_production", size="small", file="x.json", sha256="",
                          objective=objective, bound=bound, bound_kind="mip_bound", solve={},
                          obtained="", wall_s=0.0, summary="")
    assert lib_bench.check(entry, found[0], found[1], 1e-5)[0] is ok


def test_library_calls_a_solve_optimal_only_when_its_gap_is_closed(monkeypatch):
    # closes: a 'mip_bound' solve within the default MIP gap recorded as 'optimal'
    from servopt.benchmarks import library as lib_bench
    from servopt.core.solution import Solution
    from servopt.solvers import exact

    for gap, kind in ((0.0, "optimal"), (5e-7, "optimal"), (1e-4, "mip_bound"), (0.005, "mip_bound")):
        sol = Solution(status="optimal", objective=100.0, bound=100.0 - 100 * gap, gap=gap, wall_s=0.0)
        monkeypatch.setattr(exact, "solve", lambda *a, _s=sol, **k: _s)
        assert lib_bench.solve_entry(ToyInstance(**WYNDOR), {})[2] == kind


def test_markdown_table_keeps_the_sign_of_an_infinite_value():
    # an unbounded minimising LP's bound is -inf: printed "inf" it read as the opposite
    from servopt.benchmarks.report import markdown_table

    text = markdown_table(pd.DataFrame({"gap": [-np.inf, np.inf, np.nan, 0.5]}))
    assert text.splitlines()[2:] == ["| -inf |", "| inf |", "|  |", "| 0.5 |"]
