"""The proxy agent's traffic counters: read once a second from the proxy (nginx: its Lua
counters at GET /interlock/traffic on the loopback status port; HAProxy: `show stat` on its
runtime API), served as Prometheus metrics and reported as the `traffic` of the agent's reports.

Nothing here runs per request: the proxy counts, the agent reads totals. An unanswered reading
is skipped (the proxy may be starting or reloading); the next one catches up, since totals only
grow. No Docker socket.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator

import aiohttp
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from interlock.constants import STATUS_PORT
from interlock.wire.haproxy_counters import HAProxyCounters
from interlock.wire.traffic import CLASSES, Namer, NginxCounters, RouteTraffic, Tally, TrafficNames

log = logging.getLogger("interlock.traffic")

Runtime = Callable[[str], Awaitable[str]]
"""One command to HAProxy's runtime API, its answer."""


class TrafficMeter:
    def __init__(self, clock: Callable[[], float] = time.time, status_port: int = STATUS_PORT) -> None:
        self.tally = Tally()
        self.namer = Namer(TrafficNames())
        self.clock = clock
        self.status_port = status_port
        self.nginx = NginxCounters()
        self.haproxy = HAProxyCounters()
        self.active_connections = 0

    def use(self, names: TrafficNames) -> None:
        """Name requests after `names` from now on: called before the proxy takes a new
        configuration or new targets, so that no reading sees a task it cannot name; the tasks
        of the configuration served until then are still named."""
        self.namer = Namer(names, previous=self.namer)

    async def poll_haproxy(self, runtime: Runtime) -> None:
        try:
            # Not the empty server slots (in maintenance): most of them, at scale.
            answer = await runtime("show stat no-maint")
        except Exception as exc:
            log.debug("show stat not answered: %s", exc)
            return
        now = self.clock()
        for sample in self.haproxy.samples(answer, self.namer):
            self.tally.add(sample, now)
        self.active_connections = self.haproxy.active_connections

    async def poll_nginx(self) -> None:
        """The counters, and `Active connections` from stub_status (both on loopback)."""
        async with aiohttp.ClientSession() as session:
            counters = await self._get(session, "/interlock/traffic")
            status = await self._get(session, "/nginx_status")
        if counters is not None:
            self.nginx.read(counters, self.namer, self.tally, self.clock())
        for line in (status or "").splitlines():
            if line.startswith("Active connections:"):
                # The agent's own connection is one of them.
                self.active_connections = max(0, int(line.split(":")[1]) - 1)

    async def _get(self, session: aiohttp.ClientSession, path: str) -> str | None:
        """The body of a 200 from the status port; None otherwise (404: counting is off)."""
        url = f"http://127.0.0.1:{self.status_port}{path}"
        try:
            async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as response:
                return await response.text(errors="replace") if response.status == 200 else None
        except (aiohttp.ClientError, OSError, TimeoutError):
            return None

    def report(self) -> tuple[RouteTraffic, ...]:
        return self.tally.report(self.clock())


class TrafficCollector(Collector):
    """The meter as Prometheus metrics, read at scrape time."""

    def __init__(self, meter: TrafficMeter) -> None:
        self.meter = meter

    def collect(self) -> Iterator[Metric]:
        cluster = self.meter.namer.cluster
        tally = self.meter.tally
        labels = ["cluster", "host", "path", "service"]
        requests = CounterMetricFamily(
            "interlock_requests", "Requests answered, by route, service and status class", labels=[*labels, "code"]
        )
        sent = CounterMetricFamily("interlock_response_bytes", "Bytes sent to clients", labels=labels)
        errors = CounterMetricFamily(
            "interlock_upstream_errors", "Tries at a task that failed (refused, reset, timeout, 502-504)", labels=labels
        )
        retries = CounterMetricFamily(
            "interlock_upstream_retries", "Tries at another task after one failed", labels=labels
        )
        for (host, path, service), counts in sorted(tally.counts.items()):
            key = [cluster, host, path, service]
            for klass, value in zip(CLASSES, counts.responses, strict=True):
                if value:
                    requests.add_metric([*key, klass], value)
            sent.add_metric(key, counts.bytes_sent)
            errors.add_metric(key, counts.upstream_errors)
            retries.add_metric(key, counts.retries)
        yield from (requests, sent, errors, retries)
        duration = HistogramMetricFamily(
            "interlock_request_duration_seconds",
            "Time from the request's first byte to the response's last (nginx's request_time)",
            labels=["cluster", "host", "path"],
        )
        for route in sorted(tally.latency):
            buckets, total = tally.histogram(route)
            duration.add_metric([cluster, *route], buckets, total)
        yield duration
        yield GaugeMetricFamily(
            "interlock_active_connections", "Client connections open on the proxy", value=self.meter.active_connections
        )
        yield CounterMetricFamily(
            "interlock_traffic_unreadable",
            "Counter lines from the proxy the agent could not read",
            value=tally.unreadable,
        )
