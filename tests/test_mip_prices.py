"""A MIP's prices (the LP with the integers fixed at the incumbent) mean what they say (R42 F1, F2).

F1: expert placement's ``demand`` and ``link`` prices of a MIP solve are the dispatch LP's of the
incumbent placement. With y fixed at 1 the link row ``f <= w y`` bound together with the demand
row, and HiGHS put every expert at the bottleneck's price (demand [1, 1, 1, 1] where one more
token on an expert of the idle GPU costs nothing). Expected values come from hand calculation and
from finite differences of the exact optimum (one more token on an expert, re-solved), not from
the price code.

F2: a row none of whose columns is free once the integers are fixed (decode routing's
``assign[i]``, a user's pin on x, expert placement's ``slots``/``placed``) read 0 whatever it
cost; it is now NaN (no price), named in ``info["prices_note"]``, and the consumers cope (top
prices, the CLI, Solution save/load).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyomo.environ as pyo
import pytest

import servopt
from servopt.core import InvalidInstanceError, Solution
from servopt.instances import expert_placement as ep
from servopt.instances import library
from servopt.models import decode_routing as dr_model
from servopt.models import expert_placement as model
from servopt.solvers import exact


def _inst(loads, slots=2, gpus=2, speed=None):
    kw = {} if speed is None else {"gpu_speed": np.asarray(speed, dtype=float)}
    return ep.Instance(loads=np.asarray(loads, dtype=float), num_nodes=1, gpus_per_node=gpus,
                       slots_per_gpu=slots, **kw)


def _finite_difference(loads, delta=1.0, **kw):
    """d(optimum)/d(load of expert e) for each (layer, expert): the exact MILP re-solved with
    ``delta`` more tokens on that expert (a placement free to change)."""
    loads = np.asarray(loads, dtype=float)
    base = servopt.solve(_inst(loads, **kw), mip_gap=0).objective
    out = np.zeros_like(loads)
    for l, e in np.ndindex(loads.shape):
        more = loads.copy()
        more[l, e] += delta
        out[l, e] = (servopt.solve(_inst(more, **kw), mip_gap=0).objective - base) / delta
    return out


def _placement(solution, inst):
    """phy2log of a MIP solution's y."""
    L, G, S = inst.num_layers, inst.num_gpus, inst.slots_per_gpu
    phy = -np.ones((L, G * S), dtype=int)
    used = np.zeros((L, G), dtype=int)
    for (l, e, g), v in solution.decisions["y"].items():
        if v > 0.5:
            phy[l, g * S + used[l, g]] = e
            used[l, g] += 1
    return phy


def _demand(solution, shape):
    return solution.prices["demand"].sort_index().to_numpy().reshape(shape)


# -- F1: hand values -------------------------------------------------------------------------
HAND = [1.0, 1.0, 0.0, 0.0]  # {0, 1} on GPU 0 (700 tokens, the bottleneck), {2, 3} on GPU 1 (300)


@pytest.mark.parametrize("backend", ["highs", "pyomo"])
def test_idle_gpu_experts_cost_nothing(backend):
    """R42's instance by hand: {0, 1} on GPU 0 (700 tokens, the makespan), {2, 3} on GPU 1 (300):
    one more token on expert 2 or 3 leaves 700, on 0 or 1 the incumbent's dispatch costs one
    token (was demand [1, 1, 1, 1], link 1 for the replicas on the idle GPU). (The MILP's own
    optimum does not grow with expert 1 either: 101 tokens swap with expert 2's 100; the
    unique-placement variant below has the finite differences.)"""
    loads = [[600.0, 100.0, 100.0, 200.0]]
    sol = servopt.solve(_inst(loads), backend=backend)
    assert sol.objective == pytest.approx(700.0)
    np.testing.assert_allclose(_demand(sol, (1, 4)), [HAND], atol=1e-9)
    lp = servopt.solve(_inst(loads), placement=_placement(sol, _inst(loads)))
    np.testing.assert_allclose(_demand(lp, (1, 4)), [HAND], atol=1e-9)
    np.testing.assert_allclose(sol.prices["gpu_load"].sort_index(), [1.0, 0.0], atol=1e-9)
    link = sol.prices["link"]
    # placed replicas: 0 (such a replica may take any share of its expert's tokens)
    for key in [(0, 0, 0), (0, 1, 0), (0, 2, 1), (0, 3, 1)]:
        assert link[key] == pytest.approx(0.0, abs=1e-9)
    # absent replicas: lambda_e - pi_g where positive, by hand: experts 0, 1 on the idle GPU 1
    assert link[(0, 0, 1)] == pytest.approx(1.0) and link[(0, 1, 1)] == pytest.approx(1.0)
    assert link[(0, 2, 0)] == pytest.approx(0.0, abs=1e-9)
    assert link[(0, 3, 0)] == pytest.approx(0.0, abs=1e-9)


