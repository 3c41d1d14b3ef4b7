"""A save refused or interrupted half-way never leaves the old header over new tables (audit R12:
a Ctrl-C after the first price file was replaced loaded as one solution's objective and
decisions with another's prices, no error)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import servopt.core.solution as solution_module
from servopt.core import InvalidInstanceError
from servopt.core.solution import Solution


def _solution(scale: float, slots: bool = True) -> Solution:
    index = pd.Index([0, 1, 2], name="t")
    prices = {"cache_capacity": pd.Series([1.0, 2.0, 3.0], index) * scale}
    if slots:
        prices["slots"] = pd.Series([4.0, 5.0, 6.0], index) * scale
    return Solution(status="optimal", objective=10.0 * scale, bound=10.0 * scale, gap=0.0,
                    wall_s=0.0, prices=prices,
                    decisions={"keep": pd.Series([1.0, 0.0, 1.0], index) * scale})


def test_an_interrupted_save_is_refused_not_mixed(tmp_path, monkeypatch):
    # one price table, as a caching LP has: its new file is complete when the Ctrl-C comes
    first, second = _solution(1.0, slots=False), _solution(2.0, slots=False)
    first.save(tmp_path / "s")
    real = solution_module._labels_digest

    def interrupted(text):  # Ctrl-C right after the first new table is written
        raise KeyboardInterrupt

    monkeypatch.setattr(solution_module, "_labels_digest", interrupted)
    with pytest.raises(KeyboardInterrupt):
        second.save(tmp_path / "s")
    monkeypatch.setattr(solution_module, "_labels_digest", real)
    with pytest.raises(InvalidInstanceError, match=r"no solution\.json: .* refused or interrupted"):
        Solution.load(tmp_path / "s")
    back = Solution.load(second.save(tmp_path / "s"))  # saving again mends it
    assert back.objective == 20.0
    assert np.array_equal(back.prices["cache_capacity"].to_numpy(), [2.0, 4.0, 6.0])


def test_a_refused_save_leaves_the_earlier_files_untouched(tmp_path):
    # a table refused half-way through (its index level is named like the table) is found before
    # anything is written: the earlier save still loads, whole
    first = _solution(1.0)
    first.save(tmp_path / "s")
    bad = _solution(2.0)
    bad.prices["slots"] = bad.prices["slots"].rename_axis("slots")
    with pytest.raises(InvalidInstanceError, match="must differ"):
        bad.save(tmp_path / "s")
    back = Solution.load(tmp_path / "s")
    assert back.objective == 10.0
    assert np.array_equal(back.prices["cache_capacity"].to_numpy(), [1.0, 2.0, 3.0])
    assert np.array_equal(back.prices["slots"].to_numpy(), [4.0, 5.0, 6.0])
