"""The build step: snapshot -> per-cluster routing model + problems.

For each service with `com.docker.lb.*` labels: read the labels, resolve its targets (task IPs on
the chosen network, the service VIP, or node IP + host-mode published port), then group by
cluster, host and path. Services are visited oldest first (creation time, then ID), so the owner
of a host or path is deterministic: a later service with compatible options joins the same
upstream (canary by task count); one with different options is reported and left out there.
Pure; model layer.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from interlock.model.labels import ServiceLabels, parse_labels
from interlock.model.routing import (
    Balance,
    RedirectRule,
    Route,
    Routing,
    Server,
    TLSMode,
    Upstream,
    VirtualHost,
)
from interlock.model.snapshot import LABEL_PREFIX, Network, Node, Service, Snapshot, Task
from interlock.problems import Problem, Severity, sorted_problems

DEFAULT_HOST = "_"


@dataclass(frozen=True, slots=True)
class BuildResult:
    routings: Mapping[str, Routing]
    """One routing table per requested service cluster."""
    problems: tuple[Problem, ...]
    """Every problem found, sorted; services of unknown clusters included."""


@dataclass(frozen=True, slots=True)
class _Resolved:
    service: Service
    labels: ServiceLabels
    servers: tuple[Server, ...]
    network: str | None


@dataclass(frozen=True, slots=True)
class _HostOptions:
    tls: TLSMode
    cert: str
    key: str
    ssl_only: bool
    redirects: tuple[RedirectRule, ...]


@dataclass(frozen=True, slots=True)
class _RouteOptions:
    rewrite: bool
    websocket: bool
    balance: Balance
    cookie: str
    tls: bool
    tls_verify: bool
    vip: bool


@dataclass(slots=True)
class _RouteDraft:
    options: _RouteOptions
    owner: str
    servers: list[Server] = field(default_factory=list)


@dataclass(slots=True)
class _HostDraft:
    options: _HostOptions
    owner: str
    routes: dict[str, _RouteDraft] = field(default_factory=dict)
    services: list[str] = field(default_factory=list)


class _Index:
    """Lookup tables over one snapshot."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.networks: dict[str, Network] = {}
        for network in snapshot.networks:
            self.networks[network.id] = network
            self.networks.setdefault(network.name, network)
        self.nodes: dict[str, Node] = {n.id: n for n in snapshot.nodes}
        self.tasks: dict[str, list[Task]] = {}
        for task in snapshot.tasks:
            self.tasks.setdefault(task.service_id, []).append(task)


def build(snapshot: Snapshot, clusters: Sequence[str] = ("",)) -> BuildResult:
    """Build the routing table of each cluster in `clusters` from `snapshot`."""
    index = _Index(snapshot)
    problems: list[Problem] = []
    per_cluster: dict[str, list[_Resolved]] = {name: [] for name in clusters}
    for service in sorted(snapshot.services, key=lambda s: (s.created_ns, s.id)):
        labels, found = parse_labels(service)
        problems.extend(found)
        if labels is None:
            continue
        if labels.service_cluster not in per_cluster:
            known = ", ".join(repr(c) for c in clusters)
            problems.append(_problem(service, "service_cluster", f"matches no extension (configured clusters: {known}); not routed", Severity.WARNING))
            continue
        resolved = _resolve(service, labels, index, problems)
        if resolved is not None:
            per_cluster[labels.service_cluster].append(resolved)
    routings = {name: _assemble(name, entries, problems) for name, entries in per_cluster.items()}
    return BuildResult(routings=routings, problems=sorted_problems(problems))


def _problem(service: Service, label: str, reason: str, severity: Severity = Severity.ERROR) -> Problem:
    key = LABEL_PREFIX + label if label != "-" else "-"
    return Problem(service.name, key, service.label_map.get(key, "-"), reason, severity, service_id=service.id)


