"""The targets document: what nginx changes at run time, apart from nginx.conf.

With dynamic upstreams (`DynamicUpstreams = true`) nginx.conf names the upstreams and their
balancing rule, and the servers are in this document. With run-time routing (`RuntimeRouting =
true`) the hosts and their routes are in it too, and nginx.conf holds only listeners and global
settings. The proxy swaps the document at run time (lua/targets.lua), so a routing change that
does not touch a listener does not reload nginx. Grammar, one record per line:

    interlock targets 1 ID
    upstream NAME BALANCE COOKIE SERVICES   (BALANCE round_robin|ip_hash|cookie; COOKIE or -;
                                             SERVICES comma-separated, or -)
    server ADDRESS PORT MAX_FAILS FAIL_TIMEOUT_MS
    auth SECRET BASE64_REALM                (the upstream's policy, after its servers: basic
    fauth UPSTREAM HOST:PORT BASE64_PATH     authentication against an htpasswd secret of the
          SENT,...|- TAKEN,...|-             certificates document and the realm a 401 names;
    allow CIDR,...                           forward authentication by the tasks of UPSTREAM,
    rate COUNT SECONDS BURST                 the client headers SENT there and the answer's
    reqh NAME BASE64_VALUE|-                 headers TAKEN onto the request; clients allowed;
    resh NAME BASE64_VALUE|-                 a rate limit per client address; request and
    cors ORIGIN,...                          response headers set (- removes); CORS origins)
    retries N                               (retries on another task, 0-5)
    host NAME TLS SSL_ONLY                  (NAME `_` for the default host; TLS 1 when TLS is
                                             terminated here; SSL_ONLY 1 to send HTTP to HTTPS)
    redirect SCHEME TARGET                  (302 to TARGET + the request URI on SCHEME http|https)
    route PATH UPSTREAM PROTOCOL FLAGS      (PROTOCOL http|https|https-verify|grpc|grpcs|
                                             grpcs-verify; FLAGS r rewrite, w websocket, o one
                                             service serves UPSTREAM; - for none)

ID is a digest of the lines after the header. The proxy agent sends a running nginx only a
delta: the header with ` delta` after the ID, the blocks that changed or are new, `remove NAME`
for each upstream and `drop NAME` for each host that is gone (`targets_delta`). Every value
comes from the routing model, whose fields passed the label grammars; each is checked again
here against the narrow shape the Lua parser reads, so a value that does not fit stops the
render. Pure; render layer.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass

from interlock.errors import UnsafeValue
from interlock.model.policy import Policy
from interlock.model.routing import Balance, Route, Routing, Server, TLSMode, Upstream, VirtualHost

HEADER = "interlock targets 1"
# nginx's own defaults for a server without max_fails / fail_timeout.
DEFAULT_MAX_FAILS = 1
DEFAULT_FAIL_TIMEOUT_MS = 10_000
_FIELD = re.compile(r"^[A-Za-z0-9._:\[\]-]+$")
_SERVICES = re.compile(r"^[A-Za-z0-9._-]+(,[A-Za-z0-9._-]+)*$")
_PATH = re.compile(r"^/[A-Za-z0-9._~/-]*$")
_REDIRECT = re.compile(r"^https?://[A-Za-z0-9._~:/-]+$")
_TIME = re.compile(r"^([0-9]+)(ms|s|m|h)?$")
_NETWORK = re.compile(r"^[0-9a-f.:]+/[0-9]{1,3}$")
_HEADER = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,63}$")
_ORIGIN = re.compile(r"^(\*|https?://[a-z0-9.-]+(:[0-9]{1,5})?)$")
_MS_PER_UNIT = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, None: 1000}


@dataclass(frozen=True, slots=True)
class Targets:
    text: str
    targets_id: str


def _checked(pattern: re.Pattern[str], value: str, what: str) -> str:
    if not pattern.fullmatch(value):
        raise UnsafeValue(f"refusing to write {what} {value!r} into the targets document")
    return value


def targets_field(value: str) -> str:
    """`value` if it is made only of characters the targets grammar (and a Lua string) allows."""
    return _checked(_FIELD, value, "field")


def fail_timeout_ms(value: str | None) -> int:
    """nginx time (`10s`, `500ms`, `2m`, a bare number is seconds) in milliseconds."""
    if value is None:
        return DEFAULT_FAIL_TIMEOUT_MS
    match = _TIME.fullmatch(value)
    if not match:
        raise UnsafeValue(f"refusing fail_timeout {value!r}")
    return int(match.group(1)) * _MS_PER_UNIT[match.group(2)]


def _server_line(server: Server) -> str:
    max_fails = DEFAULT_MAX_FAILS if server.max_fails is None else int(server.max_fails)
    return (
        f"server {targets_field(server.address)} {int(server.port)} {max_fails} {fail_timeout_ms(server.fail_timeout)}"
    )


def _upstream_lines(upstream: Upstream, ip_hash_everywhere: bool) -> list[str]:
    balance = upstream.balance
    if balance is Balance.ROUND_ROBIN and ip_hash_everywhere:
        balance = Balance.IP_HASH
    cookie = targets_field(upstream.cookie) if balance is Balance.COOKIE else "-"
    services = ",".join(upstream.service_names)
    services = _checked(_SERVICES, services, "services") if services else "-"
    lines = [f"upstream {targets_field(upstream.name)} {balance.value} {cookie} {services}"]
    lines.extend(_server_line(server) for server in upstream.servers)
    if upstream.policy is not None:
        lines.extend(_policy_lines(upstream.policy))
    return lines


def _policy_lines(policy: Policy) -> list[str]:
    """The policy of an upstream's services, after its servers (lua/targets.lua, `police`)."""
    lines = []
    if policy.auth_basic:
        realm = base64.b64encode(policy.auth_realm.encode()).decode()
        lines.append(f"auth {targets_field(policy.auth_basic)} {realm}")
    if policy.forward_auth is not None:
        auth = policy.forward_auth
        asked = f"{targets_field(auth.service)}:{int(auth.port)} {base64.b64encode(auth.path.encode()).decode()}"
        sent, taken = (
            ",".join(_checked(_HEADER, n, "header name") for n in names) or "-"
            for names in (auth.request_headers, auth.response_headers)
        )
        lines.append(f"fauth {targets_field(auth.upstream)} {asked} {sent} {taken}")
    if policy.allow_ips:
        lines.append("allow " + ",".join(_checked(_NETWORK, n, "network") for n in policy.allow_ips))
    if policy.rate_limit is not None:
        limit = policy.rate_limit
        lines.append(f"rate {int(limit.count)} {int(limit.seconds)} {int(limit.burst)}")
    for kind, headers in (("reqh", policy.request_headers), ("resh", policy.response_headers)):
        for name, value in headers:
            encoded = base64.b64encode(value.encode()).decode() if value else "-"
            lines.append(f"{kind} {_checked(_HEADER, name, 'header name')} {encoded}")
    if policy.cors_origins:
        lines.append("cors " + ",".join(_checked(_ORIGIN, o, "origin") for o in policy.cors_origins))
    if policy.retries is not None:
        lines.append(f"retries {int(policy.retries)}")
    return lines


