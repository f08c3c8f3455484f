"""What `interlock status`, `routes` and `problems` show: the core's /v1/status as typed
structures, and the routes table (one row per host and path) made from a routing model.

The core builds a `CoreStatus`, sends it as JSON, and the operator decodes it into the same
types, so the two sides cannot drift apart. Pure; wire layer.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, replace

from interlock.model.routing import Routing, TLSMode, Upstream, VirtualHost
from interlock.problems import Problem
from interlock.wire.traffic import RouteTraffic


@dataclass(frozen=True, slots=True)
class RouteRow:
    cluster: str
    host: str
    path: str
    services: tuple[str, ...]
    targets: tuple[str, ...]
    tls: str
    policies: str = "-"
    """The route's per-service policies in short (`Policy.summary`): allow-list, rate, headers, CORS."""
    responses: tuple[int, int, int, int, int] = (0, 0, 0, 0, 0)
    """Responses by status class (1xx-5xx) the cluster's proxies counted since they started."""
    rps: float = 0.0
    """Requests a second over the last 10 s, all the cluster's proxies together."""
    share_5xx: float = 0.0
    """The share of those that were 5xx (0 to 1)."""

    @property
    def requests(self) -> int:
        return sum(self.responses)


@dataclass(frozen=True, slots=True)
class ProblemView:
    service: str
    label: str
    value: str
    reason: str
    severity: str

    @classmethod
    def of(cls, problem: Problem) -> ProblemView:
        return cls(**problem.to_json())


def serving_id(config_id: str | None, targets_id: str | None) -> str:
    """`CONFIG_ID+TARGETS_ID`: an nginx.conf and, with dynamic upstreams, its targets."""
    return "+".join(filter(None, (config_id or "", targets_id or "")))


@dataclass(frozen=True, slots=True)
class ProxyStatus:
    proxy: str
    config_id: str
    targets_id: str
    ok: bool
    error: str
    reloads: int
    target_updates: int
    active_connections: int = 0
    certificates: str = ""
    """Tag of the certificates the proxy serves ('' before the first)."""

    @property
    def serving_id(self) -> str:
        """What this proxy serves ('' before its first configuration)."""
        return serving_id(self.config_id, self.targets_id)


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    extension: str
    cluster: str
    extension_service: str
    proxy_service: str
    state_version: int | None
    hosts: int
    config_version: int | None
    config_id: str | None
    targets_id: str | None
    validation_error: str
    extension_seen_seconds_ago: float | None
    proxies: tuple[ProxyStatus, ...] = ()

    @property
    def serving_id(self) -> str:
        """The newest validated configuration of the cluster (see `serving_id`)."""
        return serving_id(self.config_id, self.targets_id)


@dataclass(frozen=True, slots=True)
class CoreInfo:
    service: str | None
    epoch: str = ""
    listen_addr: str = ""


@dataclass(frozen=True, slots=True)
class CoreStatus:
    ready: bool
    core: CoreInfo
    clusters: tuple[ClusterStatus, ...] = ()
    routes: tuple[RouteRow, ...] = ()
    problems: tuple[ProblemView, ...] = ()
    note: str = ""
    """Set when the core could not be asked and routes and problems were computed locally."""


def _rows(routing: Routing, host: VirtualHost, upstreams: dict[str, Upstream]) -> list[RouteRow]:
    name = "(default)" if host.name == "_" else host.name
    tls = ACME if host.acme else str(host.tls)
    if host.tls is TLSMode.PASSTHROUGH:
        upstream = upstreams[host.passthrough_upstream]
        targets = tuple(f"{s.address}:{s.port}" for s in upstream.servers)
        return [RouteRow(routing.cluster, name, "(tls)", tuple(host.services), targets, tls)]
    rows = []
    for route in host.routes:
        upstream = upstreams[route.upstream]
        services = upstream.service_names
        targets = tuple(f"{s.address}:{s.port}" for s in upstream.servers)
        policies = upstream.policy.summary() if upstream.policy else "-"
        rows.append(RouteRow(routing.cluster, name, route.path, services, targets, tls, policies))
    for rule in host.redirects:
        path = f"({rule.scheme} redirect)"
        rows.append(RouteRow(routing.cluster, name, path, tuple(host.services), (rule.target,), tls))
    return rows


ACME = "acme"
"""The TLS column of an `ssl_acme` host: its certificate is ordered by the core."""


def with_acme_expiry(rows: tuple[RouteRow, ...], expiries: Mapping[str, float]) -> tuple[RouteRow, ...]:
    """`rows` with the expiry of each ACME host's certificate (host -> seconds since the epoch)
    in their TLS column; a host without one yet shows it is being ordered."""
    result = []
    for row in rows:
        if row.tls != ACME:
            result.append(row)
            continue
        expiry = expiries.get(row.host)
        when = datetime.datetime.fromtimestamp(expiry, datetime.UTC) if expiry else None
        result.append(replace(row, tls=f"acme, until {when:%Y-%m-%d %H:%M}Z" if when else "acme, ordering"))
    return tuple(result)


def routes_table(routing: Routing) -> tuple[RouteRow, ...]:
    """One row per host and path (and per redirect), default host last."""
    hosts = [*routing.hosts, *([routing.default_host] if routing.default_host else [])]
    upstreams = {u.name: u for u in (*routing.upstreams, *routing.passthrough_upstreams)}
    return tuple(row for host in hosts for row in _rows(routing, host, upstreams))


def with_traffic(rows: tuple[RouteRow, ...], traffic: dict[str, list[RouteTraffic]]) -> tuple[RouteRow, ...]:
    """`rows` with what the proxies of each cluster (cluster -> the traffic every proxy of it
    reported) counted for their host and path, summed over proxies and services."""
    sums: dict[tuple[str, str, str], list[float]] = {}
    for cluster, routes in traffic.items():
        for route in routes:
            total = sums.setdefault((cluster, route.host, route.path), [0.0] * 7)
            for index, value in enumerate((*route.responses, route.rate, route.rate_5xx)):
                total[index] += value
    result = []
    for row in rows:
        found = sums.get((row.cluster, row.host, row.path))
        if found is None:
            result.append(row)
            continue
        c1, c2, c3, c4, c5 = (int(v) for v in found[:5])
        rate, rate_5xx = found[5], found[6]
        share = round(rate_5xx / rate, 3) if rate else 0.0
        result.append(replace(row, responses=(c1, c2, c3, c4, c5), rps=round(rate, 2), share_5xx=share))
    return tuple(result)
