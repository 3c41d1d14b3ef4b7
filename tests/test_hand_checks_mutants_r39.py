"""The last survivors of the mutation audits R36 and R38: changed lines no test caught.

Each test names the mutant it kills (the ids of /tmp/R36/findings.md and /tmp/R38/findings.md)
and says where its expected value comes from: a hand calculation from a documented formula, the
documented contract of the results cache or the registry, or a hand-formatted line, never the
code under test echoing itself.
"""

from __future__ import annotations

import types

import numpy as np
import pandas as pd
import pytest

from servopt import cli
from servopt.benchmarks import Case, runner
from servopt.benchmarks import decode_routing as decode_bench
from servopt.core.registry import register_decision, registered_layers, unregister_decision
from servopt.core.solution import Solution
from servopt.instances import decode_routing as decode_instances
from servopt.solvers import decode_routing as decode_routing


class HandPricedArgmin(decode_routing.BidPrice):
    """``bid_price_argmin``'s gated rule (pick="price") with hand-set LP prices and plan: each
    "solve" sets rho = 0, the given sigma and kappa, and a plan share no request uses up."""

    def __init__(self, sigma, kappa) -> None:
        super().__init__(gate=True, pick="price", horizon=1, discount=0.8)
        self.hand = (np.asarray(sigma, dtype=float), np.asarray(kappa, dtype=float))

    def _solve(self, view) -> None:
        G = view.workers
        self.sigma, self.kappa = self.hand
        self.rho = np.zeros((G, self.horizon))
        self.share, self.routed, self.unit = np.full(G, 1e6), np.zeros(G), 1.0
        self.plan, self.last_refresh = True, view.step
        self.solves += 1


def test_gated_price_router_charges_kappa_for_the_prompt_plus_the_first_output_token():
    # kills DP9 (the gated pick="price" rule's kappa_g (s + 1) becomes kappa_g s). By hand, from
    # BidPrice's docstring: pick="price" sends a request to argmin_g sum_h rho_gh w_ih + sigma_g +
    # kappa_g (s_i + 1) among the workers with plan share left. Both workers open, rho = 0,
    # sigma = [0, 0.995] ms, kappa = [0.02, 0.01] ms per KV token (two different KV prices):
    # worker 0 costs 0.02 (s + 1), worker 1 0.995 + 0.01 (s + 1); worker 0 is cheaper iff
    # 0.01 (s + 1) < 0.995. s = 99: 1.0 > 0.995 -> worker 1; s = 98: 0.99 < 0.995 -> worker 0.
    # (Without the +1, s = 99 gives 0.99 < 0.995 -> worker 0.) Each request arrives to an empty
    # fleet (3 output tokens, arrivals 10 steps apart), and the score gaps (0.005 ms) are far
    # above the rule's tie tolerance (1e-9 x max(1e4 c1, |best|) = 1e-7 ms)
    router = HandPricedArgmin(sigma=[0.0, 0.995], kappa=[0.02, 0.01])
    frame = pd.DataFrame({"arrival_s": [0.0, 10.0], "prompt_tokens": [99, 98], "output_tokens": [3, 3]})
    inst = decode_instances.Instance(workers=2, slots=8, kv_capacity=10_000, step_ms=1.0,
                                     ms_per_kv_token=0.01, arrival_unit="step", requests=frame)
    assert decode_bench.simulate(inst, router)["worker"].tolist() == [1, 0]
    assert router.solves >= 1  # the hand prices were the ones used


def test_registering_a_decision_again_replaces_the_layers_given_and_keeps_the_others():
    # kills G4 (a second register_decision replacing every layer with the ones given). Expected:
    # register_decision's docstring, registering again replaces the layers given and keeps the
    # others: instances=a, then benchmarks=b -> both; then instances=c -> c and b
    a, b, c = (types.SimpleNamespace(tag=tag) for tag in "abc")
    try:
        register_decision("e30_toy_g4", instances=a)
        register_decision("e30_toy_g4", benchmarks=b)
        assert registered_layers("e30_toy_g4") == {"instances": a, "benchmarks": b}
        register_decision("e30_toy_g4", instances=c)
        assert registered_layers("e30_toy_g4") == {"instances": c, "benchmarks": b}
    finally:
        unregister_decision("e30_toy_g4")


def test_register_decision_refuses_an_empty_name_by_name():
    # kills G5 (the empty name accepted). Expected: register_decision's own check, "a decision's
    # name must be non-empty text"; nothing is registered under ""
    with pytest.raises(ValueError, match="non-empty text, got ''"):
        register_decision("", benchmarks=types.SimpleNamespace())
    assert registered_layers("") == {}


