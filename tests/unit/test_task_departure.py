"""Docker's sign that it stops this task: its address leaves tasks.<service> (twice in a row),
only after it was listed; listed again, it was not a stop; a DNS that does not answer says
nothing (scripted lookups, a real /proc/net/fib_trie text)."""

from __future__ import annotations

import asyncio

import pytest

from interlock.edges.task_departure import Departure, DepartureSignal, local_addresses, watch_departure

OWN = frozenset({"10.0.1.7", "10.0.5.3"})
PEER = "10.0.1.9"

# A proxy container's table: the control network and one app network.
FIB_TRIE = """\
Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 10.0.1.0/24 2 0 2
        +-- 10.0.1.0/29 2 0 2
           |-- 10.0.1.0
              /32 link BROADCAST
              /24 link UNICAST
           |-- 10.0.1.7
              /32 host LOCAL
        |-- 10.0.1.255
           /32 link BROADCAST
     +-- 10.0.5.0/24 2 0 2
        |-- 10.0.5.3
           /32 host LOCAL
     +-- 127.0.0.0/8 2 0 2
           |-- 127.0.0.1
              /32 host LOCAL
Local:
     +-- 10.0.5.0/24 2 0 2
        |-- 10.0.5.3
           /32 host LOCAL
"""


def test_the_containers_addresses_are_its_local_host_routes_without_loopback() -> None:
    assert local_addresses(FIB_TRIE) == OWN


def observed(*answers: frozenset[str] | None) -> list[Departure | None]:
    signal = DepartureSignal(OWN)
    return [signal.observe(a) for a in answers]


def test_leaving_once_listed_then_absent_twice_in_a_row() -> None:
    listed, others, none = frozenset({"10.0.1.7", PEER}), frozenset({PEER}), frozenset[str]()
    assert observed(listed, others, others) == [None, None, Departure.LEAVING]
    assert observed(listed, none, none) == [None, None, Departure.LEAVING], "the last task: no such name"
    assert observed(listed, others, listed, others) == [None, None, None, None], "one miss is not a sign"


def test_nothing_before_the_task_was_listed() -> None:
    """A task with a health check is listed once healthy: absent before that is no sign."""
    assert observed(frozenset(), frozenset(), frozenset({PEER})) == [None, None, None]


def test_a_dns_that_does_not_answer_says_nothing() -> None:
    listed = frozenset({"10.0.1.7"})
    assert observed(listed, None, None, None, listed) == [None] * 5


def test_listed_again_after_leaving_is_back_once() -> None:
    listed, none = frozenset({"10.0.5.3"}), frozenset[str]()
    assert observed(listed, none, none, none, listed, listed) == [
        None,
        None,
        Departure.LEAVING,
        None,
        Departure.BACK,
        None,
    ]


async def test_the_watch_asks_for_tasks_of_its_service_and_reports_each_change() -> None:
    script = [frozenset({"10.0.1.7"}), frozenset(), frozenset(), frozenset(), frozenset({"10.0.1.7"})]
    asked: list[str] = []
    changes: list[Departure] = []
    finished = asyncio.Event()

    async def resolve(name: str) -> frozenset[str] | None:
        asked.append(name)
        if not script:
            finished.set()
            await asyncio.Event().wait()
        return script.pop(0)

    async def record(change: Departure) -> None:
        changes.append(change)

    watch = asyncio.create_task(watch_departure("interlock-proxy", record, own=OWN, resolve=resolve, every=0))
    await asyncio.wait_for(finished.wait(), 5)
    watch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await watch
    assert set(asked) == {"tasks.interlock-proxy"}
    assert changes == [Departure.LEAVING, Departure.BACK]


async def test_without_its_own_addresses_the_watch_gives_up_at_once() -> None:
    async def never(name: str) -> frozenset[str] | None:
        raise AssertionError("no lookup without addresses")

    async def record(change: Departure) -> None:
        raise AssertionError("no change")

    await asyncio.wait_for(watch_departure("p", record, own=frozenset(), resolve=never), 5)
