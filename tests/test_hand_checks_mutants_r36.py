"""Hand-checked edge cases found by mutation testing (R36): changed lines no test caught.

Each test names the mutant it kills (R36's ids, /tmp/R36/findings.md) and takes its expected
numbers from a hand trace, a documented definition or a published figure written out in the test,
never from the code under test.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from servopt import cli
from servopt.benchmarks import decode_routing as decode_bench
from servopt.core.solution import Solution, normalise_dual
from servopt.instances import caching as caching_instances
from servopt.instances import decode_routing as decode_instances
from servopt.instances import traces
from servopt.solvers import decode_routing as decode_routing


def mooncake_file(path, prompts) -> str:
    """A Mooncake JSONL trace: one prompt of the given block ids every 10 s (512 tokens a block)."""
    with open(path, "w") as f:
        for k, ids in enumerate(prompts):
            f.write(json.dumps({"timestamp": 10 * k, "input_length": 512 * len(ids),
                                "output_length": 5, "hash_ids": list(ids)}) + "\n")
    return str(path)


def test_mooncake_position_cost_is_1_plus_j_over_16_with_j_counted_within_each_prompt(tmp_path):
    # kills G6 (cost 1 + j/8) and G8 (position counted across the whole trace, not reset at each
    # prompt). By hand, from from_trace's docstring (a missed block at position j of its prompt
    # costs 1 + j/16, j from its first appearance): blocks 7, 8, 9 first appear at positions
    # 0, 1, 2 of prompt 0 -> 1, 17/16, 18/16; block 10 at position 0 of prompt 1 -> 1
    # (G8 puts it at trace position 3 -> 19/16; G6 gives 1, 1.125, 1.25 for 7, 8, 9)
    path = mooncake_file(tmp_path / "m.jsonl", [[7, 8, 9], [10, 8], [7]])
    inst = caching_instances.from_trace(path, cost="position", cache_share=0.5)
    # object ids are the distinct block ids in sorted order: 7, 8, 9, 10
    assert inst.miss_cost.tolist() == [1.0, 1.0625, 1.125, 1.0]


def test_mooncake_last_position_kind_holds_every_position_from_127_up(tmp_path):
    # R36 finding 9 (label fix, and G11: the bucket cap 7 -> 6): kind k holds first positions
    # 2^k - 1 .. 2^(k+1) - 2 (floor(log2(j + 1)) = k), and the last kind, 7, every position from
    # 127 up, so a block first seen at position 126 is "position<127", and at 127 and 299 (beyond
    # the old label's 255) "position>=127"
    path = mooncake_file(tmp_path / "m.jsonl", [list(range(1000, 1300))])
    inst = caching_instances.from_trace(path, cost="position", cache_share=0.5)
    name = {j: inst.kind_names[inst.kind[j]] for j in (0, 1, 2, 126, 127, 254, 255, 299)}
    assert name == {0: "position<1", 1: "position<3", 2: "position<3", 126: "position<127",
                    127: "position>=127", 254: "position>=127", 255: "position>=127",
                    299: "position>=127"}


def priced(rho, sigma, kappa) -> Solution:
    """A hand-made epoch LP solution of the decode-routing model: rho (G, H), sigma (G,), kappa (G,)."""
    rho = np.asarray(rho, dtype=float)
    G, H = rho.shape
    gh = pd.MultiIndex.from_product([range(G), range(H)], names=["worker", "step"])
    worker = pd.RangeIndex(G, name="worker")
    return Solution(status="optimal", objective=0.0, bound=0.0, gap=0.0, wall_s=0.0, relaxed=True,
                    decision="decode_routing",
                    prices={"worker_load": pd.Series(rho.ravel(), index=gh),
                            "slots": pd.Series(np.asarray(sigma, dtype=float), index=worker),
                            "kv_memory": pd.Series(np.asarray(kappa, dtype=float), index=worker)})


def test_fixed_price_decode_router_charges_kappa_for_the_prompt_plus_the_first_output_token():
    # kills DP4 (the fixed-price rule's kappa_g (s + 1) becomes kappa_g s). By hand, with H = 1,
    # rho = 0, kappa = [0.01, 0] ms per KV token and sigma = [0, 0.995] ms, both workers empty at
    # each arrival (outputs of 3 tokens, arrivals 10 steps apart): s = 99 costs 0.01 x 100 = 1.0 on
    # worker 0 against 0.995 on worker 1 -> worker 1; s = 98 costs 0.99 < 0.995 -> worker 0.
    # (Without the +1, s = 99 costs 0.99 on worker 0 and goes there.)
    router = decode_routing.BidPrice.from_solution(priced([[0.0], [0.0]], [0.0, 0.995], [0.01, 0.0]))
    frame = pd.DataFrame({"arrival_s": [0.0, 10.0], "prompt_tokens": [99, 98], "output_tokens": [3, 3]})
    inst = decode_instances.Instance(workers=2, slots=8, kv_capacity=10_000, step_ms=1.0,
                                     ms_per_kv_token=0.01, arrival_unit="step", requests=frame)
    assert router.name == "bid_price_fixed"
    assert decode_bench.simulate(inst, router)["worker"].tolist() == [1, 0]


def test_fleet_capacity_on_a_two_request_mix_uses_a_ratio_of_means():
    # kills DG2 (kbar as a mean of per-request ratios). From fleet_capacity's definition, by hand:
    # kbar = E[o s + o(o-1)/2] / E[o] = ((1 x 100 + 0) + (9 x 10 + 9 x 8 / 2)) / 2 / ((1 + 9) / 2)
    #      = (100 + 126) / 2 / 5 = 22.6 KV tokens per resident step; n = min(4 slots, 1e6 / 22.6) = 4;
    # a step takes c0 + c1 n kbar = 1 + 0.01 x 4 x 22.6 = 1.904 ms (no prefill charge); the one
    # worker finishes n / (E[o] step) = 4 / (5 x 1.904) requests per ms
    kbar = ((1 * 100 + 0) + (9 * 10 + 9 * 8 / 2)) / 2 / 5
    step = 1.0 + 0.01 * 4 * kbar
    expected = 1 * 4 / (5 * step) * 1000.0
    assert kbar == pytest.approx(22.6) and expected == pytest.approx(420.168, abs=1e-3)
    got = decode_instances.fleet_capacity(np.array([100, 10]), np.array([1, 9]), workers=1, slots=4,
                                          kv_capacity=10**6, step_ms=1.0, ms_per_kv_token=0.01)
    assert got == pytest.approx(expected, rel=1e-12)


def test_caching_generator_popularity_is_zipf_rank_to_the_minus_skew():
    # kills G1 (weights rank^-(skew/2)). Definition (generate's docstring): p ~ rank^-skew. The
    # sorted probabilities of one phase are exactly k^-0.9 / sum_k k^-0.9 (no sampling involved,
    # so 1e-12 is float rounding only): p1/p2 = 2^0.9 = 1.866, p1/p4 = 4^0.9 = 3.482
    _, probability = caching_instances.phase_popularity(objects=400, skew=0.9, drift=0.0, phases=1,
                                                        seed=0)
    p = np.sort(probability[0])[::-1]
    assert p[0] / p[1] == pytest.approx(2 ** 0.9, rel=1e-12)
    assert p[0] / p[3] == pytest.approx(4 ** 0.9, rel=1e-12)
    zipf = np.arange(1, 401, dtype=float) ** -0.9
    np.testing.assert_allclose(p, zipf / zipf.sum(), rtol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_caching_generator_drift_redraws_that_share_of_the_ranks(seed):
    # kills G2 (round(drift x objects / 2) objects redrawn). Definition (generate's docstring):
    # drift is the share of objects whose rank is redrawn at a phase boundary: 0.5 x 400 = 200
    # objects are permuted among themselves. Ranks are distinct, so an object's probability changes
    # iff its rank does: 200 minus the fixed points of a random permutation of 200, which number
    # Poisson(1) in the limit; P(>= 11 fixed points) = about 1e-8, hence 190..200 (the mutant
    # changes at most 100)
    _, probability = caching_instances.phase_popularity(objects=400, skew=0.9, drift=0.5, phases=2,
                                                        seed=seed)
    # (compared to 1e-9 relative: each phase is normalised by its own float sum, which may differ
    # in the last bits; neighbouring Zipf weights differ by at least (400/399)^0.9 - 1 = 0.2%)
    changed = int(np.sum(~np.isclose(probability[0], probability[1], rtol=1e-9, atol=0.0)))
    assert 190 <= changed <= 200


def test_decode_workload_table_is_the_published_azure_2023_figures():
    # kills DG8 (the conversation output mean 211 -> 250). The figures are the (issue 4)
    # published Azure LLM inference 2023 statistics, written out here, not read from the table:
    # conversation context mean 1155 / median 1020, output mean 211 / median 129 (clipped at 1000);
    # code context mean 2048 / median 1469, output mean 28 / median 13. WORKLOADS holds
    # (median, mean, clip max).
    table = decode_instances.WORKLOADS
    assert table["conversation"]["prompt"][:2] == (1020.0, 1155.0)
    assert table["conversation"]["output"] == (129.0, 211.0, 1000)
    assert table["code"]["prompt"][:2] == (1469.0, 2048.0)
    assert table["code"]["output"][:2] == (13.0, 28.0)


def test_solve_lists_the_capacity_prices_beside_a_family_of_large_equality_prices(tmp_path, capsys):
    # kills CL3 (servopt solve listing the N largest prices overall, not per family). The heading
    # promises "up to N per constraint family", and Solution.top_prices' per_family exists so large
    # equality duals (batch scheduling's start_once, ~50 here) cannot hide the capacity rows
    # (kv_memory, ~0.1): with --prices 2 both families must be listed, each at most twice
    path = str(tmp_path / "b.json")
    assert cli.main(["generate", "batch_scheduling", "-o", path]) == 0
    capsys.readouterr()
    assert cli.main(["solve", path, "--relax", "--prices", "2"]) == 0
    out = capsys.readouterr().out
    assert "up to 2 per constraint family" in out
    listed = out.split("up to 2 per constraint family", 1)[1].splitlines()[1:]
    families = [line.strip().split("[")[0] for line in listed if line.startswith("  ") and " = " in line]
    assert families.count("kv_memory") == 2 and families.count("start_once") == 2
    assert all(families.count(f) <= 2 for f in families)


def test_caching_generator_capacity_is_the_share_of_the_catalogue_and_gaps_are_1_over_rate():
    # kills G5 (capacity from another expression than cache_share x total size) and G4 (gaps drawn
    # with mean rate instead of 1/rate). Definitions (generate's docstring): capacity is
    # cache_share of the catalogue's total size, rounded to whole tokens; arrivals are Poisson at
    # `rate` per second, so the mean of 19,999 exponential gaps is 1/rate = 0.01 s with a relative
    # standard error of 1/sqrt(19999) = 0.7%: 5% is 7 standard errors (G4's mean gap is 100 s)
    inst = caching_instances.generate(requests=20_000, objects=400, rate=100.0, cache_share=0.05,
                                      seed=0)
    assert inst.capacity == np.round(0.05 * inst.size.sum())
    assert float(inst.time[0]) == 0.0
    assert float(inst.time[-1]) / 19_999 == pytest.approx(0.01, rel=0.05)


def test_a_refresh_share_is_raised_to_at_least_100_requests():
    # kills BP6 (the floor of a share refresh: 100 -> 1), now stated in BidPrice's docstring:
    # refresh = 0.01 of 1000 requests is 10 requests, raised to the floor: a window of 100
    from servopt.solvers.caching import BidPrice

    inst = caching_instances.generate(requests=1000, objects=100, seed=0)
    rule = BidPrice(refresh=0.01)
    rule.replay(inst)
    assert rule.window == 100


def test_azure_reader_keeps_file_order_for_two_rows_at_one_timestamp(tmp_path):
    # kills T8 (a sort that reverses tied arrivals). Rows 2 and 3 share t = 1 s: a stable sort
    # keeps them in file order, prompts 20 then 30
    path = tmp_path / "a.csv"
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n0,10,1\n1,20,2\n1,30,3\n2,40,4\n")
    frame = traces.read_azure(path)
    assert frame[["arrival_s", "prompt_tokens"]].to_numpy().tolist() == [
        [0, 10], [1, 20], [1, 30], [2, 40]]


@pytest.mark.parametrize("sense", ["min", "max"])
def test_equality_duals_in_both_conventions(sense):
    # kills N2 (Pyomo's equality dual negated) and N3 (CVXPY's equality sign flipped). By hand,
    # from normalise_dual's definitions: a servopt equality price is d objective / d rhs. Pyomo's
    # dual of body == rhs already is that, in either sense: 2.5 -> 2.5. CVXPY's multiplier of
    # lhs == rhs is minus it when minimising and plus it when maximising: 2.5 -> -2.5 (min),
    # 2.5 (max)
    assert normalise_dual(2.5, sense=sense, row="eq", convention="pyomo") == 2.5
    assert normalise_dual(2.5, sense=sense, row="eq", convention="cvxpy") == (
        -2.5 if sense == "min" else 2.5)
