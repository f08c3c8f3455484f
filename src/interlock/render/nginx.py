"""The nginx renderer: `Routing` + extension settings -> nginx.conf text.

The template only prints; this module prepares a small view (which hosts get which servers,
hash sizes, ports) and installs the quoting filters and the `finalize` guard from `quoting`.
Internal loopback ports: 127.0.0.1:{TERMINATOR_PORT} terminates TLS behind the SNI router,
127.0.0.1:{PASSTHROUGH_PORT} forwards passthrough TLS, 127.0.0.1:{STATUS_PORT} answers the proxy
agent. An extension's `Template` replaces the built-in template: usually it extends it
(`{% extends "nginx.conf.j2" %}`) and fills the hook blocks (main, http, http_server,
tls_server, stream); it is rendered in Jinja2's sandbox with the same printing rules. Pure;
render layer.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from interlock import __version__
from interlock.config.schema import ExtensionConfig
from interlock.constants import CONNECT_TRIES, INTERNAL_PORTS, PASSTHROUGH_PORT, STATUS_PORT, TERMINATOR_PORT
from interlock.errors import TemplateFailed, UnsafeValue
from interlock.model.routing import RedirectRule, Routing, Server, TLSMode, Upstream, VirtualHost
from interlock.render.access_log import nginx_json_format, services_of
from interlock.render.bundle import RenderedConfig
from interlock.render.nginx_certificates import FALLBACK_CERTIFICATE
from interlock.render.quoting import (
    Token,
    user_token,
)
from interlock.render.targets import Targets, render_targets, shared_dict_kilobytes, targets_field
from interlock.render.templating import CONFIG_ID_PLACEHOLDER, ListenerView, environment, render_custom

_HEADERS = """\
            proxy_set_header Host $http_host;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header x-request-id $request_id;
