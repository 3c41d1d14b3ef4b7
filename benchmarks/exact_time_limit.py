"""Does ``solve`` honour a time limit? Wall time of whole calls against the limit.

Run: ``python -m servopt.benchmarks.exact_time_limit [--before COMMIT]`` (writes
``benchmarks/results/exact_time_limit.md`` and ``.csv``; about 10 min with ``--before``).

Two tables:

1. ``servopt.solve(instance, time_limit=L)`` as a user calls it, on models that run far past
   the limit: the batch-scheduling hindsight IP at n = 100, 200, 400 (``generate(n=n, seed=0)``,
   the library's ``bs_offline_100`` recipe scaled; KV memory binds: it is 6x the mean peak
   need) at L = 5 and 10 s, and one IP each of caching (``cache_mm_5k``), decode routing
   (``dr_hindsight_200x4``) and expert placement (``ep_small_preset``) from the library, at
   L = 10 s. Each run is a fresh process (its peak memory is the process's); with ``--before``
   every run is repeated on the code of that commit (``git archive``), the same script and
   instances, in the same session.
2. A Cornuejols-Dawande market split MIP through the Pyomo path (``solve_model``): tiny, out of
   reach of branch and bound, so every limit expires.
3. The rates behind ``servopt.models.batch_scheduling.time_estimate`` (``BUILD_S_PER_NONZERO``,
   ``SETUP_S_PER_NONZERO``): per batch IP of table 1, the seconds of ``build_matrix_model`` and
   of HiGHS's run on it from the warm start (presolve off, as ``solve`` runs it) on a 0.01 s
   limit (its set-up) and on a 2 s limit (set-up and root: HiGHS reads its clock again only
   after them), each per nonzero, in a fresh process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyomo.environ as pyo

from servopt.benchmarks.report import markdown_table, require_checkout, write_md
from servopt.solvers import exact

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent

# (case, how to make the instance, time limits in seconds)
CASES: list[tuple[str, str, tuple[float, ...]]] = [
    ("batch n=100", "batch:100", (5.0, 10.0)),
    ("batch n=200", "batch:200", (5.0, 10.0)),
    ("batch n=400", "batch:400", (5.0, 10.0)),
    ("caching IP cache_mm_5k", "library:cache_mm_5k", (10.0,)),
    ("decode routing IP dr_hindsight_200x4", "library:dr_hindsight_200x4", (10.0,)),
    ("expert placement MIP ep_small_preset", "library:ep_small_preset", (10.0,)),
]

# run in a fresh interpreter: ROOT ("-": the installed code), MAKE ("batch:N" or "library:NAME"), LIMIT
CHILD = r"""
import json, math, resource, sys, time
from importlib.util import spec_from_file_location
ROOT, MAKE, LIMIT = sys.argv[1], sys.argv[2], float(sys.argv[3])
if ROOT != "-":  # the servopt packages from ROOT (pyproject's package-dir layout)
    DIRS = {"servopt": "servopt", "servopt.benchmarks": "benchmarks", "servopt.instances": "instances",
            "servopt.models": "models", "servopt.solvers": "solvers"}

    class Finder:
        @classmethod
        def find_spec(cls, name, path=None, target=None):
            if name not in DIRS:
                return None
            where = ROOT + "/" + DIRS[name]
            return spec_from_file_location(name, where + "/__init__.py", submodule_search_locations=[where])

    sys.meta_path.insert(0, Finder)
