"""Paired-seed comparison of the batch scheduling rules against MC-SF, from a bench CSV.

Run from the repository root after ``servopt bench --case batch_scheduling_full ...``::

    python benchmarks/batch_scheduling_paired.py benchmarks/results/batch_scheduling_full.csv \
        [--out benchmarks/results/batch_scheduling_paired.md]

For every parameter set and method: mean latency (rounds), cost / bound and cost / best
schedule found (the best method on the same instance), means over seeds,
and the per-seed relative difference of total latency against MC-SF on the same instance
(mean, min, max; negative = better than MC-SF), plus preemptions per run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from servopt.benchmarks.report import require_checkout, write_md


def paired(frame: pd.DataFrame, reference: str = "mcsf") -> pd.DataFrame:
    """One row per (params, method): ratios to the bound and paired differences to MC-SF."""
    ok = frame[frame["status"] == "ok"].copy()
    ref = ok[ok["method"] == reference][["params", "seed", "cost"]].rename(
        columns={"cost": "ref_cost"})
    ok = ok.merge(ref, on=["params", "seed"], how="inner")
    ok["best"] = ok.groupby(["params", "seed"])["cost"].transform("min")
    ok["vs_ref"] = ok["cost"] / ok["ref_cost"] - 1.0
    ok["over_bound"] = ok["cost"] / ok["bound"]
    rows = []
    for (params, method), group in ok.groupby(["params", "method"], sort=False):
        p = json.loads(params)
        rows.append({
            "setting": ", ".join(f"{k}={v}" for k, v in p.items() if k != "lengths"),
            "method": method,
            "seeds": len(group),
            "mean_latency": group["mean_latency"].mean(),
            "cost/bound": group["over_bound"].mean(),
            "bound_kind": group["bound_kind"].iloc[0],
            "cost/best": (group["cost"] / group["best"]).mean(),
            f"vs_{reference}_mean": group["vs_ref"].mean(),
            f"vs_{reference}_min": group["vs_ref"].min(),
            f"vs_{reference}_max": group["vs_ref"].max(),
            "preemptions": group["preemptions"].mean(),
        })
    return pd.DataFrame(rows)


def markdown(frame: pd.DataFrame) -> str:
    def cell(v: object) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |"
              for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="+")
    parser.add_argument("--out", default="benchmarks/results/batch_scheduling_paired.md")
    args = parser.parse_args()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)  # before the work, not after it
    frame = pd.concat([pd.read_csv(p) for p in args.csv], ignore_index=True)
    table = paired(frame)
    text = ["# batch_scheduling: paired seeds against MC-SF", "",
            f"Regenerate with `python benchmarks/batch_scheduling_paired.py {' '.join(args.csv)}`.",
            "vs_mcsf = total latency / MC-SF's total latency on the same instance - 1 (negative "
            "is better); cost/bound = total latency / the bound (lp_relaxation or, where the "
            "model is too large, lower_bound = sum of output lengths); cost/best = total "
            "latency / the best method's on the same instance.", "", markdown(table)]
    write_md(Path(args.out), "\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    require_checkout(__file__)
    main()
