"""The HAProxy renderer: `Routing` + extension settings -> haproxy.cfg text (`Kind = "haproxy"`).

Beside the nginx renderer and through the same routing model: this module prepares a small view
(host ACLs, each route's matchers in first-match order, server lines) and the template only
prints it, through the same quoting filters and `finalize` guard. The layout mirrors nginx's:
an HTTP frontend on TargetPort; an SNI router on TargetSSLPort (mode tcp) that sends
passthrough hosts to their servers and terminated ones over loopback with the PROXY protocol to
the TLS frontend on 127.0.0.1:{TERMINATOR_PORT}, whose certificates are combined PEMs the proxy
agent writes into one directory and names in a crt-list (render/haproxy_certificates.py); a
status frontend on 127.0.0.1:{STATUS_PORT} for the agent (configuration id, HAProxy's
Prometheus exporter, the stats page). An extension's `Template`
may extend `haproxy.cfg.j2` (hook blocks: global, defaults, http_frontend, tls_frontend). Pure;
render layer.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from interlock import __version__
from interlock.config.schema import ExtensionConfig, HAProxyConfig, size_bytes
from interlock.constants import ADMIN_PASS_ENV, CONNECT_TRIES, INTERNAL_PORTS, STATUS_PORT, TERMINATOR_PORT
from interlock.errors import UnsafeValue
from interlock.model.routing import Balance, RedirectRule, Routing, Server, TLSMode, Upstream, VirtualHost
from interlock.render.access_log import haproxy_json_format, services_of
from interlock.render.bundle import RenderedConfig
from interlock.render.haproxy_certificates import CERTIFICATES_DIR
from interlock.render.haproxy_policy import policy_lines
from interlock.render.haproxy_slots import ADMIN_SOCKET, SPARE_ADDRESS, TARGETS_HEADER, slot_count
from interlock.render.quoting import Token, user_token
from interlock.render.templating import CONFIG_ID_PLACEHOLDER, ListenerView, environment, render_custom

_CA_FILE = "/etc/ssl/certs/ca-certificates.crt"
_NO_TEST = Token("")
_NAMES_PER_LINE = 48
_SERVER_SLOT = re.compile(r"^(\s+server s\d+) \S+(.*?)(?: disabled)?$", re.MULTILINE)
"""A server slot's line: what stays of it once its address and whether it is filled are left out."""


def _address(server: Server) -> str:
    address = user_token(server.address)
    return f"[{address}]:{int(server.port)}" if ":" in address else f"{address}:{int(server.port)}"


def render_targets(routing: Routing) -> tuple[str, str]:
    """The targets document (one line per backend: its name, then the address of each filled
    slot in order) and its id: what the agent applies through the runtime API when only
    tasks moved."""
    lines = [
        " ".join([user_token(u.name), *(_address(s) for s in u.servers)])
        for u in (*routing.upstreams, *routing.passthrough_upstreams)
    ]
    body = "".join(line + "\n" for line in lines)
    targets_id = hashlib.sha256(body.encode()).hexdigest()[:16]
    return f"{TARGETS_HEADER} {targets_id}\n{body}", targets_id


@dataclass(frozen=True, slots=True)
class _Route:
    """One route of a host, as the frontend's rules test it."""

    path: str
    backend: str
    matches: tuple[Token, ...]
    """Anonymous ACLs that select it: `{ path /x }`, `{ path_beg /x/ }`; "" for `/`."""
    cut: int = 0
    """Characters cut off the front of the path (context_root_rewrite), 0 for none."""
    cut_when: Token = _NO_TEST
    """Where the cut applies: under the path, but not where a longer route of the same host
    (an earlier one whose path lies under this one) takes the request."""
    slash_redirect: bool = False
    """Answer the bare context root with a 301 to it with a slash (as nginx's renderer does)."""

    @property
    def bare(self) -> Token:
        """The test for the path itself, without a slash after it."""
        return Token(f"{{ path {user_token(self.path)} }}")


def _excluding(route: _Route) -> str:
    """` !{ ... }` for each of the matchers that select `route`."""
    return "".join(f" !{m}" for m in route.matches)


