"""The proxy agent's traffic counters: fed by nginx's datagrams or HAProxy's own counters, and
read as Prometheus metrics and as the `traffic` of the agent's reports.

nginx sends a short line a request (`access_log syslog:server=unix:...`) to a datagram socket
this meter binds; a datagram it cannot read is counted, not fatal. nginx never waits for it:
when the socket's buffer is full, nginx drops the line (the count is then low, the proxy
unharmed). HAProxy is asked for `show stat` once a second on its runtime API. The socket is made
writable by the nginx workers (they do not run as root). No Docker socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from interlock.constants import STATUS_PORT
from interlock.wire.traffic import CLASSES, HAProxyCounters, Namer, RouteTraffic, Tally, TrafficNames, nginx_sample

log = logging.getLogger("interlock.traffic")

Runtime = Callable[[str], Awaitable[str]]
"""One command to HAProxy's runtime API, its answer."""


class TrafficMeter:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.tally = Tally()
        self.namer = Namer(TrafficNames())
        self.clock = clock
        self.socket_path = ""
        self.transport: asyncio.DatagramTransport | None = None
        self.haproxy = HAProxyCounters()
        self.active_connections = 0

    def use(self, names: TrafficNames) -> None:
        """Name requests after `names` from now on (those of the configuration now served)."""
        self.namer = Namer(names)

    async def listen(self, path: str) -> None:
        """Read the lines nginx sends to `path` ("": none); a no-op when already there."""
        if path == self.socket_path and (self.transport is not None or not path):
            return
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        self.socket_path = path
        if not path:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        # A larger buffer rides out a burst while the agent is busy (the kernel may cap it).
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        os.chmod(path, 0o666)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Lines(self), sock=sock)
        self.transport = transport
        log.info("counting requests nginx sends to %s", path)

    def line(self, datagram: bytes) -> None:
        self.tally.lines += 1
        sample = nginx_sample(datagram, self.namer)
        if sample is None:
            self.tally.unreadable += 1
            return
        self.tally.add(sample, self.clock())

    async def poll_haproxy(self, runtime: Runtime) -> None:
        """Read HAProxy's counters now; an unanswered poll is skipped (the next one catches up)."""
        try:
            answer = await runtime("show stat")
        except Exception as exc:  # the proxy may be starting or reloading
            log.debug("show stat not answered: %s", exc)
            return
        now = self.clock()
        for sample in self.haproxy.samples(answer, self.namer):
            self.tally.add(sample, now)
        self.active_connections = self.haproxy.active_connections

    async def poll_nginx_connections(self, port: int = STATUS_PORT) -> None:
        """`Active connections` from nginx's stub_status on the status port (loopback)."""
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2)
            writer.write(b"GET /nginx_status HTTP/1.0\r\nHost: localhost\r\n\r\n")
            body = await asyncio.wait_for(reader.read(), 2)
            writer.close()
        except (OSError, TimeoutError):
            return
        for line in body.decode(errors="replace").splitlines():
            if line.startswith("Active connections:"):
                # The agent's own connection is one of them.
                self.active_connections = max(0, int(line.split(":")[1]) - 1)

    def report(self) -> tuple[RouteTraffic, ...]:
        return self.tally.report(self.clock())

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class _Lines(asyncio.DatagramProtocol):
    def __init__(self, meter: TrafficMeter) -> None:
        self.meter = meter

    def datagram_received(self, data: bytes, addr: object) -> None:
        self.meter.line(data)


class TrafficCollector(Collector):
    """The meter as Prometheus metrics, read at scrape time (nothing is copied per request)."""

    def __init__(self, meter: TrafficMeter) -> None:
        self.meter = meter

    def collect(self) -> Iterator[Metric]:
        cluster = self.meter.namer.cluster
        tally = self.meter.tally
        labels = ["cluster", "host", "path", "service"]
        requests = CounterMetricFamily(
            "interlock_requests",
            "Requests the proxy answered, by route, service and status class",
            labels=[*labels, "code"],
        )
        sent = CounterMetricFamily("interlock_response_bytes", "Bytes sent to clients", labels=labels)
        errors = CounterMetricFamily(
            "interlock_upstream_errors",
            "Tries at a task that failed (refused, reset, timed out, 502-504)",
            labels=labels,
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
            "interlock_traffic_lines_unreadable",
            "Request lines from nginx the agent could not read",
            value=tally.unreadable,
        )
