"""Decode routing: how the latency and throughput targets depend on the step-time model.

Run: ``python benchmarks/decode_routing_step_model.py [--jobs 2] [--out benchmarks/results]``.
Writes ``decode_routing_step_model.md`` and ``.csv`` (one row per simulation).

The step model is ``c0 + c1 max_g L_g`` ms. A decode step is memory-bandwidth bound: every step a
worker reads its weights once and the KV cache of every resident token once, so

    c0 = weight bytes / (tp x HBM bandwidth),   c1 = KV bytes per token / (tp x HBM bandwidth),
    K  = (0.9 x tp x GPU memory - weight bytes) / KV bytes per token   (vLLM's default
         ``gpu_memory_utilization`` 0.9; activations ignored),

with ``tp`` the tensor-parallel GPUs of one data-parallel worker. Both are read at the same
(peak) bandwidth here; a real kernel reaches 60-85% of it, which scales c0 and c1 alike and so
changes no ratio below: when c0 and c1 are both multiplied by a, every step time is multiplied by
a, the generator's arrival rate (a load relative to the fleet's capacity) by 1 / a, and the run
in decode steps is identical. What matters is kappa = c0 / c1, the KV tokens whose read costs as
much as the weights (weight bytes / KV bytes per token), together with the slots B and the KV
capacity K that set how many tokens a worker holds at full load.

Public figures used (bf16 weights and KV, 2 bytes per value):

- Llama 2 (Touvron et al. 2023, arXiv:2307.09288; Hugging Face ``meta-llama/Llama-2-7b-hf`` and
  ``-13b-hf`` config.json): 7B: 6.74e9 parameters, 32 layers, 32 KV heads x 128 (no GQA);
  13B: 13.0e9 parameters, 40 layers, 40 KV heads x 128 (no GQA). KV per token
  2 x layers x KV heads x 128 x 2 B = 512 KiB (7B) and 800 KiB (13B; the vLLM paper, Kwon et al.
  SOSP 2023, gives the same 800 KB per token for a 13B model).
- Llama 3 (Meta, ``meta-llama/Meta-Llama-3-8B`` / ``-70B`` config.json): 8B: 8.03e9 parameters,
  32 layers, 8 KV heads x 128 (GQA): 128 KiB per token; 70B: 70.6e9 parameters, 80 layers,
  8 KV heads x 128 (GQA): 320 KiB per token.
- NVIDIA A100 datasheet: A100 80GB SXM, 2,039 GB/s HBM2e; NVIDIA H100 datasheet: H100 SXM 80GB,
  3.35 TB/s HBM3. 80 GiB of memory each.
- vLLM engine arguments: ``max_num_seqs`` default 256 (batch slots), ``gpu_memory_utilization``
  default 0.9.

For each setting the script simulates the benchmark's Azure-calibrated streams (conversation and
code lengths at 85% and 95% of the fleet's balanced capacity; 8 workers with seeds 0-2 as in the
full case, 32 workers with seeds 0-1 on the 64-slot settings; requests per worker scaled with the
slots so the steady-state window spans as many steps) with JSQ, least-KV and the bid-price
router, and a pooled fleet: one worker with G B slots, G K KV tokens and c1 / G per token, i.e.
the same work spread perfectly over the G workers every step and one shared FCFS queue. No
sticky router can balance better than the pool, so its latency and throughput are the
perfect-balance reference (the floor for e2e / JSQ, the ceiling for throughput / JSQ). The
analytic floor of ``decode_routing_targets.md``, T* / T_JSQ = c0 / (c0 + imbalance_JSQ x T_JSQ),
is given next to it. A second table sweeps c1 at c0 = 10 ms on the project's fleet (64 slots,
131,072 KV tokens, 8 workers, seeds 0-1).
Nothing is tuned here: every router runs with its defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import time
from functools import partial
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import pandas as pd

from servopt.benchmarks import decode_routing as bench
from servopt.benchmarks.report import require_checkout, write_md
from servopt.benchmarks.runner import die_with_parent
from servopt.instances import decode_routing as gen

GIB = 2**30
MODELS = {  # parameters, layers, KV heads, head dim (public configs, see the module docstring)
    "Llama-2-7B": (6.74e9, 32, 32, 128),
    "Llama-2-13B": (13.02e9, 40, 40, 128),
    "Llama-3-8B": (8.03e9, 32, 8, 128),
    "Llama-3-70B": (70.6e9, 80, 8, 128),
}
GPUS = {"A100-80GB-SXM": (2.039e12, 80 * GIB), "H100-80GB-SXM": (3.35e12, 80 * GIB)}
METHODS = ("jsq", "least_kv", "bid_price")


def step_model(model: str, gpu: str, tp: int = 1, dtype_bytes: float = 2.0,
               memory_utilisation: float = 0.9) -> dict[str, float]:
    """c0 (ms), c1 (ms per KV token), K (KV tokens per worker) and their inputs for one worker."""
    params, layers, kv_heads, head_dim = MODELS[model]
    bandwidth, memory = GPUS[gpu]
    weight_bytes = params * dtype_bytes
    kv_bytes = 2 * layers * kv_heads * head_dim * dtype_bytes
    kv_tokens = int((memory_utilisation * tp * memory - weight_bytes) // kv_bytes)
    return {"c0": weight_bytes / (tp * bandwidth) * 1e3, "c1": kv_bytes / (tp * bandwidth) * 1e3,
            "kv_capacity": kv_tokens, "kv_bytes": kv_bytes, "weight_bytes": weight_bytes}


def settings() -> list[dict]:
    """The realistic settings and the project's default (name, c0, c1, slots, kv_capacity)."""
    out = [{"setting": "project default", "c0": 10.0, "c1": 1e-4, "slots": 64,
            "kv_capacity": 131072}]
    for model, gpu, tp, slots in (("Llama-2-7B", "A100-80GB-SXM", 1, 64),
                                  ("Llama-2-13B", "A100-80GB-SXM", 1, 64),
                                  ("Llama-3-8B", "H100-80GB-SXM", 1, 64),
                                  ("Llama-3-8B", "H100-80GB-SXM", 1, 256),
                                  ("Llama-3-70B", "H100-80GB-SXM", 4, 256)):
        m = step_model(model, gpu, tp)
        tag = f" x{tp}" if tp > 1 else ""
        out.append({"setting": f"{model} {gpu}{tag}, B={slots}", "c0": m["c0"], "c1": m["c1"],
                    "slots": slots, "kv_capacity": m["kv_capacity"]})
    return out


