"""The HAProxy kind against a real HAProxy: the rendered configuration routes what the labels
say (hosts, context roots with rewrite, TLS terminated from combined PEMs, unknown hosts), and
the agent's controller validates, reloads seamlessly (no refused connection while it reloads
again and again) and keeps the last good configuration when one is refused."""

from __future__ import annotations

import asyncio
import http.client
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from interlock.config import default_config
from interlock.config.schema import ExtensionConfig
from interlock.edges.haproxy_control import HAProxyController
from interlock.edges.haproxy_slot_moves import busy_servers
from interlock.edges.role_identities import new_pair
from interlock.errors import ConfigRejected
from interlock.model.routing import Routing
from interlock.render.haproxy import render_haproxy
from interlock.render.haproxy_slots import with_targets
from tests.nginx.either_kind import LoopbackTLS, certificates_of, loopback_routing, start_backend

pytestmark = pytest.mark.nginx

HTTP, HTTPS = 18180, 18543


def extension(tmp_path: Path, **config: object) -> ExtensionConfig:
    settings = {"PidPath": str(tmp_path / "haproxy.pid"), **config}
    return default_config(
        Kind="haproxy", TargetPort=HTTP, TargetSSLPort=HTTPS, PublishedSSLPort=HTTPS, Config=settings
    ).extensions["default"]


def routing(port: int, **extra: dict[str, str]) -> Routing:
    return loopback_routing(
        {
            "web": {"hosts": "web.local", "port": str(port)},
            "app": {"hosts": "app.local", "port": str(port), "context_root": "/app", "context_root_rewrite": "true"},
            "tls": {"hosts": "tls.local", "port": str(port), "ssl_cert": "tls.pem"},
            **extra,
        }
    )


@pytest.fixture
async def controller(tmp_path: Path, haproxy: str) -> AsyncIterator[HAProxyController]:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    both, _ = new_pair("tls.local")
    (secrets / "tls.pem").write_bytes(both)
    control = HAProxyController(
        tmp_path / "work", haproxy=haproxy, secrets_dir=secrets, certificates_dir=tmp_path / "certs", confirm_timeout=10
    )
    yield control
    await control.stop(signal.SIGTERM, timeout=15)


async def install(control: HAProxyController, routing: Routing, ext: ExtensionConfig) -> None:
    rendered = render_haproxy(routing, ext, certificates_dir=str(control.certificates_dir))
    await control.update_certificates(certificates_of(routing, control.secrets_dir))
    await control.install(rendered.text, rendered.config_id, rendered.targets, rendered.targets_id)


def get(host: str, path: str = "/", *, tls: bool = False, sni: str = "") -> tuple[int, dict[str, Any] | str]:
    """GET with Host `host`; over TLS, naming `sni` (else `host`) in the hello."""
    if tls:
        conn: http.client.HTTPConnection = LoopbackTLS(sni or host, HTTPS, timeout=5)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", HTTP, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": host})
        response = conn.getresponse()
        body = response.read().decode()
        try:
            return response.status, json.loads(body)
        except ValueError:
            return response.status, body
    finally:
        conn.close()


async def test_the_rendered_configuration_routes_what_the_labels_say(
    controller: HAProxyController, backend: int, tmp_path: Path
) -> None:
    await install(controller, routing(backend), extension(tmp_path))
    status, body = await asyncio.to_thread(get, "web.local", "/hello")
    assert status == 200 and isinstance(body, dict) and body["path"] == "/hello"
    status, body = await asyncio.to_thread(get, "app.local", "/app/x?y=1")
    assert status == 200 and isinstance(body, dict) and body["path"] == "/x?y=1", "the context root is cut off"
    assert (await asyncio.to_thread(get, "app.local", "/other"))[0] == 404
    assert (await asyncio.to_thread(get, "nobody.local"))[0] == 503
    status, body = await asyncio.to_thread(get, "tls.local", "/secure", tls=True)
    assert status == 200 and isinstance(body, dict) and body["path"] == "/secure"


