"""Speed of the decode-step simulator (request-steps per second) and of each router (us/request).

Run: ``python benchmarks/decode_routing_speed.py [--out benchmarks/results]``. Writes
``decode_routing_speed.md``. A request-step is one request advancing one token in one decode
step (the simulator's unit of work); the count is the sum of output tokens (plus recomputed
tokens when requests are preempted; the table gives the preemptions). Timings are wall-clock on
a shared machine and noisy; the last table repeats least-KV and bid_price (and bid_price with
its earlier exact forecast, ``bid_price_exact``) with the router's own CPU time
(``time.thread_time`` around its calls, best of ``--repeats`` runs), which other jobs on the
machine disturb much less. With ``--before REV`` (default: the commit before the last speed work
on the bid-price router) that table also times the router as committed at REV (loaded from ``git show
REV:solvers/decode_routing.py`` into this process), interleaved with the current code in every
repeat, so before and after come from the same run; both route every request to the same worker
(``tests/test_decode_routing_fast.py``). The timer's
own reads are counted in every router's figure; the ``clock`` column gives what they cost per
request (:func:`timer_us`), and the last column of that table the ratio with it taken out of
both. The last table splits bid_price's CPU: least-KV's choices alone, then with the forecast's
upkeep added (the load book; on streams with predictions the exact forecast), what the forecast
costs before any price is computed.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time
import types
from pathlib import Path

import numpy as np

from servopt.benchmarks import decode_routing as bench
from servopt.benchmarks.report import require_checkout, write_md
from servopt.instances.decode_routing import Instance
from servopt.solvers import decode_routing as routing

CELLS = [
    {"workload": "conversation", "workers": 8, "load": 0.85, "requests": 3200},
    {"workload": "conversation", "workers": 32, "load": 0.85, "requests": 12800},
    {"workload": "conversation", "workers": 128, "load": 0.85, "requests": 51200},
    {"workload": "code", "workers": 32, "load": 0.85, "requests": 12800},
    # predicted output lengths (noise e = 0.5): bid_price's prediction forecast
    {"workload": "conversation", "workers": 8, "load": 0.85, "requests": 3200, "prediction_error": 0.5},
]
METHODS = ("round_robin", "jsq", "least_kv", "p2c_kv", "least_outstanding", "least_kv_sorted", "bid_price",
           "bid_price_lp", "bid_price_argmin")


BEFORE = "9b3fba3"  # solvers/decode_routing.py before the last speed work on the router (predicted streams)


def load_before(rev: str) -> types.ModuleType:
    """``solvers/decode_routing.py`` as committed at ``rev``, as a module of this process."""
    root = Path(__file__).resolve().parents[1]
    src = subprocess.run(["git", "show", f"{rev}:solvers/decode_routing.py"], cwd=root, check=True,
                         capture_output=True, text=True).stdout
    module = types.ModuleType(f"decode_routing_at_{rev}")
    exec(compile(src, f"{rev}:solvers/decode_routing.py", "exec"), module.__dict__)
    return module


class _LeastKVWithBook(routing.BidPrice):
    """Where bid_price's CPU goes: least-KV's choices, plus (``upkeep=True``) the load book's
    upkeep at every step with arrivals (error check, rebuilds, survival and discount refreshes:
    ``BidPrice._book_upkeep``; each routed request's profile booked), without the (G, H) forecast
    of the step or the prices. Not a router to use:
    its rebuilds follow least-KV's fleet, so their count differs a little from bid_price's."""

    def __init__(self, upkeep: bool) -> None:
        super().__init__()
        self.upkeep = upkeep

    def route(self, view, ids) -> None:
        self.arrivals[view.step % self.window] += len(ids)
        if not self.upkeep:
            kv = view.kv_running + view.kv_queued
            for i in ids.tolist():
                g = int(kv.argmin())
                kv[g] += int(view.prompt[i])
                view.assign(i, g)
            return
        kv, d, _ = self._book_upkeep(view)
        book = self.book
        wide = np.add.outer(view.prompt[ids], self._new_u[:book.W - d])  # as bid_price books them
        wide *= self._new_ratio[:book.W - d]
        for k, i in enumerate(ids.tolist()):
            g = int(kv.argmin())
            kv[g] += int(view.prompt[i])
            book.F[g, d:] += wide[k]
            view.assign(i, g)


class _LeastKVWithForecast(routing.BidPrice):
    """Streams with predictions: least-KV's choices, plus the exact forecast's upkeep at every step
    with arrivals (survival and sigma refreshes, the (G, H) forecast of every running request:
    ``BidPrice._step_load``, the new requests' profiles), without the prices. Not a router to use."""

    def route(self, view, ids) -> None:
        self.arrivals[view.step % self.window] += len(ids)
        if len(ids) == 0:
            return
        if view.step - self.last_refresh >= self.refresh_every:
            self.fc.refresh(view)
            self._discount(view)
            self.last_refresh = view.step
        self._step_load(view)
        self.fc.new_predicted(view, ids)
        kv = view.kv_running + view.kv_queued
        for i in ids.tolist():
            g = int(kv.argmin())
            kv[g] += int(view.prompt[i])
            view.assign(i, g)


STAGES = {"least-KV choices only": lambda predicted: _LeastKVWithBook(False),
          "+ forecast upkeep": lambda predicted: (_LeastKVWithForecast() if predicted
                                                  else _LeastKVWithBook(True)),
          "bid_price (+ prices)": lambda predicted: routing.BidPrice()}


def stage_us(inst: Instance, stage: str) -> tuple[float, int]:
    """CPU per request (us) of one of the ``STAGES`` and its forecast rebuilds (load-book rebuilds;
    with predictions: survival refreshes, each re-evaluating log Phi for every running request)."""
    router = STAGES[stage](inst.predicted is not None)
    us = cpu_us(inst, router)
    return us, router.book.rebuilds if router.book is not None else router.fc.version


def log_phi_per_request(inst: Instance) -> float:
    """log Phi evaluations (``scipy.special.log_ndtr`` elements) per request of bid_price's exact
    forecast on a stream with predictions."""
    count = [0]
    real = routing.special

    def log_ndtr(x):
        count[0] += np.size(x)
        return real.log_ndtr(x)

    routing.special = types.SimpleNamespace(log_ndtr=log_ndtr)
    try:
        bench.simulate(inst, routing.BidPrice())
    finally:
        routing.special = real
    return count[0] / inst.n_requests


def timer_us(inst: Instance, repeats: int = 5) -> float:
    """What :func:`cpu_us`'s own clock reads cost per request (us): the calls of ``on_step`` and
    ``route`` in a run (the same for every router: one per step, one per step with arrivals) times
    the thread time of one timed call of a function that does nothing (best of ``repeats``)."""
    calls = [0]
    router = routing.make_router("round_robin")
    for call_name in ("on_step", "route"):
        call = getattr(router, call_name)

        def counted(*args, _call=call):
            calls[0] += 1
            _call(*args)

        setattr(router, call_name, counted)
    bench.simulate(inst, router)
    spent = [0.0]

    def nothing(*args):
        return None

    best = np.inf
    for _ in range(repeats):
        spent[0] = 0.0
        for _ in range(10_000):  # the wrapper of cpu_us around a call that does nothing
            start = time.thread_time()
            nothing()
            spent[0] += time.thread_time() - start
        best = min(best, spent[0] / 10_000)
    return best * calls[0] / inst.n_requests * 1e6


def cpu_us(inst: Instance, method: str | routing.Router,
           before: types.ModuleType | None = None) -> float:
    """Router CPU time per request (us): thread time inside ``on_step`` and ``route``.

    ``bid_price_exact`` is the bid-price rule with ``forecast="exact"`` (every running request's
    forecast recomputed at each step with arrivals, the rule before the load book); a name ending
    in ``@before`` is the router of the ``before`` module.
    """
    if isinstance(method, str):
        name, _, at = method.partition("@")
        module = before if at else routing
        router = (module.BidPrice(forecast="exact") if name == "bid_price_exact"
                  else module.POLICIES[name]())
    else:
        router = method
    spent = [0.0]
    for call_name in ("on_step", "route"):
        call = getattr(router, call_name)

        def timed(*args, _call=call):
            start = time.thread_time()
            _call(*args)
            spent[0] += time.thread_time() - start

        setattr(router, call_name, timed)
    bench.simulate(inst, router)
    return spent[0] / inst.n_requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--before", default=BEFORE, help="git revision of the router to compare with "
                        "('' to skip)")
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)  # before the work, not after it
    before = load_before(args.before) if args.before else None
    load_start = os.getloadavg()[0]
    lines = ["# decode_routing: simulator and router speed", "",
             f"Command: `python benchmarks/decode_routing_speed.py --repeats {args.repeats} --before "
             f"'{args.before}'`; machine: "
             f"{platform.processor() or platform.machine()}, shared by other jobs (noisy).", "",
             "## Simulator (router: round_robin, cheapest), best of "
             f"{args.repeats} runs", "",
             "| workload | workers | requests | steps | request-steps | preemptions | sim s "
             "| request-steps / s |", "|---|---|---|---|---|---|---|---|"]
    routers, cpu, stages, log_phi = [], [], [], []
    for cell in CELLS:
        inst = bench.make_cell(seed=0, **cell)
        best = np.inf
        for _ in range(args.repeats):
            start = time.perf_counter()
            res = bench.simulate(inst, routing.make_router("round_robin"))
            best = min(best, time.perf_counter() - start)
        work = int(inst.output.sum())
        m = res["metrics"]
        label = cell["workload"]
        if cell.get("prediction_error") is not None:
            label += f" (predicted, e={cell['prediction_error']:g})"
        lines.append(f"| {label} | {cell['workers']} | {inst.n_requests} | "
                     f"{m['steps']} | {work} | {m['preemptions']} | {best:.2f} | "
                     f"{work / best:,.0f} |")
        if cell["workers"] in (8, 32):
            row = [label, str(cell["workers"])]
            us = {}
            for method in METHODS:
                router = routing.make_router(method)
                out = bench.evaluate(inst, router)
                us[method] = out.metrics["router_us"]
                text = f"{out.metrics['router_us']:.1f}"
                if hasattr(router, "solve_s"):  # split: LP refreshes vs the per-request rule
                    lp_us = router.solve_s / inst.n_requests * 1e6
                    text += f" ({lp_us:.0f} LP + {out.metrics['router_us'] - lp_us:.0f} rule)"
                row.append(text)
            row.append(f"{us['bid_price'] / us['least_kv']:.1f}x")
            routers.append(row)
            timed = ["least_kv", "bid_price", "bid_price_exact"]
            if before is not None:
                timed += ["bid_price@before", "bid_price_exact@before"]
            best = dict.fromkeys(timed, np.inf)
            for _ in range(args.repeats):  # interleaved: before and after see the same machine
                for m in timed:
                    best[m] = min(best[m], cpu_us(inst, m, before))
            lkv = best["least_kv"]
            clock = timer_us(inst)

            def pair(m: str, scale: float = 1.0, unit: str = "", digits: int = 1, best=best) -> str:
                now = f"{best[m] / scale:.{digits}f}{unit}"
                if before is None:
                    return now
                return f"{best[m + '@before'] / scale:.{digits}f}{unit} -> {now}"

            spent = {}
            for _ in range(args.repeats):
                for stage in STAGES:
                    us, rebuilds = stage_us(inst, stage)
                    if us < spent.get(stage, (np.inf, 0))[0]:
                        spent[stage] = (us, rebuilds)
            kind = "refreshes" if inst.predicted is not None else "rebuilds"
            stages.append(f"| {label} | {cell['workers']} | {lkv:.1f} | " + " | ".join(
                f"{us:.1f} ({us / lkv:.1f}x; {rebuilds} {kind})" for us, rebuilds in spent.values())
                + " |")
            if inst.predicted is not None:
                log_phi.append(f"{label}, {cell['workers']} workers: {log_phi_per_request(inst):.0f} log Phi "
                               "evaluations per request")
            cpu.append(f"| {label} | {cell['workers']} | {clock:.1f} | {lkv:.1f} | {pair('bid_price')} | "
                       f"{pair('bid_price_exact')} | {pair('bid_price', lkv, 'x', 2)} | "
                       f"{pair('bid_price_exact', lkv, 'x', 2)} | "
                       f"{(best['bid_price'] - clock) / max(lkv - clock, 1e-9):.1f}x |")
    lines += ["", "## Router decision time per request (us; LP-gated bid-price: LP refreshes + "
              "the rule incl. its forecast; bid_price solves no LP: its time is the per-step "
              "forecast, kept in a load book: O(G H) per step and per request, O(running x (H + span)) "
              "per rebuild; last column: bid_price / least_kv)", "",
              "| workload | workers | " + " | ".join(METHODS) + " | bid_price / least_kv |",
              "|---|---|" + "---|" * (len(METHODS) + 1)]
    lines += ["| " + " | ".join(r) + " |" for r in routers]
    arrow = f" (`{args.before}` -> now, interleaved in each run)" if before is not None else ""
    lines += ["", f"## Router CPU time per request (us; thread time, best of {args.repeats} runs; "
              "bid_price keeps its forecast in the load book, bid_price_exact recomputes it from every "
              "running request at each step with arrivals, as before the book; streams with predicted "
              f"lengths use the exact forecast in both){arrow}; clock: what the timer's own reads "
              "cost per request (two thread_time reads per on_step and route call, counted in every "
              "router's figure); last column: bid_price / least_kv with the clock's cost taken out of "
              "both)", "",
              "| workload | workers | clock | least_kv | bid_price | bid_price_exact | bid_price / least_kv "
              "| bid_price_exact / least_kv | bid_price / least_kv, clock out |",
              "|---|---|---|---|---|---|---|---|---|", *cpu, "",
              f"## Where bid_price's CPU goes (us per request, thread time, best of {args.repeats} runs; x = "
              "/ least_kv; the first two route by least-KV, the second also keeps bid_price's forecast: "
              "the load book (its rebuilds counted), or on streams with predictions the exact forecast of "
              "every running request at each step with arrivals (its survival and sigma refreshes counted: "
              "each re-evaluates log Phi of every running request over H + 4 ages))", "",
              "| workload | workers | least_kv | " + " | ".join(STAGES) + " |",
              "|---|---|---|" + "---|" * len(STAGES), *stages, "", *[f"- {line}" for line in log_phi], "",
              f"Load average (1 min) at the start: {load_start:.1f}, at the end: {os.getloadavg()[0]:.1f} "
              f"({os.cpu_count()} cores, shared)."]
    path = Path(args.out) / "decode_routing_speed.md"
    write_md(path, "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    require_checkout(__file__)
    main()