def sweep() -> list[dict]:
    """c1 sweep at c0 = 10 ms on the project's fleet."""
    return [{"setting": f"c0=10, c1={c1:g}", "c0": 10.0, "c1": c1, "slots": 64,
             "kv_capacity": 131072} for c1 in (2.5e-5, 5e-5, 1e-4, 2e-4, 4e-4, 8e-4)]


def pooled(inst: gen.Instance) -> gen.Instance:
    """The perfect-balance reference: one worker holding the whole fleet, c1 / G per token."""
    G = inst.workers
    return dataclasses.replace(inst, workers=1, slots=G * inst.slots,
                               kv_capacity=G * inst.kv_capacity,
                               ms_per_kv_token=inst.ms_per_kv_token / G)


def run(job: dict) -> list[dict]:
    per_worker = (2000 if job["workload"] == "code" else 1000) * job["slots"] // 64
    inst = gen.generate(workload=job["workload"], requests=per_worker * job["workers"],
                        workers=job["workers"], load=job["load"], slots=job["slots"],
                        kv_capacity=job["kv_capacity"], step_ms=job["c0"],
                        ms_per_kv_token=job["c1"], seed=job["seed"])
    rows = []
    for method in (*METHODS, "pooled"):
        start = time.perf_counter()
        if method == "pooled":
            res = bench.simulate(pooled(inst), bench.routing.make_router("round_robin"))
        else:
            res = bench.simulate(inst, bench.routing.make_router(method))
        m = res["metrics"]
        rows.append({**job, "method": method, "requests": inst.n_requests,
                     "sim_s": time.perf_counter() - start, **{k: m[k] for k in (
                         "e2e_mean_s", "throughput_tok_s", "idle_fraction", "imbalance",
                         "step_ms_mean", "queue_mean", "tpot_mean_ms", "router_us",
                         "preemptions", "window_steps")}})
    return rows


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    """Per setting x workload x workers x load: the target ratios (means over seeds)."""
    keys = ["table", "setting", "c0", "c1", "slots", "kv_capacity", "workload", "workers", "load"]
    mean = frame.groupby([*keys, "method"])[["e2e_mean_s", "throughput_tok_s", "imbalance",
                                             "step_ms_mean", "queue_mean", "idle_fraction"]].mean()
    n_seeds = frame.groupby(keys)["seed"].nunique()
    rows = []
    for key, m in mean.groupby(level=list(range(len(keys)))):
        m = m.droplevel(list(range(len(keys))))
        jsq = m.loc["jsq"]
        c0 = key[2]
        rows.append({**dict(zip(keys, key, strict=True)), "seeds": int(n_seeds.loc[key]),
                     "kappa": c0 / key[3],
                     "jsq_kv_share": 1 - c0 / jsq.step_ms_mean,
                     "jsq_step_ms": jsq.step_ms_mean,
                     "jsq_queue": jsq.queue_mean,
                     "e2e_lkv": m.loc["least_kv"].e2e_mean_s / jsq.e2e_mean_s,
                     "e2e_bp": m.loc["bid_price"].e2e_mean_s / jsq.e2e_mean_s,
                     "e2e_pool": m.loc["pooled"].e2e_mean_s / jsq.e2e_mean_s,
                     "e2e_floor": c0 / (c0 + jsq.imbalance * jsq.step_ms_mean),
                     "thr_lkv": m.loc["least_kv"].throughput_tok_s / jsq.throughput_tok_s,
                     "thr_bp": m.loc["bid_price"].throughput_tok_s / jsq.throughput_tok_s,
                     "thr_pool": m.loc["pooled"].throughput_tok_s / jsq.throughput_tok_s,
                     "idle_bp_lkv": m.loc["bid_price"].idle_fraction
                     / max(m.loc["least_kv"].idle_fraction, 1e-12)})
    return pd.DataFrame(rows)