async def test_a_host_header_naming_a_backend_that_is_no_host_reaches_nothing(
    controller: HAProxyController, backend: int, tmp_path: Path
) -> None:
    """Hosts that go whole to the backend named after them are found by name; a Host header
    naming any other backend (a context root's, an internal one, a host only served over TLS
    when asked over plain HTTP's neighbour) is an unknown host, not a way in."""
    ext = extension(tmp_path)
    await install(controller, routing(backend, plain={"hosts": "plain.local", "port": str(backend)}), ext)
    text = controller.live.read_text()
    backends = [line.split()[1] for line in text.splitlines() if line.startswith("backend ")]
    others = [name for name in backends if name not in {"web.local", "tls.local", "plain.local"}]
    assert any(name.startswith("app.local") for name in others) and "interlock_terminator" in others
    for name in others:
        assert (await asyncio.to_thread(get, name))[0] == 503, name
        assert (await asyncio.to_thread(get, name, tls=True, sni="tls.local"))[0] == 503, name
    # A plain-HTTP host is not served on the TLS listener under another host's certificate.
    assert (await asyncio.to_thread(get, "plain.local", tls=True, sni="tls.local"))[0] == 503
    assert (await asyncio.to_thread(get, "plain.local"))[0] == 200


async def test_a_longer_route_under_a_rewritten_context_root_keeps_its_path(
    controller: HAProxyController, backend: int, tmp_path: Path
) -> None:
    # The websocket endpoint shares the context root's backend, so only the rules tell them apart.
    labels = {"hosts": "ws.local", "port": str(backend), "context_root": "/app", "context_root_rewrite": "true"}
    await install(controller, routing(backend, ws={**labels, "websocket_endpoints": "/app/ws"}), extension(tmp_path))
    status, body = await asyncio.to_thread(get, "ws.local", "/app/ws")
    assert status == 200 and isinstance(body, dict) and body["path"] == "/app/ws", "not cut: /app/ws has no rewrite"
    status, body = await asyncio.to_thread(get, "ws.local", "/app/v1/x")
    assert status == 200 and isinstance(body, dict) and body["path"] == "/v1/x", "cut: only /app takes it"


async def test_reloads_refuse_no_connection_and_a_bad_configuration_keeps_the_live_one(
    controller: HAProxyController, backend: int, tmp_path: Path
) -> None:
    ext = extension(tmp_path)
    await install(controller, routing(backend), ext)
    first_pid = controller.process.pid if controller.process else None
    failures: list[str] = []
    done = asyncio.Event()

    def hammer() -> int:
        count = 0
        while not done.is_set():
            try:
                status, _ = get("web.local")
                if status != 200:
                    failures.append(str(status))
            except OSError as exc:
                failures.append(repr(exc))
            count += 1
        return count

    load = asyncio.create_task(asyncio.to_thread(hammer))
    for i in range(8):
        await install(
            controller, routing(backend, **{f"extra{i}": {"hosts": f"x{i}.local", "port": str(backend)}}), ext
        )
    done.set()
    requests = await load
    assert failures == [], f"{len(failures)} of {requests} failed during 8 reloads"
    assert controller.process is not None and controller.process.pid == first_pid, "reloaded, not restarted"
    assert controller.reloads == 9

    live = controller.live.read_text()
    with pytest.raises(ConfigRejected):
        await controller.install(live.replace("balance roundrobin", "balance nonsense"), "bad")
    assert controller.live.read_text() == live
    assert (await asyncio.to_thread(get, "x7.local"))[0] == 200


async def test_task_moves_go_through_the_runtime_api_without_a_reload(
    controller: HAProxyController, backend: int, second_backend: int, tmp_path: Path
) -> None:
    """Scaling and rolling updates only move tasks: the configuration keeps its id, and the
    agent fills and empties server slots of the running HAProxy; no reload, no process change."""
    ext = extension(tmp_path)
    one = routing(backend)
    await install(controller, one, ext)
    pid, reloads = controller.process.pid if controller.process else None, controller.reloads

    two = render_haproxy(routing(second_backend), ext, certificates_dir=str(controller.certificates_dir))
    assert two.config_id == controller.config_id, "only the task moved: the same shape"
    await controller.update_targets(two.targets, two.targets_id)
    status, body = await asyncio.to_thread(get, "web.local")
    assert status == 200 and isinstance(body, dict) and body["task"] == "second"
    assert controller.reloads == reloads and controller.target_updates == 1
    assert controller.process is not None and controller.process.pid == pid
    # HAProxy restarting (the agent starts it again on the live file) serves the moved task:
    # the live file is the rendered one with the slots as the agent filled them (the new task in
    # an empty slot, the old one's slot emptied).
    assert controller.live.read_text() == with_targets(two.text, controller.targets_text)
    assert f"127.0.0.1:{second_backend}" in controller.live.read_text()
    assert f"127.0.0.1:{backend} " not in controller.live.read_text() + " "
    await controller.stop(signal.SIGTERM, timeout=15)
    await controller.start()
    await controller.proxy.confirm(two.config_id)
    status, body = await asyncio.to_thread(get, "web.local")
    assert status == 200 and isinstance(body, dict) and body["task"] == "second", "the restart kept the move"