def test_clone_path_prices_as_in_place():
    """The clone path (used when Pyomo's persistent HiGHS internals are not there) prices alike."""
    m = model.build(_inst([[600.0, 100.0, 100.0, 200.0]]))
    sol = exact.solve_model(m, decision="expert_placement")
    prices, skipped = exact._fixed_integer_prices(m, "min")
    assert skipped is None
    for name, series in sol.prices.items():
        pd.testing.assert_series_equal(prices[name].sort_index(), series.sort_index(),
                                       check_exact=False, atol=1e-9)
    np.testing.assert_allclose(prices["demand"].sort_index(), HAND, atol=1e-9)


# instances whose optimal placement is unique with a margin above one token, and whose dispatch
# is not at a kink (finite differences of a min over placements are then the incumbent's duals)
@pytest.mark.parametrize("loads, kw, hand", [
    # {0, 1} = 700 against {2, 3} = 350 (next best 750)
    ([[600.0, 100.0, 150.0, 200.0]], {}, [[1.0, 1.0, 0.0, 0.0]]),
    # a hot expert replicated on both GPUs: both at 600, each expert costs half a token
    ([[900.0, 100.0, 100.0, 100.0]], {"slots": 3}, [[0.5] * 4]),
    # unequal speeds [2, 1], one slot each: expert 0 on the fast GPU (250), expert 1 on the slow
    # one (300, the makespan; swapped: 500)
    ([[500.0, 300.0]], {"slots": 1, "speed": [2.0, 1.0]}, [[0.0, 1.0]]),
    # speeds [2, 1], two slots: expert 1 split over both GPUs, 840 tokens / 3 = 280, all linked
    ([[500.0, 300.0, 40.0]], {"speed": [2.0, 1.0]}, [[1 / 3] * 3]),
    # two layers: {2, 1} = 450 against {0, 3} = 420 in layer 1 (next best 520)
    ([[600.0, 100.0, 150.0, 200.0], [300.0, 50.0, 400.0, 120.0]], {},
     [[1.0, 1.0, 0.0, 0.0], [0.0, 1.0, 1.0, 0.0]]),
])
def test_demand_prices_are_finite_differences(loads, kw, hand):
    sol = servopt.solve(_inst(loads, **kw), mip_gap=0)
    shape = np.shape(loads)
    np.testing.assert_allclose(_finite_difference(loads, **kw), hand, atol=1e-6)  # the check
    np.testing.assert_allclose(_demand(sol, shape), hand, atol=1e-7)
    pyomo = servopt.solve(_inst(loads, **kw), mip_gap=0, backend="pyomo")
    np.testing.assert_allclose(_demand(pyomo, shape), hand, atol=1e-7)


def test_generated_instance_matches_dispatch_lp():
    """R42's t1d: ep.generate(seed=0, slots_per_gpu=2): every demand price (12 of 16 read 1.0 where
    the dispatch LP says 0) and every gpu_load price equal the dispatch LP's of the incumbent."""
    inst = ep.generate(seed=0, slots_per_gpu=2)
    sol = servopt.solve(inst)
    lp = servopt.solve(inst, placement=_placement(sol, inst))
    assert lp.objective == pytest.approx(sol.objective, rel=1e-9)
    demand = sol.prices["demand"]
    assert len(demand) == 16
    np.testing.assert_allclose(demand, lp.prices["demand"].reindex(demand.index), atol=1e-7)
    gpu = sol.prices["gpu_load"]
    np.testing.assert_allclose(gpu, lp.prices["gpu_load"].reindex(gpu.index), atol=1e-7)
    # an absent replica's link price: what it would save per token, max(0, lambda_e - pi_g)
    y = sol.decisions["y"]
    link = sol.prices["link"]
    for (l, e, g), v in y.items():
        want = 0.0 if v > 0.5 else max(0.0, demand[(l, e)] - gpu[(l, g)])
        assert link[(l, e, g)] == pytest.approx(want, abs=1e-7), (l, e, g)


def test_expert_bid_price_reads_the_dispatch_prices():
    """BidPrice.from_solution reads gpu_load: a MIP solve gives it the incumbent's dispatch LP's."""
    from servopt.solvers.expert_placement import BidPrice

    inst = ep.generate(seed=0, slots_per_gpu=2)
    sol = servopt.solve(inst)
    rule = BidPrice.from_solution(sol, inst.num_layers, inst.num_gpus)
    lp_rule = BidPrice.from_solution(servopt.solve(inst, placement=_placement(sol, inst)),
                                     inst.num_layers, inst.num_gpus)
    np.testing.assert_allclose(rule.gpu_price, lp_rule.gpu_price, atol=1e-7)