def _protocol(upstream: Upstream) -> str:
    protocol = ("grpcs" if upstream.tls else "grpc") if upstream.grpc else ("https" if upstream.tls else "http")
    return protocol + "-verify" if upstream.tls and upstream.tls_verify else protocol


def _route_line(route: Route, upstream: Upstream) -> str:
    flags = "".join(
        flag
        for flag, on in (
            ("r", route.rewrite),
            ("w", route.websocket),
            # The counters need not read which task answered when one service serves it.
            ("o", len(upstream.service_names) <= 1),
        )
        if on
    )
    path = _checked(_PATH, route.path, "path")
    return f"route {path} {targets_field(upstream.name)} {_protocol(upstream)} {flags or '-'}"


def _host_lines(host: VirtualHost, upstreams: dict[str, Upstream]) -> list[str]:
    tls = int(host.tls is TLSMode.TERMINATE)
    name = "_" if host.name == "_" else targets_field(host.name)
    lines = [f"host {name} {tls} {int(host.ssl_only)}"]
    lines.extend(f"redirect {r.scheme} {_checked(_REDIRECT, r.target, 'redirect')}" for r in host.redirects)
    lines.extend(_route_line(route, upstreams[route.upstream]) for route in host.routes)
    return lines


def render_targets(routing: Routing, *, ip_hash: bool = False, routes: bool = False) -> Targets:
    """The targets document of the HTTP upstreams of `routing` (`ip_hash`: the IPHash setting),
    and with `routes` its hosts too (run-time routing)."""
    lines = [line for upstream in routing.upstreams for line in _upstream_lines(upstream, ip_hash)]
    if routes:
        by_name = {u.name: u for u in routing.upstreams}
        hosts = (*routing.hosts, *((routing.default_host,) if routing.default_host else ()))
        lines.extend(line for host in hosts for line in _host_lines(host, by_name))
    body = "".join(line + "\n" for line in lines)
    targets_id = hashlib.sha256(body.encode()).hexdigest()[:16]
    return Targets(f"{HEADER} {targets_id}\n{body}", targets_id)


