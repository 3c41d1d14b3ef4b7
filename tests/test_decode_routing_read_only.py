"""Decode routing: a router that writes into the simulator's read-only arrays (its view's, or the
instance's) gets an InvalidInstanceError naming its method, the file and line of the write, and
what to do, not numpy's bare ValueError (as batch scheduling's policies do)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from shared import marked_line

import servopt
from servopt.benchmarks import decode_routing as bench
from servopt.core import InvalidInstanceError
from servopt.instances import decode_routing as gen
from servopt.solvers import decode_routing as routing


class _WritesPrompt(routing.Router):
    name = "writes_prompt"

    def choose(self, view, request):
        view.prompt[0] = 3
        return 0


class _WritesOnStep(routing.Router):
    def on_step(self, view):
        view.kv_running += 1


class _WritesInHelper(routing.Router):
    def route(self, view, ids):
        self._order(view)
        for i in ids:
            view.assign(int(i), 0)

    def _order(self, view):
        view.running.sort()


class _WritesInReset(routing.Router):
    def reset(self, instance, seed=0):
        super().reset(instance, seed)
        instance.prompt[:] = 1  # read-only in the instance

    def choose(self, view, request):
        return 0


@pytest.mark.parametrize("router, where", [
    (_WritesInReset(), r"router _WritesInReset: its reset\(\) wrote into a read-only array of "
                       r"the instance"),
    (_WritesPrompt(), r"router _WritesPrompt \('writes_prompt'\): its choose\(\) \(called from its "
                      r"route\(\)\) wrote into a read-only array"),
    (_WritesOnStep(), r"router _WritesOnStep: its on_step\(\) wrote into a read-only array"),
    (_WritesInHelper(), r"its _order\(\) \(called from its route\(\)\) wrote"),
])
def test_a_router_writing_into_a_read_only_array_is_told_which_method_and_what_to_do(router, where):
    instance = gen.generate_steps(workload="code", requests=10, workers=3, seed=1)
    with pytest.raises(InvalidInstanceError, match=where) as info:
        bench.evaluate(instance, router)
    assert "copy one first" in str(info.value)
    assert "read-only" in str(info.value.__cause__)  # numpy's error stays attached


def test_the_read_only_message_comes_through_gap_table():
    # gap_table gives a failing method an error row (as servopt bench does) and a warning that
    # names the method's label with the message
    instance = gen.generate_steps(workload="code", requests=10, workers=3, seed=1)
    where = r"its choose\(\) \(called from its route\(\)\)"
    with pytest.warns(RuntimeWarning, match=r"method 'writes_prompt' failed: InvalidInstanceError: .*"
                      + where):
        table = servopt.gap_table(instance, [_WritesPrompt()])
    assert re.search(where, table.loc[0, "status"]) and table.loc[0, "status"].startswith("error")


def test_a_router_s_own_value_error_is_not_rewritten():
    class Refuses(routing.Router):
        def choose(self, view, request):
            raise ValueError("no worker fits")

    instance = gen.generate_steps(workload="code", requests=10, workers=3, seed=1)
    with pytest.raises(ValueError, match="no worker fits") as info:
        bench.evaluate(instance, Refuses())
    assert type(info.value) is ValueError


def test_a_router_that_copies_first_runs_and_matches_least_kv():
    # the message's advice works: a local copy may be edited, and the routes are least-KV's
    class CopiesFirst(routing.Router):
        def choose(self, view, request):
            load = np.array(view.kv_running)
            load += view.kv_queued
            return int(np.argmin(load))

    instance = gen.generate_steps(workload="code", requests=30, workers=3, seed=1)
    assert bench.evaluate(instance, CopiesFirst()).cost == bench.evaluate(instance, "least_kv").cost


def _line(tag: str) -> tuple[int, str]:
    return marked_line(__file__, tag)


class _WritesKvRunning(routing.Router):
    def choose(self, view, request):
        view.kv_running[0] = 5  # writes: view
        return 0


class _WritesPromptInReset(routing.Router):
    def reset(self, instance, seed=0):
        super().reset(instance, seed)
        instance.prompt[:] = 1  # writes: reset

    def choose(self, view, request):
        return 0


@pytest.mark.parametrize(("router", "tag", "head"), [
    (_WritesKvRunning(), "view", "router _WritesKvRunning: its choose() (called from its route()) "
                                 "wrote into a read-only array of the view or instance"),
    (_WritesPromptInReset(), "reset", "router _WritesPromptInReset: its reset() wrote into a "
                                      "read-only array of the instance"),
])
def test_the_message_names_the_file_and_line_of_the_write(router, tag, head):
    # it used to name only the method (closes: batch and decode lacked what caching and expert
    # placement say); the line is found by its marker comment, not written down
    number, text = _line(tag)
    instance = gen.generate_steps(workload="code", requests=10, workers=3, seed=1)
    with pytest.raises(InvalidInstanceError) as info:
        bench.evaluate(instance, router)
    message = str(info.value)
    assert message.startswith(f"{head} ({__file__}, line {number}: {text}) (")
    assert re.search(r"\(assignment destination is read-only\): the simulator's arrays "
                     r"\(view.prompt, .*\) are read-only while a router runs; copy one first "
                     r"\(np.array\(view.kv_running\)\) to change it, and route with "
                     r"view.assign\(i, g\)$", message)
