"""The core's watcher on a fake swarm and a fake clock: what it lists, when, and how it
recovers. Time moves only when a test advances it, and Docker calls answer inline, so every
step is deterministic and nothing waits for real."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from interlock.errors import DockerUnavailable
from interlock.model.snapshot import Snapshot
from interlock.roles.core.watcher import LATE_SETTLE_POLL, MIN_SETTLE, SETTLE_POLL, Watcher
from interlock.testing.fakes import FakeClock, FakeSwarm, inline

POLL = 3.0


def app(name: str, replicas: int = 1) -> dict[str, Any]:
    return {
        "name": name,
        "networks": ["apps"],
        "replicas": replicas,
        "labels": {"com.docker.lb.hosts": f"{name}.local", "com.docker.lb.port": "80"},
    }


class Seen:
    def __init__(self) -> None:
        self.snapshots: list[Snapshot] = []

    def __call__(self, snapshot: Snapshot) -> None:
        self.snapshots.append(snapshot)

    @property
    def last(self) -> Snapshot:
        return self.snapshots[-1]

    def services(self) -> set[str]:
        return {s.name for s in self.last.services} if self.snapshots else set()


class Rig:
    def __init__(self, swarm: FakeSwarm) -> None:
        self.swarm = swarm
        self.seen = Seen()
        self.clock = FakeClock()
        self.watcher = Watcher(
            swarm, self.seen, poll_interval=POLL, clock=self.clock, offload=inline, proxies=frozenset({"proxy"})
        )


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    rig = Rig(FakeSwarm({"services": [app("a")]}, secrets=("a.pem",)))
    task = asyncio.create_task(rig.watcher.run())
    await rig.clock.advance(0)
    yield rig
    task.cancel()


async def test_nothing_is_handed_on_before_the_first_full_list() -> None:
    rig = Rig(FakeSwarm({"services": [app("a")]}, secrets=("a.pem",)))
    rig.swarm.down = True
    task = asyncio.create_task(rig.watcher.run())
    await rig.clock.advance(2)
    assert rig.seen.snapshots == [] and not rig.watcher.ready
    rig.swarm.down = False
    await rig.clock.advance(5)  # the next attempt after the backoff
    assert rig.watcher.ready and rig.seen.services() == {"a"}
    assert rig.seen.last.secret_id("a.pem") != "", "the snapshot carries the swarm's secrets"
    task.cancel()


async def test_a_missed_event_is_picked_up_by_the_periodic_resync(rig: Rig) -> None:
    rig.swarm.apps = {"services": [app("a"), app("b")]}  # no event, e.g. lost while reconnecting
    await rig.clock.advance(POLL - 0.2)
    assert rig.seen.services() == {"a"}
    await rig.clock.advance(0.3)
    assert rig.seen.services() == {"a", "b"}


async def test_an_event_is_followed_by_quick_relists_until_tasks_settle(rig: Rig) -> None:
    lists, secret_lists = rig.swarm.lists, rig.swarm.secret_lists
    rig.swarm.set_apps({"services": [app("a"), app("b")]})
    await rig.clock.advance(0.05)  # the burst window (20 ms quiet)
    assert rig.seen.services() == {"a", "b"}
    await rig.clock.advance(MIN_SETTLE)
    settle_lists = rig.swarm.lists - lists
    assert MIN_SETTLE / SETTLE_POLL - 2 <= settle_lists <= MIN_SETTLE / SETTLE_POLL + 2
    assert rig.swarm.secret_lists - secret_lists <= 1, "secrets are not re-listed on every settle poll"
    await rig.clock.advance(2 * POLL)
    assert rig.swarm.lists - lists - settle_lists <= 3, "back to one list per PollInterval"


async def test_a_proxy_task_still_stopping_keeps_the_quick_relists_going_until_it_has_stopped(rig: Rig) -> None:
    """A proxy task's exit is what lets a route over a network only its replacement is on be
    served, and no event says it exited: the watcher lists until it has, not one PollInterval
    later. An app's stopping task, or one on a node that is down, does not hold the lists."""
    rig.swarm.set_apps({"services": [app("a", replicas=0) | {"stopping": 1}]})
    await rig.clock.advance(MIN_SETTLE + 1)
    lists = rig.swarm.lists
    await rig.clock.advance(1)
    assert rig.swarm.lists - lists <= 1, "an app's stopping task does not keep it listing"

    rig.swarm.set_apps({"services": [{"name": "proxy", "stopping": 1}]})
    await rig.clock.advance(MIN_SETTLE + 1)
    lists = rig.swarm.lists
    await rig.clock.advance(1)
    assert rig.swarm.lists - lists >= 1 / LATE_SETTLE_POLL - 1, "still re-listing while a task stops"
    assert rig.swarm.lists - lists <= 1 / LATE_SETTLE_POLL + 1, "more slowly than right after the event"
    rig.swarm.apps = {"services": [{"name": "proxy"}]}  # it has stopped: no event
    await rig.clock.advance(LATE_SETTLE_POLL * 2)
    assert not any(t.desired_state != "running" for t in rig.seen.last.tasks), "seen within a settle poll"
    lists = rig.swarm.lists
    await rig.clock.advance(1)
    assert rig.swarm.lists - lists <= 1, "settled: back to one list per PollInterval"

    down = {"services": [{"name": "proxy", "stopping": 1}], "nodes": [{"name": "n1", "address": "192.0.2.10"}]}
    rig.swarm.set_apps(down)
    rig.swarm.apps = {**down, "nodes": [{"name": "n1", "address": "192.0.2.10", "state": "down"}]}
    await rig.clock.advance(MIN_SETTLE + 1)
    lists = rig.swarm.lists
    await rig.clock.advance(1)
    assert rig.swarm.lists - lists <= 1, "a task on a node that is down does not keep it listing"