"""
# Constant text, printed once per location: cheaper as tokens than as a macro call each time.
_PROXY_HEADERS = Token(_HEADERS + '            proxy_set_header Connection "";\n')
_WEBSOCKET_HEADERS = Token(
    _HEADERS + "            proxy_set_header Upgrade $http_upgrade;\n"
    "            proxy_set_header Connection $connection_upgrade;\n"
)
# gRPC runs over HTTP/2, whose `:authority` nginx sends as the Host; the rest as for HTTP.
_GRPC_HEADERS = Token(
    _HEADERS.replace("            proxy_set_header Host $http_host;\n", "").replace(
        "proxy_set_header", "grpc_set_header"
    )
)
# Run-time routing: one location for every route, so the websocket headers are the router's
# variables (empty, so not sent, unless the route is a websocket endpoint).
_ROUTED_HEADERS = Token(
    _HEADERS + "            proxy_set_header Upgrade $interlock_upgrade;\n"
    "            proxy_set_header Connection $interlock_connection;"
)
_ROUTED_GRPC_HEADERS = Token(_GRPC_HEADERS.rstrip("\n"))
_WORDS = re.compile(r"^[A-Za-z0-9.]+( [A-Za-z0-9.]+)*$")


@dataclass(frozen=True, slots=True)
class _Location:
    """One `location` block: its matcher, and either a 301 or the upstream it proxies to."""

    match: Token
    upstream: Upstream
    uri: Token
    """`/` to replace the matched prefix (context_root_rewrite), else empty (pass the URI as is)."""
    websocket: bool = False
    redirect: Token | None = None


def _locations(host: VirtualHost, upstreams: dict[str, Upstream]) -> tuple[_Location, ...]:
    """The location blocks of a host: `/` as a prefix; a context root as an exact match for the
    bare path (301 to add the slash when rewriting) and a prefix for what is under it, so that
    `/app` never matches `/application`."""
    blocks = []
    for route in host.routes:
        upstream = upstreams[route.upstream]
        path = user_token(route.path)
        if route.path == "/":
            blocks.append(_Location(Token("/"), upstream, Token(""), route.websocket))
        elif route.rewrite:
            blocks.append(_Location(Token(f"= {path}"), upstream, Token(""), redirect=Token(f"{path}/")))
            blocks.append(_Location(Token(f"{path}/"), upstream, Token("/"), route.websocket))
        else:
            blocks.append(_Location(Token(f"= {path}"), upstream, Token(""), route.websocket))
            blocks.append(_Location(Token(f"{path}/"), upstream, Token(""), route.websocket))
    return tuple(blocks)


class _HostView:
    """What the template reads about one host, computed once per host."""

    __slots__ = (
        "cert_secret",
        "has_root",
        "host",
        "is_default",
        "key_secret",
        "locations",
        "name",
        "passthrough_upstream",
        "ssl_only",
    )

    def __init__(self, host: VirtualHost, upstreams: dict[str, Upstream], *, is_default: bool = False) -> None:
        self.host = host
        self.is_default = is_default
        self.name = host.name
        self.locations = _locations(host, upstreams)
        self.has_root = any(r.path == "/" for r in host.routes)
        self.ssl_only = host.ssl_only
        self.cert_secret = host.cert_secret
        self.key_secret = host.key_secret
        self.passthrough_upstream = host.passthrough_upstream

    def redirects_for(self, scheme: str) -> tuple[RedirectRule, ...]:
        return tuple(r for r in self.host.redirects if r.scheme == scheme)


def _power_of_two_at_least(value: int) -> int:
    size = 1
    while size < value:
        size *= 2
    return size


def _hash_bucket_size(names: Iterable[str]) -> int:
    """A bucket size for an nginx hash of `names` (server names, map keys): nginx stores each
    name with a length byte and a pointer in a cache-line aligned bucket."""
    longest = max((len(name) for name in names), default=0)
    return _power_of_two_at_least(max(64, longest + 24))


def _hash_max_size(count: int) -> int:
    return _power_of_two_at_least(max(512, 4 * count))


def _words(value: str) -> Token:
    if not _WORDS.fullmatch(value):
        raise UnsafeValue(f"refusing to print {value!r}: expected space-separated words of A-Z a-z 0-9 .")
    return Token(value)


@dataclass(slots=True)
class _View(ListenerView):
    routing: Routing
    ext: ExtensionConfig
    version: str
    targets: Targets
    http_hosts: list[_HostView] = field(default_factory=list)
    tls_hosts: list[_HostView] = field(default_factory=list)
    passthrough_hosts: list[_HostView] = field(default_factory=list)
    default_tls_host: _HostView | None = None

    def __post_init__(self) -> None:
        upstreams = {u.name: u for u in self.routing.upstreams}
        for host in self.routing.hosts:
            view = _HostView(host, upstreams)
            self.http_hosts.append(view)
            if host.tls is TLSMode.TERMINATE:
                self.tls_hosts.append(view)
            elif host.tls is TLSMode.PASSTHROUGH:
                self.passthrough_hosts.append(view)
        default = self.routing.default_host
        if default is not None:
            default_view = _HostView(default, upstreams, is_default=True)
            self.http_hosts.append(default_view)
            if default.tls is TLSMode.TERMINATE:
                self.default_tls_host = default_view

    proxy_headers = _PROXY_HEADERS
    routed_headers = _ROUTED_HEADERS
    routed_grpc_headers = _ROUTED_GRPC_HEADERS
    grpc_headers = _GRPC_HEADERS
    websocket_headers = _WEBSOCKET_HEADERS
    terminator_port = TERMINATOR_PORT
    passthrough_port = PASSTHROUGH_PORT
    status_port = STATUS_PORT
    config_id = CONFIG_ID_PLACEHOLDER

    @property
    def runtime(self) -> bool:
        """Run-time routing: hosts and routes in the targets document, not in nginx.conf."""
        return self.ext.nginx.runtime_routing

    @property
    def dynamic(self) -> bool:
        """Upstream members in the targets document (run-time routing implies it)."""
        return bool(self.targets.targets_id)

    @property
    def live_certificates(self) -> bool:
        """TLS certificates from the Lua certificates store (always with run-time routing, so
        the first TLS host changes nothing in nginx.conf; else when a host terminates TLS)."""
        return self.runtime or bool(self.tls_hosts) or self.default_tls_host is not None

    @property
    def lua(self) -> bool:
        return self.dynamic or self.ext.nginx.traffic_metrics or self.live_certificates

    @property
    def certificates_library(self) -> Token:
        return lua_library("certificates.lua")

    @property
    def health_library(self) -> Token:
        return lua_library("health.lua")

    fallback_certificate = Token(FALLBACK_CERTIFICATE)

    @property
    def tls_servers(self) -> list[_HostView | None]:
        """The TLS server blocks: the one catch-all of run-time routing; else the default one
        (the default TLS host, or None: handshakes refused) and one per TLS host."""
        if self.runtime:
            return [None]
        return [self.default_tls_host, *self.tls_hosts]

    @property
    def upstream_blocks(self) -> tuple[Upstream, ...]:
        return () if self.runtime else self.routing.upstreams

    @property
    def http_servers(self) -> list[_HostView | None]:
        """The HTTP server blocks: one per host, or the one catch-all of run-time routing."""
        return [None] if self.runtime else list(self.http_hosts)

    @property
    def next_upstream_tries(self) -> int:
        """nginx's bound on tries: with run-time routing none (0), as the balancer bounds them
        per route (a `retries` policy, else ProxyNextUpstreamTries - 1 retries)."""
        return 0 if self.runtime else self.ext.nginx.proxy_next_upstream_tries

    @property
    def default_retries(self) -> int:
        tries = self.ext.nginx.proxy_next_upstream_tries
        return tries - 1 if tries else 1_000_000

    connect_tries = CONNECT_TRIES

    @staticmethod
    def lua_bool(value: bool) -> Token:
        return Token("true" if value else "false")

    @staticmethod
    def scheme_token(scheme: str) -> Token:
        if scheme not in ("http", "https"):
            raise UnsafeValue(f"refusing scheme {scheme!r}")
        return Token(scheme)

    @property
    def worker_processes(self) -> Token | int:
        value = self.ext.nginx.worker_processes
        return Token("auto") if value == "auto" else int(value)

    @property
    def underscores_in_headers(self) -> Token:
        return Token("on" if self.ext.nginx.underscores_in_headers else "off")

    @property
    def ssl_protocols(self) -> Token:
        return _words(self.ext.nginx.ssl_protocols)

    @property
    def large_client_header_buffers(self) -> Token:
        return _words(self.ext.nginx.large_client_header_buffers)

    @property
    def dhparam(self) -> bool:
        cfg = self.ext.nginx
        return cfg.ssl_default_dh_param > 0 and bool(cfg.ssl_default_dh_param_path)

    @property
    def server_info(self) -> str:
        return f"interlock/{self.ext.nginx.version or self.version} (python) linux"

    @property
    def zone_size(self) -> int:
        return self.ext.nginx.upstream_zone_size

    @property
    def keepalive(self) -> int:
        return self.ext.nginx.upstream_keepalive

    @property
    def names_bucket_size(self) -> int:
        needed = _hash_bucket_size(h.name for h in self.routing.hosts)
        return max(needed, self.ext.nginx.server_names_hash_bucket_size)

    @property
    def names_max_size(self) -> int:
        return _hash_max_size(len(self.routing.hosts))

    @property
    def upstream_names_bucket_size(self) -> int:
        return _hash_bucket_size(u.name for u in self.routing.upstreams)

    @property
    def upstream_names_max_size(self) -> int:
        return _hash_max_size(len(self.routing.upstreams))

    @property
    def http2(self) -> Token:
        """` http2` on the TLS listeners (nginx 1.22 takes it as a `listen` parameter)."""
        return Token(" http2" if self.ext.nginx.http2 else "")

    @property
    def json_log_format(self) -> Token:
        return nginx_json_format(self.routing, upstream="$interlock_upstream" if self.runtime else "$proxy_host")

    @staticmethod
    def traffic_route(host: _HostView, upstream: Upstream) -> Token:
        """`$interlock_route` of a location, as one quoted nginx string: its host and upstream,
        tab-separated (what the Lua counters count under), and `*` when at most one service
        serves the upstream (the counters then need not read which task answered)."""
        one = len(upstream.service_names) <= 1
        suffix = "\\t*" if one else ""
        return Token(f'"{user_token(host.name)}\\t{user_token(upstream.name)}{suffix}"')

    @property
    def traffic_library(self) -> Token:
        return lua_library("traffic.lua")

    @staticmethod
    def services_of(upstream: Upstream) -> Token:
        return services_of(upstream) or Token("-")

    def server_entry(self, server: Server) -> Token:
        """`ADDRESS:PORT [max_fails=N] [fail_timeout=T]; # SERVICE` in one token.

        One call per server instead of four filtered expressions: upstreams hold most of the
        configuration's lines, so this is where rendering time goes.
        """
        address = user_token(server.address)
        # An IPv6 address is bracketed, or nginx reads its last group as the port.
        parts = [f"[{address}]:{int(server.port)}" if ":" in address else f"{address}:{int(server.port)}"]
        if server.max_fails is not None:
            parts.append(f"max_fails={int(server.max_fails)}")
        if server.fail_timeout is not None:
            parts.append(f"fail_timeout={user_token(server.fail_timeout)}")
        return Token(" ".join(parts) + f"; # {user_token(server.service)}")

    @property
    def targets_dict_kb(self) -> int:
        return shared_dict_kilobytes(self.targets)

    @property
    def lua_library(self) -> Token:
        return lua_library("targets.lua")

    def lua_string(self, value: str) -> Token:
        """`value` as a Lua string literal; only the characters of the targets grammar pass."""
        return Token(f'"{targets_field(value)}"')


@cache
def lua_library(name: str) -> Token:
    """Lua code of ours printed into init_by_lua (constant text): `targets.lua`, the balancer
    and its control endpoint; `traffic.lua`, the request counters; `certificates.lua`, the
    certificates served by SNI; `health.lua`, the health check and its drain."""
    return Token(resources.files("interlock.render").joinpath(f"lua/{name}").read_text().rstrip("\n"))


def render_nginx(
    routing: Routing,
    ext: ExtensionConfig,
    *,
    version: str = __version__,
) -> RenderedConfig:
    """Render the nginx configuration of one service cluster.

    Raises UnsafeValue if any value could not be printed safely (the label grammars make that a
    bug, not a user error); in that case no configuration is produced at all.
    """
    if ext.target_port in INTERNAL_PORTS or ext.target_ssl_port in INTERNAL_PORTS:
        raise UnsafeValue(f"TargetPort/TargetSSLPort may not use Interlock's internal ports {INTERNAL_PORTS}")
    runtime = ext.nginx.runtime_routing
    dynamic = ext.nginx.dynamic_upstreams or runtime
    targets = render_targets(routing, ip_hash=ext.nginx.ip_hash, routes=runtime) if dynamic else Targets("", "")
    view = _View(routing, ext, version, targets)
    upstreams: dict[str, Upstream] = {u.name: u for u in routing.upstreams}
    context = {"routing": routing, "cfg": ext.nginx, "view": view, "upstreams": upstreams}
    if ext.template:
        try:
            text = render_custom(ext.template, context, extends="nginx.conf.j2")
        except TemplateFailed as exc:
            if view.runtime and "'None' has no attribute" in str(exc):
                raise TemplateFailed(
                    f"{exc}: with RuntimeRouting = true (the default) the http_server and tls_server blocks are "
                    "in the catch-all servers, where `host` is none; set RuntimeRouting = false for a server "
                    "block per host"
                ) from exc
            raise
    else:
        text = environment().get_template("nginx.conf.j2").render(context)
    config_id = hashlib.sha256(text.encode()).hexdigest()[:16]
    return RenderedConfig(
        text=text.replace(CONFIG_ID_PLACEHOLDER, config_id),
        config_id=config_id,
        targets=targets.text,
        targets_id=targets.targets_id,
    )


__all__ = ["RenderedConfig", "TemplateFailed", "render_nginx"]