async def test_a_slot_that_takes_another_task_sends_it_every_later_request(
    controller: HAProxyController, backend: int, tmp_path: Path
) -> None:
    """HAProxy pools a server's idle connections by server, not by address: a retried request in
    flight on a slot while the slot took another task left a connection to the old task in the
    slot's pool, and every later request went there (in the e2e suite, a failing canary's 503s
    for a minute; here, a task replaced by another kept all the traffic). The agent now puts the
    new task in an empty slot and takes the old one's out; a slot takes another task only once
    no request uses it."""
    failing_port, failing = start_backend("failing", status=503)

    def web(port: int) -> Routing:
        return loopback_routing({"web": {"hosts": "web.local", "port": str(port), "retries": "2"}})

    try:
        ext = extension(tmp_path)
        await install(controller, web(failing_port), ext)
        # Three tries of half a second each, all answered 503 by the failing task.
        slow = asyncio.create_task(asyncio.to_thread(get, "web.local", "/?sleep=0.5"))

        async def slot_in_use() -> bool:
            return "web.local/s0" in busy_servers(await controller.runtime("show servers conn web.local"))

        deadline = asyncio.get_running_loop().time() + 10
        while not await slot_in_use():
            assert asyncio.get_running_loop().time() < deadline, "the slow request never reached the task"
            await asyncio.sleep(0.02)
        moved = render_haproxy(web(backend), ext, certificates_dir=str(controller.certificates_dir))
        assert moved.config_id == controller.config_id
        await controller.update_targets(moved.targets, moved.targets_id)
        await slow
        answers = [await asyncio.to_thread(get, "web.local") for _ in range(6)]
        assert [(s, b["task"] if isinstance(b, dict) else b) for s, b in answers] == [(200, "first")] * 6
    finally:
        failing.terminate()
        failing.wait(10)


async def test_many_task_moves_at_once_are_applied_in_lines_haproxy_accepts(
    controller: HAProxyController, backend: int, second_backend: int, tmp_path: Path
) -> None:
    """A change that moves the tasks of hundreds of services (a node lost, a network recreated)
    is more runtime API commands than HAProxy takes on one line: all of them still apply, without
    a reload."""
    ext = extension(tmp_path)

    def many(port: int) -> Routing:
        return routing(port, **{f"m{i}": {"hosts": f"m{i}.local", "port": str(port)} for i in range(300)})

    await install(controller, many(backend), ext)
    reloads = controller.reloads
    moved = render_haproxy(many(second_backend), ext, certificates_dir=str(controller.certificates_dir))
    assert moved.config_id == controller.config_id
    await controller.update_targets(moved.targets, moved.targets_id)
    for host in ("m0.local", "m150.local", "m299.local", "web.local"):
        status, body = await asyncio.to_thread(get, host)
        assert status == 200 and isinstance(body, dict) and body["task"] == "second", (host, body)
    assert controller.reloads == reloads


async def test_the_stats_page_password_comes_from_a_secret_never_from_the_configuration(
    controller: HAProxyController, backend: int, tmp_path: Path
) -> None:
    """`AdminPassSecret`: the password is mounted into the proxy and handed to HAProxy in its
    environment; haproxy.cfg (what travels and is stored) names only the variable."""
    import base64
    import urllib.error
    import urllib.request

    (controller.secrets_dir / "interlock-admin-pass").write_text("s3cret-pass\n")
    ext = extension(tmp_path, AdminUser="admin", AdminPassSecret="stats-password")
    await install(controller, routing(backend), ext)
    text = controller.live.read_text()
    assert "s3cret-pass" not in text and 'stats auth "admin:${INTERLOCK_ADMIN_PASS}"' in text

    def status(password: str | None) -> int:
        request = urllib.request.Request("http://127.0.0.1:20080/haproxy_status")
        if password is not None:
            request.add_header("Authorization", "Basic " + base64.b64encode(f"admin:{password}".encode()).decode())
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    assert await asyncio.to_thread(status, None) == 401
    assert await asyncio.to_thread(status, "wrong") == 401
    assert await asyncio.to_thread(status, "s3cret-pass") == 200
