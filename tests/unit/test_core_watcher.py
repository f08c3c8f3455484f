"""The core's watcher on a fake swarm and a fake clock: what it lists, when, and how it
recovers. Time only moves when the watcher sleeps or waits, so nothing here waits for real."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from interlock.errors import DockerUnavailable
from interlock.model.snapshot import Snapshot
from interlock.roles.core.watcher import MIN_SETTLE, Watcher
from interlock.testing.fakes import FakeClock, FakeSwarm

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

    def services(self) -> set[str]:
        return {s.name for s in self.snapshots[-1].services} if self.snapshots else set()


def make(swarm: FakeSwarm) -> tuple[Watcher, Seen, FakeClock]:
    seen, clock = Seen(), FakeClock()
    return Watcher(swarm, seen, poll_interval=POLL, clock=clock), seen, clock


async def until(check: Callable[[], bool], what: str, rounds: int = 2000) -> None:
    """Let the watcher's loop run (fake time) until `check()` holds; bounded in rounds."""
    for _ in range(rounds):
        if check():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"{what}: not within {rounds} rounds")


async def running(watcher: Watcher) -> asyncio.Task[None]:
    task = asyncio.create_task(watcher.run())
    await until(lambda: watcher.ready, "first full list")
    return task


async def test_nothing_is_handed_on_before_the_first_full_list_and_secrets_come_with_it() -> None:
    swarm = FakeSwarm({"services": [app("a")]}, secrets=("a.pem",))
    swarm.down = True
    watcher, seen, _ = make(swarm)
    task = asyncio.create_task(watcher.run())
    await asyncio.sleep(0.01)
    assert seen.snapshots == [] and not watcher.ready
    swarm.down = False
    await until(lambda: watcher.ready, "first list once Docker answers")
    assert seen.services() == {"a"}
    snapshot = seen.snapshots[-1]
    assert snapshot.secrets is not None and snapshot.secret_id("a.pem") != ""
    task.cancel()


async def test_a_missed_event_is_picked_up_by_the_periodic_resync() -> None:
    swarm = FakeSwarm({"services": [app("a")]})
    watcher, seen, clock = make(swarm)
    task = await running(watcher)
    # A service appears without any event (e.g. one lost while the stream reconnected).
    swarm.apps = {"services": [app("a"), app("b")]}
    started = clock.monotonic()
    await until(lambda: "b" in seen.services(), "the new service listed")
    assert clock.monotonic() - started >= POLL - 0.01, "found by the periodic resync, not earlier"
    task.cancel()


async def test_an_event_is_followed_by_quick_relists_until_tasks_settle() -> None:
    swarm = FakeSwarm({"services": [app("a")]})
    watcher, seen, _ = make(swarm)
    task = await running(watcher)
    lists = swarm.lists
    secret_lists = swarm.secret_lists
    swarm.set_apps({"services": [app("a"), app("b")]})
    await until(lambda: "b" in seen.services(), "the new service listed")
    await until(lambda: not watcher.settling(), "settling over")
    # Re-listed about every 0.1 s for at least MIN_SETTLE, but secrets not on every poll.
    assert swarm.lists - lists >= MIN_SETTLE / 0.1 - 2
    assert swarm.secret_lists - secret_lists <= 2
    task.cancel()


async def test_a_secret_event_relists_secrets() -> None:
    swarm = FakeSwarm({"services": [app("a")]})
    watcher, seen, _ = make(swarm)
    task = await running(watcher)
    swarm.secret_ids["new.pem"] = "id-new"
    swarm.emit({"Type": "secret", "Action": "create", "Actor": {"ID": "id-new"}})
    await until(lambda: seen.snapshots[-1].secret_id("new.pem") == "id-new", "the new secret listed")
    task.cancel()


async def test_a_lost_stream_reconnects_and_resyncs() -> None:
    swarm = FakeSwarm({"services": [app("a")]})
    watcher, seen, _ = make(swarm)
    task = await running(watcher)
    swarm.apps = {"services": [app("a"), app("b")]}
    swarm.end_stream(ConnectionResetError("reset by peer"))
    await until(lambda: len(swarm.streams) == 2, "a new stream")
    assert swarm.streams[0].closed
    await until(lambda: "b" in seen.services() and watcher.connected, "resynced after the reconnect")
    task.cancel()


async def test_a_stalled_stream_is_noticed_and_replaced() -> None:
    """The stream stays connected but says nothing while a service changes: the periodic resync
    sees the service's version grow without an event, and the watcher reconnects."""
    swarm = FakeSwarm({"services": [app("a")]})
    watcher, seen, _ = make(swarm)
    task = await running(watcher)
    swarm.set_apps({"services": [app("a", replicas=2)]}, event=False)
    await until(lambda: len(swarm.streams) == 2, "a new stream after the stall")
    assert swarm.streams[0].closed
    await until(lambda: len(seen.snapshots[-1].tasks) == 2, "the change listed")
    task.cancel()


async def test_docker_down_backs_off_up_to_the_cap_and_recovers() -> None:
    swarm = FakeSwarm({"services": [app("a")]})
    watcher, seen, clock = make(swarm)
    task = await running(watcher)
    swarm.down = True
    swarm.end_stream(OSError("daemon gone"))
    await until(lambda: not watcher.connected, "the loss noticed")
    before = clock.monotonic()
    await until(lambda: clock.monotonic() - before > 30, "30 s of fake time")
    attempts = len(swarm.streams)
    swarm.down = False
    swarm.apps = {"services": [app("b")]}
    await until(lambda: watcher.connected and seen.services() == {"b"}, "recovered")
    # 0.5, 1, 2, 4, then 5 s apart: about ten attempts in 30 s, not hundreds.
    assert len(swarm.streams) <= attempts + 1 and attempts < 15
    task.cancel()


async def test_resync_raises_when_docker_does_not_answer() -> None:
    swarm = FakeSwarm()
    swarm.down = True
    watcher, _, _ = make(swarm)
    with pytest.raises(DockerUnavailable):
        await watcher.resync()
