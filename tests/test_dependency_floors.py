"""What keeps servopt working at the lowest dependency versions pyproject.toml allows
(constraints-min.txt), checked on whatever versions are installed."""

from __future__ import annotations

import concurrent.futures as cf

import numpy as np
import pytest

from servopt.instances import caching as ci
from servopt.models import caching as mc


@pytest.mark.parametrize("requests", [0, 1])
@pytest.mark.parametrize("form", mc.FORMS)
def test_the_caching_cvxpy_model_has_no_zero_size_constraint(requests, form):
    # CVXPY before 1.9 refuses a constraint of shape (0,) ("Invalid dimensions (0,)"); the empty
    # families of a stream without a gap were such constraints
    inst = ci.Instance(time=np.arange(float(requests)), object_id=np.zeros(requests, dtype=int),
                       size=[1.0], miss_cost=[1.0], capacity=1.0)
    model = mc.build_cvxpy(inst, form=form)
    assert all(con.size > 0 for con in model.problem.constraints)
    assert set(model.constraints) == ({"occupancy_balance", "cache_capacity"} if form == "flow"
                                      else {"cache_capacity"})
    assert all(len(index) == 0 for _, index in model.constraints.values())


def test_a_cancelled_future_is_named_without_distributeds_future_cancelled_error(monkeypatch):
    # distributed before 2024.7 has no FutureCancelledError (a cancelled future raises
    # concurrent.futures' CancelledError): importing it was an ImportError inside the handler
    client = pytest.importorskip("distributed.client")
    from servopt.benchmarks import cluster as checks

    monkeypatch.delattr(client, "FutureCancelledError", raising=False)
    lost = checks.one_line(cf.CancelledError("servopt-abc"), [], "tcp://h:8786")
    assert str(lost).startswith("lost the Dask scheduler tcp://h:8786 mid-run (CancelledError)")
