"""The real roles on loopback, in one process: the core (its board, watcher and API) on a swarm
held in memory, the extension (render, real `nginx -t` or `haproxy -c`, its API) and one proxy
agent driving a real nginx or HAProxy, talking to each other over HTTP exactly as on a swarm
(signed calls; no TLS, which `tests/unit/test_signed_calls.py` covers, so certificates are let
through plain HTTP here: `plain_keys`). The core reads the certificate secrets from
`secrets_dir`. Every byte they send each other is counted by what it was for, so tests and
benchmarks can see what one change costs.

For the tests that check the control plane at scale (tests/nginx/test_real_roles_at_scale.py)
and bench/control_plane_bytes.py. Only loopback: every task of the swarm is at 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from interlock.config import CoreConfig
from interlock.edges.docker_source import EventStream
from interlock.edges.haproxy_control import HAProxyController
from interlock.edges.nginx_control import NginxController
from interlock.edges.peer_http import PeerClient
from interlock.edges.proxy_control import ProxyControl
from interlock.render.haproxy_certificates import CERTIFICATES_DIR
from interlock.roles.agent import Agent
from interlock.roles.core import Core
from interlock.roles.extension import Extension
from interlock.testing.swarm_json import fake_id, swarm_json

EXTENSION_TOKEN = "extension-token-0123456789"
PROXY_TOKEN = "proxy-token-0123456789abc"
OPERATOR_TOKEN = "operator-token-0123456789"


class MemorySwarm:
    """A swarm's lists in memory, as the Engine API returns them; every task on loopback: at
    127.0.0.1 (where the test's backend listens), or with `distinct`, each task at an address of
    its own in 127.0.0.0/8 (so a task added is a target added). The caller drives the core."""

    def __init__(
        self, services: Sequence[Mapping[str, Any]], *, secrets: Sequence[str] = (), distinct: bool = False
    ) -> None:
        self.secrets = list(secrets)
        self.distinct = distinct
        self.set_services(services)

    def set_services(self, services: Sequence[Mapping[str, Any]]) -> None:
        raw = swarm_json({"services": list(services)})
        for task in raw["tasks"]:
            # From the task's ID, so a task keeps its address when others come and go.
            index = int(str(task["ID"])[:6], 16) if self.distinct else 1
            address = f"127.{index >> 16 & 255}.{index >> 8 & 255}.{index & 255 or 1}"
            for attachment in task.get("NetworksAttachments") or ():
                attachment["Addresses"] = [f"{address}/8"]
        self.raw = raw

    def list_swarm(self) -> dict[str, list[dict[str, Any]]]:
        return copy.copy(self.raw)

    def list_secrets(self) -> list[dict[str, Any]]:
        return [{"ID": fake_id("secret", name), "Spec": {"Name": name, "Labels": {}}} for name in self.secrets]

    def stream_events(self, on_event: Callable[[dict[str, Any]], None], on_end: Callable[..., None]) -> EventStream:
        raise NotImplementedError("the caller drives the core's rounds (Core.watcher.resync)")


class CountingClient(PeerClient):
    """A `PeerClient` that adds up the bytes of each call, both ways, by method and path."""

    def __init__(self, base_url: str, token: str, counts: Counter[str]) -> None:
        super().__init__(base_url, token)
        self.counts = counts

    async def get(self, path: str, *, params: dict[str, str] | None = None, timeout: float = 30) -> tuple[int, bytes]:
        status, body = await super().get(path, params=params, timeout=timeout)
        self.counts[f"GET {path}"] += len(body)
        return status, body

    async def post(self, path: str, body: bytes, *, timeout: float = 10) -> tuple[int, bytes]:
        status, answer = await super().post(path, body, timeout=timeout)
        self.counts[f"POST {path}"] += len(body) + len(answer)
        return status, answer


@dataclass
class RealRoles:
    core: Core
    extension: Extension
    agent: Agent
    swarm: MemorySwarm
    counts: Counter[str] = field(default_factory=Counter)
    """Bytes between the roles (request and answer bodies), by method and path."""

    async def change(self, services: Sequence[Mapping[str, Any]]) -> None:
        """The swarm changes and the core sees it (one round, as after an event)."""
        self.swarm.set_services(services)
        await self.core.watcher.resync()

    async def served(self, what: str, timeout: float = 300) -> None:
        """Until the proxy serves the configuration of the core's newest state, its report has
        reached the core, and the core holds nothing older."""
        slot = self.core.board.slots["default"]

        def done() -> bool:
            state, report, current = slot.state, slot.report, self.extension.current
            return (
                state is not None
                and current is not None
                and self.extension.state_version == state.version
                and (self.agent.proxy.config_id, self.agent.proxy.targets_id) == (current.config_id, current.targets_id)
                and report is not None
                and report.state_version == state.version
                and any(
                    (p.config_id, p.targets_id) == (current.config_id, current.targets_id) and p.ok
                    for p in report.proxies
                )
            )

        await until(done, what, timeout)


async def until(check: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        await asyncio.sleep(0.05)


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def real_roles(
    config: CoreConfig, swarm: MemorySwarm, workdir: Path, *, secrets_dir: Path, proxy_binary: str
) -> AsyncIterator[RealRoles]:
    """The three roles serving `swarm` with `config` (one extension, "default"), until the block ends."""
    kind = config.extensions["default"].kind
    counts: Counter[str] = Counter()
    core = Core(
        config,
        swarm,
        None,
        service_name="interlock",
        extension_tokens={"default": EXTENSION_TOKEN},
        operator_token=OPERATOR_TOKEN,
        core_url="unused",
        certificates_dir=secrets_dir,
        plain_keys=True,
    )
    core_runner, core_url = await _serve(core.api.app())
    extension = Extension(
        name="default",
        core=CountingClient(core_url, EXTENSION_TOKEN, counts),
        proxy_token=PROXY_TOKEN,
        plain_keys=True,
    )
    extension_runner, extension_url = await _serve(extension.app())
    controller: ProxyControl = (
        HAProxyController(
            workdir / "haproxy",
            haproxy=proxy_binary,
            secrets_dir=secrets_dir,
            # Where the extension's configuration names its files (the state map, the crt-list),
            # as in a proxy task.
            certificates_dir=Path(CERTIFICATES_DIR),
            log=workdir / "haproxy.log",
        )
        if kind == "haproxy"
        else NginxController(workdir / "nginx", nginx=proxy_binary, confirm_timeout=120, check_timeout=300)
    )
    agent = Agent(
        extension=CountingClient(extension_url, PROXY_TOKEN, counts),
        proxy=controller,
        name="proxy-1",
    )
    tasks: list[asyncio.Task[Any]] = []
    try:
        await core.watcher.resync()
        tasks += [
            asyncio.create_task(c)
            for c in (
                extension.follow_core(),
                extension.certificates.follow_core(),
                extension.report_to_core(),
                extension.traffic_to_core(),
            )
        ]
        await agent.boot(workdir / "no-mounted-config")
        tasks += [
            asyncio.create_task(c)
            for c in (agent.follow(), agent.follow_certificates(), agent.report_loop(), agent.watch_proxy())
        ]
        yield RealRoles(core, extension, agent, swarm, counts)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await controller.stop()
        for client in (extension.core, agent.extension):
            await client.close()
        await extension_runner.cleanup()
        await core_runner.cleanup()


def status_json(roles: RealRoles) -> dict[str, Any]:
    """The operator's view (`interlock status --json`), as the core builds it."""
    import msgspec

    status = roles.core.board.status(ready=roles.core.watcher.ready)
    return dict(json.loads(msgspec.json.encode(status)))