def _resolve(service: Service, labels: ServiceLabels, index: _Index, problems: list[Problem]) -> _Resolved | None:
    port = labels.port
    if port is None:
        target_ports = sorted({p.target_port for p in service.ports})
        if len(target_ports) != 1:
            problems.append(_problem(service, "port", "missing; set com.docker.lb.port to the port the tasks listen on"))
            return None
        port = target_ports[0]
    candidates = [n for n in (index.networks.get(i) for i in service.network_ids) if n is not None and not n.ingress]
    host_published = any(p.mode == "host" and p.target_port == port for p in service.ports)
    network: Network | None = None
    if labels.network is not None:
        network = next((n for n in candidates if labels.network in (n.name, n.id)), None)
        if network is None:
            names = ", ".join(sorted(n.name for n in candidates)) or "none"
            problems.append(_problem(service, "network", f"the service is not attached to this network (its networks: {names})"))
            return None
    elif len(candidates) == 1 and not host_published:
        network = candidates[0]
    elif len(candidates) > 1 and not host_published:
        names = ", ".join(sorted(n.name for n in candidates))
        problems.append(_problem(service, "network", f"missing; the service is on several networks ({names}): set com.docker.lb.network to one of them"))
        return None
    elif not host_published:
        problems.append(_problem(service, "-", f"not reachable: attached to no network the proxy can join and port {port} is not published in host mode"))
        return None

    vip = labels.backend_mode == "vip"
    servers: list[Server] = []
    options = {"service": service.name, "max_fails": labels.max_fails, "fail_timeout": labels.fail_timeout}
    if network is None:
        if vip:
            problems.append(_problem(service, "backend_mode", "vip needs an overlay network; this service is only published in host mode"))
            return None
        for task in index.tasks.get(service.id, ()):
            node = index.nodes.get(task.node_id)
            if not task.is_serving or node is None or not node.address:
                continue
            servers.extend(
                Server(node.address, b.published_port, **options)  # type: ignore[arg-type]
                for b in task.host_ports
                if b.mode == "host" and b.target_port == port and b.published_port
            )
    elif vip:
        address = next((v.address for v in service.virtual_ips if v.network_id == network.id), None)
        if service.endpoint_mode != "vip" or address is None:
            problems.append(_problem(service, "backend_mode", f"vip needs endpoint mode vip and a virtual IP on network {network.name}; this service has endpoint mode {service.endpoint_mode}"))
            return None
        servers.append(Server(address, port, **options))  # type: ignore[arg-type]
    else:
        for task in index.tasks.get(service.id, ()):
            if not task.is_serving:
                continue
            for attachment in task.attachments:
                if attachment.network_id == network.id:
                    servers.extend(Server(a, port, **options) for a in attachment.addresses)  # type: ignore[arg-type]
    if not servers:
        problems.append(_problem(service, "-", "no running task yet; routed as soon as one is running", Severity.WARNING))
    return _Resolved(service, labels, tuple(sorted(set(servers))), network.name if network else None)


def _host_options(labels: ServiceLabels, host: str) -> _HostOptions:
    if labels.ssl_passthrough:
        tls = TLSMode.PASSTHROUGH
    elif labels.ssl_cert:
        tls = TLSMode.TERMINATE
    else:
        tls = TLSMode.NONE
    rules = []
    for redirect in labels.redirects:
        if redirect.source.host == host:
            schemes = [redirect.source.scheme] if redirect.source.scheme else ["http", "https"]
            rules.extend(RedirectRule(scheme, redirect.target.text()) for scheme in schemes)
    return _HostOptions(
        tls=tls,
        cert=labels.ssl_cert,
        key=labels.ssl_key or labels.ssl_cert,
        ssl_only=labels.ssl_only or labels.ssl_passthrough,
        redirects=tuple(sorted(set(rules), key=lambda r: (r.scheme, r.target))),
    )


def _route_paths(labels: ServiceLabels) -> dict[str, _RouteOptions]:
    if labels.ip_hash:
        balance, cookie = Balance.IP_HASH, ""
    elif labels.sticky_session_cookie:
        balance, cookie = Balance.COOKIE, labels.sticky_session_cookie
    else:
        balance, cookie = Balance.ROUND_ROBIN, ""
    base = _RouteOptions(
        rewrite=labels.context_root_rewrite and labels.context_root != "/",
        websocket=labels.context_root in labels.websocket_endpoints,
        balance=balance,
        cookie=cookie,
        tls=labels.ssl_backend,
        tls_verify=labels.ssl_backend and labels.ssl_backend_tls_verify == "required",
        vip=labels.backend_mode == "vip",
    )
    paths = {labels.context_root: base}
    for endpoint in labels.websocket_endpoints:
        if endpoint not in paths:
            paths[endpoint] = _RouteOptions(False, True, balance, cookie, base.tls, base.tls_verify, base.vip)
    return paths


def _shown(value: object) -> str:
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, tuple):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    if isinstance(value, RedirectRule):
        return f"{value.scheme} -> {value.target}"
    return repr(value)


def _describe_difference(a: object, b: object) -> str:
    """`name: older vs newer` for each option that differs."""
    fields = getattr(a, "__slots__", ())
    diffs = [f"{name}: {_shown(getattr(a, name))} vs {_shown(getattr(b, name))}" for name in fields if getattr(a, name) != getattr(b, name)]
    return "; ".join(diffs)


