"""Traffic per route: how a proxy's requests are named and counted, and what the agent reports.

A proxy agent counts the requests its proxy answers (nginx: counters kept by Lua in each worker
and added up in a shared dict, `render/lua/traffic.lua`; HAProxy: its own per-server counters),
reading the totals once a second, under names Interlock chose, never under a value the client
sent: `host` is the configured server name (`(default)` for the default host, `(unknown)` for a
host no service routes), `path` the route's path, `service` the service whose task answered
(found by the task's address in the upstream; "" when no task answered). So the number of
series is bounded by the routing, not by clients.

`TrafficNames` (made from the routing; it travels in `ProxyConfig`) turns what a proxy counts
under into those names; `NginxCounters` (and `haproxy_counters.HAProxyCounters`) turn each
reading of the totals into what changed since the previous one; `Tally` keeps the counters since
the proxy started, a latency histogram, and a 10-second window of per-second buckets for the
request rates. `now` is always an argument: no
clock here. Pure; wire layer.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from interlock.model.routing import Routing

DEFAULT_HOST = "(default)"
UNKNOWN_HOST = "(unknown)"
"""The host of requests for a host no service routes (answered by the proxy itself)."""
UNKNOWN_BACKEND = "interlock_unknown_host"
"""HAProxy's backend for those requests."""
CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds (seconds) of the request-duration histogram; +Inf is implied."""
WINDOW = 10
"""Seconds the request rates are averaged over."""


@dataclass(frozen=True, slots=True)
class RouteTraffic:
    """What one proxy counted for one route and service since it started."""

    host: str
    path: str
    service: str
    responses: tuple[int, int, int, int, int]
    """Responses by status class, 1xx to 5xx (a client that went away, nginx's 499, is a 4xx)."""
    bytes_sent: int
    upstream_errors: int
    """Tries at a task that failed (refused, reset, timed out, or a 502/503/504 from it)."""
    retries: int
    """Tries at another task after one failed."""
    rate: float
    """Requests a second over the last `WINDOW` seconds."""
    rate_5xx: float

    @property
    def requests(self) -> int:
        return sum(self.responses)


@dataclass(frozen=True, slots=True)
class TrafficNames:
    """The names a proxy's requests are counted under: (upstream, host, path) for every route
    and (upstream, address:port, service) for every task. On the wire in `ProxyConfig`."""

    cluster: str = ""
    routes: tuple[tuple[str, str, str], ...] = ()
    addresses: tuple[tuple[str, str, str], ...] = ()


def traffic_names(routing: Routing) -> TrafficNames:
    hosts = [*routing.hosts, *([routing.default_host] if routing.default_host else [])]
    routes = sorted(
        {
            (route.upstream, DEFAULT_HOST if host.name == "_" else host.name, route.path)
            for host in hosts
            for route in host.routes
        }
    )
    addresses = sorted({(u.name, f"{s.address}:{s.port}", s.service) for u in routing.upstreams for s in u.servers})
    return TrafficNames(routing.cluster, tuple(routes), tuple(addresses))


class Namer:
    """Looks up the names of a request from what the proxy logged about it."""

    def __init__(self, names: TrafficNames, previous: Namer | None = None) -> None:
        self.cluster = names.cluster
        # The tasks of the configuration served before: a reading taken while the proxy moves
        # from one to the other counts requests of both (one level only, so it never grows).
        self.previous_services: dict[tuple[str, str], str] = previous.services if previous is not None else {}
        self.by_host: dict[tuple[str, str], str] = {}
        paths: dict[str, list[tuple[str, str]]] = {}
        for upstream, host, path in names.routes:
            key = (host, upstream)
            # Two paths of one host to one upstream: counted under the first (shortest sorts first).
            self.by_host.setdefault(key, path)
            paths.setdefault(upstream, []).append((host, path))
        # HAProxy counts per backend (an upstream), which may serve several hosts: named by all.
        self.by_upstream = {
            upstream: (",".join(sorted({h for h, _ in pairs})), ",".join(sorted({p for _, p in pairs})))
            for upstream, pairs in paths.items()
        }
        self.services: dict[tuple[str, str], str] = {
            (upstream, address): service for upstream, address, service in names.addresses
        }
        by_upstream: dict[str, set[str]] = {}
        for upstream, _, service in names.addresses:
            by_upstream.setdefault(upstream, set()).add(service)
        # nginx counts the requests of an upstream one service serves under the address "*".
        self.only = {upstream: next(iter(found)) for upstream, found in by_upstream.items() if len(found) == 1}
        self.has_default = any(host == DEFAULT_HOST for _, host, _ in names.routes)

    def route(self, server_name: str, upstream: str) -> tuple[str, str]:
        """(host, path) of requests nginx counted under this server name and upstream."""
        host = DEFAULT_HOST if server_name in ("_", "") else server_name
        path = self.by_host.get((host, upstream))
        if path is not None:
            return host, path
        if upstream in ("", "-"):
            # Not proxied: a redirect, or the answer to a host no service routes.
            return (UNKNOWN_HOST if host == DEFAULT_HOST and not self.has_default else host), ""
        return host, self.by_upstream.get(upstream, ("", ""))[1]

    def backend(self, upstream: str) -> tuple[str, str]:
        """(host, path) of an HAProxy backend."""
        if upstream == UNKNOWN_BACKEND:
            return UNKNOWN_HOST, ""
        return self.by_upstream.get(upstream, (upstream, ""))

    def service(self, upstream: str, address: str) -> str:
        if address == "*":
            return self.only.get(upstream, "")
        key = (upstream, address)
        return self.services.get(key) or self.previous_services.get(key, "")


@dataclass(slots=True)
class _Counts:
    responses: list[int] = field(default_factory=lambda: [0, 0, 0, 0, 0])
    bytes_sent: int = 0
    upstream_errors: int = 0
    retries: int = 0


def status_class(status: int) -> int:
    """Index in `CLASSES` (statuses outside 100-599 count as 5xx: the proxy gave no answer)."""
    return status // 100 - 1 if 100 <= status < 600 else 4


@dataclass(frozen=True, slots=True)
class Sample:
    """Requests of one route, service and status class counted since the previous reading."""

    host: str
    path: str
    service: str
    status_class: int
    count: int = 1
    bytes_sent: int = 0
    upstream_errors: int = 0
    retries: int = 0


class Tally:
    """Counters since the proxy agent started, a histogram of request durations by route, and
    per-second buckets for the rates. Counters only grow (Prometheus counters)."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, str], _Counts] = {}
        self.latency: dict[tuple[str, str], list[float]] = {}
        """(host, path) -> [count per bucket (cumulative at read), ..., count, sum]."""
        self.seconds: deque[tuple[int, dict[tuple[str, str, str], list[int]]]] = deque()
        """(second, key -> [requests, 5xx]) for the last WINDOW seconds."""
        self.unreadable = 0

    def add(self, sample: Sample, now: float) -> None:
        key = (sample.host, sample.path, sample.service)
        counts = self.counts.get(key)
        if counts is None:
            counts = self.counts[key] = _Counts()
        counts.responses[sample.status_class] += sample.count
        counts.bytes_sent += sample.bytes_sent
        counts.upstream_errors += sample.upstream_errors
        counts.retries += sample.retries
        second = int(now)
        if not self.seconds or self.seconds[-1][0] != second:
            self.seconds.append((second, {}))
            while self.seconds[0][0] <= second - WINDOW:
                self.seconds.popleft()
        bucket = self.seconds[-1][1].setdefault(key, [0, 0])
        bucket[0] += sample.count
        if sample.status_class == 4:
            bucket[1] += sample.count

    def observe(self, route: tuple[str, str], bucket: int, count: float, seconds: float = 0.0) -> None:
        """`count` more requests of `route` in histogram bucket `bucket` (an index of
        LATENCY_BUCKETS, or its length for +Inf), `seconds` more in the sum of durations."""
        histogram = self.latency.get(route)
        if histogram is None:
            histogram = self.latency[route] = [0.0] * (len(LATENCY_BUCKETS) + 2)
        histogram[bucket] += count
        histogram[-1] += seconds

    def histogram(self, route: tuple[str, str]) -> tuple[list[tuple[str, float]], float]:
        """Cumulative (upper bound, count) pairs ending with +Inf, and the sum of durations."""
        raw = self.latency[route]
        pairs, running = [], 0.0
        for bound, count in zip([*(str(b) for b in LATENCY_BUCKETS), "+Inf"], raw[:-1], strict=True):
            running += count
            pairs.append((bound, running))
        return pairs, raw[-1]

    def rates(self, now: float) -> dict[tuple[str, str, str], tuple[float, float]]:
        """Requests and 5xx a second by route and service over the last WINDOW whole seconds."""
        since = int(now) - WINDOW
        totals: dict[tuple[str, str, str], list[int]] = {}
        for second, buckets in self.seconds:
            if second < since or second >= int(now):
                continue
            for key, (requests, errors) in buckets.items():
                total = totals.setdefault(key, [0, 0])
                total[0] += requests
                total[1] += errors
        return {key: (round(r / WINDOW, 2), round(e / WINDOW, 2)) for key, (r, e) in totals.items()}

    def report(self, now: float) -> tuple[RouteTraffic, ...]:
        rates = self.rates(now)
        return tuple(
            RouteTraffic(
                host,
                path,
                service,
                (c.responses[0], c.responses[1], c.responses[2], c.responses[3], c.responses[4]),
                c.bytes_sent,
                c.upstream_errors,
                c.retries,
                *rates.get((host, path, service), (0.0, 0.0)),
            )
            for (host, path, service), c in sorted(self.counts.items())
        )


class NginxCounters:
    """Turns a reading of nginx's counters (GET /interlock/traffic on its status port: lines of
    "server<TAB>upstream<TAB>address<TAB>class<TAB>n|b|e|r<TAB>value" and
    "server<TAB>upstream<TAB>hN|s<TAB>value", see `render/lua/traffic.lua`) into what changed
    since the previous reading. The totals outlive reloads; a total that went down was evicted
    from the shared dict and started again, so its value is all new."""

    def __init__(self) -> None:
        self.previous: dict[str, float] = {}

    def read(self, text: str, namer: Namer, tally: Tally, now: float) -> None:
        current: dict[str, float] = {}
        counts: dict[tuple[str, str, str, str], dict[str, float]] = {}
        for line in text.splitlines():
            key, _, value = line.rpartition("\t")
            try:
                total = float(value)
            except ValueError:
                tally.unreadable += 1
                continue
            current[key] = total
            before = self.previous.get(key, 0.0)
            change = total if total < before else total - before
            if not change:
                continue
            fields = key.split("\t")
            if len(fields) == 5:
                server, upstream, address, klass, what = fields
                counts.setdefault((server, upstream, address, klass), {})[what] = change
            elif len(fields) == 3 and fields[2][:1] in ("h", "s"):
                server, upstream, what = fields
                route = namer.route(server, upstream)
                if what == "s":
                    tally.observe(route, 0, 0.0, change)
                elif what[1:].isdigit() and 1 <= int(what[1:]) <= len(LATENCY_BUCKETS) + 1:
                    tally.observe(route, int(what[1:]) - 1, change)
            else:
                tally.unreadable += 1
        self.previous = current
        for (server, upstream, address, klass), changes in counts.items():
            host, path = namer.route(server, upstream)
            code = int(klass) - 1 if klass.isdigit() and 1 <= int(klass) <= 5 else 4
            tally.add(
                Sample(
                    host,
                    path,
                    namer.service(upstream, address),
                    code,
                    int(changes.get("n", 0)),
                    int(changes.get("b", 0)),
                    int(changes.get("e", 0)),
                    int(changes.get("r", 0)),
                ),
                now,
            )


__all__ = [
    "CLASSES",
    "DEFAULT_HOST",
    "LATENCY_BUCKETS",
    "WINDOW",
    "Namer",
    "NginxCounters",
    "RouteTraffic",
    "Sample",
    "Tally",
    "TrafficNames",
    "status_class",
    "traffic_names",
]
