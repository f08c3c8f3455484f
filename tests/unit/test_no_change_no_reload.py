"""Nothing is rendered, sent or reloaded when the result is byte-identical (issue 4)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from interlock.config import default_config
from interlock.model.build import build
from interlock.model.docker_json import snapshot_from_api
from interlock.roles.agent import Agent
from interlock.testing.fakes import FakeNginx, FakePeer
from interlock.testing.swarm_json import swarm_json
from interlock.wire.messages import ClusterState, ProxyConfig

EXT = default_config().extensions["default"]


DYNAMIC = default_config(Config={"DynamicUpstreams": True}).extensions["default"]


def state(version: int, replicas: int = 1, ext: object = EXT) -> ClusterState:
    service = {
        "name": "a",
        "networks": ["n"],
        "replicas": replicas,
        "labels": {"com.docker.lb.hosts": "a.local", "com.docker.lb.port": "80"},
    }
    routing = build(snapshot_from_api(swarm_json({"services": [service]}))).routings[""]
    settings = ext.model_dump(by_alias=True, mode="json")  # type: ignore[attr-defined]
    return ClusterState(version, "", "default", routing, settings, epoch="e")


async def test_agent_does_not_reload_for_the_configuration_it_serves(tmp_path: Path) -> None:
    fake = FakeNginx()
    agent = Agent(extension=FakePeer(), proxy=fake, name="p1")
    config = ProxyConfig(1, "d1", "id1", "text")
    await agent.apply(config)
    await agent.apply(replace(config, version=2))
    await agent.apply(ProxyConfig(3, "d2", "id2", "text2"))
    assert fake.installs == ["id1", "id2"]


async def test_agent_applies_a_targets_only_change_without_a_reload() -> None:
    fake = FakeNginx()
    agent = Agent(extension=FakePeer(), proxy=fake, name="p1")
    await agent.apply(ProxyConfig(1, "d1", "id1", "text", "targets-a", "ta"))
    await agent.apply(ProxyConfig(2, "d2", "id1", "text", "targets-b", "tb"))
    await agent.apply(ProxyConfig(3, "d3", "id1", "text", "targets-b", "tb"))
    await agent.apply(ProxyConfig(4, "d4", "id2", "text2", "targets-c", "tc"))
    assert fake.installs == ["id1", "id2"], "a reload only when nginx.conf changed"
    assert fake.target_changes == ["tb"]
    assert agent.digest == "d4"
