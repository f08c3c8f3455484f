"""Run-time routing against a real nginx: the catch-all servers route what the labels say
(hosts, context roots with rewrite, redirects, `ssl_only`, TLS terminated, the default host,
unknown hosts, websockets, stickiness), and hosts come and go through the targets document with
the same nginx workers serving: no reload."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import signal
import socket
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from interlock.config import default_config
from interlock.config.schema import ExtensionConfig
from interlock.edges.nginx_control import NginxController
from interlock.edges.role_identities import new_pair
from interlock.model.routing import Route, Routing, Server, Upstream, VirtualHost
from interlock.render.nginx import render_nginx
from tests.nginx.either_kind import HTTP, HTTPS, LoopbackTLS, certificates_of, loopback_routing, workers

pytestmark = pytest.mark.nginx


def extension(tmp_path: Path, **config: object) -> ExtensionConfig:
    settings = {
        "PidPath": str(tmp_path / "nginx.pid"),
        "RuntimeRouting": True,
        "WorkerProcesses": 2,
        "AccessLogPath": "/dev/null",
        **config,
    }
    return default_config(TargetPort=HTTP, TargetSSLPort=HTTPS, PublishedSSLPort=HTTPS, Config=settings).extensions[
        "default"
    ]


def routing(port: int, **extra: dict[str, str]) -> Routing:
    return loopback_routing(
        {
            "web": {"hosts": "web.local", "port": str(port)},
            "app": {"hosts": "app.local", "port": str(port), "context_root": "/app", "context_root_rewrite": "true"},
            "api": {"hosts": "app.local", "port": str(port), "context_root": "/api"},
            "tls": {"hosts": "tls.local", "port": str(port), "ssl_cert": "tls.pem"},
            "only": {"hosts": "only.local", "port": str(port), "ssl_cert": "tls.pem", "ssl_only": "true"},
            "moved": {"hosts": "old.local", "port": str(port), "redirects": "http://old.local,https://new.example"},
            **extra,
        }
    )


@pytest.fixture
async def controller(tmp_path: Path, nginx: str) -> AsyncIterator[NginxController]:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    both, _ = new_pair("tls.local")
    (secrets / "tls.pem").write_bytes(both)
    control = NginxController(tmp_path / "work", nginx=nginx, confirm_timeout=10)
    yield control
    await control.stop(signal.SIGTERM, timeout=15)


async def install(control: NginxController, routing: Routing, ext: ExtensionConfig, tmp_path: Path) -> str:
    rendered = render_nginx(routing, ext)
    await control.update_certificates(certificates_of(routing, tmp_path / "secrets"))
    if control.config_id == rendered.config_id:
        await control.update_targets(rendered.targets, rendered.targets_id)
    else:
        await control.install(rendered.text, rendered.config_id, rendered.targets, rendered.targets_id)
    return rendered.config_id


def get(
    host: str, path: str = "/", *, tls: bool = False, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    """GET with Host `host`: the status, the response headers and the body (JSON when it is)."""
    conn: http.client.HTTPConnection
    conn = LoopbackTLS(host, HTTPS, timeout=5) if tls else http.client.HTTPConnection("127.0.0.1", HTTP, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": host, **(headers or {})})
        response = conn.getresponse()
        body = response.read().decode()
        try:
            parsed: Any = json.loads(body)
            parsed["headers"] = {k.lower(): v for k, v in parsed["headers"].items()}
        except ValueError:
            parsed = body
        return response.status, {k.lower(): v for k, v in response.getheaders()}, parsed
    finally:
        conn.close()


async def test_the_catch_all_servers_route_what_the_labels_say(
    controller: NginxController, backend: int, tmp_path: Path
) -> None:
    await install(controller, routing(backend), extension(tmp_path), tmp_path)
    status, _, body = await asyncio.to_thread(get, "web.local", "/hello?x=1")
    assert status == 200 and body["path"] == "/hello?x=1"
    assert body["headers"]["x-forwarded-proto"] == "http" and body["headers"]["x-real-ip"] == "127.0.0.1"
    assert "upgrade" not in body["headers"], "only a websocket endpoint passes Upgrade"
    # A rewritten context root is cut off; its bare path gets the slash; others keep theirs.
    status, _, body = await asyncio.to_thread(get, "app.local", "/app/x?y=1")
    assert status == 200 and body["path"] == "/x?y=1"
    status, headers, _ = await asyncio.to_thread(get, "app.local", "/app?y=1")
    assert status == 301 and headers["location"] == "/app/?y=1"
    status, _, body = await asyncio.to_thread(get, "app.local", "/api/v1")
    assert status == 200 and body["path"] == "/api/v1"
    status, _, body = await asyncio.to_thread(get, "app.local", "/api")
    assert status == 200 and body["path"] == "/api"
    assert (await asyncio.to_thread(get, "app.local", "/apiv1"))[0] == 404, "/api is not a prefix of /apiv1"
    assert (await asyncio.to_thread(get, "app.local", "/other"))[0] == 404
    assert (await asyncio.to_thread(get, "nobody.local"))[0] == 503
    # TLS terminated here, with the client's address from the PROXY protocol.
    status, _, body = await asyncio.to_thread(get, "tls.local", "/secure", tls=True)
    assert status == 200 and body["path"] == "/secure" and body["headers"]["x-forwarded-proto"] == "https"
    # A host served only over plain HTTP is not served on the TLS listener.
    assert (await asyncio.to_thread(get, "web.local", tls=False))[0] == 200
    # ssl_only sends plain HTTP to HTTPS; redirects send the host elsewhere.
    status, headers, _ = await asyncio.to_thread(get, "only.local", "/p?q=1")
    assert status == 302 and headers["location"] == f"https://only.local:{HTTPS}/p?q=1"
    assert (await asyncio.to_thread(get, "only.local", "/p", tls=True))[0] == 200
    status, headers, _ = await asyncio.to_thread(get, "old.local", "/a?b=1")
    assert status == 302 and headers["location"] == "https://new.example/a?b=1"
    # Interlock's response headers, as before.
    _, headers, _ = await asyncio.to_thread(get, "web.local")
    assert headers["x-upstream-addr"] == f"127.0.0.1:{backend}" and headers["x-request-id"]


async def test_the_default_host_takes_unknown_hosts_and_websockets_pass_upgrade(
    controller: NginxController, backend: int, tmp_path: Path
) -> None:
    extra = {
        "fallback": {"hosts": "fallback.local", "port": str(backend), "default_backend": "true"},
        "ws": {"hosts": "ws.local", "port": str(backend), "websocket_endpoints": "/ws"},
    }
    await install(controller, routing(backend, **extra), extension(tmp_path), tmp_path)
    status, _, body = await asyncio.to_thread(get, "nobody.local", "/x")
    assert status == 200 and body["path"] == "/x"
    status, _, body = await asyncio.to_thread(
        get, "ws.local", "/ws", headers={"Upgrade": "h2c", "Connection": "upgrade"}
    )
    assert body["headers"].get("upgrade") == "h2c" and body["headers"]["connection"] == "upgrade"
    status, _, body = await asyncio.to_thread(get, "ws.local", "/", headers={"Upgrade": "h2c", "Connection": "upgrade"})
    assert status == 200 and "upgrade" not in body["headers"], "not a websocket endpoint"


async def test_hosts_come_and_go_without_a_reload(controller: NginxController, backend: int, tmp_path: Path) -> None:
    ext = extension(tmp_path)
    first = await install(controller, routing(backend), ext, tmp_path)
    before, reloads = workers(controller), controller.reloads
    assert (await asyncio.to_thread(get, "new.local"))[0] == 503
    # A host added, a context root added to another, one host removed: the same nginx.conf.
    changed = loopback_routing(
        {
            "web": {"hosts": "web.local", "port": str(backend), "context_root": "/v2"},
            "new": {"hosts": "new.local", "port": str(backend)},
            "tls": {"hosts": "tls.local", "port": str(backend), "ssl_cert": "tls.pem"},
            "only": {"hosts": "only.local", "port": str(backend), "ssl_cert": "tls.pem", "ssl_only": "true"},
        }
    )
    assert await install(controller, changed, ext, tmp_path) == first, "a routing change keeps nginx.conf"
    # Every worker takes the new table at once: no request after the change sees the old one.
    for _ in range(20):
        assert (await asyncio.to_thread(get, "new.local"))[0] == 200
        assert (await asyncio.to_thread(get, "app.local", "/app/x"))[0] == 503
        assert (await asyncio.to_thread(get, "web.local", "/v2/x"))[0] == 200
        assert (await asyncio.to_thread(get, "web.local", "/x"))[0] == 404
    assert workers(controller) == before and controller.reloads == reloads, "nothing was reloaded"


@contextlib.asynccontextmanager
async def ipv6_task(text: str) -> AsyncIterator[int]:
    """A task on [::1] that answers `text`; its port."""

    async def answer(request: web.Request) -> web.Response:
        return web.Response(text=text)

    app = web.Application()
    app.router.add_get("/", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "::1", 0).start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


async def test_an_ipv6_task_is_reached(controller: NginxController, tmp_path: Path) -> None:
    async with ipv6_task("v6") as port:
        upstream = Upstream("v6.local", (Server("::1", port, "v6"),))
        host = VirtualHost("v6.local", routes=(Route("/", "v6.local"),), services=("v6",))
        await install(controller, Routing("", hosts=(host,), upstreams=(upstream,)), extension(tmp_path), tmp_path)
        status, _, body = await asyncio.to_thread(get, "v6.local")
        assert (status, body) == (200, "v6")


async def test_a_retry_to_ipv6_tasks_leaves_out_the_task_that_failed(
    controller: NginxController, tmp_path: Path
) -> None:
    """With `IPHash`, every request of one client goes to the same task; when that task is gone
    the retry must go to another one. nginx names IPv6 tasks `[addr]:port` in $upstream_addr:
    the balancer must read them so, or it retries the same dead task."""
    async with ipv6_task("alive") as alive:
        # A port nothing listens on whose task the client's hash prefers (rendezvous hashing on
        # "client|[addr]:port", CRC-32 as nginx's), so that every first try goes to it.
        dead = next(p for p in range(20200, 20400) if p != alive and score(p) > score(alive) and not listening(p))
        upstream = Upstream("v6.local", (Server("::1", alive, "v6"), Server("::1", dead, "v6")))
        host = VirtualHost("v6.local", routes=(Route("/", "v6.local"),), services=("v6",))
        routing = Routing("", hosts=(host,), upstreams=(upstream,))
        await install(controller, routing, extension(tmp_path, IPHash=True), tmp_path)
        answers = [await asyncio.to_thread(get, "v6.local") for _ in range(6)]
        assert [(status, body) for status, _, body in answers] == [(200, "alive")] * 6


def score(port: int) -> int:
    """The rendezvous score of the task `[::1]:port` for the client 127.0.0.1, as the balancer's."""
    return zlib.crc32(f"127.0.0.1|[::1]:{port}".encode())


def listening(port: int) -> bool:
    with socket.socket(socket.AF_INET6) as probe:
        return probe.connect_ex(("::1", port)) == 0
