"""Time budgets and solve options of batch scheduling, caching and the exact solver (audits R24
and R21): Ctrl-C during a warm-start LP, HiGHS's cumulative LP clock, every LP of a bound
loop on what is left of its budget, ``time_limit=None`` alike for every method, a relaxation's
value never called optimal, and constructor and build options refused by name."""

from __future__ import annotations

import math
import types

import highspy
import numpy as np
import pandas as pd
import pytest

import servopt
from servopt.core.errors import InvalidInstanceError
from servopt.core.matrix import Family, MatrixModel
from servopt.instances import batch_scheduling as bs
from servopt.instances import caching as ci
from servopt.solvers import exact


# ---------------------------------------------------------------------------------------------
# the exact solver
# ---------------------------------------------------------------------------------------------
def test_ctrl_c_during_the_caching_warm_start_lp_stops_the_call_as_interrupted(monkeypatch):
    # R24 #2: the LP ended "Interrupted by user", the MIP then ran to its limit and came back
    # 'time_limit' with only info["warm_start"] = "none (LP interrupted)"
    runs = []

    def interrupted(highs, poll=True):
        runs.append(highs)
        return True  # Ctrl-C as the LP started: cancelled before it ran

    monkeypatch.setattr(exact, "_run_interruptible", interrupted)
    sol = servopt.solve(ci.generate(requests=60, seed=0), time_limit=30.0)
    assert len(runs) == 1, "the MIP must not be started after a Ctrl-C"
    assert sol.status == "interrupted" and math.isnan(sol.objective)
    assert sol.info["warm_start"] == "none (LP interrupted)"
    assert sol.info["bound_kind"] == "none" and math.isnan(sol.bound)


def _no_incumbent_no_bound(monkeypatch):
    """Every HiGHS object reports a time-limit stop with neither an incumbent nor a dual bound."""
    real = exact.new_highs

    class Stopped:
        def __init__(self, inner):
            object.__setattr__(self, "inner", inner)

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def __setattr__(self, name, value):
            setattr(self.inner, name, value)

        def getModelStatus(self):
            return highspy.HighsModelStatus.kTimeLimit

        def getInfo(self):
            info = self.inner.getInfo()
            info.mip_dual_bound, info.primal_solution_status = math.inf, 0
            return info

    monkeypatch.setattr(exact, "new_highs", lambda: Stopped(real()))


def test_a_mip_stopped_without_incumbent_or_bound_reports_bound_kind_none(monkeypatch):
    # R24 #11: _solve_matrix_once set bound_kind "mip_bound" whatever the bound
    _no_incumbent_no_bound(monkeypatch)
    mm = MatrixModel(objective=np.ones(2), matrix=np.array([[1.0, 1.0]]), row_lower=[1.5],
                     row_upper=[np.inf], col_lower=np.zeros(2), col_upper=np.full(2, 10.0),
                     rows={"need": Family(np.arange(1), pd.RangeIndex(1))},
                     columns={"x": Family(np.arange(2), pd.RangeIndex(2))},
                     integer=np.ones(2, dtype=bool))
    sol = exact.solve_matrix(mm, decision="toy")
    assert sol.status == "time_limit" and math.isnan(sol.objective) and math.isnan(sol.bound)
    assert sol.info["bound_kind"] == "none"
    # every column integer: no price LP ever, so not "the time limit left no time for it"
    assert sol.info["prices_skipped"] == exact.INTEGER_PRICES_SKIPPED


def test_a_time_limit_beyond_a_float_is_refused_by_name():
    # R24 #11: float(10**400) raised OverflowError from servopt/core/checks.py
    with pytest.raises(InvalidInstanceError, match=r"time_limit.*beyond a float"):
        servopt.solve(bs.generate(5, seed=0), time_limit=10 ** 400)


# ---------------------------------------------------------------------------------------------
# HiGHS's run clock counts on across the runs of one object
# ---------------------------------------------------------------------------------------------
AGE = 1.0e5  # seconds a HiGHS object's clock is made to show (far above every limit below)


