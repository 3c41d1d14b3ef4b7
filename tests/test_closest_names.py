"""A misspelled option is pointed at the name the user most likely meant: a name it begins as
whole words before difflib's closest spelling (R42: ``from_trace(..., gpus=4)`` was asked "did
you mean 'gpu_speed'?" though ``gpus_per_node`` was meant)."""

from __future__ import annotations

import pytest

from servopt.core import InvalidInstanceError
from servopt.core.checks import closest_names
from servopt.instances import expert_placement as ep


@pytest.mark.parametrize(("name", "accepted", "expected"), [
    ("gpus", ["gpu_speed", "gpus_per_node", "window"], ["gpus_per_node"]),   # whole-word prefix
    ("slots", ["slots_per_gpu", "slot"], ["slots_per_gpu"]),
    ("windw", ["window", "gpus_per_node"], ["window"]),                      # a spelling slip
    ("gpu", ["gpus_per_node"], []),                # 'gpu' is not a whole word of 'gpus_per_node'
    ("zzz", ["window"], []),
])
def test_closest_names_by_hand(name, accepted, expected):
    assert closest_names(name, accepted) == expected


def test_from_trace_points_gpus_at_gpus_per_node(tmp_path):
    with pytest.raises(InvalidInstanceError, match=r"did you mean 'gpus' -> 'gpus_per_node'\?"):
        ep.from_trace(tmp_path / "never_read.json", gpus=4)
