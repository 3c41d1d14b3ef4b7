"""Caching benchmark summary: closed gap vs LRU per setting and the issue's targets.

Run after the full case (``servopt bench --case caching_full --out benchmarks/results --name
caching_full --no-plots --jobs 2``): ``python benchmarks/caching_summary.py``. Reads
``benchmarks/results/caching_full.csv``, the foresight references ``caching_references_*.csv``
and the LP bound's solve times ``caching_lp_time.csv`` (``python benchmarks/caching_lp_time.py``,
each solve run alone; its bounds must equal the full run's), all committed, and writes
``caching_summary.md`` and ``.csv`` next to them.

``closed`` = (LRU cost - method cost) / (LRU cost - LP bound): the share of LRU's gap to the
offline bound a method closes. ``static`` is the best fixed set for the true popularity.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from servopt.benchmarks.caching import closed_gap, setting_label
from servopt.benchmarks.report import markdown_table, require_checkout, write_md
from servopt.core.errors import InvalidInstanceError

SHOWN = ("lru", "gdsf", "cost_freq_size", "bid_price_static", "bid_price", "bid_price_window",
         "static", "belady_size", "lp_schedule")


def setting(params: str) -> dict:
    p = json.loads(params)
    return {"workload": setting_label(p), "cache": p["cache_share"]}


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for params, group in frame.groupby("params", sort=False):
        cost = group.set_index("method")["cost"]
        bound = float(group["bound"].dropna().iloc[0])
        lru = float(cost["lru"])
        row = setting(params) | {"bound": bound, "lru_gap": lru / bound - 1}
        for method in SHOWN:
            if method in cost:
                row[f"closed:{method}"] = closed_gap(float(cost[method]), lru, bound)
        bid = float(cost["bid_price"])
        row["bid_vs_gdsf"] = bid / float(cost["gdsf"]) - 1
        row["bid_vs_static"] = bid / float(cost["static"]) - 1
        row["lp_schedule_gap"] = (float(cost["lp_schedule"]) / bound - 1 if "lp_schedule" in cost
                                  else float("nan"))
        no_price = closed_gap(float(cost["cost_freq_size"]), lru, bound)
        row["price_adds"] = closed_gap(bid, lru, bound) - no_price
        if "bid_price_window" in cost:
            row["window_adds"] = closed_gap(float(cost["bid_price_window"]), lru, bound) - no_price
        rows.append(row)
    return pd.DataFrame(rows)


REFERENCES = {"multimodal": ("phase_static", "count_cost", "kept_rare"),
              "mooncake": ("feature_table", "oracle_new", "never_reused")}


def add_references(summary: pd.DataFrame, folder: Path) -> pd.DataFrame:
    """Columns from ``caching_references_*.csv`` (``python benchmarks/caching_references.py``):
    foresight references per setting, when that script has been run."""
    out = summary.copy()
    for workload, columns in REFERENCES.items():
        path = folder / f"caching_references_{workload}.csv"
        if not path.exists():
            continue
        ref = pd.read_csv(path)
        if workload == "multimodal":
            ref["workload"] = [f"multimodal skew={s:g}" for s in ref["skew"]]  # as the instance names it
        else:
            ref["workload"] = [f"mooncake cost={c}" for c in ref["cost"]]
        ref = ref.set_index(["workload", "cache"])
        index = pd.MultiIndex.from_frame(out[["workload", "cache"]])
        for column in columns:
            name = column if column == "kept_rare" else f"closed:{column}"
            values = ref[column].reindex(index).to_numpy()
            out[name] = values if name not in out else np.where(np.isnan(values), out[name], values)
    return out


def targets(summary: pd.DataFrame) -> list[str]:
    mm = summary[summary["workload"].str.startswith("multimodal")]
    moon = summary[summary["workload"].str.startswith("mooncake")]
    binding = moon[moon["lru_gap"] > 0.05]
    low_skew = mm[mm["workload"].str.extract(r"skew=([\d.]+)")[0].astype(float) <= 0.9]

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    notes = reference_notes(mm, binding)

    lines = [
        f"- multimodal: bid_price at or below GDSF in every setting: "
        f"{verdict(bool((mm['bid_vs_gdsf'] <= 1e-9).all()))} (worst bid/GDSF - 1 = "
        f"{mm['bid_vs_gdsf'].max():+.2%})",
        f"- multimodal: closes >= 40% of LRU's gap: "
        f"{verdict(bool((mm['closed:bid_price'] >= 0.4).all()))} (min "
        f"{mm['closed:bid_price'].min():.0%}, median {mm['closed:bid_price'].median():.0%}, "
        f"{int((mm['closed:bid_price'] >= 0.4).sum())}/{len(mm)} settings)",
        *notes[0],
        f"- multimodal skew <= 0.9: within 10% of the static reference: "
        f"{verdict(bool((low_skew['bid_vs_static'] <= 0.1).all()))} (worst "
        f"{low_skew['bid_vs_static'].max():+.1%})",
        f"- mooncake, capacity binding (LRU gap > 5%): closes >= 25% of LRU's gap: "
        f"{verdict(bool((binding['closed:bid_price'] >= 0.25).all()))} (min "
        f"{binding['closed:bid_price'].min():.0%}, max {binding['closed:bid_price'].max():.0%})",
        *notes[1],
        f"- mooncake: never worse than LRU: "
        f"{verdict(bool((moon['closed:bid_price'] >= -1e-9).all()))} (min closed "
        f"{moon['closed:bid_price'].min():+.1%})",
    ]
    return lines


def reference_notes(mm: pd.DataFrame, binding: pd.DataFrame) -> tuple[list[str], list[str]]:
    """Where a target is missed, what the foresight references close there (sub-bullets)."""
    multimodal: list[str] = []
    mooncake: list[str] = []
    for r in mm[mm["closed:bid_price"] < 0.4].to_dict("records"):
        if "closed:phase_static" in r:
            multimodal.append(
                f"  - {r['workload']}, cache {r['cache']:g}: bid_price {r['closed:bid_price']:.1%}, "
                f"count_cost {r['closed:count_cost']:.1%}, phase_static "
                f"{r['closed:phase_static']:.1%} ({r['kept_rare']:.0%} of its bytes expected < 2 "
                "requests per phase)")
    for r in binding[binding["closed:bid_price"] < 0.25].to_dict("records"):
        if "closed:oracle_new" in r:
            mooncake.append(
                f"  - {r['workload']}, cache {r['cache']:g}: bid_price {r['closed:bid_price']:.1%}, "
                f"feature_table {r['closed:feature_table']:.1%}, oracle_new "
                f"{r['closed:oracle_new']:.1%}, static {r['closed:static']:.1%}")
    return multimodal, mooncake


BOUND_RTOL = 1e-6  # relative difference allowed between the full run's bound and the timed LP's


def lp_times(path: Path, frame: pd.DataFrame) -> list[float]:
    """Wall seconds of the LP bound per setting of ``frame`` (in its order), from ``path``
    (``caching_lp_time.csv``: each solve run alone). A setting the file lacks, or whose bound there
    differs from the full run's (the LP changed since it was timed), is an
    :class:`InvalidInstanceError` naming the file and the setting."""
    if not path.is_file():
        raise InvalidInstanceError(f"{path}: no such file; run python benchmarks/caching_lp_time.py "
                                   "(it times the LP bound of every caching_full setting)")
    lp = pd.read_csv(path)
    by_setting: dict[tuple[str, float], tuple[float, float]] = {}
    for r in lp.to_dict("records"):
        params = {"workload": r["workload"], "skew": r["skew"]}
        if isinstance(r.get("cost"), str):
            params["cost"] = r["cost"]
        key = (setting_label(params), float(r["cache_share"]))
        by_setting[key] = (float(r["wall_s"]), float(r["bound"]))
    seconds = []
    for params, group in frame.groupby("params", sort=False):
        key = (setting_label(json.loads(params)), float(json.loads(params)["cache_share"]))
        if key not in by_setting:
            raise InvalidInstanceError(f"{path}: no row for {key[0]}, cache_share {key[1]:g}; rerun "
                                       "python benchmarks/caching_lp_time.py")
        wall, bound = by_setting[key]
        full = float(group["bound"].dropna().iloc[0])
        if abs(bound - full) > BOUND_RTOL * abs(full):
            raise InvalidInstanceError(f"{path}: bound {bound:.8g} for {key[0]}, cache_share {key[1]:g} "
                                       f"differs from caching_full.csv's {full:.8g}: the times are of "
                                       "another LP; rerun python benchmarks/caching_lp_time.py")
        seconds.append(wall)
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--results", default="benchmarks/results")
    args = parser.parse_args(argv)
    folder = Path(args.results)
    frame = pd.read_csv(folder / "caching_full.csv")
    frame = frame[frame["case"] == "caching_full"]
    summary = add_references(summarise(frame), folder)
    summary["lp_s"] = lp_times(folder / "caching_lp_time.csv", frame)
    summary.to_csv(folder / "caching_summary.csv", index=False)
    shown = summary.rename(columns=lambda c: c.replace("closed:", ""))
    wall = frame.groupby("method")["wall_s"].median().rename("median wall_s").reset_index()
    text = [
        "# Caching benchmark summary (case `caching_full`)",
        "",
        "Commands: `servopt bench --case caching_full --out benchmarks/results --name "
        "caching_full --no-plots --jobs 2`, then `python benchmarks/caching_summary.py`.",
        "",
        "Columns under each method: share of LRU's gap to the LP bound it closes (1 = reaches "
        "the bound, negative = worse than LRU). `lru_gap`: LRU's gap to the bound. "
        "`bid_vs_gdsf` / `bid_vs_static`: bid-price cost over GDSF's / the static reference's, "
        "minus 1. `price_adds`: closed share of `bid_price` minus that of the same rule without a "
        "price (`cost_freq_size`); `window_adds`: the same for `bid_price_window` (the "
        "sliding-window price at face value). `lp_schedule_gap`: the rounded LP schedule (an achievable "
        "offline upper bound) over the bound, minus 1. From `caching_references.md` (foresight "
        "references, `python benchmarks/caching_references.py`): `phase_static` (best fixed set "
        "per popularity phase with the true probabilities), `count_cost` (online: cost x "
        "request count / size, perfect counts), `kept_rare` (share of phase_static's bytes in "
        "objects expected < 2 requests per phase); on Mooncake `feature_table` (admission by a "
        "reuse table over prefix features fitted in hindsight), `oracle_new` (first-seen blocks "
        "admitted only if reused within 10 cache-fulls), `never_reused` (hindsight bypass of "
        "blocks never requested again).",
        "",
        "## Targets (issue 7)",
        "",
        *targets(summary),
        "",
        "## Per setting",
        "",
        markdown_table(shown, floatfmt=".3g"),
        "",
        "## Median wall time per method (s; shared 2-core machine, noisy)",
        "",
        markdown_table(wall, floatfmt=".3g"),
        "",
    ]
    lp = summary["lp_s"]
    text += ["LP bound (reduced flow network, HiGHS dual simplex with Devex pricing) wall time, "
             f"column `lp_s`: median {lp.median():.1f} s, max {lp.max():.1f} s over {len(lp)} "
             f"instances; {int((lp < 60).sum())}/{len(lp)} under a minute. Read from "
             "`caching_lp_time.csv` (`python benchmarks/caching_lp_time.py`: each solve run alone, "
             "its bounds equal to this run's), not timed inside the full run.",
             ""]
    write_md(folder / "caching_summary.md", "\n".join(text))
    print("\n".join(text))


if __name__ == "__main__":
    require_checkout(__file__)
    np.seterr(all="ignore")
    try:
        main()
    except InvalidInstanceError as exc:
        sys.exit(f"error: {exc}")
