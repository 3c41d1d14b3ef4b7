"""The benchmark registry's ``Case``: what a case file may declare."""

from __future__ import annotations

import pytest

from servopt.benchmarks.registry import Case
from servopt.core import InvalidInstanceError
from servopt.solvers import caching as rules


@pytest.mark.parametrize("methods", [("lru", rules.LRU()), "lru", (rules.LRU,)])
def test_a_case_names_its_methods(methods):
    # before: a policy object was accepted and the runner failed later inside json.dumps; a bare
    # string was read as one method per character
    with pytest.raises(InvalidInstanceError, match="methods must be a tuple of POLICIES names"):
        Case(name="mine", decision="caching", methods=methods)


def test_a_case_with_names_or_the_default_methods_builds():
    assert Case(name="mine", decision="caching", methods=("lru", "gdsf")).method_list() == [
        "lru", "gdsf"]
    assert "lru" in Case(name="mine", decision="caching").method_list()
