"""Every backend reports the same decisions: the same fields, labelled the same way, each
derived field (a request's start round, its worker, the cache's occupancy) consistent with the
raw values it comes from. Before, the CVXPY path returned the raw variables only: the batch
model's x over the whole request x round grid and no ``start``, the decode model's x as a
(request, worker) series and no ``worker``, the caching flow LP without ``occupancy``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import servopt
from servopt.instances import library
from servopt.models import batch_scheduling as batch_model

BACKENDS = ("highs", "pyomo", "cvxpy")


@pytest.fixture(scope="module", params=["bs_offline_10", "cache_mm_300", "dr_hindsight_8x2",
                                        "cap_code"])
def solved(request: pytest.FixtureRequest) -> tuple:
    instance = library.load(request.param)
    return instance, {b: servopt.solve(instance, relax=True, backend=b) for b in BACKENDS}


def test_same_fields_and_labels(solved: tuple) -> None:
    instance, by_backend = solved
    reference = by_backend["highs"]
    for backend, solution in by_backend.items():
        assert solution.objective == pytest.approx(reference.objective, rel=1e-6), backend
        assert sorted(solution.decisions) == sorted(reference.decisions), backend
        for name, value in solution.decisions.items():
            expected = reference.decisions[name]
            assert type(value) is type(expected), (backend, name)
            assert list(value.index.names) == list(expected.index.names), (backend, name)
            if name != "x" or instance.decision != "batch_scheduling":  # batch x: nonzero only
                assert value.index.equals(expected.index), (backend, name)
            if isinstance(value, pd.DataFrame):
                assert value.columns.equals(expected.columns), (backend, name)


def test_derived_fields_follow_the_raw_values(solved: tuple) -> None:
    instance, by_backend = solved
    for backend, solution in by_backend.items():
        d = solution.decisions
        if instance.decision == "batch_scheduling":
            assert (d["x"] > 1e-9).all(), backend
            for request in range(instance.n):
                rows = d["x"][d["x"].index.get_level_values("request") == request]
                top = rows.max() if len(rows) else 0.0
                first = rows[rows == top].index.get_level_values("round").min() if len(rows) else -1
                expected = -1 if d["late"][request] >= top else first
                assert d["start"][request] == expected, (backend, request)
        elif instance.decision == "decode_routing":
            assert d["x"].shape == (instance.n_requests, instance.workers)
            assert (d["worker"] == d["x"].to_numpy().argmax(axis=1)).all(), backend
        elif instance.decision == "caching":
            # occupancy over gap t (between requests t and t+1): tokens of the intervals kept
            # across it, each from a request of an object to that object's next request
            objects = np.asarray(instance.object_id)
            sizes = np.asarray(instance.size, dtype=float)
            keep = d["keep"]
            expected = np.zeros(instance.requests - 1)
            for start in keep.index:
                later = np.flatnonzero(objects[start + 1:] == objects[start])
                end = start + 1 + later[0]
                expected[start:end] += sizes[objects[start]] * keep[start]
            np.testing.assert_allclose(d["occupancy"].to_numpy(), expected, rtol=1e-6,
                                       atol=1e-6 * sizes.max(), err_msg=backend)


def test_start_is_the_earliest_of_equal_largest_values() -> None:
    """Ties broken the same way on every path: the earliest round of a request's largest start
    value; late when its late value is at least that."""
    request = np.array([0, 0, 0, 1, 2, 2])
    rounds = np.array([7, 3, 5, 2, 4, 9])
    x = np.array([0.4, 0.4, 0.2, 0.5, 0.5, 0.5])
    late = np.array([0.0, 0.5, 0.0, 1.0])
    for order in (np.arange(6), np.arange(6)[::-1]):
        d = batch_model.labelled_decisions(request[order], rounds[order], x[order], late)
        assert d["start"].tolist() == [3, -1, 4, -1]
        assert len(d["x"]) == 6 and d["late"].tolist() == late.tolist()


def test_a_one_request_cache_has_an_empty_occupancy_on_every_backend() -> None:
    """No gap: the HiGHS and Pyomo flow forms report an empty occupancy; CVXPY left it out."""
    from servopt.instances import caching

    instance = caching.generate(requests=1, objects=2, seed=0)
    for backend in BACKENDS:
        d = servopt.solve(instance, relax=True, backend=backend).decisions
        assert sorted(d) == ["keep", "occupancy"], backend
        assert len(d["occupancy"]) == 0 and d["occupancy"].index.name == "gap", backend