def table(summary: pd.DataFrame, load: float) -> list[str]:
    s = summary[np.isclose(summary["load"], load)]
    if load < 0.9:
        head = ("| setting | kappa = c0/c1 | workload | G | seeds | JSQ KV share of step | JSQ queue | "
                "LKV e2e/JSQ | bid_price e2e/JSQ | pooled e2e/JSQ | analytic floor | "
                "target e2e <= 0.75 met by |")
    else:
        head = ("| setting | kappa = c0/c1 | workload | G | seeds | JSQ KV share of step | JSQ queue | "
                "LKV thr/JSQ | bid_price thr/JSQ | pooled thr/JSQ | bid_price idle/LKV | "
                "target thr >= 1.03 met by |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in s.itertuples(index=False):
        if load < 0.9:
            who = [n for n, v in (("least_kv", r.e2e_lkv), ("bid_price", r.e2e_bp)) if v <= 0.75]
            vals = (f"{r.e2e_lkv:.3f} | {r.e2e_bp:.3f} | {r.e2e_pool:.3f} | {r.e2e_floor:.3f}")
            pool_ok = r.e2e_pool <= 0.75
        else:
            who = [n for n, v in (("least_kv", r.thr_lkv), ("bid_price", r.thr_bp)) if v >= 1.03]
            vals = (f"{r.thr_lkv:.4f} | {r.thr_bp:.4f} | {r.thr_pool:.4f} | {r.idle_bp_lkv:.3f}")
            pool_ok = r.thr_pool >= 1.03
        verdict = ", ".join(who) if who else ("none (perfect balance would)" if pool_ok
                                                   else "none, nor perfect balance")
        lines.append(f"| {r.setting} | {r.kappa:,.0f} | {r.workload} | {r.workers} | {r.seeds} | "
                     f"{r.jsq_kv_share:.2f} | {r.jsq_queue:.1f} | {vals} | {verdict} |")
    return lines


def jobs(seeds: list[int]) -> list[dict]:
    """The grid: 8 workers on every setting (seeds ``seeds``), 32 workers on the 64-slot settings
    (the first two seeds: a 32 x 256-slot fleet is 4x the work), the c1 sweep on 8 workers (the
    first two seeds). Most informative first, so a partial run has the realistic settings."""
    out = []
    for table_name, group, workers, n_seeds in (("settings", settings(), 8, len(seeds)),
                                                 ("settings", settings(), 32, 2),
                                                 ("sweep", sweep(), 8, 2)):
        for s in group:
            if workers == 32 and s["slots"] > 64:
                continue
            for workload in ("conversation", "code"):
                for load in (0.85, 0.95):
                    for seed in seeds[:n_seeds]:
                        out.append({"table": table_name, **s, "workload": workload,
                                    "workers": workers, "load": load, "seed": seed})
    return out


def cached_run(job: dict, cache: Path) -> list[dict]:
    """:func:`run`, with its rows kept in ``cache`` (one JSON per job) so a rerun resumes; the key
    includes the source of the simulator and routers, so a changed router is simulated again."""
    digest = hashlib.sha256(json.dumps(job, sort_keys=True).encode())
    for module in (bench, bench.routing):
        digest.update(Path(module.__file__).read_bytes())
    key = digest.hexdigest()[:20]
    path = cache / f"{key}.json"
    if path.exists():
        return json.loads(path.read_text())
    rows = run(job)
    path.write_text(json.dumps(rows))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cache", default="/tmp/decode_routing_step_model_cache",
                        help="per-simulation results, so an interrupted run resumes")
    parser.add_argument("--from-csv", action="store_true", help="only rewrite the markdown")
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)  # before the work, not after it
    csv = Path(args.out) / "decode_routing_step_model.csv"
    if args.from_csv:
        frame = pd.read_csv(csv)
    else:
        cache = Path(args.cache)
        cache.mkdir(parents=True, exist_ok=True)
        grid = jobs(args.seeds)
        start = time.perf_counter()
        with Pool(args.jobs, initializer=die_with_parent, initargs=(os.getpid(),)) as pool:
            rows = [r for part in pool.imap(partial(cached_run, cache=cache), grid) for r in part]
        print(f"{len(grid)} instances in {time.perf_counter() - start:.0f} s")
        frame = pd.DataFrame(rows).sort_values(["table", "setting", "workload", "workers", "load",
                                                "seed", "method"])
        frame.to_csv(csv, index=False)
    summary = summarise(frame)
    order = {s["setting"]: i for i, s in enumerate(settings() + sweep())}
    summary = summary.sort_values(["table", "setting", "workload", "workers"],
                                  key=lambda c: c.map(order) if c.name == "setting" else c)
    seeds = sorted(frame["seed"].unique())
    lines = ["# decode_routing: the targets across step-time models", "",
             "Command: `python benchmarks/decode_routing_step_model.py --jobs 2` (docstring: "
             "sources and formulas). Metrics in steady state, means over the seeds given per row "
             f"(of {', '.join(map(str, seeds))}); every router with its defaults; pooled = one worker "
             "with the whole fleet's slots and KV and c1 / G per token (perfect balance, one "
             "shared queue): the best any sticky router could do. JSQ KV share = (step - c0) / "
             "step in JSQ's run.", "",
             "## Step models", "",
             "| setting | c0 ms | c1 ms per KV token | kappa = c0/c1 tokens | slots B | KV tokens K |",
             "|---|---|---|---|---|---|"]
    for s in settings() + sweep():
        lines.append(f"| {s['setting']} | {s['c0']:.2f} | {s['c1']:.3g} | {s['c0'] / s['c1']:,.0f} | "
                     f"{s['slots']} | {s['kv_capacity']:,} |")
    for name, title in (("settings", "Realistic settings"), ("sweep", "c1 sweep (c0 = 10 ms, "
                                                                      "B = 64, K = 131,072)")):
        part = summary[summary["table"] == name]
        lines += ["", f"## {title}: mean e2e latency vs JSQ at 85% load (target <= 0.75)", ""]
        lines += table(part, 0.85)
        lines += ["", f"## {title}: throughput vs JSQ at 95% load (target >= 1.03)", ""]
        lines += table(part, 0.95)
    lines += ["", "## Where the targets are reachable", ""]
    for name, load, col, ok, what in (
            ("e2e <= 0.75x JSQ at 85% load", 0.85, "e2e", lambda v: v <= 0.75, "e2e/JSQ"),
            ("throughput >= 1.03x JSQ at 95% load", 0.95, "thr", lambda v: v >= 1.03, "thr/JSQ")):
        part = summary[np.isclose(summary["load"], load)]
        for router, key in (("least_kv", f"{col}_lkv"), ("bid_price", f"{col}_bp"),
                            ("pooled (perfect balance)", f"{col}_pool")):
            hits = part[part[key].map(ok)]
            cells = "; ".join(f"{r.setting} {r.workload} G={r.workers} ({what} {r[key]:.3f})"
                              for _, r in hits.iterrows()) or "no cell"
            lines.append(f"- {name}, {router}: {len(hits)} of {len(part)} cells: {cells}")
    path = Path(args.out) / "decode_routing_step_model.md"
    write_md(path, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    require_checkout(__file__)
    main()
