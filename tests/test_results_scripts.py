"""Result scripts regenerate their committed files: capacity_report's CLI, capacity_holdout's
reading, caching_summary's LP times and capacity_drift_variance's rate unit.

The scripts read copies of the committed CSVs of benchmarks/results from the source tree (a clone
or the unpacked sdist, as README "Tests and CI" says); an installed wheel does not carry them."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from servopt.benchmarks import caching_summary, capacity_drift_variance, capacity_holdout, capacity_report
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


# --- caching_summary ---------------------------------------------------------------------------

def _results_copy(tmp_path: Path) -> Path:
    for name in ("caching_full.csv", "caching_lp_time.csv", "caching_references_mooncake.csv",
                 "caching_references_multimodal.csv"):
        shutil.copy(RESULTS / name, tmp_path / name)
    return tmp_path


def test_caching_summary_lp_times_from_the_committed_file(tmp_path: Path) -> None:
    folder = _results_copy(tmp_path)
    caching_summary.main(["--results", str(folder)])  # no runner cache there: the old code left lp_s empty
    summary = pd.read_csv(folder / "caching_summary.csv")
    # caching_lp_time.csv's rows, read by hand: multimodal skew 0.6 cache 0.01, mooncake position 0.2
    assert summary["lp_s"].iloc[0] == pytest.approx(10.65035491999879)
    assert summary["lp_s"].iloc[-1] == pytest.approx(5.8602191009995295)
    # caching_lp_time.md (the timing script's own summary): median 10.9 s, max 14.5 s, 21 of 21
    assert "median 10.9 s, max 14.5 s over 21 instances; 21/21 under a minute" in (
        folder / "caching_summary.md").read_text()


def test_caching_summary_refuses_times_of_another_lp(tmp_path: Path) -> None:
    folder = _results_copy(tmp_path)
    lp = pd.read_csv(folder / "caching_lp_time.csv")
    lp.loc[3, "bound"] *= 1.01
    lp.to_csv(folder / "caching_lp_time.csv", index=False)
    differs = re.escape("multimodal skew=0.9, cache_share 0.01 differs")
    with pytest.raises(InvalidInstanceError, match=differs):
        caching_summary.main(["--results", str(folder)])
    (folder / "caching_lp_time.csv").unlink()
    with pytest.raises(InvalidInstanceError, match=re.escape("caching_lp_time.csv: no such file")):
        caching_summary.main(["--results", str(folder)])


# --- capacity_drift_variance -------------------------------------------------------------------

def test_drift_variance_rates_do_not_follow_the_module_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rates' unit is measured on a fixed 8000 queued requests (a406ef5 moved the module's
    default from 3000 to 8000 and silently changed every committed row)."""
    seen: list[int] = []

    def saturated(instance: object, *, n_requests: int = 3000, seed: int = 0, seeds: int = 1) -> float:
        seen.append(n_requests)
        return 10.0

    runs: list[tuple[float, int]] = []

    def one_run(instance: object, rate: float, n_requests: int, seed: int, warmup: float) -> dict:
        runs.append((rate, n_requests))
        return {"drift": float(seed), "raw": seed / 2}

    monkeypatch.setattr(capacity_drift_variance.bench, "saturated_throughput", saturated)
    monkeypatch.setattr(capacity_drift_variance.bench, "_one_run", one_run)
    frame = capacity_drift_variance.measure(2, 0, (1.05,))
    assert seen == [8000, 8000]
    assert runs == [(10.5, 3000)] * 4
    assert frame["paired_diff"].tolist() == [0.25, 0.25]  # seeds 0, 1: drift - raw = 0, 0.5
