"""HAProxy task moves: a change that only moves tasks keeps the configuration's id (the agent
then fills and empties server slots through the runtime API), and the commands it sends."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from interlock.config import default_config
from interlock.edges.haproxy_control import command_lines, runtime_commands
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


def test_runtime_commands_fill_change_and_empty_slots() -> None:
    old = "interlock haproxy targets 1 a\nweb.local 10.0.0.1:8080 10.0.0.2:8080\n"
    new = "interlock haproxy targets 1 b\nweb.local 10.0.0.1:8080 10.0.0.3:8080 [fd00::4]:8080\n"
    assert runtime_commands(old, new) == [
        "set server web.local/s1 addr 10.0.0.3 port 8080",
        "set server web.local/s1 state ready",
        "set server web.local/s2 addr fd00::4 port 8080",
        "set server web.local/s2 state ready",
    ]
    assert runtime_commands(new, old) == [
        "set server web.local/s1 addr 10.0.0.2 port 8080",
        "set server web.local/s1 state ready",
        "set server web.local/s2 state maint",
    ]
    assert runtime_commands(old, old) == []
    with pytest.raises(ValueError, match="backends differ"):
        runtime_commands(old, "interlock haproxy targets 1 c\nother.local 10.0.0.1:80\n")


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
