"""Solution.save / Solution.load: prices solved in one process build the same rule in another."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import servopt
from servopt.benchmarks import batch_scheduling as bench_bs
from servopt.benchmarks import caching as bench_ca
from servopt.core import InvalidInstanceError, Solution
from servopt.instances import batch_scheduling as bi
from servopt.instances import caching as ci
from servopt.instances import capacity as cpi
from servopt.instances import decode_routing as dri
from servopt.solvers import batch_scheduling as rules_bs
from servopt.solvers import caching as rules_ca
from servopt.solvers import capacity as rules_cp


@pytest.mark.parametrize("make", [lambda: bi.generate(12, seed=0),
                                  lambda: dri.generate_steps(requests=8, workers=2, seed=0),
                                  lambda: cpi.generate(requests=60, seed=0),
                                  lambda: ci.generate(requests=200, seed=0)])
def test_a_saved_solution_reads_back_with_its_labels(make, tmp_path):
    sol = servopt.solve(make(), relax=True)
    back = Solution.load(sol.save(tmp_path))
    for key in ("status", "objective", "bound", "sense", "relaxed", "backend", "decision"):
        assert getattr(back, key) == getattr(sol, key), key
    assert back.info["instance"] == sol.info["instance"]
    assert sorted(back.prices) == sorted(sol.prices)
    for name, price in sol.prices.items():  # every label, index level name and value
        assert list(back.prices[name].index) == list(price.index), name
        assert back.prices[name].index.names == price.index.names, name
        np.testing.assert_allclose(back.prices[name].to_numpy(float), price.to_numpy(float))
    for name, value in sol.decisions.items():  # a DataFrame comes back as one (its columns too)
        assert type(back.decisions[name]) is type(value), name
        assert list(back.decisions[name].index) == list(value.index), name
        if isinstance(value, pd.DataFrame):
            assert list(back.decisions[name].columns) == list(value.columns), name
        np.testing.assert_allclose(back.decisions[name].to_numpy(float), value.to_numpy(float))


def test_rules_built_from_loaded_prices_decide_as_from_the_solve(tmp_path):
    batch = bi.generate(20, seed=1)
    lp = servopt.solve(batch, relax=True)
    loaded = Solution.load(lp.save(tmp_path / "batch"))
    assert bench_bs.evaluate(batch, rules_bs.BidPrice.from_solution(loaded)).cost == \
        bench_bs.evaluate(batch, rules_bs.BidPrice.from_solution(lp)).cost
    cache = ci.generate(requests=400, seed=1)
    lp = servopt.solve(cache, relax=True)
    loaded = Solution.load(lp.save(tmp_path / "cache"))
    assert rules_ca.BidPrice.from_solution(loaded).price == rules_ca.BidPrice.from_solution(lp).price
    assert bench_ca.evaluate(cache, rules_ca.BidPrice.from_solution(loaded, warmup=0.0)).cost == \
        pytest.approx(bench_ca.evaluate(cache, rules_ca.BidPrice.from_solution(lp, warmup=0.0)).cost)
    fleet = cpi.generate(requests=60, seed=0)
    lp = servopt.solve(fleet)
    loaded = Solution.load(lp.save(tmp_path / "fleet"))
    assert rules_cp.plan_from_solution(fleet, loaded) == rules_cp.plan_from_solution(fleet, lp)
    # the instance fingerprint travels with the files: another fleet's instance is refused
    with pytest.raises(InvalidInstanceError):
        rules_cp.plan_from_solution(cpi.generate(requests=60, seed=5, kv_tokens=30_000), loaded)


def test_a_folder_that_is_not_a_saved_solution_is_refused(tmp_path):
    with pytest.raises(InvalidInstanceError, match=r"no solution\.json"):
        Solution.load(tmp_path)
    (tmp_path / "solution.json").write_text("{not json")
    with pytest.raises(InvalidInstanceError, match="not valid JSON"):
        Solution.load(tmp_path)
    folder = servopt.solve(bi.generate(6, seed=0), relax=True).save(tmp_path / "ok")
    head = json.loads((folder / "solution.json").read_text())
    for change, message in (({"prices": ["../../solution"]}, "not a plain name"),
                            ({"prices": ["kv_memory", "absent"]}, "absent.csv is missing"),
                            ({"objective": "12"}, "objective must be a number"),
                            ({"sense": "up"}, "sense must be min or max"),
                            ({"status": None}, "status must be one of"),
                            ({"status": "banana"}, "status must be one of"),
                            ({"relaxed": "false"}, "relaxed must be true or false")):
        (folder / "solution.json").write_text(json.dumps({**head, **change}))
        with pytest.raises(InvalidInstanceError, match=message):
            Solution.load(folder)
    (folder / "solution.json").write_text(json.dumps(head))
    prices = folder / "prices" / "kv_memory.csv"
    saved = prices.read_text().splitlines()
    for lines, message in ((["round,price", "0,1.0"], "then a column 'kv_memory'"),
                           (saved[:-1], "rows; solution.json says"),  # a row removed
                           ([*saved[:1], "0,abc", *saved[2:]], "must be float values"),
                           ([*saved[:1], "x,0.5", *saved[2:]], "must be int values"),
                           # round 0 relabelled 999: same count and types, another label
                           ([*saved[:1], "999," + saved[1].split(",")[1], *saved[2:]],
                            "a label was changed")):
        prices.write_text("\n".join(lines) + "\n")
        with pytest.raises(InvalidInstanceError, match=message):
            Solution.load(folder)
    # rows in another order (re-sorted in a spreadsheet) keep their labels: the same rule
    prices.write_text("\n".join(saved[:1] + saved[1:][::-1]) + "\n")
    inst = bi.generate(6, seed=0)
    assert np.array_equal(rules_bs.BidPrice.from_solution(Solution.load(folder)).prices,
                          rules_bs.BidPrice.from_solution(servopt.solve(inst, relax=True)).prices)


def test_prices_saved_in_another_row_order_build_the_same_rule(tmp_path):
    # n = 8, seed 1: the memory prices differ from round to round (0, ..., 0.111, 0.025), so
    # reading the rows by position after a re-sort would give another price vector
    inst = bi.generate(8, seed=1)
    lp = servopt.solve(inst, relax=True)
    assert lp.prices["kv_memory"].nunique() > 1
    folder = lp.save(tmp_path)
    prices = folder / "prices" / "kv_memory.csv"
    lines = prices.read_text().splitlines()
    prices.write_text("\n".join([lines[0], *lines[1:][::-1]]) + "\n")
    assert np.array_equal(rules_bs.BidPrice.from_solution(Solution.load(folder)).prices,
                          lp.prices["kv_memory"].to_numpy())


def test_text_labels_and_bool_values_survive_the_round_trip(tmp_path):
    # labels that CSV readers turn into numbers or NaN ("000", "NA", "None", "") stay text
    labels = pd.Index(["000", "NA", "None", "null", "7"], name="request_class")
    sol = Solution(status="optimal", objective=1.0, bound=1.0, gap=0.0, wall_s=0.0,
                   prices={"mix": pd.Series([0.5, -1.0, 2.0, 0.0, 3.0], index=labels)},
                   decisions={"kept": pd.Series([True, False, True, True, False], index=labels),
                              "x": pd.Series([1.5, np.nan, 0.0, 2.0, 1.0], index=labels)},
                   decision="capacity")
    back = Solution.load(sol.save(tmp_path))
    assert list(back.prices["mix"].index) == ["000", "NA", "None", "null", "7"]
    assert back.prices["mix"].tolist() == [0.5, -1.0, 2.0, 0.0, 3.0]
    assert back.decisions["kept"].tolist() == [True, False, True, True, False]
    np.testing.assert_array_equal(back.decisions["x"].to_numpy(), [1.5, np.nan, 0.0, 2.0, 1.0])


def test_missing_values_and_unnamed_levels_keep_their_types(tmp_path):
    # a bool or int column with a missing value was read back as text ("False" is truthy) or
    # refused; a single unnamed index came back named "level_0"
    unnamed = pd.Index([0, 1, 2])
    sol = Solution(status="optimal", objective=1.0, bound=1.0, gap=0.0, wall_s=0.0, decisions={
        "flag": pd.Series([True, np.nan, False], index=unnamed, dtype=object),
        "count": pd.Series(pd.array([1, None, 3], dtype="Int64"), index=unnamed),
        "held": pd.Series(pd.array([True, None, False], dtype="boolean"), index=unnamed)})
    back = Solution.load(sol.save(tmp_path))
    assert back.decisions["flag"].tolist()[0] is True and back.decisions["flag"].tolist()[2] is False
    assert pd.isna(back.decisions["flag"].iloc[1])
    assert back.decisions["count"].iloc[0] == 1 and pd.isna(back.decisions["count"].iloc[1])
    assert back.decisions["held"].iloc[2] == False and pd.isna(back.decisions["held"].iloc[1])  # noqa: E712
    assert back.decisions["count"].index.name is None and list(back.decisions["count"].index) == [0, 1, 2]


def test_what_a_csv_cannot_keep_apart_is_refused_on_saving_and_loading(tmp_path):
    mixed = Solution(status="optimal", objective=1.0, bound=1.0, gap=0.0, wall_s=0.0,
                     prices={"p": pd.Series([1.0, 2.0], index=pd.Index([0, "a"], dtype=object))})
    with pytest.raises(InvalidInstanceError, match="mixes value types"):
        mixed.save(tmp_path / "mixed")
    folder = servopt.solve(bi.generate(6, seed=0), relax=True).save(tmp_path / "ok")
    prices = folder / "prices" / "kv_memory.csv"
    lines = prices.read_text().splitlines()
    prices.write_text("\n".join([lines[0], "99999999999999999999,0.0", *lines[2:]]) + "\n")
    with pytest.raises(InvalidInstanceError, match="must be int values"):  # was an OverflowError
        Solution.load(folder)


@pytest.mark.parametrize("cell", ["nan", "inf", "-inf", ""])
def test_a_price_that_is_not_a_finite_number_is_refused_on_loading(tmp_path, cell):
    # a solver's duals are always finite: a NaN, infinite or empty price was edited in, and the
    # old code loaded it (every bid-price rule then compared against NaN); the error names the
    # file, the family and the row's label
    labels = pd.MultiIndex.from_arrays([[0, 0, 1], [0, 1, 0]], names=["worker", "step"])
    sol = Solution(status="optimal", objective=1.0, bound=1.0, gap=0.0, wall_s=0.0,
                   prices={"worker_load": pd.Series([0.5, 0.0, 2.0], index=labels)},
                   decision="decode_routing", relaxed=True)
    folder = sol.save(tmp_path)
    path = folder / "prices" / "worker_load.csv"
    lines = path.read_text().splitlines()  # header, then rows (0,0), (0,1), (1,0)
    lines[2] = "0,1," + cell
    path.write_text("\n".join(lines) + "\n")
    expected = {"": "nan"}.get(cell, cell)
    with pytest.raises(InvalidInstanceError,
                       match=rf"worker_load.csv: the worker_load price for worker 0, step 1 is {expected} "
                             r"\(1 of 3 rows not finite\)"):
        Solution.load(folder)
    lines[2] = "0,1,-0.0"  # a finite value still loads (sign rules are the decision's to check)
    path.write_text("\n".join(lines) + "\n")
    assert Solution.load(folder).prices["worker_load"].loc[(0, 1)] == 0.0


def test_infinite_numbers_and_float32_round_trip(tmp_path):
    """A gap against a bound of 0 is infinite (relative_gap's documented value), not unknown;
    float32 prices come back as the same float32 numbers; an integer beyond int64 is refused on
    saving, not on loading."""
    import numpy as np
    import pandas as pd

    from servopt.core.errors import InvalidInstanceError
    from servopt.core.solution import Solution, relative_gap

    price = pd.Series(np.array([0.1, 1 / 3], dtype=np.float32), index=pd.Index([0, 1], name="i"))
    saved = Solution(status="time_limit", objective=5.0, bound=0.0, gap=relative_gap(5.0, 0.0),
                     wall_s=1.0, prices={"p": price})
    assert saved.gap == float("inf")  # 5 against a bound of 0
    back = Solution.load(saved.save(tmp_path / "a"))
    assert back.gap == float("inf") and back.bound == 0.0
    assert back.prices["p"].dtype == np.float32
    assert back.prices["p"].to_numpy().tobytes() == price.to_numpy().tobytes()
    below = Solution(status="optimal", objective=-float("inf"), bound=float("nan"), gap=float("nan"),
                     wall_s=0.0)
    again = Solution.load(below.save(tmp_path / "b"))
    assert again.objective == -float("inf") and np.isnan(again.bound)
    huge = Solution(status="optimal", objective=1.0, bound=1.0, gap=0.0, wall_s=0.0,
                    decisions={"x": pd.Series([2**70, 1], dtype=object)})
    with pytest.raises(InvalidInstanceError, match="beyond 64 bits"):
        huge.save(tmp_path / "c")


def test_a_loaded_epoch_lp_builds_the_same_router_as_the_solve(tmp_path):
    # closes: save dropped info["lp"], so a solve_model(build_epoch(relax=True)) LP (relaxed
    # False: the model itself is the LP) was refused by BidPrice.from_solution after loading
    from servopt.models import decode_routing as dm
    from servopt.solvers import decode_routing as rules_dr
    from servopt.solvers import exact

    workers, horizon = 4, 6
    base = np.linspace(60_000, 67_000, workers)[:, None] * (0.98 ** np.arange(horizon))[None, :]
    profile = ((1100 + np.arange(horizon)) * 0.99 ** np.arange(horizon))[None, :]
    epoch = dm.Epoch(base_load=base, profile=profile, demand=[9], kv_need=[1101],
                     free_slots=np.full(workers, 20.0), free_kv=np.full(workers, 60_000.0),
                     ms_per_kv_token=1e-4, discount=0.8)
    solved = exact.solve_model(dm.build_epoch(epoch, relax=True))
    assert solved.info["lp"] is True and solved.relaxed is False
    loaded = Solution.load(solved.save(tmp_path / "epoch"))
    assert loaded.info["lp"] is True and loaded.info["bound_kind"] == solved.info["bound_kind"]
    direct, again = (rules_dr.BidPrice.from_solution(s) for s in (solved, loaded))
    for name in ("worker_load", "slots", "kv_memory"):
        pd.testing.assert_series_equal(loaded.prices[name].sort_index(), solved.prices[name].sort_index(),
                                       check_exact=False, rtol=1e-12, check_names=False)
    for mine, theirs in zip(direct.fixed, again.fixed, strict=True):  # the rule's fixed prices
        np.testing.assert_allclose(theirs, mine, rtol=1e-12)


@pytest.mark.parametrize("field, value", [("lp", "yes"), ("bound_kind", "guess")])
def test_a_saved_lp_flag_or_bound_kind_of_the_wrong_kind_is_refused(tmp_path, field, value):
    folder = servopt.solve(ci.generate(requests=40, objects=8, seed=0), relax=True).save(tmp_path / "s")
    head = json.loads((folder / "solution.json").read_text())
    head[field] = value
    (folder / "solution.json").write_text(json.dumps(head))
    with pytest.raises(InvalidInstanceError, match=field):
        Solution.load(folder)