class Aged:
    """A HiGHS object whose first run takes ``age`` s more on its run clock than it did (with
    ``stop_first`` that run reports a time-limit stop, as a simplex stopped after that long
    would), and whose ``time_limit`` is compared with the clock's total over all its runs, as
    HiGHS 1.16 does (checked in the E18 report: an object that had run 19 s, given 9.5 s,
    stopped at once). A limit already passed stops a run before it starts. ``runs`` records
    the seconds each run had left (its limit less the clock; inf: none)."""

    def __init__(self, inner, age: float, stop_first: bool = False) -> None:
        state = {"inner": inner, "extra": 0.0, "age": age, "stop_first": stop_first,
                 "limit": math.inf, "status": None, "runs": []}
        object.__setattr__(self, "_s", state)

    def __getattr__(self, name):
        return getattr(self._s["inner"], name)

    def __setattr__(self, name, value):
        setattr(self._s["inner"], name, value)

    def getRunTime(self):
        return self._s["inner"].getRunTime() + self._s["extra"]

    def setOptionValue(self, name, value):
        s = self._s
        if name == "time_limit":
            s["limit"] = float(value)
            value = max(float(value) - s["extra"], 1e-3)
        return s["inner"].setOptionValue(name, value)

    def run(self):
        s = self._s
        s["runs"].append(s["limit"] - self.getRunTime())
        if s["limit"] <= self.getRunTime():
            s["status"] = highspy.HighsModelStatus.kTimeLimit
            return highspy.HighsStatus.kWarning
        s["status"] = None
        out = s["inner"].run()
        if len(s["runs"]) == 1:
            s["extra"] += s["age"]
            if s["stop_first"]:
                s["status"] = highspy.HighsModelStatus.kTimeLimit
        return out

    def getModelStatus(self):
        s = self._s
        return s["inner"].getModelStatus() if s["status"] is None else s["status"]


def _aged(monkeypatch, module, **kw) -> list:
    """``module.new_highs`` making :class:`Aged` objects; returns them as they are made."""
    real, made = module.new_highs, []

    def make():
        made.append(Aged(real(), **kw))
        return made[-1]

    monkeypatch.setattr(module, "new_highs", make)
    return made


def test_cover_bound_gives_every_lp_what_is_left_on_highs_cumulative_clock(monkeypatch):
    # R24 #3 and #4: the first LP ran without a limit, and each round got max(left, 1) s as
    # HiGHS's time_limit, which HiGHS compares with its run time over all the object's runs:
    # the loop stopped at about half its budget, 'time_limit'
    from servopt.solvers import batch_scheduling as sb

    inst = bs.generate(12, seed=0)
    plain = sb.cover_bound(inst, time_limit=1000.0)
    assert plain.rounds >= 3 and plain.status != "time_limit"  # the unaged run, for reference
    made = _aged(monkeypatch, sb, age=AGE)
    aged = sb.cover_bound(inst, time_limit=1000.0)
    assert len(made) == 1
    runs = made[0]._s["runs"]
    assert len(runs) == aged.rounds + 1 and all(0 < left <= 1000.0 for left in runs)
    assert aged.status == plain.status and aged.history == pytest.approx(plain.history, rel=1e-9)


def test_cover_bound_with_its_budget_spent_before_the_first_lp_has_no_bound(monkeypatch):
    from servopt.solvers import batch_scheduling as sb

    inst = bs.generate(8, seed=0)
    clock = iter([0.0, 50.0])  # entry, then after the build: 50 s of a 10 s budget gone
    monkeypatch.setattr(sb, "time", types.SimpleNamespace(perf_counter=lambda: next(clock, 50.0)))
    made = _aged(monkeypatch, sb, age=0.0)
    found = sb.cover_bound(inst, time_limit=10.0)
    assert math.isnan(found.bound) and found.status.startswith("time_limit")
    assert made[0]._s["runs"] == []  # HiGHS not started


def test_group_bound_gives_every_lp_and_ip_what_is_left_of_its_budget(monkeypatch):
    # R24 #1: the first LP and the master LP ran without a limit, the last pricing got
    # final_time = 30 s past the budget
    from servopt.solvers import batch_scheduling as sb

    inst = bs.generate(12, seed=0)
    plain = sb.group_bound(inst, time_limit=500.0, final_time=30.0)
    made = _aged(monkeypatch, sb, age=AGE)
    aged = sb.group_bound(inst, time_limit=500.0, final_time=30.0)
    runs = [left for h in made for left in h._s["runs"]]
    assert len(runs) >= 3 and all(0 < left <= 500.0 for left in runs)
    assert aged.status == plain.status == "converged"
    assert aged.bound == pytest.approx(plain.bound, rel=1e-9)


def test_group_bound_last_pricing_counts_against_the_budget(monkeypatch):
    from servopt.solvers import batch_scheduling as sb

    made = _aged(monkeypatch, sb, age=0.0)
    # a master that never converges within the loop: one pricing round, then the limit
    found = sb.group_bound(bs.generate(12, seed=0), time_limit=2.0, final_time=30.0,
                           price_time=0.5)
    runs = [left for h in made for left in h._s["runs"]]
    assert runs and all(left <= 2.0 for left in runs), (found.status, runs)


def test_the_group_master_is_interruptible(monkeypatch):
    from servopt.solvers import batch_scheduling as sb

    calls = []

    def interrupt_the_master(highs, poll=True):
        calls.append(highs)
        if len(calls) == 2:  # the first LP, then the master
            return True
        highs.run()
        return False

    monkeypatch.setattr(sb, "_run_interruptible", interrupt_the_master)
    with pytest.raises(KeyboardInterrupt):
        sb.group_bound(bs.generate(12, seed=0), time_limit=100.0)


