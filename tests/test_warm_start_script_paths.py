"""benchmarks/batch_scheduling_warm_start.py --bracket reads the committed bound table wherever --out is.

It read ``batch_scheduling_bound.csv`` from --out's folder, so ``--bracket --out <elsewhere>/x.md``
raised FileNotFoundError (audit R57 F3) and the table could be regenerated only over the
committed file.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from servopt.benchmarks import batch_scheduling_warm_start as script

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def test_bracket_reads_the_committed_bound_table_not_outs_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # neither the working directory nor --out holds the input
    out = tmp_path / "scratch" / "x.md"
    out.parent.mkdir()
    script.bracket(out)
    written = pd.read_csv(out.with_name("x_bracket.csv"))
    assert out.with_name("x_bracket.md").exists()
    assert not (tmp_path / "scratch" / "batch_scheduling_bound.csv").exists()
    # the rows are the committed bound table's n = 50 and 100 instances, with its best schedules
    bound = pd.read_csv(RESULTS / "batch_scheduling_bound.csv")
    bound = bound[bound.n.isin([50, 100])]
    assert written.n.tolist() == bound.n.astype(int).tolist()
    assert written.seed.tolist() == bound.seed.astype(int).tolist()
    assert written.best.tolist() == bound.best.tolist()
    # a feasible schedule cannot beat the committed lower bound
    assert (written.warm_start >= written.lower).all()
