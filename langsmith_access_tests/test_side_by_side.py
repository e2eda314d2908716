"""One thing done for each org at once (side_by_side.py): the sensors' looks, ``doctor --all-orgs``
and the delivery of every org's notifications rely on its order, its limit and its deadline."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from langsmith_access import side_by_side
from langsmith_access.settings import Org, Settings
from langsmith_access.side_by_side import each_org_side_by_side


def _orgs(*slugs: str) -> list[Org]:
    return [Org(slug, Settings()) for slug in slugs]


def test_the_results_come_by_slug_in_the_orgs_order():
    results = each_org_side_by_side(_orgs("c", "a", "b"), lambda org: org.slug.upper(), at_once=3)
    assert list(results.items()) == [("c", "C"), ("a", "A"), ("b", "B")]
    assert each_org_side_by_side([], lambda org: 1, at_once=4) == {}


def test_orgs_run_side_by_side_up_to_the_limit_and_no_more():
    # Two at a time: each look waits for a second one to be under way (one at a time, it would
    # wait in vain), and never are three under way together.
    two = threading.Barrier(2, timeout=10)
    lock, running, most = threading.Lock(), [0], [0]

    def look(org: Org) -> str:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            two.wait()
        finally:
            with lock:
                running[0] -= 1
        return org.slug

    assert list(each_org_side_by_side(_orgs("a", "b", "c", "d"), look, at_once=2)) == ["a", "b", "c", "d"]
    assert most[0] == 2


def test_a_limit_below_one_still_looks_at_every_org():
    assert each_org_side_by_side(_orgs("a", "b"), lambda org: org.slug, at_once=0) == {"a": "a", "b": "b"}


def test_one_org_is_done_in_the_calling_thread():
    caller = threading.current_thread()
    assert each_org_side_by_side(_orgs("a"), lambda org: threading.current_thread() is caller, at_once=4) == {
        "a": True}


def test_no_org_starts_after_the_deadline_and_those_left_are_left_out(monkeypatch):
    # A clock each look moves on by 10 s, one look at a time: "a" starts at 0 and "b" at 10, both
    # by the deadline (10); "c" would start at 20, and is left out (not done, not in the results).
    clock = [0.0]
    monkeypatch.setattr(side_by_side, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    done: list[str] = []

    def look(org: Org) -> str:
        done.append(org.slug)
        clock[0] += 10
        return org.slug

    assert each_org_side_by_side(_orgs("a", "b", "c"), look, at_once=1, start_by=10.0) == {"a": "a", "b": "b"}
    assert done == ["a", "b"]
    # One org past its deadline is left out too (no shortcut around the deadline).
    assert each_org_side_by_side(_orgs("d"), look, at_once=1, start_by=clock[0] - 1) == {}
    assert done == ["a", "b"]


def test_a_look_that_raises_raises_to_the_caller():
    def look(org: Org) -> str:
        if org.slug == "b":
            raise RuntimeError("b failed")
        return org.slug

    with pytest.raises(RuntimeError, match="b failed"):
        each_org_side_by_side(_orgs("a", "b", "c"), look, at_once=2)
