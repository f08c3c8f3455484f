"""The control plane at 10,000 hosts, through the real roles (issue 20): the real core on a swarm
of 10,000 services held in memory, the real extension (with real validation) and a real proxy
agent driving real nginx or HAProxy, talking over HTTP on loopback as on a swarm. At that size
the operator's status, the problems, the exclusions and the configuration the core stores are
all right, a request through the proxy's port reaches its service, and a one-service change
moves reports of a few kilobytes, never the configuration (which is over 1 MiB)."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from interlock.config import default_config
from interlock.edges.role_identities import new_pair
from interlock.render.bundle import RenderedConfig
from interlock.roles.core.board import damaged
from interlock.testing.real_roles import MemorySwarm, RealRoles, real_roles, status_json, until
from interlock.wire.messages import encode

pytestmark = pytest.mark.nginx

HOSTS = 10_000
HTTP, HTTPS = 18380, 18743
BAD = [{"name": f"bad{i}", "networks": ["n"], "labels": {"com.docker.lb.hosts": "x;y"}} for i in range(3)]


def apps(count: int, port: int) -> list[dict[str, Any]]:
    return [
        {
            "name": f"app{i}",
            "networks": [f"net{i % 10}"],
            "labels": {"com.docker.lb.hosts": f"app{i}.example.com", "com.docker.lb.port": str(port)},
        }
        for i in range(count)
    ]


def tls_app(port: int) -> dict[str, Any]:
    """A service naming a certificate and a key that does not fit it (another pair's)."""
    labels = {
        "com.docker.lb.hosts": "mismatch.example.com",
        "com.docker.lb.port": str(port),
        "com.docker.lb.ssl_cert": "one.crt",
        "com.docker.lb.ssl_key": "other.key",
    }
    return {"name": "mismatch", "networks": ["n"], "labels": labels}


def fetch(host: str) -> tuple[int, str]:
    """(status, the Host header the backend saw) of a request through the proxy's port."""
    request = urllib.request.Request(f"http://127.0.0.1:{HTTP}/", headers={"Host": host})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.loads(response.read())["headers"]["Host"]


@pytest.mark.parametrize("kind", ["nginx", "haproxy"])
async def test_ten_thousand_hosts_through_the_real_roles(
    kind: str, nginx: str, haproxy: str, backend: int, tmp_path: Path
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "one.crt").write_bytes(new_pair("one")[1])
    (secrets / "other.key").write_bytes(new_pair("other")[0])
    config = default_config(
        Kind=kind, TargetPort=HTTP, TargetSSLPort=HTTPS, Config={"PidPath": str(tmp_path / "proxy.pid")}
    )
    services = [*apps(HOSTS, backend), *BAD, tls_app(backend)]
    swarm = MemorySwarm(services, secrets=["one.crt", "other.key"])
    binary = haproxy if kind == "haproxy" else nginx
    async with real_roles(config, swarm, tmp_path / "work", secrets_dir=secrets, proxy_binary=binary) as roles:
        await roles.served("the first configuration served")
        slot = roles.core.board.slots["default"]
        # The core could not load the pair; it left out that service alone, and the rest is served.
        await until(lambda: bool(slot.exclusions), "the mismatched pair found", 120)
        await roles.served("the configuration without the mismatched service served")
        await check_the_views(roles)

        # One service more: the roles move reports of a few kilobytes, not the configuration.
        roles.counts.clear()
        await roles.change([*services, *apps(HOSTS + 1, backend)[-1:]])
        await roles.served("the new service served")
        assert await asyncio.to_thread(fetch, f"app{HOSTS}.example.com") == (200, f"app{HOSTS}.example.com")
        reports = sum(n for what, n in roles.counts.items() if what.startswith("POST"))
        config_bytes = len(encode(roles.extension.current))
        assert config_bytes > 1 << 20
        assert reports < 64 << 10, roles.counts
        # The state and the configuration travel as changes (226): all of it under 64 kB.
        assert sum(roles.counts.values()) < 64 << 10, roles.counts
        print(f"{kind}, one service added to {HOSTS:,}: {dict(roles.counts)}")
        assert not any(what.endswith("/config") for what in roles.counts if what.startswith("POST")), (
            "the core asked for no configuration"
        )


async def check_the_views(roles: RealRoles) -> None:
    slot = roles.core.board.slots["default"]
    current = roles.extension.current
    assert current is not None
    status = status_json(roles)
    (cluster,) = status["clusters"]
    assert cluster["hosts"] == HOSTS
    assert cluster["config_id"] == current.config_id
    assert [(p["proxy"], p["config_id"], p["ok"]) for p in cluster["proxies"]] == [("proxy-1", current.config_id, True)]
    assert len(status["routes"]) == HOSTS
    problems = {(p["service"], p["label"]) for p in status["problems"]}
    assert problems == {
        ("bad0", "com.docker.lb.hosts"),
        ("bad1", "com.docker.lb.hosts"),
        ("bad2", "com.docker.lb.hosts"),
        ("mismatch", "com.docker.lb.ssl_key"),
    }
    assert [key[0] for key in slot.exclusions] == [s.id for s in slot_services(roles, "mismatch")]
    # The stored configuration: the core asks for the newest and keeps it intact.
    sent = roles.counts["POST /v1/clusters/default/config"]
    await roles.core.board.want_config("default")
    await until(
        lambda: (
            roles.counts["POST /v1/clusters/default/config"] > sent
            and slot.config is not None
            and slot.config.digest == current.digest
        ),
        "the body asked for and stored",
        60,
    )
    assert slot.config is not None and damaged(slot.config) == ""
    assert RenderedConfig(slot.config.text, slot.config.config_id, slot.config.targets, slot.config.targets_id)
    assert await asyncio.to_thread(fetch, "app9999.example.com") == (200, "app9999.example.com")


def slot_services(roles: RealRoles, name: str) -> list[Any]:
    snapshot = roles.core.board.snapshot
    assert snapshot is not None
    return [s for s in snapshot.services if s.name == name]