# What each line of a block may be, after the block's first line (the Lua parser's grammar).
_BLOCK_LINES = {
    "upstream": re.compile(
        r"^(server \S+ [0-9]+ [0-9]+ [0-9]+|auth \S+ [A-Za-z0-9+/=]+"
        r"|fauth \S+ \S+ [A-Za-z0-9+/=]+ [A-Za-z0-9,-]+ [A-Za-z0-9,-]+|allow [0-9a-f.:/,]+|rate [0-9]+ [0-9]+ [0-9]+"
        r"|(reqh|resh) [A-Za-z][A-Za-z0-9-]* ([A-Za-z0-9+/=]+|-)|cors [a-z0-9.:/*,-]+|retries [0-9])$"
    ),
    "host": re.compile(r"^(redirect https? \S+|route /\S* \S+ [a-z-]+ [a-z-]+)$"),
}
_FIRST_LINES = {
    "upstream": re.compile(r"^upstream \S+ \S+ \S+ \S+$"),
    "host": re.compile(r"^host \S+ [01] [01]$"),
}


def _blocks(text: str) -> tuple[str, dict[tuple[str, str], str]]:
    """The id and the blocks ((kind, name) -> lines) of a targets document; a line outside the
    grammar raises ValueError naming it (the document's own schema check, before any proxy)."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith(HEADER + " "):
        raise ValueError("not a targets document: the first line must be " + repr(HEADER + " ID"))
    blocks: dict[tuple[str, str], list[str]] = {}
    current: list[str] | None = None
    kind = ""
    for line in lines[1:]:
        first = line.split(" ", 2)
        if first[0] in _FIRST_LINES:
            kind = first[0]
            if not _FIRST_LINES[kind].fullmatch(line):
                raise ValueError(f"malformed {kind} line: {line!r}")
            current = blocks.setdefault((kind, first[1]), [])
        elif current is None or not _BLOCK_LINES[kind].fullmatch(line):
            raise ValueError(f"line not understood here: {line!r}")
        current.append(line)
    return lines[0].split()[-1], {key: "\n".join(block) for key, block in blocks.items()}


def check_targets(text: str) -> None:
    """Raise ValueError when `text` is not a targets document nginx would take."""
    _blocks(text)


def targets_delta(old: str, new: str) -> str:
    """What a nginx running the targets `old` needs to use `new`: the changed and new blocks
    and the removed names, under `new`'s id. `old` may be empty (nothing known). Upstreams
    come before hosts and removals last, so that a worker reading the shared dict while it is
    written never finds a host whose upstream is not there yet."""
    _, before = _blocks(old) if old else ("", {})
    new_id, after = _blocks(new)
    lines = [f"{HEADER} {new_id} delta"]
    changed = [(key, block) for key, block in after.items() if before.get(key) != block]
    lines.extend(block for (kind, _), block in changed if kind == "upstream")
    lines.extend(block for (kind, _), block in changed if kind == "host")
    lines.extend(f"drop {name}" for kind, name in before if kind == "host" and (kind, name) not in after)
    lines.extend(f"remove {name}" for kind, name in before if kind == "upstream" and (kind, name) not in after)
    return "\n".join(lines) + "\n"


def shared_dict_kilobytes(targets: Targets) -> int:
    """Room for three copies of the document (the configuration's, the one being replaced and
    the previous configuration's while its workers finish) and slack, in a power of two of
    megabytes so the size, and with it nginx.conf, rarely changes."""
    needed = 3 * len(targets.text.encode()) + 1024 * 1024
    size = 1024 * 1024
    while size < needed:
        size *= 2
    return size // 1024