def _routes(host: VirtualHost) -> tuple[_Route, ...]:
    """The host's routes in first-match order: longer paths before shorter, `/` last. HAProxy
    takes the first `use_backend` whose condition holds, so the order is the precedence."""
    routes: list[_Route] = []
    for route in sorted(host.routes, key=lambda r: (-len(r.path), r.path)):
        path = user_token(route.path)
        if route.path == "/":
            routes.append(_Route(route.path, route.upstream, (Token(""),)))
        elif route.rewrite:
            prefix = Token(f"{{ path_beg {path}/ }}")
            # The cut is chosen before the backend is (set-path would change what the routes
            # match), so it must not hold where a longer route under this one takes the request.
            when = Token(prefix + "".join(_excluding(r) for r in routes if r.path.startswith(route.path + "/")))
            routes.append(
                _Route(route.path, route.upstream, (prefix,), cut=len(route.path), cut_when=when, slash_redirect=True)
            )
        else:
            exact, prefix = Token(f"{{ path {path} }}"), Token(f"{{ path_beg {path}/ }}")
            routes.append(_Route(route.path, route.upstream, (exact, prefix)))
    return tuple(routes)


class _HostView:
    """What the template reads about one host."""

    __slots__ = ("condition", "direct", "has_root", "host", "is_default", "name", "passthrough_upstream", "routes")

    def __init__(self, host: VirtualHost, *, is_default: bool = False) -> None:
        self.host = host
        self.is_default = is_default
        self.name = host.name
        # An anonymous ACL, not a named one: HAProxy finds a named ACL by a walk of the
        # frontend's list, which made reading 10,000 hosts twice as slow. The default backend
        # takes what no known host took.
        self.condition = (
            Token("!interlock_known") if is_default else Token(f"{{ var(txn.host) -m str {user_token(host.name)} }}")
        )
        self.routes = _routes(host)
        self.has_root = any(r.path == "/" for r in host.routes)
        self.passthrough_upstream = host.passthrough_upstream
        # The whole host goes to the backend named after it: the frontend's one dynamic
        # `use_backend` takes it (see _View.direct).
        self.direct = not is_default and tuple((r.path, r.backend) for r in self.routes) == (("/", host.name),)

    @property
    def ssl_only(self) -> bool:
        return self.host.ssl_only

    def when(self, *tests: Token) -> Token:
        """This host's condition and `tests`, as one `if` condition."""
        return Token(" ".join(t for t in (self.condition, *tests) if t))

    def redirects_for(self, scheme: str) -> tuple[RedirectRule, ...]:
        return tuple(r for r in self.host.redirects if r.scheme == scheme)

    def redirected(self, scheme: str) -> bool:
        """Every request of `scheme` to this host is redirected (its redirect, or ssl_only on
        plain HTTP), so it has no backend rules there."""
        return bool(self.redirects_for(scheme)) or (scheme == "http" and self.ssl_only)


def _criteria(hosts: list[_HostView], fetch: str = "var(txn.host)") -> list[Token]:
    """ACL criteria matching the names of `hosts` with `fetch` (the request's host, or the TLS
    hello's server name): a few dozen names to a line, as HAProxy takes at most 64 words on one
    line and indexes the names of each line in a tree. A line ends where its last name says
    (its hash), or at _NAMES_PER_LINE: so a host that comes or goes changes its own line, not
    every line after it (what a proxy is sent is the lines that changed)."""
    lines: list[list[str]] = [[]]
    for host in hosts:
        name = user_token(host.name)
        lines[-1].append(name)
        if len(lines[-1]) == _NAMES_PER_LINE or hashlib.sha1(name.encode()).digest()[0] < 256 // 24:
            lines.append([])
    return [Token(f"{fetch} -m str " + " ".join(line)) for line in lines if line]


_SNI = "req_ssl_sni,lower"
_PASSTHROUGH_PREFIX = "passthrough_"


