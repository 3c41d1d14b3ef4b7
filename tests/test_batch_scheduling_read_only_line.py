"""Batch scheduling: a policy that writes into the state's read-only arrays is told the file and
line of the write (as caching and expert placement policies are: ``harness.written_at``), and
what it was told before (the method, numpy's error, what to do). It used to name only the
method. The expected line is found by its marker comment, not written down."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
from shared import marked_line

from servopt.benchmarks import batch_scheduling as bench
from servopt.core import InvalidInstanceError
from servopt.instances import batch_scheduling as inst_mod
from servopt.solvers import batch_scheduling as rules


def _line(tag: str) -> tuple[int, str]:
    return marked_line(__file__, tag)


class WritesGenerated(rules.FCFS):
    def admit(self, state: Any) -> np.ndarray:
        state.generated[0] = 1  # writes: admit
        return super().admit(state)


class WritesInAHelper(rules.FCFS):
    def preempt(self, state: Any, excess: int) -> np.ndarray:
        self._reset(state)
        return super().preempt(state, excess)

    def _reset(self, state: Any) -> None:
        state.admitted_at[:] = 0  # writes: helper


class WritesAnUnnamedArray(rules.FCFS):
    def admit(self, state: Any) -> np.ndarray:
        seen = state.prompt
        seen += 1  # writes: unnamed
        return super().admit(state)


@pytest.mark.parametrize(("policy", "method", "tag", "code", "example"), [
    (WritesGenerated(), "admit", "admit", "state.generated[0] = 1", "generated"),
    (WritesInAHelper(), "preempt", "helper", "state.admitted_at[:] = 0", "admitted_at"),
    # the line names no array of the state: the default example, the line all the same
    (WritesAnUnnamedArray(), "admit", "unnamed", "seen += 1", "generated"),
])
def test_a_policy_writing_into_the_state_is_told_the_file_and_line(policy, method, tag, code,
                                                                   example):
    instance = inst_mod.generate(30, lengths="azure", concurrency=1.5, seed=11)
    assert bench.simulate(instance, rules.FCFS())["preemptions"] > 0  # preempt() is asked
    number, text = _line(tag)
    assert text.startswith(code)
    where = f"{__file__}, line {number}: {text}"
    with pytest.raises(InvalidInstanceError) as info:
        bench.simulate(instance, policy)
    message = str(info.value)
    assert message.startswith(f"the policy's {method}() wrote into an array of the state "
                              f"({where}) (")
    assert re.search(r"\((assignment destination|output array) is read-only\): the state's "
                     r"per-request arrays are the simulator's and read-only; copy one first "
                     rf"\(np.array\(state.{example}\)\) to change it$", message)
    assert isinstance(info.value.__cause__, ValueError)  # numpy's error kept as the cause


def test_the_line_comes_through_evaluate():
    instance = inst_mod.generate(30, lengths="azure", concurrency=1.5, seed=11)
    with pytest.raises(InvalidInstanceError,
                       match=re.escape(f"({__file__}, line {_line('admit')[0]}: ")):
        bench.evaluate(instance, WritesGenerated())