def test_caching_auto_gives_interior_point_what_the_simplex_left(monkeypatch):
    # R24 #5: after the simplex's 40 s the interior point got time_limit = left, below HiGHS's
    # run time so far: it stopped at once and the LP raised TimeoutError half-way through its
    # budget
    from servopt.solvers import caching as sc

    inst = ci.generate(requests=300, seed=0)
    exact_value = sc.solve_lp(inst, method="networkx").value  # another solver, no HiGHS
    made = _aged(monkeypatch, sc, age=AGE, stop_first=True)
    found = sc.solve_lp(inst, algorithm="auto", time_limit=1000.0)
    assert len(made[0]._s["runs"]) == 2, "the interior point must run after the stopped simplex"
    assert 0 < made[0]._s["runs"][1] <= 1000.0
    assert found.value == pytest.approx(exact_value, rel=1e-6)


@pytest.mark.parametrize("method", ["cover", "group", "coarse"])
def test_bound_takes_none_as_no_limit_for_every_method(monkeypatch, method):
    # R24 #9: cover, group and coarse silently ran for 600 s where lp and ip took None as none
    from servopt.benchmarks import batch_scheduling as bench
    from servopt.solvers import batch_scheduling as sb

    given = []
    real = getattr(sb, f"{method}_bound")

    def spy(*args, **kw):
        given.append(kw["time_limit"])
        return real(*args, **{**kw, "time_limit": 60.0})

    monkeypatch.setattr(sb, f"{method}_bound", spy)
    found = bench.bound(bs.generate(8, seed=0), method=method, time_limit=None)
    assert given == [math.inf] and found.value > 0


# ---------------------------------------------------------------------------------------------
# a batch IP answer with a request in its late column is a lower bound, not a schedule
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("option", [{"horizon": 10}, {"window": 0}])
def test_a_batch_ip_answer_using_late_columns_says_it_is_a_lower_bound(option):
    # R21 #1: horizon=10 came back "optimal" 146 (every request late), window=0 "optimal" 148,
    # with bound_kind mip_bound and no note; generate(10)'s optimum is 170
    from servopt.models import batch_scheduling as bm

    inst = bs.generate(10, seed=0)
    sol = servopt.solve(inst, **option)
    late = int(sol.decisions["late"].sum())
    assert late >= 1
    assert sol.info["bound_kind"] == "lower_bound"
    assert f"{late} of 10 requests are in their late column" in sol.info["note"]
    assert "lower bound" in sol.info["note"]
    # a lower bound indeed: below a real schedule's latency (the greedy one, by the model's
    # arithmetic, no solver)
    assert sol.objective < bm.schedule_latency(inst, bm.greedy_schedule(inst))


def test_a_batch_ip_answer_without_late_columns_has_no_such_note():
    sol = servopt.solve(bs.generate(10, seed=0))
    assert sol.decisions["late"].sum() == 0 and sol.info["bound_kind"] == "mip_bound"
    assert "late column" not in sol.info.get("note", "")


# ---------------------------------------------------------------------------------------------
# policy constructor options and build options refused by name (R21 #4, #5, #8)
# ---------------------------------------------------------------------------------------------
def _batch_policies():
    from servopt.solvers import batch_scheduling as sb
    return sb


def _caching_policies():
    from servopt.solvers import caching as sc
    return sc


@pytest.mark.parametrize(("make", "option"), [
    (lambda sb: sb.FCFS(watermark=math.nan), "watermark"),  # ValueError at the first admission
    (lambda sb: sb.FCFS(watermark=1.5), "watermark"),  # accepted
    (lambda sb: sb.FCFS(watermark=-1), "watermark"),
    (lambda sb: sb.ShortestPredictedFirst(watermark="0.1"), "watermark"),
    (lambda sb: sb.BidPrice(history=math.nan), "history"),  # ValueError in prepare
    (lambda sb: sb.BidPriceStationary(history=-1), "history"),  # accepted
    (lambda sb: sb.BidPriceStationary(history=0), "history"),  # an empty window, refused late
    (lambda sb: sb.BidPrice(skip="no"), "skip"),  # taken as True
    (lambda sb: sb.BidPriceStationary(skip=-1), "skip"),
    (lambda sb: sb.BidPriceStationary(backlog_factor="4"), "backlog_factor"),
    (lambda sb: sb.Hindsight(seed=-1), "seed"),  # numpy error in prepare
    (lambda sb: sb.Hindsight(seed=1.5), "seed"),
])
def test_batch_policy_options_are_refused_by_name(make, option):
    with pytest.raises(InvalidInstanceError, match=option):
        make(_batch_policies())


