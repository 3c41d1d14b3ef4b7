"""Result scripts regenerate their committed files: capacity_report's CLI, capacity_holdout's
reading, caching_summary's LP times and capacity_drift_variance's rate unit."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from servopt.benchmarks import capacity_holdout, capacity_report
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


# --- capacity_holdout --------------------------------------------------------------------------

def test_holdout_reading_matches_the_hand_written_one() -> None:
    """The figures the committed reading quoted before the script wrote it (read off the table)."""
    text = capacity_holdout.reading(pd.read_csv(RESULTS / "capacity_holdout.csv"))
    assert text.startswith("## Reading\n")
    for figure in ("within -2.2% .. +1.4%", "M = 300k", "0.16 predicted vs 0.10 simulated",
                   "**optimistic by 9-19%**", "1.8-2.3 per request", "49-72% of the work",
                   "predicts 0.69-0.77 per request", "18-20% recomputation", "its 10% headroom",
                   "follows the simulated fall"):
        assert figure in text, figure


def test_holdout_reading_follows_the_numbers() -> None:
    frame = pd.DataFrame({
        "workload": ["conversation", "conversation", "long_output", "long_output"],
        "kv_tokens": [24_000, 48_000, 30_000, 80_000], "error": [0.01, -0.03, -0.02, -0.05],
        "preemptions_per_request": [0.2, 0.3, 1.0, 2.0], "predicted_preemptions": [0.25, 0.2, 0.5, 0.6],
        "recompute_fraction": [0.1, 0.1, 0.3, 0.4], "predicted_recompute": [0.1, 0.1, 0.2, 0.2]})
    text = capacity_holdout.reading(frame)
    assert "within -3.0% .. +1.0%" in text
    assert "under-counts them: 0.20 predicted vs 0.30 simulated" in text
    assert "do not fall steadily" in text
    assert "**pessimistic by 2-5%**" in text
    assert "headroom" not in text  # 5% off is inside the 10% headroom
