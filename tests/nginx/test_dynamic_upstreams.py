"""Dynamic upstreams against a real nginx: the servers of an upstream change at run time with no
reload (same nginx.conf, same worker processes), and balancing, retries and stickiness still
behave as nginx's own upstreams do. The backends are small HTTP servers in this process that
answer with their port."""

from __future__ import annotations

import signal
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from interlock.config import default_config
from interlock.constants import STATUS_PORT
from interlock.edges.nginx_control import NginxController
from interlock.errors import ReloadFailed
from interlock.model.routing import Balance, Route, Routing, Server, Upstream, VirtualHost
from interlock.render.bundle import RenderedConfig
from interlock.render.nginx import render_nginx
from tests.nginx.either_kind import workers

pytestmark = pytest.mark.nginx

PROXY = "http://127.0.0.1:18180/"
PORTS = (18191, 18192, 18193, 18194)
DEAD_PORT = 18199


def render(tmp_path: Path, ports: tuple[int, ...], *, balance: Balance = Balance.ROUND_ROBIN) -> RenderedConfig:
    upstream = Upstream(
        "app.local",
        tuple(Server("127.0.0.1", port, "app") for port in ports),
        balance,
        cookie="session" if balance is Balance.COOKIE else "",
    )
    host = VirtualHost("app.local", routes=(Route("/", "app.local"),), services=("app",))
    ext = default_config(TargetPort=18180, TargetSSLPort=18543).extensions["default"]
    config = ext.nginx.model_copy(
        update={
            "pid_path": str(tmp_path / "nginx.pid"),
            "access_log_path": "/dev/null",
            "worker_processes": 2,
            "dynamic_upstreams": True,
            # Upstream blocks named in nginx.conf, servers at run time: without run-time routing.
            "runtime_routing": False,
        }
    )
    return render_nginx(Routing("", hosts=(host,), upstreams=(upstream,)), ext.model_copy(update={"config": config}))


@pytest.fixture
async def backends() -> AsyncIterator[None]:
    runners = []
    for port in PORTS:

        async def answer(request: web.Request, port: int = port) -> web.Response:
            return web.Response(text=str(port))

        app = web.Application()
        app.router.add_get("/", answer)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        runners.append(runner)
    yield
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def controller(tmp_path: Path, nginx: str, backends: None) -> AsyncIterator[NginxController]:
    control = NginxController(tmp_path / "work", nginx=nginx, confirm_timeout=5)
    yield control
    await control.stop(signal.SIGTERM, timeout=10)


async def install(controller: NginxController, rendered: RenderedConfig) -> None:
    await controller.install(rendered.text, rendered.config_id, rendered.targets, rendered.targets_id)


async def served_by(count: int, cookies: dict[str, str] | None = None) -> Counter[int]:
    seen: Counter[int] = Counter()
    async with aiohttp.ClientSession(cookies=cookies) as session:
        for _ in range(count):
            async with session.get(PROXY, headers={"Host": "app.local"}) as response:
                assert response.status == 200, await response.text()
                seen[int(await response.text())] += 1
    return seen


async def test_moving_targets_needs_no_reload(controller: NginxController, tmp_path: Path) -> None:
    first = render(tmp_path, PORTS[:2])
    await install(controller, first)
    assert set(await served_by(8)) == set(PORTS[:2])
    before = workers(controller)

    moved = render(tmp_path, PORTS[1:4])
    assert moved.config_id == first.config_id, "only the targets document may differ"
    assert moved.targets_id != first.targets_id
    await controller.update_targets(moved.targets, moved.targets_id)

    assert set(await served_by(12)) == set(PORTS[1:4])
    assert workers(controller) == before, "the same nginx workers serve: nothing was reloaded"
    assert (controller.reloads, controller.target_updates) == (1, 1)


async def test_a_restart_serves_the_last_targets(controller: NginxController, tmp_path: Path) -> None:
    await install(controller, render(tmp_path, PORTS[:1]))
    moved = render(tmp_path, PORTS[2:3])
    await controller.update_targets(moved.targets, moved.targets_id)
    await controller.stop()
    await controller.start()
    await controller.proxy.confirm(moved.config_id)
    assert set(await served_by(4)) == {PORTS[2]}


async def test_a_dead_target_costs_a_retry_not_an_error(controller: NginxController, tmp_path: Path) -> None:
    await install(controller, render(tmp_path, (PORTS[0], DEAD_PORT)))
    assert set(await served_by(10)) == {PORTS[0]}
    # After its failure (max_fails 1) a worker skips the dead target for fail_timeout (10 s), so
    # each of the two workers tries it at most once: of 20 requests on new connections, at
    # most two needed a second try.
    retried = 0
    for _ in range(20):
        async with aiohttp.ClientSession() as session, session.get(PROXY, headers={"Host": "app.local"}) as response:
            assert response.status == 200
            retried += "," in response.headers["x-upstream-addr"]
    assert retried <= 2


