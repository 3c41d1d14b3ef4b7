"""The case registry, the runner's join and gap_table do not trust what they are given (audit R11).

Each test names the hole it closes; every one failed on the code before the fix.
"""

from __future__ import annotations

import math
import sys
import warnings

import numpy as np
import pytest

import servopt
from servopt import cli
from servopt.benchmarks import registry
from servopt.benchmarks import runner as runner_mod
from servopt.benchmarks.harness import Bound, Outcome, flag_below_bound, gap_table, outcome_row
from servopt.benchmarks.registry import Case
from servopt.core import InvalidInstanceError
from servopt.core.solution import relative_gap
from servopt.instances import batch_scheduling as bi
from servopt.solvers import batch_scheduling as bs


# ---------------------------------------------------------------------------------------------
# 1. a Case refuses repeats and malformed fields when it is built
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("field, kw, says", [
    # before: seeds (0, 0, 1) planned seed 0 twice, and the runner's join counted its rows twice
    ("seeds", {"seeds": (0, 0, 1)}, "repeats seed 0"),
    ("methods", {"methods": ("fcfs", "fcfs", "mcsf")}, "repeats 'fcfs'"),
    ("grid", {"grid": ({"n": 20}, {"n": 20})}, "repeats the parameter set"),
    ("grid", {"grid": ({"n": 20, "load": 1.0}, {"load": 1.0, "n": 20})}, "repeats"),  # key order
    # before: 0.5 ran as seed 0 (int(0.5)), True as seed 1
    ("seeds", {"seeds": (0.5,)}, "whole numbers, got 0.5"),
    ("seeds", {"seeds": (True,)}, "whole numbers, got True"),
    # before: a raw ValueError at plan time, a TypeError
    ("grid", {"grid": {"n": 20}}, "must be a tuple of parameter sets"),
    ("grid", {"grid": ("n",)}, "must hold parameter sets"),
    ("seeds", {"seeds": 3}, "must be a tuple of whole-number seeds"),
    # before: accepted, then an error row per unit (or a row per '__bound__' taken as a bound)
    ("methods", {"methods": ("fcfs_typo",)}, "'fcfs_typo' is not a batch_scheduling method"),
    ("methods", {"methods": ("__bound__",)}, "the runner's name of the bound row"),
    ("methods", {"methods": ()}, "is empty"),
    ("seeds", {"seeds": ()}, "is empty"),
    ("suites", {"suites": "quick"}, "must be a tuple of suite names"),
    ("evaluate_kw", {"evaluate_kw": [("a", 1)]}, "must be a dict"),
    # before: accepted, then every task failed at run time (a TypeError from generate(), an
    # OptionError per run) after the rest of the suite had run
    ("grid", {"grid": ({"nn": 20},)}, "key 'nn' is not a parameter of make_instance "
     r"\(generate\); did you mean 'n'\?"),
    ("grid", {"grid": ({"n": 20, "seed": 3},)}, "may not set 'seed'"),
    ("grid", {"grid": ({"kv_capacity": 500},)}, "this decision calls it 'kv_memory'"),
    ("evaluate_kw", {"evaluate_kw": {"max_round": 5}}, r"did you mean 'max_rounds'\?"),
    ("evaluate_kw", {"evaluate_kw": {"max_rounds": -3}}, "max_rounds"),
    ("bound_kw", {"bound_kw": {"methd": "lp"}}, r"did you mean 'method'\?"),
    ("bound_kw", {"bound_kw": {"method": "bogus"}}, "bogus"),
    ("make_instance", {"make_instance": 3}, "must be a function"),
])
def test_a_case_refuses_repeats_and_bad_fields_by_name(field, kw, says):
    with pytest.raises(InvalidInstanceError, match=f"case 'mine': {field} .*{says}"):
        Case(name="mine", decision="batch_scheduling", **kw)


