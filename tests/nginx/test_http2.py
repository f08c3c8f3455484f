"""HTTP/2 on the TLS listeners of both kinds, against a real nginx and a real HAProxy: a client
that offers h2 in ALPN (curl) speaks HTTP/2 to a terminated host and reaches its task; with
`HTTP2 = false` the same client gets HTTP/1.1."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from interlock.edges.role_identities import new_pair
from tests.nginx.either_kind import HTTPS, KINDS, Controller, serve
from tests.nginx.test_haproxy_proxy import routing

pytestmark = pytest.mark.nginx

Serve = Callable[[bool], Awaitable[None]]


@pytest.fixture(params=KINDS)
async def serve_h2(request: pytest.FixtureRequest, tmp_path: Path, backend: int) -> AsyncIterator[Serve]:
    """Installs the test routing (tls.local terminated with a secret) on a proxy of either kind,
    with HTTP2 on or off."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "tls.pem").write_bytes(new_pair("tls.local")[0])
    controllers: list[Controller] = []

    async def install(http2: bool) -> None:
        binary = request.getfixturevalue(request.param)
        controllers.append(await serve(request.param, binary, routing(backend), tmp_path, secrets, HTTP2=http2))

    yield install
    for control in controllers:
        await control.stop(signal.SIGTERM, timeout=15)


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


async def test_a_terminated_host_speaks_http2_to_a_client_that_offers_it(serve_h2: Serve) -> None:
    await serve_h2(True)
    version, body = await asyncio.to_thread(curl, f"https://tls.local:{HTTPS}/over-h2?x=1", "--http2")
    assert version == "2" and body["path"] == "/over-h2?x=1"
    version, _ = await asyncio.to_thread(curl, f"https://tls.local:{HTTPS}/", "--http1.1")
    assert version == "1.1", "a client that offers only HTTP/1.1 still gets it"


async def test_http2_false_keeps_the_tls_listener_on_http_1_1(serve_h2: Serve) -> None:
    await serve_h2(False)
    version, body = await asyncio.to_thread(curl, f"https://tls.local:{HTTPS}/h1", "--http2")
    assert version == "1.1" and body["path"] == "/h1"
