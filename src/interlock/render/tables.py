"""Operator views of a routing model: one row per host and path. Pure; render layer."""

from __future__ import annotations

from typing import Any

from interlock.model.routing import Routing, TLSMode, Upstream, VirtualHost


def _rows(routing: Routing, host: VirtualHost, upstreams: dict[str, Upstream]) -> list[dict[str, Any]]:
    name = "(default)" if host.name == "_" else host.name
    if host.tls is TLSMode.PASSTHROUGH:
        upstream = upstreams[host.passthrough_upstream]
        return [
            {
                "cluster": routing.cluster,
                "host": name,
                "path": "(tls)",
                "services": list(host.services),
                "targets": [f"{s.address}:{s.port}" for s in upstream.servers],
                "tls": str(host.tls),
            }
        ]
    rows = []
    for route in host.routes:
        upstream = upstreams[route.upstream]
        rows.append(
            {
                "cluster": routing.cluster,
                "host": name,
                "path": route.path,
                "services": sorted({s.service for s in upstream.servers}),
                "targets": [f"{s.address}:{s.port}" for s in upstream.servers],
                "tls": str(host.tls),
            }
        )
    for rule in host.redirects:
        rows.append(
            {
                "cluster": routing.cluster,
                "host": name,
                "path": f"({rule.scheme} redirect)",
                "services": list(host.services),
                "targets": [rule.target],
                "tls": str(host.tls),
            }
        )
    return rows


def routes_table(routing: Routing) -> list[dict[str, Any]]:
    hosts = [*routing.hosts, *([routing.default_host] if routing.default_host else [])]
    upstreams = {u.name: u for u in (*routing.upstreams, *routing.passthrough_upstreams)}
    return [row for host in hosts for row in _rows(routing, host, upstreams)]
