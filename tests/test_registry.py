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


def test_gap_table_labels_a_users_subclass_by_its_class():
    # a subclass that sets no name inherits the base's generic one ("router", "policy", or a
    # built-in rule's): it is labelled by its class; a name of its own, or of a built-in class, wins
    from servopt.benchmarks.harness import method_label
    from servopt.solvers import decode_routing

    class Mine(decode_routing.Router):
        def route(self, view, ids):
            pass

    class MyLRU(rules.LRU):
        pass

    class Named(rules.LRU):
        name = "named"

    assert [method_label(m) for m in (Mine(), Mine, MyLRU(), Named(), rules.LRU(), rules.LRU, "x")] \
        == ["Mine", "Mine", "MyLRU", "named", "lru", "lru", "x"]
