"""HAProxy task moves: a change that only moves tasks keeps the configuration's id (the agent
then fills and empties server slots through the runtime API), and the commands it sends."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from interlock.config import default_config
from interlock.edges.haproxy_slot_moves import SlotMoves, apply, busy_servers, command_lines, plan
from interlock.errors import ReloadFailed
from interlock.model.build import build
from interlock.model.docker_json import snapshot_from_api
from interlock.render.haproxy import render_haproxy
from interlock.render.haproxy_slots import slot_count, with_targets
from interlock.testing.swarm_json import swarm_json
from tests.unit.test_build import routing_of, service
from tests.unit.test_state_delta import SWARMS

EXT = default_config(Kind="haproxy").extensions["default"]


def rendered(replicas: int, port: str = "8080"):  # type: ignore[no-untyped-def]
    return render_haproxy(routing_of(service("web", replicas=replicas, hosts="web.local", port=port)), EXT)


def test_scaling_within_the_slots_keeps_the_id_and_outgrowing_them_changes_it() -> None:
    assert slot_count(0) == slot_count(1) == slot_count(3) == slot_count(4) == 4
    assert slot_count(5) == slot_count(8) == 8 and slot_count(9) == 16
    one, three, five = rendered(1), rendered(3), rendered(5)
    assert one.config_id == three.config_id != five.config_id
    assert one.targets_id != three.targets_id
    assert one.text != three.text, "the text itself names the current tasks (a restart loads them)"


def test_a_move_takes_leaving_tasks_out_and_fills_empty_slots_before_theirs() -> None:
    old = "interlock haproxy targets 1 a\nweb.local 10.0.0.1:8080 10.0.0.2:8080\n"
    new = "interlock haproxy targets 1 b\nweb.local 10.0.0.1:8080 10.0.0.3:8080 [fd00::4]:8080\n"
    # .2 left: its slot goes out (and stays empty, as there are empty slots for the new tasks).
    moved = plan(old, new)
    assert moved == SlotMoves(
        "interlock haproxy targets 1 b\nweb.local 10.0.0.1:8080 - 10.0.0.3:8080 [fd00::4]:8080\n",
        gone=("web.local/s1",),
        fill=(("web.local/s2", "10.0.0.3:8080"), ("web.local/s3", "[fd00::4]:8080")),
    )
    assert plan(moved.placed, old) == SlotMoves(
        "interlock haproxy targets 1 a\nweb.local 10.0.0.1:8080 10.0.0.2:8080\n",
        gone=("web.local/s2", "web.local/s3"),
        fill=(("web.local/s1", "10.0.0.2:8080"),),
    )
    assert plan(old, old) == SlotMoves(old)
    with pytest.raises(ValueError, match="backends differ"):
        plan(old, "interlock haproxy targets 1 c\nother.local 10.0.0.1:80\n")


def test_staying_tasks_keep_their_slots_and_new_ones_take_empty_slots_first() -> None:
    """The renderer lists a backend's tasks in its own order; the agent keeps each staying task
    where it is, so no slot changes task under a request."""

    def doc(*lines: str) -> str:
        return "\n".join(["interlock haproxy targets 1 x", *lines]) + "\n"

    # A task that sorts first arrives (the e2e canary): it takes the empty s1, .1 stays in s0;
    # the reverse takes s1 out and leaves .1 where it is.
    canary = plan(doc("web.local 10.0.0.1:80"), doc("web.local 10.0.0.0:80 10.0.0.1:80"))
    assert canary == SlotMoves(doc("web.local 10.0.0.1:80 10.0.0.0:80"), fill=(("web.local/s1", "10.0.0.0:80"),))
    assert plan(canary.placed, doc("web.local 10.0.0.1:80")) == SlotMoves(
        doc("web.local 10.0.0.1:80"), gone=("web.local/s1",)
    )
    # A rolling update, stop-first: s0's task leaves (its slot stays empty), its replacement
    # then takes the empty s0, and nothing else moves.
    rolled = plan(doc("web.local 10.0.0.1:80 10.0.0.2:80 10.0.0.3:80"), doc("web.local 10.0.0.2:80 10.0.0.3:80")).placed
    assert rolled == doc("web.local - 10.0.0.2:80 10.0.0.3:80")
    assert plan(rolled, doc("web.local 10.0.0.2:80 10.0.0.3:80 10.0.0.4:80")) == SlotMoves(
        doc("web.local 10.0.0.4:80 10.0.0.2:80 10.0.0.3:80"), fill=(("web.local/s0", "10.0.0.4:80"),)
    )
    # A full backend: a newcomer takes the slot of the task that left, once that slot is idle.
    full = doc("web.local 10.0.0.1:80 10.0.0.2:80 10.0.0.3:80 10.0.0.4:80")
    assert plan(full, doc("web.local 10.0.0.0:80 10.0.0.2:80 10.0.0.3:80 10.0.0.4:80")) == SlotMoves(
        doc("web.local 10.0.0.0:80 10.0.0.2:80 10.0.0.3:80 10.0.0.4:80"),
        gone=("web.local/s0",),
        refill=(("web.local/s0", "10.0.0.0:80"),),
    )
    # Unchanged lines stay as they are, holes and all.
    assert plan(rolled, doc("web.local 10.0.0.2:80 10.0.0.3:80")) == SlotMoves(rolled)


class FakeRuntime:
    """HAProxy's runtime API as the moves see it: what was sent, and slots that carry a request
    for the first `busy_for` asks of `show servers conn`."""

    def __init__(self, busy: set[str], busy_for: int) -> None:
        self.sent: list[str] = []
        self.busy, self.busy_for = busy, busy_for

    async def __call__(self, line: str) -> str:
        self.sent.extend(line.split(";"))
        if line.startswith("show servers conn"):
            self.busy_for -= 1
            used = 1 if self.busy_for >= 0 else 0
            header = "# bkname/svname bkid/svid addr port - purge_delay used_cur used_max need_est ..."
            return "\n".join([header, *(f"{s} 3/1 10.0.0.9 80 - 5000 {used} 1 1 0 0 -1 0 0 0" for s in self.busy)])
        return ""


async def test_a_slot_takes_its_new_task_only_once_no_request_uses_it() -> None:
    # .1 leaves s0; of the two new tasks, .0 takes the empty s3 and .5 the slot .1 left.
    moves = plan(
        "interlock haproxy targets 1 c\nweb.local 10.0.0.1:8080 10.0.0.2:8080 10.0.0.3:8080\n",
        "interlock haproxy targets 1 d\nweb.local 10.0.0.0:8080 10.0.0.2:8080 10.0.0.3:8080 10.0.0.5:8080\n",
    )
    runtime = FakeRuntime({"web.local/s0"}, busy_for=3)
    await apply(moves, runtime)
    out = runtime.sent.index("set server web.local/s0 state maint")
    new_address = runtime.sent.index("set server web.local/s0 addr 10.0.0.5 port 8080")
    assert out < runtime.sent.index("set server web.local/s3 state ready") < new_address, "the empty slot serves first"
    # Three asks said s0 was busy (the fill of s3 made the first); the fourth found it idle.
    assert runtime.sent[out:new_address].count("show servers conn web.local") == 4, "asked until s0 was idle"
    assert runtime.sent[-1] == "set server web.local/s0 state ready"

    with pytest.raises(ReloadFailed, match="still carried a request"):
        await apply(moves, FakeRuntime({"web.local/s0"}, busy_for=10**6), idle_wait=0.1)
    assert busy_servers(
        "# header\nb/s0 3/1 10.0.0.1 80 - 5000 0 1 1 0 1 -1 1 0 1\nb/s1 3/2 10.0.0.2 80 - 5000 2 2\n"
    ) == {"b/s1"}


def test_many_commands_are_split_into_lines_within_the_limit() -> None:
    commands = [f"set server b/s{i} state ready" for i in range(100)]
    lines = command_lines(commands, limit=200)
    assert len(lines) > 1 and all(len(line) < 200 for line in lines)
    assert ";".join(lines).split(";") == commands
    assert command_lines([]) == []
    assert command_lines(["one", "two"]) == ["one;two"]


@settings(max_examples=60, deadline=None)
@given(SWARMS, st.data())
def test_a_configuration_with_moved_targets_is_what_rendering_them_prints(services: list[Any], data: Any) -> None:
    """What the agent keeps as HAProxy's live file after a run-time move: the text of the
    routing whose tasks moved, byte for byte, so a restart serves the servers it served."""
    moved = [{**s, "replicas": data.draw(st.integers(0, 3))} for s in services]
    ext = default_config(Kind="haproxy").extensions["default"]
    before = render_haproxy(build(snapshot_from_api(swarm_json({"services": services}))).routings[""], ext)
    after = render_haproxy(build(snapshot_from_api(swarm_json({"services": moved}))).routings[""], ext)
    if before.config_id == after.config_id:
        assert with_targets(before.text, after.targets) == after.text


def test_a_task_that_came_and_one_that_went_are_in_the_kept_file() -> None:
    ext = default_config(Kind="haproxy").extensions["default"]
    before = render_haproxy(routing_of(service("web", replicas=2, hosts="web.local", port="80")), ext)
    after = render_haproxy(routing_of(service("web", replicas=3, hosts="web.local", port="80")), ext)
    assert before.config_id == after.config_id and before.text != after.text
    assert with_targets(before.text, after.targets) == after.text
    assert with_targets(after.text, before.targets) == before.text


def test_a_slot_kept_empty_between_filled_ones_is_a_disabled_spare_in_the_kept_file() -> None:
    three = rendered(3)
    name, *addresses = three.targets.splitlines()[1].split()
    holes = f"{three.targets.splitlines()[0]}\n{name} - {' '.join(addresses[1:])}\n"
    kept = with_targets(three.text, holes)
    assert "server s0 0.0.0.0:80" in kept and kept.count(" disabled") == three.text.count(" disabled") + 1
    assert f"server s1 {addresses[1]}" in kept