def test_grid_keys_are_checked_against_the_case_s_own_make_instance():
    def make(seed: int, n: int = 5, **more):  # takes any keyword: nothing to check
        return bi.generate(n, seed=seed)

    def fixed(seed: int, n: int = 5):
        return bi.generate(n, seed=seed)

    Case(name="mine", decision="batch_scheduling", grid=({"anything": 1},), make_instance=make)
    Case(name="mine", decision="batch_scheduling", grid=({"n": 4},), make_instance=fixed)
    with pytest.raises(InvalidInstanceError, match="key 'm' is not a parameter of make_instance "
                       r"\(.*fixed\); it takes: n$"):
        Case(name="mine", decision="batch_scheduling", grid=({"m": 4},), make_instance=fixed)


def test_a_case_refuses_an_unknown_decision_by_name():
    with pytest.raises(InvalidInstanceError, match="case 'mine': unknown decision 'cachin'"):
        Case(name="mine", decision="cachin")


def test_a_good_case_builds_with_numpy_seeds_and_lists():
    case = Case(name="mine", decision="batch_scheduling", grid=[{"n": 20}, {"n": 30}],
                seeds=[np.int64(1), 2], methods=["fcfs", "mcsf"])
    assert case.seeds == (1, 2) and all(type(s) is int for s in case.seeds)
    assert case.tasks() == [({"n": 20}, 1), ({"n": 20}, 2), ({"n": 30}, 1), ({"n": 30}, 2)]
    units = runner_mod.plan_units([case])
    assert len(units) == 4 * 3 and len({u[0] for u in units}) == 12  # bound + 2 methods per task


def _rows(methods_per_task):
    """Runner rows of one task (case c, params {}, seed 0): a bound of 100 and the methods' costs."""
    base = {"case": "c", "decision": "batch_scheduling", "params": "{}", "seed": 0,
            "instance": "i", "wall_s": 0.0}
    rows = [{**base, "method": runner_mod.BOUND, "cost": math.nan, "bound": 100.0,
             "bound_kind": "lp_relaxation", "status": "ok"}]
    rows += [{**base, "method": m, "cost": c, "status": "ok"} for m, c in methods_per_task]
    return rows


def test_assemble_refuses_duplicate_rows_instead_of_multiplying_them():
    # before: two bound rows of a task joined every method row twice (fcfs runs=10 for 5 tasks)
    one = runner_mod.assemble(_rows([("fcfs", 110.0)]))
    assert len(one) == 1 and one.loc[0, "gap"] == pytest.approx(0.1)  # (110 - 100) / 100
    with pytest.raises(InvalidInstanceError, match=r"case 'c', params \{\}, seed 0: 2 rows of the "
                                                   "bound, not one"):
        runner_mod.assemble(_rows([("fcfs", 110.0)]) * 2)
    with pytest.raises(InvalidInstanceError, match="2 rows of the method 'fcfs'"):
        runner_mod.assemble(_rows([("fcfs", 110.0), ("fcfs", 120.0)]))


def test_one_run_refuses_two_cases_of_one_name():
    case = Case(name="mine", decision="batch_scheduling", methods=("fcfs",))
    with pytest.raises(InvalidInstanceError, match="'mine' is given twice"):
        runner_mod.plan_units([case, case])


# ---------------------------------------------------------------------------------------------
# 2. a second case of a registered name from another module is refused
# ---------------------------------------------------------------------------------------------
def test_register_refuses_a_case_named_like_one_from_another_module():
    registry.discover()
    builtin = registry._CASES["batch_scheduling_quick"]
    mine = Case(name="batch_scheduling_quick", decision="batch_scheduling", methods=("fcfs",))
    # before: the user's case silently replaced the committed one
    with pytest.raises(InvalidInstanceError, match="'batch_scheduling_quick' is defined twice: in "
                       r"servopt\.benchmarks\.cases\.batch_scheduling_quick and in my_cases\.zz"):
        registry.register(mine, "my_cases.zz")
    assert registry._CASES["batch_scheduling_quick"] is builtin
    # the same module again (a reload) replaces it
    registry.register(builtin, "servopt.benchmarks.cases.batch_scheduling_quick")
    assert registry.discover()["batch_scheduling_quick"] is builtin