@dataclass(slots=True)
class _View(ListenerView):
    routing: Routing
    ext: ExtensionConfig
    version: str
    certificates: str = CERTIFICATES_DIR
    http_hosts: list[_HostView] = field(default_factory=list)
    tls_hosts: list[_HostView] = field(default_factory=list)
    passthrough_hosts: list[_HostView] = field(default_factory=list)
    default_tls_host: _HostView | None = None

    def __post_init__(self) -> None:
        for host in self.routing.hosts:
            view = _HostView(host)
            # Every host on plain HTTP: a passthrough one is ssl_only (a redirect to https).
            self.http_hosts.append(view)
            if host.tls is TLSMode.PASSTHROUGH:
                self.passthrough_hosts.append(view)
            elif host.tls is TLSMode.TERMINATE:
                self.tls_hosts.append(view)
        default = self.routing.default_host
        if default is not None:
            view = _HostView(default, is_default=True)
            self.http_hosts.append(view)
            if default.tls is TLSMode.TERMINATE:
                self.default_tls_host = view
                self.tls_hosts.append(view)

    @property
    def cfg(self) -> HAProxyConfig:
        return self.ext.haproxy

    @staticmethod
    def has_default(hosts: list[_HostView]) -> bool:
        return any(h.is_default for h in hosts)

    @staticmethod
    def direct(hosts: list[_HostView], scheme: str) -> list[Token]:
        """The criteria of the `interlock_direct` ACL: the hosts of this frontend whose every
        request goes to the backend named after the host. One rule, `use_backend
        %[var(txn.host)] if interlock_direct`, routes them all: HAProxy finds the backend in its
        tree of names, where a rule a host costs a walk of the rules on every request, and
        O(rules^2) when it reads the configuration (`proxy_adjust_all_maxconn`). Only names in
        the ACL are looked up, so a Host header can never name another backend."""
        return _criteria([h for h in hosts if h.direct and not h.redirected(scheme)])

    @property
    def terminated_sni(self) -> list[Token]:
        """The criteria of `interlock_terminated`: the server names the SNI router hands to the
        TLS frontend (one rule for all of them, as for hosts on HTTP)."""
        return _criteria([h for h in self.tls_hosts if not h.is_default], _SNI)

    @property
    def passthrough_sni(self) -> list[Token]:
        """The criteria of `interlock_passthrough`: server names whose backend is
        `passthrough_NAME`, taken by one `use_backend passthrough_%[req_ssl_sni,lower]`."""
        return _criteria([h for h in self.passthrough_hosts if self._named_passthrough(h)], _SNI)

    @property
    def other_passthrough_hosts(self) -> list[_HostView]:
        """Passthrough hosts whose backend is not named after them: a rule each."""
        return [h for h in self.passthrough_hosts if not self._named_passthrough(h)]

    @staticmethod
    def _named_passthrough(host: _HostView) -> bool:
        return host.passthrough_upstream == _PASSTHROUGH_PREFIX + host.name

    @staticmethod
    def known(hosts: list[_HostView]) -> list[Token]:
        """The criteria of the `interlock_known` ACL (every host but the default one);
        `always_false` when there is none."""
        return _criteria([h for h in hosts if not h.is_default]) or [Token("always_false")]

    @property
    def body_limit(self) -> int:
        """ClientMaxBodySize in bytes (0: no limit)."""
        return size_bytes(self.cfg.client_max_body_size)

    def balance(self, upstream: Upstream) -> str:
        """The backend's `balance` kind: IPHash turns round robin into the client address's."""
        if upstream.balance is Balance.ROUND_ROBIN and self.cfg.ip_hash:
            return "ip_hash"
        return str(upstream.balance.value)

    @property
    def alpn(self) -> Token:
        """What the TLS listener offers in ALPN: HTTP/2 and HTTP/1.1, or (HTTP2 = false) 1.1."""
        return Token(" alpn h2,http/1.1" if self.cfg.http2 else " alpn http/1.1")

    @property
    def json_log_format(self) -> Token:
        return haproxy_json_format(self.routing)

    services_of = staticmethod(services_of)
    policy_lines = staticmethod(policy_lines)

    def cuts(self, upstream: Upstream) -> tuple[int, ...]:
        """The path cuts of the rewriting routes `upstream` serves, applied in its backend."""
        hosts = (*self.http_hosts, *self.tls_hosts)
        return tuple(sorted({r.cut for h in hosts for r in h.routes if r.cut and r.backend == upstream.name}))

    @property
    def ssl_min_version(self) -> Token:
        oldest = sorted(self.cfg.ssl_protocols.split(), key=lambda v: (len(v), v))[0]
        return Token({"TLSv1": "TLSv1.0"}.get(oldest, oldest))

    @property
    def ssl_opts(self) -> Token:
        return Token(f" {self.cfg.ssl_opts}" if self.cfg.ssl_opts else "")

    @property
    def stats_auth(self) -> Token:
        if self.cfg.admin_pass_secret:
            # HAProxy reads the password from its environment, where the agent puts the secret.
            return Token(f'"{self.cfg.admin_user}:${{{ADMIN_PASS_ENV}}}"')
        return Token(f"{self.cfg.admin_user}:{self.cfg.admin_pass}")

    @property
    def server_info(self) -> str:
        return f"interlock/{self.version} (haproxy) linux"

    @property
    def version_token(self) -> Token:
        return user_token(self.version)

    @property
    def certificates_dir(self) -> Token:
        return Token(self.certificates)

    terminator_port = TERMINATOR_PORT
    status_port = STATUS_PORT
    config_id = CONFIG_ID_PLACEHOLDER
    admin_socket = Token(ADMIN_SOCKET)

    def connect_retries(self, upstream: Upstream) -> int | None:
        """Retries after a connection error (nothing was sent: any method), each on another
        server: as nginx's balancer, up to the backend's slots (a count that tasks coming and
        going leave as it is) and at most CONNECT_TRIES tries. None where the route's `retries`
        policy sets HAProxy's one retry count itself."""
        if upstream.policy is not None and upstream.policy.retries is not None:
            return None
        return min(len(self.slots(upstream)), CONNECT_TRIES) - 1

    def slots(self, upstream: Upstream) -> range:
        return range(slot_count(len(upstream.servers)))

    def server_entry(self, upstream: Upstream, index: int) -> Token:
        """`sINDEX ADDRESS:PORT [check ...] [ssl ...]` for slot `index` of `upstream`: its
        server, or a spare slot (`disabled`) the agent fills through the runtime API when a
        task comes."""
        servers = upstream.servers
        first = servers[0] if servers else None
        filled = index < len(servers)
        # A spare's address is a placeholder: the agent sets address and port when it fills it.
        parts = [f"s{index}", _address(servers[index]) if filled else SPARE_ADDRESS]
        if first is not None and first.max_fails:
            # nginx's passive max_fails/fail_timeout, as HAProxy's checks: down after that many
            # failures, tried again every fail_timeout. max_fails 0 (never set aside, as in
            # nginx) is no check at all: HAProxy refuses `fall 0`.
            inter = user_token(first.fail_timeout or "10s")
            fails = int(first.max_fails)
            # Connection errors of requests count too (nginx's passive check): down at once,
            # not at the next check, so the retries of the next requests do not try it.
            parts.append(
                f"check inter {inter} fall {fails} rise 1 observe layer4 error-limit {fails} on-error mark-down"
            )
        if upstream.tls:
            verify = "required" if upstream.tls_verify else "none"
            parts.append(f"ssl verify {verify} ca-file {_CA_FILE} sni req.hdr(host)")
        if upstream.grpc:
            # gRPC is HTTP/2 to the task: chosen by ALPN over TLS, spoken outright in clear.
            parts.append("alpn h2" if upstream.tls else "proto h2")
        if not filled:
            parts.append("disabled")
        return Token(" ".join(parts))


