"""The bisection that finds the services making a configuration fail, and the routing without
them: found exactly, within its budget, and never blaming a service for the operator's fault."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from interlock.model.build import build
from interlock.model.culprits import culprits
from interlock.model.docker_json import snapshot_from_api
from interlock.testing.swarm_json import swarm_json
from tests.unit.test_build import routing_of, service

NAMES = st.lists(st.text("abcdefghij", min_size=1, max_size=6), min_size=1, max_size=60, unique=True)


def checker(bad: set[str], calls: list[frozenset[str]]):  # type: ignore[no-untyped-def]
    def check_without(excluded: frozenset[str]) -> tuple[bool, str]:
        calls.append(excluded)
        present = bad - excluded
        return not present, f"refused because of {sorted(present)}"

    return check_without


@given(NAMES, st.data())
def test_every_service_that_fails_alone_is_found_and_no_other(names: list[str], data: st.DataObject) -> None:
    bad = set(data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=3)))
    calls: list[frozenset[str]] = []
    check = checker(bad, calls)
    found = culprits(names, check, check(frozenset())[1])
    assert found is not None and set(found) == bad
    assert all(why == f"refused because of {[name]}" for name, why in found.items())
    assert len(calls) <= 1 + 48


def test_two_services_that_fail_only_together_cost_the_later_one() -> None:
    def check_without(excluded: frozenset[str]) -> tuple[bool, str]:
        together = not {"api", "web"} & excluded
        return not together, 'duplicate location "/x"'

    found = culprits(["api", "db", "web", "zz"], check_without, 'duplicate location "/x"')
    assert found == {"web": 'duplicate location "/x"'}


def test_a_failure_without_any_service_is_nobodys() -> None:
    assert culprits(["a", "b"], lambda excluded: (False, "unknown directive"), "unknown directive") is None


def test_the_search_gives_up_when_its_budget_is_spent() -> None:
    names = [f"s{i:03d}" for i in range(200)]
    bad = set(names[::10])
    assert culprits(names, checker(bad, []), "refused", budget=20) is None
    assert culprits(names, checker(bad, []), "refused", budget=400) == {n: f"refused because of {[n]}" for n in bad}


def test_a_routing_without_a_service_keeps_what_the_others_route() -> None:
    routing = routing_of(
        service("old", hosts="shared.example,old.example", port="80"),
        service("canary", hosts="shared.example", port="80"),
        service("ws", hosts="ws.example", port="80", websocket_endpoints="/socket"),
    )
    narrowed = routing.without(frozenset({"old"}))
    assert [h.name for h in narrowed.hosts] == ["shared.example", "ws.example"]
    shared = narrowed.hosts[0]
    assert shared.services == ("canary",)
    assert {s.service for s in narrowed.upstream(shared.routes[0].upstream).servers} == {"canary"}
    assert narrowed.service_names() == ("canary", "ws")
    assert routing.without(frozenset()) is routing
    assert routing.without(frozenset(routing.service_names())).hosts == ()


def test_two_services_that_fail_only_together_cost_the_newer_one_whatever_their_names() -> None:
    """The oldest service keeps its routes in every conflict: the bisection searches oldest
    first, so `aaa` (created after `zzz`) is the one left out."""

    def check_without(excluded: frozenset[str]) -> tuple[bool, str]:
        return bool({"aaa", "zzz"} & excluded), 'duplicate location "/x"'

    found = culprits(["zzz", "mid", "aaa"], check_without, 'duplicate location "/x"')
    assert found == {"aaa": 'duplicate location "/x"'}


def test_a_routing_lists_its_services_oldest_first() -> None:
    services = [
        {**service(n, hosts=f"{n}.local", port="80"), "created": age} for age, n in enumerate(("zzz", "aaa", "mmm"))
    ]
    routing = build(snapshot_from_api(swarm_json({"services": services}))).routings[""]
    assert routing.services_oldest_first() == ("zzz", "aaa", "mmm")
    assert routing.without(frozenset({"aaa"})).services_oldest_first() == ("zzz", "mmm")
