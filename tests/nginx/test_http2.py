"""HTTP/2 on the TLS listeners of both kinds, against a real nginx and a real HAProxy: a client
that offers h2 in ALPN (curl) speaks HTTP/2 to a terminated host and reaches its task; with
`HTTP2 = false` the same client gets HTTP/1.1."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from interlock.config import default_config
from interlock.edges.haproxy_control import HAProxyController
from interlock.edges.nginx_control import NginxController
from interlock.edges.role_tls import new_pair
from interlock.render.haproxy import render_haproxy
from interlock.render.nginx import render_nginx
from tests.nginx.test_haproxy_proxy import routing, start_backend

pytestmark = pytest.mark.nginx

HTTP, HTTPS = 18180, 18543
Serve = Callable[[bool], Awaitable[None]]


@pytest.fixture(scope="module")
def backend() -> Iterator[int]:
    port, proc = start_backend("first")
    yield port
    proc.terminate()
    proc.wait(10)


@pytest.fixture(params=["nginx", "haproxy"])
async def serve(request: pytest.FixtureRequest, tmp_path: Path, backend: int) -> AsyncIterator[Serve]:
    """Installs the test routing (tls.local terminated with a secret) on a proxy of either kind,
    with HTTP2 on or off."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "tls.pem").write_bytes(new_pair("tls.local")[0])
    controllers: list[NginxController] = []

    async def install(http2: bool) -> None:
        settings = {"PidPath": str(tmp_path / "proxy.pid"), "HTTP2": http2}
        if request.param == "nginx":
            ext = default_config(TargetPort=HTTP, TargetSSLPort=HTTPS, Config=settings).extensions["default"]
            control = NginxController(tmp_path / "work", nginx=request.getfixturevalue("nginx"), confirm_timeout=10)
            rendered = render_nginx(routing(backend), ext, secrets_dir=str(secrets))
        else:
            ext = default_config(Kind="haproxy", TargetPort=HTTP, TargetSSLPort=HTTPS, Config=settings).extensions[
                "default"
            ]
            control = HAProxyController(
                tmp_path / "work",
                haproxy=request.getfixturevalue("haproxy"),
                secrets_dir=secrets,
                certificates_dir=tmp_path / "certs",
            )
            rendered = render_haproxy(routing(backend), ext, certificates_dir=str(tmp_path / "certs"))
        controllers.append(control)
        await control.install(
            rendered.text,
            rendered.config_id,
            rendered.targets,
            rendered.targets_id,
            routing(backend).certificate_pairs(),
        )

    yield install
    for control in controllers:
        await control.stop(signal.SIGQUIT, timeout=15)


def curl(url: str, *options: str) -> tuple[str, dict[str, object]]:
    """(HTTP version spoken, the task's JSON answer), through curl offering h2 in ALPN."""
    out = subprocess.run(
        [
            "curl",
            "-sk",
            "--max-time",
            "5",
            "--resolve",
            f"tls.local:{HTTPS}:127.0.0.1",
            *options,
            url,
            "-w",
            "\n%{http_version}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    body, _, version = out.rpartition("\n")
    return version, json.loads(body)


async def test_a_terminated_host_speaks_http2_to_a_client_that_offers_it(serve: Serve) -> None:
    await serve(True)
    version, body = await asyncio.to_thread(curl, f"https://tls.local:{HTTPS}/over-h2?x=1", "--http2")
    assert version == "2" and body["path"] == "/over-h2?x=1"
    version, _ = await asyncio.to_thread(curl, f"https://tls.local:{HTTPS}/", "--http1.1")
    assert version == "1.1", "a client that offers only HTTP/1.1 still gets it"


async def test_http2_false_keeps_the_tls_listener_on_http_1_1(serve: Serve) -> None:
    await serve(False)
    version, body = await asyncio.to_thread(curl, f"https://tls.local:{HTTPS}/h1", "--http2")
    assert version == "1.1" and body["path"] == "/h1"
