"""The routing model: what one service cluster's proxy must do, as frozen, sorted values.

Produced by `build`, printed by the renderers, carried between roles by `interlock.wire`.
Everything is a tuple in a defined order, so equal inputs give equal values and byte-identical
configuration. Pure; model layer.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from interlock.model.policy import Policy


class TLSMode(enum.StrEnum):
    NONE = "none"
    TERMINATE = "terminate"
    PASSTHROUGH = "passthrough"


class Balance(enum.StrEnum):
    ROUND_ROBIN = "round_robin"
    IP_HASH = "ip_hash"
    COOKIE = "cookie"


@dataclass(frozen=True, slots=True, order=True)
class Server:
    """One target: a task (task mode), a service VIP, or node IP + published port (host mode)."""

    address: str
    port: int
    service: str
    max_fails: int | None = None
    fail_timeout: str | None = None


@dataclass(frozen=True, slots=True)
class Upstream:
    """A named group of servers with one balancing rule."""

    name: str
    servers: tuple[Server, ...]
    balance: Balance = Balance.ROUND_ROBIN
    cookie: str = ""
    tls: bool = False
    """Speak TLS to the servers (`ssl_backend`)."""
    tls_verify: bool = False
    grpc: bool = False
    """Speak gRPC (HTTP/2) to the servers (`backend_protocol=grpc`)."""
    policy: Policy | None = None
    """What the proxy checks and changes on the requests to these servers' services."""

    @property
    def service_names(self) -> tuple[str, ...]:
        """The services whose tasks are its servers, each once, sorted."""
        return tuple(sorted({s.service for s in self.servers}))


@dataclass(frozen=True, slots=True)
class Route:
    """A path on a host and the upstream that serves it."""

    path: str
    """`/` for the whole host, else a context root or websocket endpoint without trailing slash."""
    upstream: str
    rewrite: bool = False
    websocket: bool = False


@dataclass(frozen=True, slots=True)
class RedirectRule:
    """Answer every request on this host's listener with 302 to `target` + request URI."""

    scheme: str
    """`http` or `https`: the listener the rule applies on."""
    target: str


@dataclass(frozen=True, slots=True)
class VirtualHost:
    name: str
    """Host name (A-label, lower case); `_` for the default backend."""
    tls: TLSMode = TLSMode.NONE
    cert_secret: str = ""
    key_secret: str = ""
    ssl_only: bool = False
    redirects: tuple[RedirectRule, ...] = ()
    routes: tuple[Route, ...] = ()
    passthrough_upstream: str = ""
    services: tuple[str, ...] = ()
    """Names of the services routed here, for operators."""
    acme: tuple[str, ...] = ()
    """With `ssl_acme`: the host names of the certificate the core orders for this host (its
    service's hosts, sorted); the certificate reaches the proxies like a named one."""


@dataclass(frozen=True, slots=True)
class Routing:
    """The whole routing table of one service cluster."""

    cluster: str
    hosts: tuple[VirtualHost, ...] = ()
    default_host: VirtualHost | None = None
    upstreams: tuple[Upstream, ...] = ()
    """HTTP upstreams, sorted by name."""
    passthrough_upstreams: tuple[Upstream, ...] = ()
    """TCP (stream) upstreams for TLS passthrough, sorted by name."""
    networks: tuple[str, ...] = ()
    """Names of the networks the proxy must be attached to."""
    secrets: tuple[str, ...] = ()
    """Names of the certificate, key and htpasswd secrets the routes name (the core mounts them)."""
    services_by_age: tuple[str, ...] = ()
    """The services considered for this cluster, oldest first (creation time, then ID): whom to
    blame last when they only fail together."""

    def terminated_pairs(self) -> dict[str, tuple[str, str]]:
        """Host -> (certificate secret, key secret) of every host whose TLS is terminated here
        (`_` for the default host); the key secret is the certificate's own for a combined PEM."""
        hosts = (*self.hosts, *((self.default_host,) if self.default_host else ()))
        return {
            h.name: (h.cert_secret, h.key_secret or h.cert_secret)
            for h in hosts
            if h.tls is TLSMode.TERMINATE and h.cert_secret
        }

    def credential_secrets(self) -> tuple[str, ...]:
        """The htpasswd secrets the upstreams' `auth_basic` policies name, sorted."""
        return tuple(sorted({u.policy.auth_basic for u in self.upstreams if u.policy and u.policy.auth_basic}))

    def acme_names(self) -> dict[str, tuple[str, ...]]:
        """Host -> the host names of its ACME certificate, for every host with `ssl_acme`."""
        return {h.name: h.acme for h in self.hosts if h.tls is TLSMode.TERMINATE and h.acme}

    def upstream(self, name: str) -> Upstream:
        for candidate in (*self.upstreams, *self.passthrough_upstreams):
            if candidate.name == name:
                return candidate
        raise KeyError(name)

    def service_names(self) -> tuple[str, ...]:
        """Every service that has a server or a host here, sorted."""
        hosts = (*self.hosts, *((self.default_host,) if self.default_host else ()))
        names = {s.service for u in (*self.upstreams, *self.passthrough_upstreams) for s in u.servers}
        return tuple(sorted(names.union(*(h.services for h in hosts))))

    def services_oldest_first(self) -> tuple[str, ...]:
        """`service_names`, oldest first where the age is known (then by name)."""
        names = self.service_names()
        present = set(names)
        known = [s for s in self.services_by_age if s in present]
        aged = set(known)
        return (*known, *(s for s in names if s not in aged))

    def without(self, services: frozenset[str]) -> Routing:
        """This routing as if `services` were not routed: their servers leave the upstreams, a
        path (or passthrough host) whose upstream has none left goes, and so does a host left
        with no path and no redirect, or all of whose services are left out. What another
        service routes stays as it is."""
        if not services:
            return self
        upstreams, passthrough = (
            _kept_upstreams(self.upstreams, services),
            _kept_upstreams(self.passthrough_upstreams, services),
        )

        def narrowed(host: VirtualHost | None) -> VirtualHost | None:
            if host is None:
                return None
            remaining = tuple(s for s in host.services if s not in services)
            if host.services and not remaining:
                return None
            if host.passthrough_upstream:
                return replace(host, services=remaining) if host.passthrough_upstream in passthrough else None
            routes = tuple(r for r in host.routes if r.upstream in upstreams)
            if not routes and not host.redirects:
                return None
            return replace(host, routes=routes, services=remaining)

        hosts = tuple(h for h in map(narrowed, self.hosts) if h is not None)
        return replace(
            self,
            hosts=hosts,
            default_host=narrowed(self.default_host),
            upstreams=tuple(upstreams.values()),
            passthrough_upstreams=tuple(passthrough.values()),
            services_by_age=tuple(s for s in self.services_by_age if s not in services),
        )


def _kept_upstreams(upstreams: tuple[Upstream, ...], services: frozenset[str]) -> dict[str, Upstream]:
    """Name -> upstream without the servers of `services`, for those that keep a server."""
    kept = {}
    for upstream in upstreams:
        servers = tuple(s for s in upstream.servers if s.service not in services)
        if servers:
            whole = len(servers) == len(upstream.servers)
            kept[upstream.name] = upstream if whole else replace(upstream, servers=servers)
    return kept
