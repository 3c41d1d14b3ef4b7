"""bound(time_limit=...) on an instance whose migration cost is beyond the MILP's range keeps the
valid makespan bound and says so (R14: it raised, and gap_table lost the whole table)."""
import pytest

from servopt.benchmarks import expert_placement as bench
from servopt.instances.expert_placement import Instance


def _costly_moves() -> Instance:
    return Instance(loads=[[[8.85e-7, 6.81e-7, 6.41e-7]]], num_nodes=1, num_groups=1,
                    gpus_per_node=3, slots_per_gpu=1, previous_placement=[[1, 0, 1]],
                    migration_cost=1000, gpu_speed=[0.5, 2, 0.5])


def test_the_makespan_bound_is_kept_with_a_note():
    found = bench.bound(_costly_moves(), time_limit=10)
    # by hand: all the load over all the speed, (8.85 + 6.81 + 6.41)e-7 / 3
    assert found.value == pytest.approx(22.07e-7 / 3, rel=1e-12)
    assert found.kind == "lower_bound"
    assert "migration cost beyond the MILP's range" in found.status


def test_gap_table_has_rows_for_it():
    from servopt.benchmarks.harness import gap_table

    table = gap_table(_costly_moves(), ["eplb"], bound_kw={"time_limit": 10})
    assert table.loc[0, "bound_kind"] == "lower_bound" and table.loc[0, "gap"] >= 0