def render_haproxy(
    routing: Routing,
    ext: ExtensionConfig,
    *,
    certificates_dir: str = CERTIFICATES_DIR,
    version: str = __version__,
) -> RenderedConfig:
    """Render the HAProxy configuration of one service cluster; raises UnsafeValue (no
    configuration at all) if a value could not be printed safely, TemplateFailed for an
    extension's own Template that does not render."""
    if ext.target_port in INTERNAL_PORTS or ext.target_ssl_port in INTERNAL_PORTS:
        raise UnsafeValue(f"TargetPort/TargetSSLPort may not use Interlock's internal ports {INTERNAL_PORTS}")
    if not re.fullmatch(r"/[A-Za-z0-9._/-]+", certificates_dir):
        raise UnsafeValue(f"certificates directory {certificates_dir!r} must be an absolute plain path")
    text = _render_text(routing, ext, _View(routing, ext, version, certificates_dir))
    # The id names the shape (routes, options, slot counts), not where the tasks are: a change
    # that only moves tasks keeps it, and the agent applies the targets without a reload.
    config_id = hashlib.sha256(_SERVER_SLOT.sub(r"\1\2", text).encode()).hexdigest()[:16]
    targets, targets_id = render_targets(routing)
    return RenderedConfig(
        text=text.replace(CONFIG_ID_PLACEHOLDER, config_id),
        config_id=config_id,
        targets=targets,
        targets_id=targets_id,
    )


def _render_text(routing: Routing, ext: ExtensionConfig, view: _View) -> str:
    context = {"routing": routing, "cfg": ext.haproxy, "view": view}
    if ext.template:
        return render_custom(ext.template, context, extends="haproxy.cfg.j2")
    return environment().get_template("haproxy.cfg.j2").render(context)


__all__ = ["render_haproxy"]