def test_bench_stops_on_a_case_file_that_takes_a_builtin_name(tmp_path, monkeypatch, capsys):
    # /tmp/r11's zz_user.py: a file of one's own with the name of the committed quick case
    folder = tmp_path / "cases"
    folder.mkdir()
    (folder / "zz_user_case.py").write_text(
        "from servopt.benchmarks.registry import Case\n"
        "CASE = Case(name='batch_scheduling_quick', decision='batch_scheduling', "
        "grid=({'n': 20},), seeds=(0, 1), methods=('fcfs',), suites=('mine',))\n")
    import servopt.benchmarks.cases as package

    registry.discover()
    builtin = registry._CASES["batch_scheduling_quick"]
    monkeypatch.setattr(package, "__path__", [*package.__path__, str(folder)])
    monkeypatch.delitem(sys.modules, "servopt.benchmarks.cases.zz_user_case", raising=False)
    code = cli.main(["bench", "--case", "batch_scheduling_quick", "--out", str(tmp_path / "out"),
                     "--no-cache", "--quiet", "--no-plots"])
    sys.modules.pop("servopt.benchmarks.cases.zz_user_case", None)
    err = capsys.readouterr().err
    assert code == 2 and "defined twice" in err and "zz_user_case" in err
    assert registry._CASES["batch_scheduling_quick"] is builtin
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------------
# 3. a failing method is its row, named; 4. labels are unique and unambiguous
# ---------------------------------------------------------------------------------------------
class Crash(bs.FCFS):
    name = "crash"

    def admit(self, state):
        if state.t > 5:
            raise KeyError("boom")
        return super().admit(state)


class BadAnswer(bs.FCFS):
    name = "bad_answer"

    def admit(self, state):
        return np.array([-1])


class Fake(bs.FCFS):
    name = "fcfs"  # named like the built-in


@pytest.fixture(scope="module")
def inst():
    return bi.generate(30, seed=0)


def test_one_failing_method_does_not_lose_the_table(inst):
    # before: KeyError('boom') from gap_table, the fcfs and mcsf rows lost, the method not named
    with pytest.warns(RuntimeWarning, match=r"method 'crash' failed: KeyError: 'boom'"):
        table = gap_table(inst, ["fcfs", "mcsf", Crash()])
    rows = table.set_index("method")
    assert list(rows.index) == ["fcfs", "mcsf", "crash"]
    for name in ("fcfs", "mcsf"):  # the same numbers as the evaluator gives each alone
        assert rows.loc[name, "cost"] == servopt.benchmarks.evaluate(inst, name).cost
        assert rows.loc[name, "status"] == "ok"
    assert rows.loc["crash", "status"] == "error: KeyError: 'boom'"
    assert math.isnan(rows.loc["crash", "cost"]) and math.isnan(rows.loc["crash", "gap"])
    assert 'raise KeyError("boom")' in table.attrs["tracebacks"]["crash"]


def test_a_bad_policy_answer_is_shown_with_the_method_label(inst):
    with pytest.warns(RuntimeWarning, match=r"method 'bad_answer' failed: InvalidInstanceError: "
                      r"the policy's admit\(\) at round 0 must return request ids"):
        table = gap_table(inst, ["fcfs", BadAnswer()])
    assert table.loc[1, "status"].startswith("error: InvalidInstanceError: the policy's admit()")


def test_an_unknown_evaluator_keyword_still_raises(inst):
    with pytest.raises(InvalidInstanceError, match="unexpected keyword argument 'bogus'"):
        gap_table(inst, ["fcfs", Crash()], bogus=1)