@pytest.mark.parametrize(("kw", "option"), [
    ({"tau_objects": None}, "tau_objects"),  # TypeError
    ({"experts": 2}, "experts"),  # TypeError
    ({"experts": ("a",)}, "experts"),
    ({"window_cap": math.inf}, "window_cap"),  # OverflowError
    ({"horizon": None}, "horizon"),
    ({"scales": ()}, "scales"),
    ({"tune": "no"}, "tune"),  # taken as True
    ({"priced": -1}, "priced"),
    ({"greedy_dual": math.nan}, "greedy_dual"),
])
def test_caching_bid_price_options_are_refused_by_name(kw, option):
    with pytest.raises(InvalidInstanceError, match=option):
        _caching_policies().BidPrice(**kw)


def test_the_policies_still_take_their_documented_options():
    sb, sc = _batch_policies(), _caching_policies()
    assert sb.FCFS(watermark=0.0).watermark == 0.0 and sb.FCFS().watermark == sb.VLLM_WATERMARK
    assert sb.BidPriceStationary(history=30, skip=True).history == 30
    assert sb.BidPrice(skip=None).skip is None and sb.Hindsight(seed=3).seed == 3
    rule = sc.BidPrice(experts=[10.0, 50.0], tune=False, priced=np.bool_(True), window_cap=None)
    assert rule.experts == (10.0, 50.0) and rule.window_cap is None


@pytest.mark.parametrize(("kw", "option"), [
    ({"start": "lp"}, "start"),  # ValueError could not convert string to float
    ({"max_binaries": None}, "max_binaries"),  # TypeError
    ({"max_binaries": math.nan}, "max_binaries"),  # silently no limit
])
def test_caching_build_options_are_refused_by_name(kw, option):
    with pytest.raises(InvalidInstanceError, match=option):
        servopt.solve(ci.generate(requests=50, seed=0), **kw)


@pytest.mark.parametrize(("kw", "option"), [
    ({"classes": 2}, "classes"),  # AttributeError in the build
    ({"corrected": "abc"}, "corrected"),  # taken as True
    ({"recompute_fraction": -1.0}, "recompute_fraction"),
])
def test_capacity_build_options_are_refused_by_name(kw, option):
    from servopt.instances import capacity as cap

    with pytest.raises(InvalidInstanceError, match=option):
        servopt.solve(cap.generate(requests=200, seed=0), **kw)


# ---------------------------------------------------------------------------------------------
# caching's lp_schedule: a time limit of its own, and the bound's LP reused
# ---------------------------------------------------------------------------------------------
def test_lp_schedule_takes_a_time_limit_for_its_lp(monkeypatch):
    # R24 #10: the offline LP was solved without a limit whatever the caller wanted
    from servopt.benchmarks import caching as cb
    from servopt.solvers import caching as sc

    monkeypatch.setattr(sc, "_LAST_LP", {})
    given = []
    real = sc.solve_lp

    def spy(instance, **kw):
        given.append(kw.get("time_limit"))
        return real(instance, **kw)

    monkeypatch.setattr(sc, "solve_lp", spy)
    cb.evaluate(ci.generate(requests=200, seed=0), sc.LPSchedule(time_limit=7.5))
    assert given == [7.5]
    with pytest.raises(InvalidInstanceError, match="time_limit"):
        sc.LPSchedule(time_limit=-1)


def test_lp_schedule_reuses_the_lp_the_bound_just_solved(monkeypatch):
    from servopt.benchmarks import caching as cb
    from servopt.solvers import caching as sc

    inst = ci.generate(requests=400, seed=1)
    monkeypatch.setattr(sc, "_LAST_LP", {})
    fresh = cb.evaluate(inst, sc.LPSchedule()).cost  # solves its own LP
    solves = []
    real = sc._solve_highs_matrix
    monkeypatch.setattr(sc, "_solve_highs_matrix", lambda *a: solves.append(a) or real(*a))
    monkeypatch.setattr(sc, "_LAST_LP", {})
    bound = cb.bound(inst)
    reused = cb.evaluate(inst, sc.LPSchedule()).cost
    assert len(solves) == 1 and reused == fresh and bound.value <= reused


def test_the_coarse_bounds_fine_lp_spends_from_its_budget(monkeypatch):
    # its penalty LP (the fine LP's prices) ran without a limit whatever time_limit said
    from servopt.solvers import batch_scheduling as sb

    given = []
    real = sb.solve_lp
    monkeypatch.setattr(sb, "solve_lp", lambda *a, **k: given.append(k.get("time_limit"))
                        or real(*a, **k))
    found = sb.coarse_bound(bs.generate(8, seed=0), averaged=False, penalty=0.5, time_limit=50.0)
    assert given == [50.0] and found.bound > 0