def test_two_cases_of_one_name_and_different_decisions_share_a_cache_without_evicting(capsys,
                                                                                       tmp_path):
    # kills K8 (a cache key without the decision: the two cases' bound rows then share a key, and
    # each run evicts the other's with an "ignoring cache entry" warning). Expected, from the
    # runner's documented cache contract (a unit is cached under what determines it, and "a
    # repeated run recomputes nothing"): each decision's two units (its bound and its one
    # method) are computed once, by its first run, and every later run of either reads both from
    # the cache, with nothing on stderr
    cases = {decision: Case(name="e30_same_name", decision=decision, grid=({"requests": 8},),
                            methods=(method,), seeds=(0,))
             for decision, method in (("caching", "lru"), ("batch_scheduling", "fcfs"))}
    first = {}
    for turn, decision in enumerate(["caching", "batch_scheduling", "caching", "batch_scheduling"]):
        frame = runner.run([cases[decision]], cache_dir=tmp_path, progress=False)
        assert frame.attrs["runs"] == 2
        assert frame.attrs["runs_cached"] == (0 if turn < 2 else 2), (turn, decision)
        assert "ignoring cache entry" not in capsys.readouterr().err
        rows = frame[["decision", "method", "cost", "bound", "status"]].to_dict("records")
        assert rows[0]["decision"] == decision
        assert first.setdefault(decision, rows) == rows  # the cached row is the computed one
    assert len(list(tmp_path.glob("*.json"))) == 4  # two units per decision, none shared


def test_generate_steps_counts_each_arrival_in_the_step_it_falls_in():
    # DG11 (floor -> ceil of the arrival times) is equivalent: the first arrival is then
    # subtracted, and floor(t) - floor(t0) = ceil(t) - ceil(t0) whenever neither t nor t0 is a
    # whole number (probability 0 for exponential gaps; 1500 generated streams agreed). This
    # pins the rounding generate_steps' docstring states instead (kills round() or no rounding):
    # arrival times t_k are a Poisson process at per_step requests a step, request k arrives at
    # step floor(t_k) - floor(t_0). By hand, from the same draws: after the lengths, the generator
    # draws the n gaps from the seeded rng, mean 1 / per_step
    n, per_step = 40, 0.7
    inst = decode_instances.generate_steps(requests=n, workers=2, per_step=per_step, seed=3)
    rng = np.random.default_rng(3)
    decode_instances.sample_lengths("conversation", n, rng)  # (the draws made before the gaps)
    times = np.cumsum(rng.exponential(1.0 / per_step, n))
    expected = [int(t) - int(times[0]) for t in times]  # int() of a positive float rounds down
    got = inst.requests["arrival_s"].to_numpy()
    assert got.tolist() == expected
    assert np.any(times - np.floor(times) > 0.5)  # (so rounding to nearest would differ)
    assert len(set(expected)) < n  # (several requests share a step)


def test_solve_prints_the_gap_as_a_percentage(tmp_path, monkeypatch, capsys):
    # kills CL9 (the gap printed as a bare fraction, "0.1000"). Expected: a solution whose
    # relative gap is 0.1 prints "gap       10.0000%" (four decimals of a percentage, by hand)
    from servopt.solvers import exact

    path = tmp_path / "b.json"
    assert cli.main(["generate", "batch_scheduling", "n=4", "-o", str(path)]) == 0
    sol = Solution(status="optimal", objective=36.0, bound=40.0, gap=0.1, wall_s=0.0)
    monkeypatch.setattr(exact, "solve", lambda *a, **k: sol)
    capsys.readouterr()
    assert cli.main(["solve", str(path)]) == 0
    assert "\ngap       10.0000%\n" in capsys.readouterr().out


def test_generate_reads_a_dashed_parameter_name_as_the_underscored_one(tmp_path, capsys):
    # kills CL6 (the "-" to "_" conversion of generator parameter names dropped, so
    # kv-capacity=4000 is refused as an unknown parameter). Expected: the instance written has
    # the KV capacity given on the command line, 4000 tokens per worker
    path = tmp_path / "d.json"
    assert cli.main(["generate", "decode_routing", "requests=50", "kv-capacity=4000",
                     "-o", str(path)]) == 0
    assert decode_instances.Instance.from_json(path).kv_capacity == 4000