def test_an_object_never_takes_a_builtin_label(inst):
    # before: Fake() alone was labelled fcfs, as the built-in is
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert gap_table(inst, [Fake()])["method"].tolist() == ["fcfs#2"]
        assert gap_table(inst, [Fake(), "fcfs", Fake()])["method"].tolist() == [
            "fcfs#2", "fcfs", "fcfs#3"]

    class Numbered(bs.FCFS):
        name = "fcfs#2"  # an object whose own name is the label another one would be given

    labels = gap_table(inst, [Fake(), Numbered()])["method"].tolist()
    assert labels == ["fcfs#2", "fcfs#2#2"] and len(set(labels)) == 2


@pytest.mark.parametrize("methods, says", [
    (["fcfs", "fcfs"], "method 'fcfs' is listed twice"),  # before: two rows labelled fcfs
    (["fcfs", "fcfs_typo"], r"'fcfs_typo' is not a batch_scheduling method \(did you mean 'fcfs'"),
    # before: an fcfs row labelled mcsf, and a user object's row labelled fcfs
    ({"mcsf": "fcfs"}, "the label 'mcsf' is the name of a built-in batch_scheduling method but maps "
                       "to 'fcfs'"),
    ({"fcfs": Fake()}, "the label 'fcfs' .* maps to a Fake object"),
    ({1: "fcfs", "1": "mcsf"}, "two methods are labelled '1'"),
])
def test_ambiguous_method_lists_are_refused_before_running(inst, methods, says):
    with pytest.raises(InvalidInstanceError, match=says):
        gap_table(inst, methods)


def test_a_dict_label_of_a_builtin_may_name_that_builtin(inst):
    table = gap_table(inst, {"fcfs": "fcfs", "mine": Fake()})
    assert table["method"].tolist() == ["fcfs", "mine"]


# ---------------------------------------------------------------------------------------------
# 7. one object twice: its second run would start from the first's state
# ---------------------------------------------------------------------------------------------
class Warm(bs.FCFS):
    name = "warm"

    def __init__(self):
        super().__init__()
        self.calls = 0

    def admit(self, state):  # admits nothing for its first 40 calls, counted across runs
        self.calls += 1
        return super().admit(state) if self.calls > 40 else state.waiting[:0]


def test_the_same_object_twice_is_refused_by_label(inst):
    p = Warm()
    assert bs.make_policy(p) is p  # the documented behaviour: an object is used as it is
    # before: rows warm 1861 and warm#2 661, the second run starting from the first one's count
    with pytest.raises(InvalidInstanceError, match=r"same object is listed twice \(rows 'warm' and "
                                                   r"'warm#2'\)"):
        gap_table(inst, [p, p])
    with pytest.raises(InvalidInstanceError, match=r"rows 'a' and 'b'"):
        gap_table(inst, {"a": p, "b": p})
    assert p.calls == 0  # refused before running
    two = gap_table(inst, [Warm(), Warm()])  # two objects: each from a fresh count
    assert two["method"].tolist() == ["warm", "warm#2"] and two.loc[0, "cost"] == two.loc[1, "cost"]


# ---------------------------------------------------------------------------------------------
# 5. a cost below a bound of 0 is below the bound
# ---------------------------------------------------------------------------------------------
def test_a_cost_below_a_zero_bound_is_flagged():
    # before: relative_gap(-5, 0) was +inf and the run was "ok"
    assert relative_gap(-5.0, 0.0) == -math.inf and relative_gap(5.0, 0.0) == math.inf
    assert relative_gap(5.0, 0.0, "max") == -math.inf and relative_gap(-5.0, 0.0, "max") == math.inf
    # a finite cost under a min bound of +inf (no feasible schedule) is below it too
    assert relative_gap(4.0, math.inf) == -math.inf and relative_gap(4.0, -math.inf) == math.inf
    assert flag_below_bound(-math.inf, "ok") == "below_bound"
    assert flag_below_bound(math.inf, "ok") == "ok"
    row = outcome_row("m", Outcome(cost=-5.0, wall_s=0.0), Bound(0.0, "lower_bound"), "min")
    assert row["status"] == "below_bound" and row["gap"] == -math.inf
    above = outcome_row("m", Outcome(cost=12.0, wall_s=0.0), Bound(0.0, "lower_bound"), "max")
    assert above["status"] == "above_bound"  # (a max decision: 12 beats an upper bound of 0)
    # within the tolerance of a bound of 0 means exactly 0: -0.0 is not below it
    assert outcome_row("m", Outcome(cost=-0.0, wall_s=0.0), Bound(0.0, "lower_bound"),
                       "min")["status"] == "ok"