async def test_a_secret_event_relists_secrets(rig: Rig) -> None:
    rig.swarm.secret_ids["new.pem"] = "id-new"
    await rig.clock.advance(0.5)
    assert rig.seen.last.secret_id("new.pem") == ""
    rig.swarm.emit({"Type": "secret", "Action": "create", "Actor": {"ID": "id-new"}})
    await rig.clock.advance(0.05)
    assert rig.seen.last.secret_id("new.pem") == "id-new"


async def test_a_lost_stream_reconnects_and_resyncs(rig: Rig) -> None:
    rig.swarm.apps = {"services": [app("a"), app("b")]}
    rig.swarm.end_stream(ConnectionResetError("reset by peer"))
    await rig.clock.advance(0.05)
    assert not rig.watcher.connected and rig.swarm.streams[0].closed
    await rig.clock.advance(0.5)  # the first backoff
    assert len(rig.swarm.streams) == 2 and rig.watcher.connected
    assert rig.seen.services() == {"a", "b"}


async def test_a_stalled_stream_is_noticed_and_replaced(rig: Rig) -> None:
    """The stream stays connected but says nothing while a service changes: the periodic resync
    sees the service's version grow without an event, and the watcher reconnects."""
    rig.swarm.set_apps({"services": [app("a", replicas=2)]}, event=False)
    await rig.clock.advance(POLL + 0.1)
    assert len(rig.seen.last.tasks) == 2, "the change itself is used at once"
    assert rig.swarm.streams[0].closed, "and the silent stream is dropped"
    await rig.clock.advance(0.5)
    assert len(rig.swarm.streams) == 2 and rig.watcher.connected


async def test_an_event_that_comes_with_the_change_is_no_stall(rig: Rig) -> None:
    for replicas in (2, 3, 1):
        rig.swarm.set_apps({"services": [app("a", replicas=replicas)]})
        await rig.clock.advance(POLL + 0.1)
    assert len(rig.swarm.streams) == 1


async def test_docker_down_backs_off_up_to_the_cap_and_recovers(rig: Rig) -> None:
    rig.swarm.down = True
    rig.swarm.end_stream(OSError("daemon gone"))
    await rig.clock.advance(30)
    # Attempts after 0.5, 1, 2, 4, then every 5 s: at 0.5, 1.5, 3.5, 7.5, 12.5 ... 27.5 s.
    assert rig.swarm.failed_calls == 8
    rig.swarm.down = False
    rig.swarm.apps = {"services": [app("b")]}
    await rig.clock.advance(5)
    assert rig.watcher.connected and rig.seen.services() == {"b"}


async def test_resync_raises_when_docker_does_not_answer() -> None:
    rig = Rig(FakeSwarm())
    rig.swarm.down = True
    with pytest.raises(DockerUnavailable):
        await rig.watcher.resync()


async def test_an_answer_not_in_the_api_shape_is_reported_and_retried(rig: Rig) -> None:
    rig.swarm.malformed = True
    rig.swarm.set_apps({"services": [app("a"), app("b")]})
    await rig.clock.advance(1)
    assert rig.seen.services() == {"a"}, "the last good snapshot stays"
    assert not rig.watcher.connected
    rig.swarm.malformed = False
    await rig.clock.advance(5)
    assert rig.watcher.connected and rig.seen.services() == {"a", "b"}


async def test_health_checks_in_containers_cause_no_relist(rig: Rig) -> None:
    """Every task with a health check makes exec events each interval; they route nothing. (On
    a quiet swarm with two such tasks they made the core list and rebuild ten times a second.)"""
    await rig.clock.advance(MIN_SETTLE + 1)
    lists = rig.swarm.lists
    for _ in range(20):
        for action in ("exec_create: python3 -m interlock.healthcheck", "exec_start: python3", "exec_die"):
            rig.swarm.emit({"Type": "container", "Action": action, "Actor": {"ID": "c1"}})
        await rig.clock.advance(0.1)
    assert rig.swarm.lists - lists <= 1, "at most the periodic resync"
    rig.swarm.emit({"Type": "container", "Action": "die", "Actor": {"ID": "c1"}})
    await rig.clock.advance(0.05)
    assert rig.swarm.lists - lists >= 1, "a container that stops is still a change"