def _assemble(cluster: str, entries: list[_Resolved], problems: list[Problem]) -> Routing:
    hosts: dict[str, _HostDraft] = {}
    default: tuple[_Resolved, _HostDraft] | None = None
    for entry in entries:
        service = entry.service
        names = list(entry.labels.hosts)
        if entry.labels.default_backend:
            if default is None:
                default = (entry, _HostDraft(_host_options(entry.labels, DEFAULT_HOST), service.name))
                _add_routes(DEFAULT_HOST, default[1], entry, problems)
            else:
                problems.append(_problem(service, "default_backend", f"service {default[0].service.name} (older) is already the default backend of cluster {cluster!r}; this one is not"))
        for host in names:
            options = _host_options(entry.labels, host)
            draft = hosts.get(host)
            if draft is None:
                draft = hosts[host] = _HostDraft(options, service.name)
            elif draft.options != options:
                problems.append(_problem(service, "hosts", f"host {host} is already routed by service {draft.owner} (older) with other host options ({_describe_difference(draft.options, options)}); this service is not routed for {host}"))
                continue
            _add_routes(host, draft, entry, problems)

    upstreams: dict[str, Upstream] = {}
    passthrough: dict[str, Upstream] = {}
    built_hosts = []
    for name in sorted(hosts):
        host = _freeze_host(name, hosts[name], upstreams, passthrough)
        if host is not None:
            built_hosts.append(host)
    default_host = _freeze_host(DEFAULT_HOST, default[1], upstreams, passthrough) if default else None
    secrets = {s for h in (*built_hosts, default_host) if h is not None and h.tls is TLSMode.TERMINATE for s in (h.cert_secret, h.key_secret)}
    return Routing(
        cluster=cluster,
        hosts=tuple(built_hosts),
        default_host=default_host,
        upstreams=tuple(upstreams[k] for k in sorted(upstreams)),
        passthrough_upstreams=tuple(passthrough[k] for k in sorted(passthrough)),
        networks=tuple(sorted({e.network for e in entries if e.network})),
        secrets=tuple(sorted(secrets)),
    )


def _add_routes(host: str, draft: _HostDraft, entry: _Resolved, problems: list[Problem]) -> None:
    service = entry.service
    joined = False
    for path, options in _route_paths(entry.labels).items():
        route = draft.routes.get(path)
        if route is None:
            route = draft.routes[path] = _RouteDraft(options, service.name)
        elif route.options != options:
            label = "context_root" if path == entry.labels.context_root and path != "/" else "hosts"
            problems.append(_problem(service, label, f"{host} path {path} is already routed by service {route.owner} (older) with other options ({_describe_difference(route.options, options)}); this service is not routed there"))
            continue
        route.servers.extend(entry.servers)
        joined = True
    if joined and service.name not in draft.services:
        draft.services.append(service.name)


_SLUG = re.compile(r"[^a-z0-9]+")


def upstream_name(host: str, path: str) -> str:
    """A stable upstream name for a host and path (nginx-safe: a-z 0-9 . _ -)."""
    # '_' never appears in a host name, so these names cannot collide with a host's.
    base = "_default" if host == DEFAULT_HOST else host
    if path == "/":
        return base
    slug = _SLUG.sub("_", path.lower()).strip("_")
    digest = hashlib.sha1(path.encode()).hexdigest()[:6]
    return f"{base}__{slug}_{digest}"


def _freeze_host(name: str, draft: _HostDraft, upstreams: dict[str, Upstream], passthrough: dict[str, Upstream]) -> VirtualHost | None:
    opts = draft.options
    if opts.tls is TLSMode.PASSTHROUGH:
        servers = tuple(sorted(set(s for r in draft.routes.values() for s in r.servers)))
        if not servers:
            return None
        route_options = draft.routes["/"].options
        upstream = Upstream("passthrough_" + name, servers, Balance.IP_HASH if route_options.balance is Balance.IP_HASH else Balance.ROUND_ROBIN)
        passthrough[upstream.name] = upstream
        return VirtualHost(name=name, tls=opts.tls, ssl_only=True, passthrough_upstream=upstream.name, services=tuple(draft.services))
    routes = []
    for path in sorted(draft.routes):
        route = draft.routes[path]
        if not route.servers:
            continue
        o = route.options
        upstream = Upstream(upstream_name(name, path), tuple(sorted(set(route.servers))), o.balance, o.cookie, o.tls, o.tls_verify)
        upstreams[upstream.name] = upstream
        routes.append(Route(path=path, upstream=upstream.name, rewrite=o.rewrite, websocket=o.websocket))
    if not routes and not opts.redirects:
        return None
    return VirtualHost(
        name=name,
        tls=opts.tls,
        cert_secret=opts.cert,
        key_secret=opts.key,
        ssl_only=opts.ssl_only,
        redirects=opts.redirects,
        routes=tuple(routes),
        services=tuple(draft.services),
    )