def test_the_runner_flags_a_cost_below_a_zero_bound():
    rows = _rows([("fcfs", -5.0)])
    rows[0]["bound"] = 0.0
    out = runner_mod.assemble(rows)
    assert out.loc[0, "gap"] == -math.inf and out.loc[0, "status"] == "below_bound"


# ---------------------------------------------------------------------------------------------
# 6. capacity: a plan's predicted rate is a number
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def cap_inst():
    from servopt.instances import capacity

    return capacity.generate(seed=0)


@pytest.mark.parametrize("rate", ["fast", -1.0, math.inf, True, None, [3.0]])
def test_capacity_refuses_a_predicted_rate_that_is_not_a_rate(cap_inst, rate):
    from servopt.benchmarks import capacity as bench
    from servopt.solvers.capacity import Plan

    def my_plan(instance, observe):
        return Plan(100, max_stable_rate=rate)

    # before: 'fast' went into the row's predicted_rate, status ok
    with pytest.raises(InvalidInstanceError, match=r"capacity method 'my_plan': the plan's "
                                                   r"max_stable_rate must be a number"):
        bench.evaluate(cap_inst, my_plan, n_requests=1000)


def test_capacity_takes_a_rate_or_none(cap_inst):
    from servopt.benchmarks import capacity as bench
    from servopt.solvers.capacity import Plan

    given = bench.evaluate(cap_inst, lambda i, o: Plan(100, max_stable_rate=np.float32(12.5)),
                           n_requests=1000)
    assert given.metrics["predicted_rate"] == 12.5 and type(given.metrics["predicted_rate"]) is float
    none = bench.evaluate(cap_inst, lambda i, o: Plan(100), n_requests=1000)  # NaN: "none"
    assert math.isnan(none.metrics["predicted_rate"])


# ---------------------------------------------------------------------------------------------
# 8. (audit R13) a bad option value is the caller's error, refused by name before any policy runs
# ---------------------------------------------------------------------------------------------
class Counted(bs.FCFS):
    """FCFS that counts its prepare and admit calls (to see that nothing ran)."""

    name = "counted"

    def __init__(self):
        super().__init__()
        self.calls = 0

    def prepare(self, instance):
        self.calls += 1
        return super().prepare(instance)

    def admit(self, state):
        self.calls += 1
        return super().admit(state)


@pytest.mark.parametrize("kw, says", [
    # before: max_rounds=-3 or 0 ran the policy and blamed it: "did not finish ... it stalls"
    ({"max_rounds": -3}, "max_rounds must be a whole number of rounds >= 1.*got -3"),
    ({"max_rounds": 0}, "max_rounds must be a whole number.*got 0"),
    ({"max_rounds": 2.5}, "max_rounds must be a whole number.*got 2.5"),  # before: ran to 3 rounds
    ({"max_rounds": True}, "max_rounds must be a whole number.*got True"),
    ({"max_rounds": "500"}, "max_rounds must be a whole number.*got '500'"),  # before: TypeError
    ({"trace": "nope"}, "trace must be True or False, got 'nope'"),  # before: accepted, status ok
])
def test_batch_evaluate_and_simulate_refuse_a_bad_option_before_the_policy_runs(inst, kw, says):
    from servopt.benchmarks import batch_scheduling as bench
    from servopt.benchmarks.harness import OptionError

    for run in (bench.evaluate, bench.simulate):
        policy = Counted()
        with pytest.raises(OptionError, match=says):
            run(inst, policy, **kw)
        assert policy.calls == 0


