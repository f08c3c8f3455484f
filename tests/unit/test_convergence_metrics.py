"""The core's control-plane metrics: the time from publishing a cluster's new state to every
proxy serving a configuration that reflects it, and the proxies' reloads and reloads avoided,
timed on a fake clock."""

from __future__ import annotations

from prometheus_client import REGISTRY

from interlock.config import default_config
from interlock.model.docker_json import snapshot_from_api
from interlock.render.bundle import RenderedConfig
from interlock.roles.core.board import Board
from interlock.testing.fakes import FakeClock
from interlock.testing.swarm_json import swarm_json
from interlock.wire.messages import ConfigRef, ExtensionReport, ProxyReport

CLUSTER = {"cluster": ""}


def sample(name: str, labels: dict[str, str] = CLUSTER) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def app(replicas: int) -> dict[str, object]:
    labels = {"com.docker.lb.hosts": "shop.local", "com.docker.lb.port": "80"}
    return {"name": "shop", "networks": ["apps"], "replicas": replicas, "labels": labels}


def config(version: int, config_id: str) -> ConfigRef:
    rendered = RenderedConfig(f"# {config_id}", config_id)
    return ConfigRef(version, rendered.digest, config_id)


async def test_a_state_is_timed_until_every_proxy_serves_it() -> None:
    clock = FakeClock()
    board = Board(default_config(), gate_on_proxies=False, clock=clock)
    count, total = sample("interlock_core_convergence_seconds_count"), sample("interlock_core_convergence_seconds_sum")

    assert board.publish(snapshot_from_api(swarm_json({"services": [app(1)]})))
    clock.now += 0.4
    one_behind = (ProxyReport("p1", "c1", "d", True, reloads=1), ProxyReport("p2", "c0", "d", True))
    await board.note_report(
        "default", ExtensionReport("default", "", config(1, "c1"), proxies=one_behind, state_version=1)
    )
    assert sample("interlock_core_convergence_seconds_count") == count, "p2 does not serve it yet"

    clock.now += 0.2
    both = (ProxyReport("p1", "c1", "d", True, reloads=1), ProxyReport("p2", "c1", "d", True, target_updates=4))
    await board.note_report("default", ExtensionReport("default", "", config(1, "c1"), proxies=both, state_version=1))
    assert sample("interlock_core_convergence_seconds_count") == count + 1
    assert abs(sample("interlock_core_convergence_seconds_sum") - total - 0.6) < 1e-9
    assert sample("interlock_core_served_state_version") == 1
    assert sample("interlock_proxy_reloads", {"cluster": "", "proxy": "p1"}) == 1
    assert sample("interlock_proxy_target_updates", {"cluster": "", "proxy": "p2"}) == 4

    # A later report of the same thing times nothing again; a new state is timed on its own.
    await board.note_report("default", ExtensionReport("default", "", config(1, "c1"), proxies=both, state_version=1))
    assert sample("interlock_core_convergence_seconds_count") == count + 1
    assert board.publish(snapshot_from_api(swarm_json({"services": [app(2)]})))
    clock.now += 1.5
    await board.note_report("default", ExtensionReport("default", "", config(1, "c1"), proxies=both, state_version=1))
    assert sample("interlock_core_convergence_seconds_count") == count + 1, "state 2 is not reflected yet"
    await board.note_report("default", ExtensionReport("default", "", config(2, "c2"), proxies=tuple(
        ProxyReport(p.proxy, "c2", "d", True) for p in both), state_version=2))  # fmt: skip
    assert sample("interlock_core_convergence_seconds_count") == count + 2
    assert abs(sample("interlock_core_convergence_seconds_sum") - total - 2.1) < 1e-9
