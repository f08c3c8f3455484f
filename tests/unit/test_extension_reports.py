"""The extension's view of its proxies: what their reports add, and a stopping proxy leaving
at once (so `interlock status` lists only proxies that run)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from interlock.edges.peer_http import PeerClient, signed_headers
from interlock.roles.extension import Extension
from interlock.wire.messages import ProxyReport, encode
from interlock.wire.traffic import RouteTraffic

TOKEN = "proxy-token-0123456789"


@pytest.fixture
async def extension() -> AsyncIterator[tuple[Extension, TestClient[Any, Any]]]:
    ext = Extension(name="default", core=PeerClient("http://127.0.0.1:9", "unused"), proxy_token=TOKEN)
    async with TestClient(TestServer(ext.app())) as client:
        yield ext, client


async def post(client: TestClient[Any, Any], report: ProxyReport) -> None:
    body = encode(report)
    response = await client.post("/v1/report", data=body, headers=signed_headers(TOKEN, "POST", "/v1/report", body))
    assert response.status == 200


async def test_a_stopping_proxy_is_forgotten_at_once(extension: Any) -> None:
    ext, client = extension
    await post(client, ProxyReport("p1", "cfg", "d", True))
    await post(client, ProxyReport("p2", "cfg", "d", True))
    assert sorted(ext.proxies) == ["p1", "p2"]
    ext.report_wake.clear()
    await post(client, ProxyReport("p1", "cfg", "d", True, leaving=True))
    assert sorted(ext.proxies) == ["p2"]
    assert ext.report_wake.is_set(), "the core hears of it with the next report, not in 5 s"


async def test_reports_need_the_proxy_token(extension: Any) -> None:
    ext, client = extension
    response = await client.post("/v1/report", data=encode(ProxyReport("p1", "cfg", "d", True)))
    assert response.status == 401
    assert ext.proxies == {}


async def test_traffic_travels_apart_from_the_state_report(extension: Any) -> None:
    """A proxy whose counts change each second wakes only the small traffic message; the state
    report (which carries the whole configuration) waits for a change of what proxies serve."""
    ext, client = extension
    await post(client, ProxyReport("p1", "cfg", "d", True))
    ext.report_wake.clear()
    ext.traffic_wake.clear()
    counted = (RouteTraffic("a.local", "/", "a", (0, 5, 0, 0, 0), 10, 0, 0, 0.5, 0.0),)
    await post(client, ProxyReport("p1", "cfg", "d", True, traffic=counted, active_connections=3))
    assert ext.traffic_wake.is_set() and not ext.report_wake.is_set()
    await post(client, ProxyReport("p1", "cfg2", "d2", True, traffic=counted, active_connections=3))
    assert ext.report_wake.is_set()