def test_batch_simulate_takes_a_whole_number_of_rounds(inst):
    from servopt.benchmarks import batch_scheduling as bench

    full = bench.evaluate(inst, "fcfs")
    rounds = int(full.metrics["makespan"])  # fcfs finishes in exactly this many rounds
    assert bench.evaluate(inst, "fcfs", max_rounds=np.int64(rounds), trace=np.True_).cost == full.cost
    with pytest.raises(InvalidInstanceError, match=f"did not finish .* within {rounds - 1} rounds"):
        bench.evaluate(inst, "fcfs", max_rounds=rounds - 1)  # a real stall-limit, still the policy's


@pytest.mark.parametrize("kw, says", [
    ({"max_rounds": -3}, "max_rounds must be a whole number"),
    ({"trace": "nope"}, "trace must be True or False"),
    ({"bogus": 1}, "unexpected keyword argument 'bogus'"),
])
def test_gap_table_raises_for_a_bad_option_instead_of_error_rows(inst, kw, says, monkeypatch):
    from servopt.benchmarks import batch_scheduling as bench
    from servopt.benchmarks.harness import OptionError

    bounds = []
    real = bench.bound
    monkeypatch.setattr(bench, "bound", lambda *a, **k: bounds.append(1) or real(*a, **k))
    policy = Counted()
    # before: a RuntimeWarning and an error row blaming each method ("did not finish ... stalls")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(OptionError, match=says):
            gap_table(inst, ["fcfs", "mcsf", policy], **kw)
    assert policy.calls == 0 and bounds == []  # checked once, before the bound and every method


def test_gap_table_raises_an_option_error_an_evaluator_finds_as_it_runs(inst, monkeypatch):
    from servopt.benchmarks import batch_scheduling as bench
    from servopt.benchmarks.harness import OptionError

    def evaluate(instance, method, **kw):  # an evaluator without check_options (a plug-in's)
        raise OptionError("mine: horizon must be >= 1, got -3")

    monkeypatch.setattr(bench, "evaluate", evaluate)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(OptionError, match="horizon must be >= 1"):
            gap_table(inst, ["fcfs", "mcsf"], bound_kw={"method": "area"})


# ---------------------------------------------------------------------------------------------
# 9. (audit R13) a class or a plain function may be listed twice: each run starts afresh
# ---------------------------------------------------------------------------------------------
def test_a_class_listed_twice_runs_twice(inst):
    fcfs = servopt.benchmarks.evaluate(inst, "fcfs").cost
    # before: "the same object is listed twice ... pass ... the class", though it was the class
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = gap_table(inst, [bs.POLICIES["fcfs"]] * 2)
        assert table["method"].tolist() == ["fcfs#2", "fcfs#3"]
        assert table["cost"].tolist() == [fcfs, fcfs]
        two = gap_table(inst, {"a": Warm, "b": Warm})  # Warm's count starts at 0 in each object
        assert two["cost"].tolist() == [gap_table(inst, [Warm()])["cost"][0]] * 2
        # a built-in's label may name its own POLICIES entry (before: "maps to a type object")
        own = gap_table(inst, {"fcfs": bs.POLICIES["fcfs"]})
        assert own["method"].tolist() == ["fcfs"] and own["cost"][0] == fcfs
    with pytest.raises(InvalidInstanceError, match=r"the label 'fcfs' .* maps to a type object"):
        gap_table(inst, {"fcfs": bs.POLICIES["mcsf"]})


def test_a_plain_function_listed_twice_runs_twice(cap_inst):
    from servopt.solvers import capacity as cs

    plan = cs.POLICIES["plan"]
    alone = gap_table(cap_inst, {"a": plan}, n_requests=1000)
    # before: "the same object is listed twice (rows 'a' and 'b')"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = gap_table(cap_inst, {"a": plan, "b": plan}, n_requests=1000)
    assert table["method"].tolist() == ["a", "b"]
    assert table["cost"].tolist() == [alone["cost"][0]] * 2
    with pytest.raises(InvalidInstanceError, match="same object is listed twice"):
        bound_method = Warm().admit  # a bound method carries its object's state: still refused
        gap_table(cap_inst, {"a": bound_method, "b": bound_method})


