"""gap_table refuses an entry of its methods list that is no method, before anything runs, as its
docstring says (audit R28 #4: ``["lru", 5]``, ``["lru", None]`` and ``["lru", {"a": "lru"}]``
each ran, as a row labelled ``int`` / ``NoneType`` / ``dict`` with an error status and a
RuntimeWarning), and still takes every form that works: names, classes, factories, plan
functions, policy objects and a dict ``{label: method}``."""

from __future__ import annotations

import functools
import importlib
import warnings

import numpy as np
import pytest
from shared import small_instance

import servopt
from servopt.benchmarks import gap_table
from servopt.core import InvalidInstanceError

import toy_decision


def small(decision: str):
    return small_instance(decision, cache_requests=60)


def policies(decision: str) -> dict:
    return importlib.import_module(f"servopt.solvers.{decision}").POLICIES


class Counted:
    """A caching policy that counts its runs (none may start when the list is refused)."""

    starts = 0

    def __init__(self):
        self.inner = policies("caching")["lru"]()

    def start(self, instance):
        Counted.starts += 1
        self.inner.start(instance)

    def touch(self, t, o, hit):
        return self.inner.touch(t, o, hit)


@pytest.mark.parametrize("entry", [5, None, {"a": "lru"}, 2.5, True, ["lru"], ("lru",),
                                   np.float64(1.0), b"lru", np.array([1, 2])])
def test_data_in_a_methods_list_is_refused_before_any_method_runs(entry):
    Counted.starts = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # (before: a RuntimeWarning and an error row)
        with pytest.raises(InvalidInstanceError,
                           match=r"gap_table\(\): methods\[1\] is .* not a caching method"):
            gap_table(small("caching"), [Counted(), entry, "lru"])
    assert Counted.starts == 0


def test_the_message_names_the_entry_and_its_position():
    inst = small("caching")
    with pytest.raises(InvalidInstanceError, match=r"methods\[2\] is 5 \(int\)"):
        servopt.gap_table(inst, ["lru", "fifo", 5])
    with pytest.raises(InvalidInstanceError, match=r"methods\[1\] is None \(NoneType\)"):
        servopt.gap_table(inst, ["lru", None])
    with pytest.raises(InvalidInstanceError,
                       match=r"methods\[1\] is \{'a': 'lru'\} \(dict\), .*a dict \{label: method\} "
                             r"is the whole methods argument"):
        servopt.gap_table(inst, ["lru", {"a": "lru"}])
    with pytest.raises(InvalidInstanceError, match=r"label 'b' is None"):
        servopt.gap_table(inst, {"a": "lru", "b": None})


def test_methods_that_is_not_a_list_is_refused():
    # before: TypeError: 'int' object is not iterable
    with pytest.raises(InvalidInstanceError, match=r"methods is a int, not a list of methods"):
        gap_table(small("caching"), 5)
    with pytest.raises(InvalidInstanceError, match=r"a single policy goes in a list"):
        gap_table(small("caching"), Counted())


@pytest.mark.parametrize("decision, says", [
    ("caching", r"not a caching policy"),
    ("batch_scheduling", r"must be a POLICIES name or an object of a subclass"),
    ("decode_routing", r"a router needs reset\(\), on_step\(\) and route\(\)"),
    ("capacity", r"or a callable policy\(instance, observe\)"),
    ("expert_placement", r"a POLICIES name or a callable instance -> Plan"),
])
def test_an_object_the_decision_refuses_is_refused_by_position(decision, says):
    class NotAPolicy:
        pass

    first = next(iter(policies(decision)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InvalidInstanceError,
                           match=rf"gap_table\(\): methods\[1\] \(NotAPolicy object\) is not a "
                                 rf"{decision} method: .*{says}"):
            gap_table(small(decision), [first, NotAPolicy()])


@pytest.mark.parametrize("decision, name", [
    ("caching", "lru"), ("batch_scheduling", "fcfs"), ("decode_routing", "jsq"),
    ("expert_placement", "eplb"),
])
def test_every_form_that_works_still_runs(decision, name):
    """A class, a factory, an object, a partial and a dict of them: each row ok, with the cost
    of the built-in it stands for (its row by name in the same table)."""
    inst = small(decision)
    value = policies(decision)[name]
    forms = {"by_name": name, "cls": value}
    if isinstance(value, type):
        forms.update(obj=value())
        if decision != "batch_scheduling":  # (its evaluator takes a class or an object only)
            forms.update(factory=lambda: value(), partial=functools.partial(value))
    else:  # a plan function
        forms.update(wrapped=lambda instance: value(instance))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = gap_table(inst, forms).set_index("method")
        listed = gap_table(inst, list(forms.values()))
    assert (table["status"] == "ok").all()
    assert table["cost"].tolist() == [table.loc["by_name", "cost"]] * len(forms)
    assert (listed["status"] == "ok").all() and len(listed) == len(forms)


def test_a_plugin_decision_without_a_resolver():
    inst = toy_decision.make_instance(seed=0)
    with pytest.raises(InvalidInstanceError, match=r"methods\[1\] is None"):
        gap_table(inst, ["greedy", None])
    greedy = toy_decision.POLICIES["greedy"]
    table = gap_table(inst, ["greedy", greedy, lambda instance: greedy(instance)])
    assert (table["status"] == "ok").all() and table["cost"].nunique() == 1


class TouchOnly:
    """Half a caching policy: ``touch`` without ``start``."""

    def touch(self, t, o, hit):
        return 1.0


class StartOnly:
    """Half a caching policy: ``start`` without ``touch``."""

    def start(self, instance):
        pass


@pytest.mark.parametrize("half, missing", [(TouchOnly, "start"), (StartOnly, "touch")])
def test_a_caching_object_missing_start_or_touch_is_refused_before_any_run(half, missing):
    Counted.starts = 0
    with pytest.raises(InvalidInstanceError, match=f"has no {missing} method"):
        gap_table(small("caching"), [Counted(), half()])
    assert Counted.starts == 0