async def test_a_cookie_keeps_its_target_while_others_come_and_go(controller: NginxController, tmp_path: Path) -> None:
    await install(controller, render(tmp_path, PORTS[:3], balance=Balance.COOKIE))
    chosen = {}
    for value in "abcdefghijklmnopqrstuvwxyz":
        seen = await served_by(3, cookies={"session": value})
        assert len(seen) == 1, f"cookie {value} reached {seen}"
        chosen[value] = next(iter(seen))
    assert len(set(chosen.values())) == 3, "different cookies spread over the targets"

    grown = render(tmp_path, PORTS, balance=Balance.COOKIE)
    await controller.update_targets(grown.targets, grown.targets_id)
    now = {value: set(await served_by(2, cookies={"session": value})) for value in chosen}
    moved = {value for value in chosen if now[value] != {chosen[value]}}
    assert moved, "some cookies move to the server that joined"
    assert all(now[value] == {PORTS[3]} for value in moved), f"cookies may only move to the new server: {now}"


async def test_a_bad_or_unauthenticated_update_changes_nothing(controller: NginxController, tmp_path: Path) -> None:
    first = render(tmp_path, PORTS[:1])
    await install(controller, first)
    with pytest.raises(ReloadFailed):
        await controller.update_targets("upstream app.local round_robin -\n", "0123456789abcdef")
    url = f"http://127.0.0.1:{STATUS_PORT}/interlock/targets"
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=render(tmp_path, PORTS[3:]).targets) as response:
            assert response.status == 403
        async with session.get(url) as response:
            assert (await response.text()) == first.targets_id
    assert set(await served_by(3)) == {PORTS[0]}


async def test_an_upstream_missing_from_the_targets_is_an_error_not_another_service(
    controller: NginxController, tmp_path: Path
) -> None:
    first = render(tmp_path, PORTS[:1])
    await install(controller, first)
    empty = "interlock targets 1 00000000000000aa\n"
    await controller.update_targets(empty, "00000000000000aa")
    async with aiohttp.ClientSession() as session, session.get(PROXY, headers={"Host": "app.local"}) as response:
        # nginx turns any exit from the balancer phase into 500; the error log names the upstream.
        assert response.status == 500


def render_two(tmp_path: Path, app_ports: tuple[int, ...], extra_host: bool = False) -> RenderedConfig:
    """app.local on `app_ports`, other.local on PORTS[3]; with `extra_host`, new.local too."""
    names = ["app.local", "other.local", *(["new.local"] if extra_host else [])]
    servers = {"app.local": app_ports, "other.local": PORTS[3:], "new.local": PORTS[:1]}
    upstreams = tuple(Upstream(n, tuple(Server("127.0.0.1", p, n) for p in servers[n])) for n in names)
    hosts = tuple(VirtualHost(n, routes=(Route("/", n),), services=(n,)) for n in names)
    ext = default_config(TargetPort=18180, TargetSSLPort=18543).extensions["default"]
    config = ext.nginx.model_copy(
        update={
            "pid_path": str(tmp_path / "nginx.pid"),
            "access_log_path": "/dev/null",
            "dynamic_upstreams": True,
            "runtime_routing": False,
        }
    )
    return render_nginx(Routing("", hosts=hosts, upstreams=upstreams), ext.model_copy(update={"config": config}))


async def hosts_served(host: str, count: int) -> set[int]:
    async with aiohttp.ClientSession() as session:
        seen = set()
        for _ in range(count):
            async with session.get(PROXY, headers={"Host": host}) as response:
                assert response.status == 200, await response.text()
                seen.add(int(await response.text()))
        return seen


async def test_moves_and_reloads_interleave(controller: NginxController, tmp_path: Path) -> None:
    await install(controller, render_two(tmp_path, PORTS[:1]))
    moved = render_two(tmp_path, PORTS[1:3])
    await controller.update_targets(moved.targets, moved.targets_id)
    assert await hosts_served("app.local", 6) == set(PORTS[1:3])
    assert await hosts_served("other.local", 3) == {PORTS[3]}

    grown = render_two(tmp_path, PORTS[1:3], extra_host=True)  # a new host: a reload
    assert grown.config_id != moved.config_id
    await install(controller, grown)
    assert await hosts_served("new.local", 2) == {PORTS[0]}
    assert await hosts_served("app.local", 6) == set(PORTS[1:3])

    back = render_two(tmp_path, PORTS[:1], extra_host=True)
    await controller.update_targets(back.targets, back.targets_id)
    assert await hosts_served("app.local", 3) == {PORTS[0]}
    assert await hosts_served("other.local", 3) == {PORTS[3]}
    assert (controller.reloads, controller.target_updates) == (2, 2)
