"""Per-route traffic counters against a real nginx (Lua counters in its workers, read on its
status port) and a real HAProxy (its own counters): requests by host, path, the service whose task
answered and status class; a canary's share seen per service; a task that is down counted as a
5xx with an upstream error; a host no service routes counted apart; all of it as Prometheus text
the way the agent serves it."""

from __future__ import annotations

import asyncio
import http.client
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from interlock.edges.traffic_meter import TrafficCollector, TrafficMeter
from interlock.wire.traffic import RouteTraffic, traffic_names
from tests.nginx.either_kind import HTTP, KINDS, Controller, free_port, loopback_routing, serve

pytestmark = pytest.mark.nginx


@dataclass
class Proxy:
    control: Controller
    meter: TrafficMeter
    kind: str

    async def poll(self) -> None:
        """What the agent does each second."""
        await self.control.poll_traffic(self.meter)


@pytest.fixture(params=KINDS)
async def proxy(
    request: pytest.FixtureRequest, tmp_path: Path, backend: int, second_backend: int
) -> AsyncIterator[Proxy]:
    routing = loopback_routing(
        {
            "stable": {"hosts": "shop.test", "port": str(backend)},
            "canary": {"hosts": "shop.test", "port": str(second_backend)},
            "api": {"hosts": "api.test", "port": str(backend), "context_root": "/v1"},
            "down": {"hosts": "down.test", "port": str(free_port())},
        }
    )
    meter = TrafficMeter()
    binary = request.getfixturevalue(request.param)
    control = await serve(request.param, binary, routing, tmp_path, tmp_path)
    meter.use(traffic_names(routing))
    yield Proxy(control, meter, request.param)
    await control.stop(signal.SIGTERM)


def get(host: str, path: str = "/") -> int:
    conn = http.client.HTTPConnection("127.0.0.1", HTTP, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": host})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def by_key(traffic: tuple[RouteTraffic, ...]) -> dict[tuple[str, str, str], RouteTraffic]:
    return {(t.host, t.path, t.service): t for t in traffic}


async def counted(proxy: Proxy, want: int, deadline: float = 15.0) -> dict[tuple[str, str, str], RouteTraffic]:
    """The meter's counts once it counted `want` requests in all (polled, with a deadline)."""
    end = time.monotonic() + deadline
    while True:
        await proxy.poll()
        traffic = proxy.meter.report()
        if sum(t.requests for t in traffic) >= want or time.monotonic() > end:
            return by_key(traffic)
        await asyncio.sleep(0.2)


async def test_requests_are_counted_by_route_service_and_status_class(proxy: Proxy) -> None:
    statuses = [await asyncio.to_thread(get, "shop.test") for _ in range(20)]
    statuses += [await asyncio.to_thread(get, "api.test", "/v1/users") for _ in range(3)]
    statuses += [await asyncio.to_thread(get, "down.test")]
    statuses += [await asyncio.to_thread(get, "nobody.test") for _ in range(2)]
    assert statuses[:23] == [200] * 23, statuses
    assert statuses[23] >= 500 and statuses[24:] == [503, 503], statuses

    counts = await counted(proxy, len(statuses))
    shop = {service: t.responses[1] for (host, _, service), t in counts.items() if host == "shop.test"}
    # Round robin over two services: each got half, and each is named.
    assert shop == {"stable": 10, "canary": 10}, counts
    assert counts["api.test", "/v1", "api"].responses == (0, 3, 0, 0, 0), counts
    down = [t for (host, _, _), t in counts.items() if host == "down.test"]
    assert sum(t.responses[4] for t in down) == 1, counts
    assert sum(t.upstream_errors for t in down) >= 1, counts
    assert counts["(unknown)", "", ""].responses[4] == 2, counts
    assert counts["shop.test", "/", "stable"].bytes_sent > 0

    registry = CollectorRegistry()
    registry.register(TrafficCollector(proxy.meter))
    text = generate_latest(registry).decode()
    assert 'interlock_requests_total{cluster="",code="2xx",host="shop.test",path="/",service="canary"} 10.0' in text, (
        text
    )
    assert 'interlock_requests_total{cluster="",code="2xx",host="api.test",path="/v1",service="api"} 3.0' in text
    if proxy.kind == "nginx":
        # nginx times each request: a histogram per route.
        assert 'interlock_request_duration_seconds_count{cluster="",host="shop.test",path="/"} 20.0' in text, text


async def test_client_values_never_become_label_values(proxy: Proxy) -> None:
    """A Host header is never a label: requests for made-up hosts all count as `(unknown)`."""
    for index in range(5):
        await asyncio.to_thread(get, f"made-up-{index}.test")
    counts = await counted(proxy, 5)
    assert {host for host, _, _ in counts} == {"(unknown)"}, counts
