"""The core notices a lost or stalled Docker API within 10 s, and its routes are right again
within 15 s of the API returning, including services created during the outage (issue 4).

The core's watcher runs in this process against the real dockerd, through a socket forwarder
the test cuts, stalls and restores.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import docker
import pytest

from interlock.config import default_config
from interlock.edges.docker_source import DockerSwarmSource
from interlock.roles.core import Core
from tests.e2e.socket_forwarder import DockerSocketForwarder
from tests.e2e.swarm import E2E_LABEL, IMAGE, lb, sh, unique

pytestmark = pytest.mark.usefixtures("interlock")


def create(name: str) -> None:
    args = [
        "docker",
        "service",
        "create",
        "-d",
        "--quiet",
        "--label",
        f"{E2E_LABEL}=1",
        "--name",
        name,
        "--network",
        "e2e-a",
    ]
    for key, value in lb(hosts=f"{name}.local", port="8080").items():
        args += ["--label", f"{key}={value}"]
    sh(*args, IMAGE, "demo-app")


async def until(check: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until `check()` holds; fails after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout:.0f}s")


def routed_hosts(core: Core) -> set[str]:
    state = core.board.slots["default"].state
    return {h.name for h in state.routing.hosts} if state else set()


@pytest.mark.parametrize("fault", ["cut", "stall"])
async def test_core_recovers_from_docker_api_loss(fault: str, tmp_path: Path) -> None:
    forwarder = DockerSocketForwarder(tmp_path / "docker.sock")
    await forwarder.start()
    # Made in a thread: the client asks the API for its version, through the forwarder that
    # runs on this event loop.
    client = await asyncio.to_thread(
        docker.APIClient, base_url=f"unix://{tmp_path / 'docker.sock'}", version="auto", timeout=5
    )
    source = DockerSwarmSource(client)
    core = Core(
        default_config(),
        source,
        None,
        service_name="test-core",
        extension_tokens={"default": "x" * 20},
        operator_token="o" * 20,
        core_url="http://unused",
    )
    watcher = asyncio.create_task(core.run())
    names = [unique(f"loss-{fault}") for _ in range(3)]
    try:
        create(names[0])
        await until(lambda: f"{names[0]}.local" in routed_hosts(core), 30, "first service routed")

        action: Callable[[], Awaitable[None] | None] = forwarder.cut if fault == "cut" else forwarder.stall
        result = action()
        if result is not None:
            await result
        detected = await until(lambda: not core.watcher.connected, 10, "the core noticing the lost API")
        for name in names[1:]:
            await asyncio.to_thread(create, name)
        await asyncio.sleep(2)
        await forwarder.restore()
        recovered = await until(
            lambda: {f"{n}.local" for n in names} <= routed_hosts(core), 15, "services created during the outage routed"
        )
        print(f"\n{fault}: noticed after {detected:.2f}s; routes right {recovered:.2f}s after the API returned")
    finally:
        watcher.cancel()
        await forwarder.cut()
        for name in names:
            sh("docker", "service", "rm", name, check=False)
