"""`AccessLogFormat = "json"` against a real nginx and a real HAProxy: every request is one line
a JSON parser reads, with the same keys on both kinds, the request id the client got back, the
host, the upstream and the services behind it; what the client chose (host, URI) is escaped, so a
hostile URI cannot break the line or forge a field."""

from __future__ import annotations

import asyncio
import http.client
import json
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from interlock.config import default_config
from interlock.edges.haproxy_control import HAProxyController
from interlock.edges.nginx_control import NginxController
from interlock.model.routing import Routing
from interlock.render.haproxy import render_haproxy
from interlock.render.nginx import render_nginx
from tests.nginx.either_kind import loopback_routing

pytestmark = pytest.mark.nginx

HTTP, HTTPS = 18180, 18543
COMMON_KEYS = {
    "time",
    "request_id",
    "cluster",
    "client",
    "host",
    "method",
    "uri",
    "status",
    "bytes_sent",
    "upstream",
    "service",
    "upstream_addr",
}
HOSTILE_URI = '/api/x?q=%22&r="}{"status":999,"x":"\\'


def routing(port: int) -> Routing:
    demo = {"hosts": "demo.local", "port": str(port)}
    return loopback_routing({"web": demo, "api": {**demo, "context_root": "/api"}})


def request(host: str, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", HTTP, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": host})
        response = conn.getresponse()
        response.read()
        return response.status, response.getheader("x-request-id") or ""
    finally:
        conn.close()


@pytest.fixture(params=["nginx", "haproxy"])
async def proxy(request: pytest.FixtureRequest, tmp_path: Path, backend: int) -> AsyncIterator[Path]:
    """A proxy of either kind serving `routing` with JSON request logs; yields the log file."""
    log = tmp_path / "access.log"
    settings = {"PidPath": str(tmp_path / "proxy.pid"), "AccessLogFormat": "json"}
    control: NginxController | HAProxyController
    if request.param == "nginx":
        binary = request.getfixturevalue("nginx")
        ext = default_config(
            TargetPort=HTTP, TargetSSLPort=HTTPS, Config={**settings, "AccessLogPath": str(log)}
        ).extensions["default"]
        rendered = render_nginx(routing(backend), ext)
        control = NginxController(tmp_path / "work", nginx=binary, confirm_timeout=10)
    else:
        binary = request.getfixturevalue("haproxy")
        ext = default_config(Kind="haproxy", TargetPort=HTTP, TargetSSLPort=HTTPS, Config=settings).extensions[
            "default"
        ]
        rendered = render_haproxy(routing(backend), ext, certificates_dir=str(tmp_path / "certs"))
        control = HAProxyController(
            tmp_path / "work", haproxy=binary, secrets_dir=tmp_path, certificates_dir=tmp_path / "certs", log=log
        )
    await control.install(rendered.text, rendered.config_id, rendered.targets, rendered.targets_id)
    yield log
    await control.stop(signal.SIGTERM, timeout=15)


def logged(log: Path, count: int) -> list[dict[str, Any]]:
    """The first `count` request lines of the log, each parsed as JSON (polled: a proxy writes
    its line once the request is done)."""
    deadline = time.monotonic() + 10
    while True:
        lines = [line for line in log.read_text().splitlines() if line.startswith("{")] if log.exists() else []
        if len(lines) >= count or time.monotonic() > deadline:
            return [json.loads(line) for line in lines]


async def test_every_request_is_one_json_object_with_the_same_keys_on_both_kinds(proxy: Path) -> None:
    status, request_id = await asyncio.to_thread(request, "demo.local", "/hello")
    assert status == 200 and request_id
    assert (await asyncio.to_thread(request, "demo.local", HOSTILE_URI))[0] == 200
    assert (await asyncio.to_thread(request, "nobody.local", "/"))[0] == 503

    # By what each record says, not by its place: HAProxy's threads may write them out of order.
    records = (await asyncio.to_thread(logged, proxy, 3))[:3]
    unknown = next((r for r in records if r.get("host") == "nobody.local"), records[-1])
    first = next((r for r in records if r.get("uri") == "/hello"), records[0])
    hostile = next((r for r in records if r is not first and r is not unknown), records[1])
    assert set(first) >= COMMON_KEYS, sorted(COMMON_KEYS - set(first))
    assert first["request_id"] == request_id, "the id the client got back is the one logged"
    assert (first["host"], first["method"], first["uri"], first["status"]) == ("demo.local", "GET", "/hello", 200)
    assert (first["upstream"], first["service"]) == ("demo.local", "web")
    assert first["upstream_addr"].startswith("127.0.0.1:")
    assert isinstance(first["time"], float) and isinstance(first["bytes_sent"], int)

    assert hostile["uri"] == HOSTILE_URI and hostile["status"] == 200, "escaped, not a forged field"
    assert hostile["service"] == "api" and hostile["upstream"].startswith("demo.local__api")
    assert (unknown["host"], unknown["status"], unknown["service"]) == ("nobody.local", 503, "-")