# ---------------------------------------------------------------------------------------------
# 10. (audit R13) grid values are plain JSON values: numpy scalars are the numbers they hold
# ---------------------------------------------------------------------------------------------
def test_a_numpy_scalar_in_the_grid_is_the_number_it_holds():
    # before: accepted, and the same instance ran twice with params {"n": 20} and {"n": "20"}
    with pytest.raises(InvalidInstanceError, match=r"case 'mine': grid repeats the parameter set "
                                                   r'\{"n": 20\}'):
        Case(name="mine", decision="batch_scheduling", grid=({"n": 20}, {"n": np.int64(20)}))
    def make(seed: int, **params):  # takes the made-up keys "flag" and "sizes"
        return bi.generate(20, seed=seed)

    case = Case(name="mine", decision="batch_scheduling", methods=("fcfs",), make_instance=make,
                grid=({"n": np.int64(20), "noise": np.float64(0.5), "flag": np.True_,
                       "sizes": (np.int32(1), [np.float32(0.25), None, "x"])},))
    params = case.grid[0]
    assert params == {"n": 20, "noise": 0.5, "flag": True, "sizes": (1, [0.25, None, "x"])}
    assert [type(params[k]) for k in ("n", "noise", "flag")] == [int, float, bool]
    assert type(params["sizes"][0]) is int and type(params["sizes"][1][0]) is float
    assert registry.params_label(params) == \
        '{"flag": true, "n": 20, "noise": 0.5, "sizes": [1, [0.25, null, "x"]]}'
    run_case = Case(name="mine", decision="batch_scheduling", methods=("fcfs",),
                    grid=({"n": np.int64(20)},))
    frame = runner_mod.run([run_case], jobs=1, cache_dir=None, progress=False)
    assert set(frame["params"]) == {'{"n": 20}'}  # before: {"n": "20"}


@pytest.mark.parametrize("value, shown", [
    (np.arange(3), "ndarray"), ({"a": 1}, "dict"), (object(), "object"), (math.nan, "float"),
    (math.inf, "float"), ([1, {2}], "set"), (b"20", "bytes"),
])
def test_a_grid_value_that_is_not_a_json_value_is_refused_by_case_and_key(value, shown):
    # before: accepted, labelled by str(value) (two different arrays could share a label)
    with pytest.raises(InvalidInstanceError, match=rf"case 'mine': grid 'sizes': must be a number, "
                                                   rf"text, .*\({shown}\)"):
        Case(name="mine", decision="batch_scheduling", grid=({"n": 20, "sizes": value},))


# ---------------------------------------------------------------------------------------------
# 11. (audit R13) the other evaluators: a flag that is not True/False, an option of the wrong kind
# ---------------------------------------------------------------------------------------------
def test_a_flag_that_is_not_true_or_false_is_refused_before_anything_runs():
    from servopt.benchmarks import caching as cache_bench
    from servopt.benchmarks import expert_placement as ep_bench
    from servopt.benchmarks.harness import OptionError
    from servopt.instances import caching as ci
    from servopt.instances import expert_placement as ei

    calls = []

    def plan(*args, **kw):  # a method that records being run
        calls.append(1)
        raise AssertionError("ran")

    # before: both accepted "no" as true and ran the method
    with pytest.raises(OptionError, match=r"expert_placement\.evaluate\(\): option detail must be "
                                          r"True or False, got 'no'"):
        ep_bench.evaluate(ei.generate(seed=0), plan, detail="no")
    with pytest.raises(OptionError, match=r"caching\.evaluate\(\): option record must be True or "
                                          r"False, got 1"):
        cache_bench.evaluate(ci.generate(seed=0), plan, record=1)
    assert calls == []


@pytest.fixture(scope="module")
def decode_inst():
    from servopt.instances import decode_routing as di

    return di.generate(requests=60, workers=3, seed=0)