# -- F2: rows over integer variables only ----------------------------------------------------
def test_placement_rows_over_y_have_no_price():
    sol = servopt.solve(_inst([[600.0, 100.0, 100.0, 200.0]]))
    assert sol.prices["slots"].isna().all() and sol.prices["placed"].isna().all()
    note = sol.info["prices_note"]
    assert "slots (2 of 2)" in note and "placed (4 of 4)" in note and "relax=True" in note
    relaxed = servopt.solve(_inst([[600.0, 100.0, 100.0, 200.0]]), relax=True)
    assert np.isfinite(relaxed.prices["slots"]).all() and "prices_note" not in relaxed.info


def _pinned(relax=False):
    m = dr_model.build(library.load("dr_hindsight_8x2"), symmetry=False, relax=relax)
    m.pin = pyo.Constraint(expr=sum(m.x[i, 0] for i in range(8)) == 8)  # all 8 on worker 0
    return m


def test_user_pin_on_integers_is_no_price_not_zero():
    """R42's s4c: a pin that costs 27.5 ms (1495.28 against 1467.76 unpinned) was priced 0."""
    free = exact.solve_model(dr_model.build(library.load("dr_hindsight_8x2"), symmetry=False),
                             decision="decode_routing")
    pinned = exact.solve_model(_pinned(), decision="decode_routing")
    assert pinned.objective - free.objective == pytest.approx(27.52, abs=0.01)
    assert pinned.prices["pin"].isna().all()
    assert "pin (1 of 1)" in pinned.info["prices_note"]
    assert pinned.prices["assign"].isna().all()
    # rows with a free column keep their number
    assert np.isfinite(pinned.prices["step_load"]).all()
    lp = exact.solve_model(_pinned(relax=True), relax=True, decision="decode_routing")
    assert math.isfinite(float(lp.prices["pin"].iloc[0])) and float(lp.prices["pin"].iloc[0]) != 0


def test_clone_path_no_price():
    m = _pinned()
    exact.solve_model(m, decision="decode_routing")
    prices, skipped = exact._fixed_integer_prices(m, "min")
    assert skipped is None
    assert prices["pin"].isna().all() and prices["assign"].isna().all()
    assert np.isfinite(prices["step_load"]).all()


def test_matrix_path_assign_no_price_and_consumers(tmp_path):
    inst = library.load("dr_hindsight_8x2")
    sol = servopt.solve(inst)
    assert sol.info["form"] == "matrix"
    assert sol.prices["assign"].isna().all()
    assert "assign (8 of 8)" in sol.info["prices_note"]
    top = sol.top_prices(5, per_family=True)
    assert "assign" not in set(top["family"]) and np.isfinite(top["price"]).all()
    # save / load keeps the NaN (and the note); an edited-in NaN elsewhere is still refused
    sol.save(tmp_path / "s")
    back = Solution.load(tmp_path / "s")
    assert back.prices["assign"].isna().all()
    assert back.info["prices_note"] == sol.info["prices_note"]
    path = tmp_path / "s" / "prices" / "step_load.csv"
    lines = path.read_text().splitlines()
    lines[1] = ",".join([*lines[1].split(",")[:-1], ""])
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InvalidInstanceError, match="step_load"):
        Solution.load(tmp_path / "s")


def test_cli_lists_no_price_rows(capsys):
    from servopt.cli import main

    assert main(["solve", "dr_hindsight_8x2"]) in (0, None)
    out = capsys.readouterr().out
    assert "= nan" not in out
    assert "no price  assign (8 of 8 rows)" in out and "--relax" in out


def test_a_slack_row_over_integers_keeps_its_zero_price():
    # a row over x only with slack at the incumbent ("at most 7 of the 8 requests on worker 0",
    # which the unpinned optimum meets with room): a small change of its bound changes nothing
    # either way, so its price is 0, a number, on the in-place and clone paths; only a binding
    # such row has no price (the pin above)
    def build():
        m = dr_model.build(library.load("dr_hindsight_8x2"), symmetry=False)
        m.cap = pyo.Constraint(expr=sum(m.x[i, 0] for i in range(8)) <= 7)
        return m

    free = exact.solve_model(dr_model.build(library.load("dr_hindsight_8x2"), symmetry=False),
                             decision="decode_routing")
    m = build()
    sol = exact.solve_model(m, decision="decode_routing")
    on_0 = sum(round(pyo.value(m.x[i, 0])) for i in range(8))
    assert on_0 < 7 and sol.objective == pytest.approx(free.objective)  # slack, costs nothing
    assert sol.prices["cap"].tolist() == [0.0]
    assert "cap" not in sol.info["prices_note"] and "assign (8 of 8)" in sol.info["prices_note"]
    prices, skipped = exact._fixed_integer_prices(m, "min")
    assert skipped is None and prices["cap"].tolist() == [0.0] and prices["assign"].isna().all()


def test_cli_prices_0_prints_no_price_line_either(capsys):
    # R43: --prices 0 asks for no prices, and still got the "no price" paragraph
    from servopt.cli import main

    assert main(["solve", "dr_hindsight_8x2", "--prices", "0"]) in (0, None)
    out = capsys.readouterr().out
    assert "no price" not in out and "largest prices" not in out
