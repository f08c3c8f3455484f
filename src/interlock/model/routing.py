"""The routing model: what one service cluster's proxy must do, as frozen, sorted values.

Produced by `build`, printed by the renderers, carried between roles by `interlock.wire`.
Everything is a tuple in a defined order, so equal inputs give equal values and byte-identical
configuration. Pure; model layer.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


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
    """Names of the secrets the proxy needs (certificates and keys)."""

    def certificate_pairs(self) -> tuple[tuple[str, str], ...]:
        """(certificate secret, key secret) of every host whose TLS is terminated here, sorted;
        the key secret is the certificate's own for a combined PEM."""
        hosts = (*self.hosts, *((self.default_host,) if self.default_host else ()))
        return tuple(
            sorted(
                {
                    (h.cert_secret, h.key_secret or h.cert_secret)
                    for h in hosts
                    if h.tls is TLSMode.TERMINATE and h.cert_secret
                }
            )
        )

    def upstream(self, name: str) -> Upstream:
        for candidate in (*self.upstreams, *self.passthrough_upstreams):
            if candidate.name == name:
                return candidate
        raise KeyError(name)