@pytest.mark.parametrize("kw, says", [
    ({"seed": "x"}, r"option seed must be a whole number >= 0, got 'x'"),
    ({"seed": 1.5}, r"option seed must be a whole number >= 0, got 1\.5"),
    ({"warmup": "x"}, r"option warmup must be a number, got 'x'"),
])
def test_an_option_of_the_wrong_kind_is_named_not_a_numpy_error(decode_inst, kw, says):
    from servopt.benchmarks import decode_routing as bench
    from servopt.benchmarks.harness import OptionError

    # before: TypeError "SeedSequence expects int ..." / "'<=' not supported ...", no option named
    with pytest.raises(OptionError, match=says):
        bench.evaluate(decode_inst, "least_kv", **kw)
    with warnings.catch_warnings():  # and gap_table raises it, not an error row per method
        warnings.simplefilter("error")
        with pytest.raises(OptionError, match=says):
            gap_table(decode_inst, ["least_kv", "round_robin"], bound_kw={"time_limit": 5.0}, **kw)


class TypeCrash(bs.FCFS):
    name = "type_crash"

    def admit(self, state):
        raise TypeError("my own bug")


def test_a_methods_own_type_error_with_good_options_stays_its_row(inst):
    with pytest.warns(RuntimeWarning, match="method 'type_crash' failed: TypeError: my own bug"):
        table = gap_table(inst, ["fcfs", TypeCrash()], max_rounds=np.int64(10_000), trace=False)
    assert table["status"].tolist() == ["ok", "error: TypeError: my own bug"]


@pytest.mark.parametrize("decision, kw, says", [
    ("expert_placement", {"dispatch": "bogus"}, r"option dispatch='bogus' refused: unknown dispatch"),
    ("capacity", {"eps": -1}, r"option eps=-1 refused: eps must be in \[0, 1\)"),
])
def test_gap_table_raises_an_option_an_evaluator_refuses_as_it_runs(decision, kw, says, cap_inst):
    # evaluators without check_options refuse these inside evaluate; before: an error row and a
    # RuntimeWarning per method, each saying the same thing about the caller's option
    from servopt.instances import expert_placement as ei
    from servopt.solvers import capacity as cs

    inst, methods = ((ei.generate(seed=0), ["eplb", "no_replication"]) if decision == "expert_placement"
                     else (cap_inst, {"a": cs.POLICIES["plan"], "b": cs.POLICIES["fluid_lp"]}))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InvalidInstanceError, match=f"gap_table\\(\\) for {decision}: {says}"):
            gap_table(inst, methods, **kw)


@pytest.mark.parametrize("bad", [-5, 0, 2.5, True, "400000"])
def test_batch_bound_refuses_a_max_columns_that_is_not_a_count(bad):
    # E8: bound(max_columns=-5) fell back to the closed form with status "model too large
    # (184 columns...)", as if the model were large
    from servopt.benchmarks import batch_scheduling as bb
    from servopt.instances import batch_scheduling as bi
    with pytest.raises(InvalidInstanceError, match="max_columns must be a whole number >= 1"):
        bb.bound(bi.generate(10, seed=0), max_columns=bad)


@pytest.mark.parametrize("bad", [-1, 1.5, True])
def test_decode_evaluate_refuses_a_seed_that_is_not_a_whole_number_before_the_router_runs(bad):
    # E8: seed=-1 ended in numpy's bare "expected non-negative integer" after the router's reset
    # ran, and gap_table made an error row per method
    from servopt.benchmarks import decode_routing as db
    from servopt.benchmarks.harness import OptionError
    from servopt.instances import decode_routing as di
    instance = di.generate(requests=40, workers=2, seed=0)
    with pytest.raises(OptionError, match="option seed must be a whole number >= 0"):
        db.evaluate(instance, "jsq", seed=bad)
    with pytest.raises(InvalidInstanceError, match="seed"):
        servopt.gap_table(instance, ["jsq", "least_kv"], evaluate_kw={"seed": bad})