import servopt
from servopt.instances import batch_scheduling, library
kind, what = MAKE.split(":", 1)
instance = library.load(what) if kind == "library" else batch_scheduling.generate(n=int(what), seed=0)
assert servopt.__file__.startswith(ROOT if ROOT != "-" else "/"), servopt.__file__
start = time.perf_counter()
sol = servopt.solve(instance, time_limit=LIMIT)
wall = time.perf_counter() - start
fin = lambda v: v if math.isfinite(v) else None
print(json.dumps({"wall_s": wall, "status": sol.status, "incumbent": fin(sol.objective),
                  "bound": fin(sol.bound), "bound_kind": sol.info.get("bound_kind", ""),
                  "bound_lp": sol.info.get("bound_lp_status", ""),
                  "highs_skipped": sol.info.get("highs_skipped", ""),
                  "build_skipped": sol.info.get("build_skipped", ""),
                  "prices": sum(len(p) for p in sol.prices.values()),
                  "prices_skipped": sol.info.get("prices_skipped", ""),
                  "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9}))
"""


# the rates of time_estimate, in a fresh interpreter: N (batch requests)
RATES = r"""
import json, sys, time
import highspy
from servopt.instances import batch_scheduling as instances
from servopt.models import batch_scheduling as model
from servopt.solvers import exact
inst = instances.generate(n=int(sys.argv[1]), seed=0)
start = time.perf_counter()
mm = model.build_matrix_model(inst)
out = {"nonzeros": int(mm.matrix.nnz), "build_s": time.perf_counter() - start,
       "estimate": model.time_estimate(inst)}
for name, limit in (("setup_s", 0.01), ("setup_root_s", 2.0)):
    highs = exact._load_matrix(mm, integer=True)
    for key, value in {"mip_rel_gap": 1e-4, **mm.options, **exact.WARM_TIME_LIMITED,
                       "time_limit": limit}.items():
        highs.setOptionValue(key, value)
    warm = highspy.HighsSolution()
    warm.col_value, warm.value_valid = mm.start, True
    highs.setSolution(warm)
    start = time.perf_counter()
    highs.run()
    out[name] = time.perf_counter() - start
print(json.dumps(out))
"""


def measure_rates(sizes: tuple[int, ...] = (100, 200, 400)) -> pd.DataFrame:
    """Table 3: build and HiGHS set-up seconds per nonzero of the batch IP (fresh processes)."""
    rows = []
    for n in sizes:
        out = subprocess.run([sys.executable, "-c", RATES, str(n)], capture_output=True, text=True,
                             check=False, cwd=tempfile.gettempdir())
        if out.returncode != 0:
            raise RuntimeError(f"rates at n = {n} failed:\n{out.stderr[-2000:]}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        nnz = r["nonzeros"]
        rows.append({"n": n, "nonzeros": nnz, "build_s": r["build_s"],
                     "build_us_per_nnz": 1e6 * r["build_s"] / nnz,
                     "highs_0.01s_limit_s": r["setup_s"],
                     "setup_us_per_nnz": 1e6 * r["setup_s"] / nnz,
                     "highs_2s_limit_s": r["setup_root_s"],
                     "setup_root_us_per_nnz": 1e6 * r["setup_root_s"] / nnz,
                     "estimate_build_s": r["estimate"]["build_s"],
                     "estimate_setup_s": r["estimate"]["setup_s"], "load": os.getloadavg()[0]})
        print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def run_case(make: str, limit: float, root: Path | None) -> dict:
    """One ``servopt.solve(instance, time_limit=limit)`` in a fresh process (``root``: the code
    of another checkout)."""
    out = subprocess.run([sys.executable, "-c", CHILD, str(root) if root else "-", make, str(limit)],
                         capture_output=True, text=True, check=False, cwd=tempfile.gettempdir())
    if out.returncode != 0:
        raise RuntimeError(f"{make} at {limit} s failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def extract(commit: str, into: Path) -> Path:
    """The tree of ``commit`` (git archive) under ``into``."""
    archive = into / "tree.tar"
    with archive.open("wb") as f:
        subprocess.run(["git", "-C", str(REPO), "archive", commit], stdout=f, check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(into / "tree", filter="data")
    return into / "tree"


def measure_calls(before: str | None) -> pd.DataFrame:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        old = extract(before, Path(tmp)) if before else None
        for case, make, limits in CASES:
            for limit in limits:
                for code, root in ([(f"before ({before})", old)] if before else []) + [("after", None)]:
                    r = run_case(make, limit, root)
                    prices = (f"skipped ({r['prices_skipped']})" if r["prices_skipped"]
                              else "yes" if r["prices"] else "none")
                    skipped = r.get("highs_skipped")
                    status = r["status"] + (f" (HiGHS skipped: {skipped})" if skipped else "")
                    if r.get("build_skipped"):  # the text after "time_limit: " says why
                        status += " (build skipped: " + r["build_skipped"].split(": ", 1)[-1] + ")"
                    rows.append({"case": case, "code": code, "limit_s": limit, "wall_s": r["wall_s"],
                                 "wall/limit": r["wall_s"] / limit, "status": status,
                                 "incumbent": r["incumbent"], "bound": r["bound"],
                                 "bound_kind": r["bound_kind"] + (f" (bound LP {r['bound_lp']})"
                                                                  if r["bound_lp"] else ""),
                                 "prices": prices, "peak_rss_gb": r["peak_rss_gb"],
                                 "load": os.getloadavg()[0]})
                    print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def market_split(seed: int = 3, m: int = 5, n: int = 40) -> pyo.ConcreteModel:
    """min sum |slack| s.t. a_i x = floor(sum_j a_ij / 2) for m rows, x in {0, 1}^n, a in [0, 99]."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 100, size=(m, n))
    rhs = a.sum(axis=1) // 2
    mod = pyo.ConcreteModel()
    mod.x = pyo.Var(range(n), domain=pyo.Binary)
    mod.sp = pyo.Var(range(m), domain=pyo.NonNegativeReals)
    mod.sm = pyo.Var(range(m), domain=pyo.NonNegativeReals)
    mod.split = pyo.Constraint(range(m), rule=lambda mo, i: sum(
        int(a[i, j]) * mo.x[j] for j in range(n)) + mo.sp[i] - mo.sm[i] == int(rhs[i]))
    mod.obj = pyo.Objective(expr=sum(mod.sp[i] + mod.sm[i] for i in range(m)))
    return mod


def measure(limits: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0, 10.0)) -> pd.DataFrame:
    rows = []
    for limit in limits:
        start = time.perf_counter()
        sol = exact.solve_model(market_split(), time_limit=limit, prices=False)
        wall = time.perf_counter() - start
        rows.append({"time_limit_s": limit, "wall_s": wall, "ratio": wall / limit,
                     "status": sol.status, "incumbent": sol.objective, "bound": sol.bound})
    return pd.DataFrame(rows)


def main(before: str | None = None) -> None:
    calls = measure_calls(before)
    calls.to_csv(RESULTS / "exact_time_limit.csv", index=False)
    split = measure()
    rates = measure_rates()
    command = "python -m servopt.benchmarks.exact_time_limit" + (f" --before {before}" if before else "")
    text = (
        "# Time limits in `servopt.solvers.exact`\n\n"
        f"Regenerate with `{command}` (one run; a 2-core machine shared with other jobs: "
        "timings are noisy).\n\n"
        "## `servopt.solve(instance, time_limit=L)`: the whole call against L\n\n"
        "`wall_s`: the call, from entry to return (model build, HiGHS, bound LP, price LP), in a "
        "fresh process; `peak_rss_gb`: that process's peak memory; `load`: the 1-minute load "
        "average after the run (2 cores: above 2, the call got less than a core and its wall "
        "time is inflated, HiGHS's slices went further). `prices`: `yes`, "
        "or why none came back (`skipped (time_limit)`: the budget was spent before the price "
        "LP ran or finished). `bound_kind` says where the bound comes from and what became of "
        "the bound LP (a matrix model's `bound_lp`: solved before the MIP under a limit since "
        "9fed683; until then tried after it, when HiGHS had stopped before its root LP). "
        "`HiGHS skipped`: the build spent the whole budget (since 9fed683), or left less than "
        "the model's estimate of HiGHS's set-up and root (table 3), and the model's feasible "
        "start came back without HiGHS. `build skipped`: the model's estimate said its build "
        "and HiGHS's set-up would not fit in the limit, or its build passed the limit: the "
        "start came back without the matrix. `lower_bound`: the batch IP's area bound "
        "(`cheap_bound`), when no better bound was found.\n\n" + markdown_table(calls) + "\n\n"
        "## A MIP out of reach (Pyomo path)\n\n"
        "Market split MIP (5 rows, 40 binaries, seed 3) through `solve_model`: wall time of the "
        "call (translation to HiGHS + solve + result loading) against the limit.\n\n"
        + markdown_table(split) + "\n\n"
        "## Build and set-up rates of the batch IP\n\n"
        "What `servopt.models.batch_scheduling.time_estimate` scales by the model's nonzeros "
        "(`BUILD_S_PER_NONZERO`, `SETUP_S_PER_NONZERO`): `build_s` of `build_matrix_model` (the "
        "warm start included); HiGHS's run on it from the warm start (presolve off) on a 0.01 s "
        "limit (its set-up: it reads its clock only after it) and on a 2 s limit (set-up and "
        "root: a limit that ends inside the root is read only after it); `estimate_*`: the "
        "model's estimates at its rates. One fresh process per row, the same session as table "
        "1.\n\n" + markdown_table(rates) + "\n")
    write_md(RESULTS / "exact_time_limit.md", text)
    print(text, file=sys.stdout)


if __name__ == "__main__":
    require_checkout(__file__)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", help="also run every case on the code of this commit")
    main(parser.parse_args().before)
