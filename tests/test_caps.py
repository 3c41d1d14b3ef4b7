"""Size caps refuse what they cannot afford, naming the cap, before allocating anything.

Each cap's value and comment are measured (see the comments at the constants); these tests
check that a request just over a cap is refused up front (traced allocations stay under a
megabyte, where a run would allocate hundreds) and that the generators hold the memory they
are documented to hold. None allocates anything near a cap.
"""

from __future__ import annotations

import tracemalloc

import pytest

from servopt.benchmarks import capacity as capacity_bench
from servopt.benchmarks import expert_placement as placement_bench
from servopt.benchmarks import harness
from servopt.core import InvalidInstanceError
from servopt.instances import caching, expert_placement
from servopt.instances import capacity as capacity_instances

MB = 2**20


def _peak(call) -> tuple[int, BaseException | None]:
    """Peak traced allocation (bytes) while ``call()`` runs, and what it raised."""
    tracemalloc.start()
    try:
        call()
        raised = None
    except Exception as exc:  # (returned to the test)
        raised = exc
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak, raised


DEEPSEEK_LOADS = 58 * 256  # loads per window of the deepseek_v3 preset (layers x experts)


def test_expert_placement_just_over_max_loads_is_refused_before_allocating():
    windows = expert_placement.MAX_LOADS // DEEPSEEK_LOADS + 1  # the first count over the cap
    assert (windows - 1) * DEEPSEEK_LOADS <= expert_placement.MAX_LOADS < windows * DEEPSEEK_LOADS
    peak, raised = _peak(lambda: expert_placement.generate("deepseek_v3", windows=windows))
    assert isinstance(raised, InvalidInstanceError)
    assert f"at most {expert_placement.MAX_LOADS:,}" in str(raised)
    assert f"{windows * DEEPSEEK_LOADS:,} expert loads" in str(raised)
    assert peak < MB  # (generating it would allocate 8 bytes x 20 million per array)


def test_expert_placement_generator_holds_four_arrays_of_loads_at_most():
    # the comment at MAX_LOADS quotes ~33 bytes a load for generate(): the loads array it
    # returns, its Poisson counts, the instance's validated copy and NumPy's temporaries; the
    # generator built six temporary arrays of the same size before (8 arrays at the peak)
    expert_placement.generate("deepseek_v3", windows=2)  # (imports and caches outside the trace)
    instance = None

    def make() -> None:
        nonlocal instance
        instance = expert_placement.generate("deepseek_v3", windows=20)

    peak, raised = _peak(make)
    assert raised is None
    assert peak < 4.5 * instance.loads.nbytes, peak / instance.loads.nbytes


def test_expert_placement_run_at_max_loads_fits_in_a_gigabyte():
    # what generating an instance and scoring an EPLB plan on it allocate per load, scaled to
    # the cap (all of it grows with windows x layers x experts): under 1 GiB at 2e7 loads. The
    # old cap, 1e8, with the old generator's ~64 bytes a load, was 6.4 GB.
    placement_bench.evaluate(expert_placement.generate("deepseek_v3", windows=2), "eplb")
    loads = 20 * DEEPSEEK_LOADS

    def run() -> None:
        placement_bench.evaluate(expert_placement.generate("deepseek_v3", windows=20), "eplb")

    peak, raised = _peak(run)
    assert raised is None
    assert peak / loads * expert_placement.MAX_LOADS < 2**30, peak / loads


def test_caching_run_at_max_requests_fits_in_three_gigabytes():
    # the instance (16 bytes a request, 32 an object) and belady's peak (the larger of lru's and
    # belady's), per request, scaled to the cap: under 3 GiB at 1e7 requests (2.4 GB peak RSS
    # measured at the cap). The old cap, 5e7, came to ~11 GB.
    n = 50_000
    harness.evaluate(caching.generate(requests=1000, objects=500), "belady")
    instance = None

    def run() -> None:
        nonlocal instance
        instance = caching.generate(requests=n, objects=n // 2)
        harness.evaluate(instance, "belady")

    peak, raised = _peak(run)
    assert raised is None
    assert peak / n * caching.MAX_REQUESTS < 3 * 2**30, peak / n


def test_caching_generator_just_over_max_requests_is_refused_before_allocating():
    peak, raised = _peak(lambda: caching.generate(requests=caching.MAX_REQUESTS + 1, objects=400))
    assert isinstance(raised, InvalidInstanceError)
    assert f"at most {caching.MAX_REQUESTS:,}" in str(raised) and "requests" in str(raised)
    assert peak < MB


def test_caching_popularity_table_cap_is_its_own():
    # phases x objects is capped by the popularity table's size, not by the request cap: the
    # largest catalogue with the default 5 phases stays allowed
    objects = caching.MAX_OBJECTS
    assert 5 * objects <= caching.MAX_PHASE_CELLS
    caching._check_multimodal(1000, objects, 0.9, 0.05, 0.1, 5, 100.0)  # (not refused)
    phases = caching.MAX_PHASE_CELLS // objects + 1
    with pytest.raises(InvalidInstanceError, match=f"at most {caching.MAX_PHASE_CELLS:,}"):
        caching._check_multimodal(1000, objects, 0.9, 0.05, 0.1, phases, 100.0)


def test_capacity_run_just_over_max_requests_is_refused_before_allocating():
    instance = capacity_instances.generate(requests=200, seed=1)
    n = capacity_bench.MAX_REQUESTS + 1
    peak, raised = _peak(lambda: capacity_bench.saturated_throughput(instance, n_requests=n))
    assert isinstance(raised, InvalidInstanceError)
    assert f"at most {capacity_bench.MAX_REQUESTS:,} arrivals" in str(raised)
    assert peak < MB
    with pytest.raises(InvalidInstanceError, match=f"at most {capacity_bench.MAX_REQUESTS:,}"):
        capacity_bench.find_knee(instance, n_requests=n)
