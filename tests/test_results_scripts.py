"""Result scripts regenerate their committed files: capacity_report's CLI, capacity_holdout's
reading, caching_summary's LP times and capacity_drift_variance's rate unit."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from servopt.benchmarks import capacity_report
from servopt.core.errors import InvalidInstanceError

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


# --- capacity_report ---------------------------------------------------------------------------

def test_capacity_report_help_prints_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:  # the old script opened a file named '--help'
        capacity_report.main(["--help"])
    assert stop.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_capacity_report_missing_file_is_named(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    assert capacity_report.main([str(path)]) == 2
    assert f"{path}: no such file" in capsys.readouterr().err


def test_capacity_report_missing_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("params,method,cost\n\"{}\",plan,3\n")
    with pytest.raises(InvalidInstanceError, match="bound, status missing"):
        capacity_report.read_results(path)


def test_capacity_report_table_by_hand(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    cell = json.dumps({"workload": "code", "regime": "compute"})
    pd.DataFrame({"params": [cell, cell], "method": ["plan", "utilisation"], "cost": [4.0, 2.0],
                  "bound": [3.0, 3.0], "status": ["ok", "unstable"]}).to_csv(tmp_path / "r.csv", index=False)
    assert capacity_report.main([str(tmp_path / "r.csv")]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "| cell | simulated minimum | plan | utilisation |", "|---|---|---|---|",
        "| code/compute | 3 | 4 | 2 (unstable) |"]
