"""``Solution.save`` refuses a table name ``load`` would refuse, before it writes anything (R44 F3).

A name is a file name (``prices/<name>.csv``): ``../../escaped`` wrote outside the folder, and
``my-pin`` (a legal Pyomo name, for a row a user adds as the README shows) saved a solution that
``load`` then refused. Truth: ``load``'s rule (letters, digits, _, parts joined by single dots
as in a Block's ``blk.pin``) and the files on disk."""

from __future__ import annotations

import pandas as pd
import pytest

from servopt.core import InvalidInstanceError, Solution


def _solution(prices: tuple[str, ...] = ("cap",), decisions: tuple[str, ...] = ("x",),
              objective: float = 10.0) -> Solution:
    index = pd.Index([0, 1], name="worker")
    return Solution(status="time_limit", objective=objective, bound=8.0,
                    gap=(objective - 8.0) / 8.0, wall_s=0.5,
                    prices={p: pd.Series([1.5, 2.0], index=index, name=p) for p in prices},
                    decisions={d: pd.Series([3.0, 4.0], index=index, name=d) for d in decisions})


def _files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize(("kind", "name"), [("prices", "../../escaped"), ("prices", "my-pin"),
                                            ("decisions", "../x"), ("prices", "b[1].pin"),
                                            ("prices", "blk..pin"), ("prices", ".pin"),
                                            ("decisions", "x."), ("decisions", "")])
def test_a_name_load_would_refuse_is_refused_and_nothing_is_written(tmp_path, kind, name):
    names = {kind: ("cap" if kind == "prices" else "x", name)}
    with pytest.raises(InvalidInstanceError, match=rf"Solution.save: {kind} name .* is not a plain "
                                                   r"name \(letters, digits, _, "):
        _solution(**names).save(tmp_path / "a" / "b")
    assert _files(tmp_path) == []  # not even the folder


def test_a_refused_save_leaves_the_earlier_one_whole(tmp_path):
    _solution().save(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(InvalidInstanceError, match="'my-pin' is not a plain name"):
        _solution(prices=("cap", "my-pin"), objective=12.0).save(tmp_path)
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert Solution.load(tmp_path).objective == 10.0


def test_plain_names_still_round_trip(tmp_path):
    _solution(prices=("cap", "step_load_2"), decisions=("x", "Y9")).save(tmp_path)
    loaded = Solution.load(tmp_path)
    assert sorted(loaded.prices) == ["cap", "step_load_2"] and sorted(loaded.decisions) == ["Y9", "x"]


def test_a_block_row_of_a_solved_model_saves_and_loads(tmp_path):
    # exact names a Block's row blk.pin (f8069df): a solve of such a model saves (R48 F1), as
    # blk.pin.csv inside prices/, and reads back with its hand-worked price (y >= 3 costs 2)
    import pyomo.environ as pyo

    from servopt.solvers.exact import _pyomo_values, solve_model

    m = pyo.ConcreteModel()
    m.x = pyo.Var(within=pyo.NonNegativeReals)
    m.blk = pyo.Block()
    m.blk.x = pyo.Var(within=pyo.NonNegativeReals)
    m.pin = pyo.Constraint(expr=m.x >= 1)
    m.blk.pin = pyo.Constraint(expr=m.blk.x >= 3)
    m.obj = pyo.Objective(expr=m.x + 2 * m.blk.x, sense=pyo.minimize)
    solution = solve_model(m, relax=True)
    solution.decisions = _pyomo_values(m)  # (as solve does for a plug-in without ``decisions``)
    solution.save(tmp_path)
    assert (tmp_path / "prices" / "blk.pin.csv").is_file()
    loaded = Solution.load(tmp_path)
    assert sorted(loaded.prices) == ["blk.pin", "pin"] and sorted(loaded.decisions) == ["blk.x", "x"]
    assert loaded.prices["blk.pin"].tolist() == pytest.approx([2.0])
