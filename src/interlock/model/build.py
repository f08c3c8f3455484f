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
from dataclasses import dataclass, field, replace

from interlock.constants import is_interlocks_secret_name
from interlock.errors import InterlockError
from interlock.model.grammar import is_service_name
from interlock.model.labels import ServiceLabels, parse_labels
from interlock.model.policy import Policy
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
from interlock.model.snapshot import LABEL_PREFIX, LabelKey, Network, Node, Service, Snapshot, Task
from interlock.problems import Problem, Severity, sorted_problems

DEFAULT_HOST = "_"
CLUSTER_LABEL = LABEL_PREFIX + "service_cluster"


@dataclass(frozen=True, slots=True)
class ProxyAttachments:
    """What every running proxy task of a cluster can use right now."""

    networks: frozenset[str]


@dataclass(frozen=True, slots=True)
class BuildResult:
    routings: Mapping[str, Routing]
    """One routing table per requested service cluster."""
    problems: tuple[Problem, ...]
    """Every problem found, sorted; services of unknown clusters included."""
    cluster_of: Mapping[str, str] = field(default_factory=dict)
    """Service name -> the cluster its labels name ('' when none, or when the label does not
    parse), for every service with labels: each cluster is told only its own problems."""

    def problems_of(self, cluster: str) -> tuple[Problem, ...]:
        """The problems of the services whose labels name `cluster`."""
        return tuple(p for p in self.problems if self.cluster_of.get(p.service, "") == cluster)


@dataclass(frozen=True, slots=True)
class Exclusion:
    """Why one service, as its labels and certificate secrets make it, is left out of its
    cluster: what a role of that cluster found that only it can find (a proxy that cannot load
    the service's certificate and key together, or nginx -t refusing its routes). It applies
    while the service has the same labels (`Service.label_key`) and its certificate secrets the
    same IDs, so a relabelled service, or a secret made again under the same name, is tried again."""

    label: str
    """The label blamed: `ssl_cert`, `ssl_key`, or `-` for the service as a whole."""
    reason: str
    secret_ids: tuple[str, ...] = ()
    """IDs of the service's ssl_cert, ssl_key and auth_basic secrets when it was found."""

    @property
    def refused_secret_ids(self) -> tuple[str, ...]:
        """The secrets of a service left out because a secret of its was refused (the label
        blamed is one of them); none for one left out as a whole (`-`)."""
        return tuple(i for i in self.secret_ids if i) if self.label != "-" else ()


SECRET_LABELS = ("ssl_cert", "ssl_key", "auth_basic")
"""The labels that name a Docker secret."""


def certificate_secret_ids(snapshot: Snapshot, labels: Mapping[str, str]) -> tuple[str, ...]:
    """IDs of the secrets a service's ssl_cert, ssl_key and auth_basic labels name, as
    `Exclusion` keeps them."""
    names = [labels.get(LABEL_PREFIX + k, "") for k in SECRET_LABELS]
    return tuple(snapshot.secret_id(n) if n else "" for n in names)


@dataclass(frozen=True, slots=True)
class _Resolved:
    service: Service
    labels: ServiceLabels
    servers: tuple[Server, ...]
    network: str | None
    auth: Upstream | None = None
    """The upstream of its forward_auth service's tasks, on `network`."""

    @property
    def policy(self) -> Policy | None:
        policy = self.labels.policy
        if policy is None or policy.forward_auth is None or self.auth is None:
            return policy
        return replace(policy, forward_auth=replace(policy.forward_auth, upstream=self.auth.name))


@dataclass(frozen=True, slots=True)
class _HostOptions:
    tls: TLSMode
    cert: str
    key: str
    ssl_only: bool
    redirects: tuple[RedirectRule, ...]
    acme: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _RouteOptions:
    rewrite: bool
    websocket: bool
    balance: Balance
    cookie: str
    tls: bool
    tls_verify: bool
    vip: bool
    grpc: bool = False
    policy: Policy | None = None


@dataclass(slots=True)
class _RouteDraft:
    options: _RouteOptions
    owner: str
    owner_stack: str
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
        self.services: dict[str, Service] = {s.name: s for s in snapshot.services}


def proxy_attachments(snapshot: Snapshot, proxy_service: str) -> ProxyAttachments:
    """Networks that every current and coming task of `proxy_service` is on.

    Tasks are made from the service's spec, so the spec stands for the tasks still to come; each
    task that may serve counts with its own spec: one meant to run, and one still running while
    it stops (a replaced proxy drains, then finishes its requests; a route it cannot reach would
    hold those clients until the connect timeout, and the stop with them), unless its node is
    down (its tasks are reported running until the node returns). During a rolling update the
    old tasks lack what was just added, so it stays out until they have stopped.
    """
    names = {n.id: n.name for n in snapshot.networks}
    service = next((s for s in snapshot.services if s.name == proxy_service), None)
    if service is None:
        return ProxyAttachments(frozenset())
    members = [service.network_ids] + [
        t.network_ids
        for t in snapshot.tasks
        if t.service_id == service.id
        and (t.desired_state == "running" or (t.state == "running" and snapshot.node_ready(t.node_id)))
    ]
    return ProxyAttachments(frozenset.intersection(*(frozenset(names.get(i, i) for i in ids) for ids in members)))


def build(
    snapshot: Snapshot,
    clusters: Sequence[str] = ("",),
    *,
    proxies: Mapping[str, str] | None = None,
    exclusions: Mapping[str, Mapping[LabelKey, Exclusion]] | None = None,
    host_sharing: str = "any",
    acme: bool = False,
    refused_labels: Mapping[str, Mapping[str, str]] | None = None,
    fixed_networks: Mapping[str, Sequence[str]] | None = None,
) -> BuildResult:
    """Build the routing table of each cluster in `clusters` from `snapshot`.

    With `proxies` (cluster -> its proxy service; the running core passes them), a service is
    routed only once every proxy task of its cluster is on the service's network (read from the
    snapshot, see `proxy_attachments`); until then it is held back with a warning, while
    `Routing.networks` still lists what the proxy needs, so the core attaches it.
    `Routing.secrets` lists the certificate and key secrets the hosts name: the core mounts them
    and sends the certificates to the proxies, which mount none. When the snapshot lists the
    swarm's secrets, a label naming any other is an error. `exclusions` maps each cluster to
    the services its own roles found
    unroutable (`Exclusion`): a service is left out only by an exclusion of the cluster its
    labels name, so one cluster's findings never touch another's services, and a finding about
    one service never touches another that names the same secret. `acme`: the core has an
    `[ACME]` table (without it `ssl_acme=true` is an error of that service). `refused_labels`
    maps a cluster to the labels its proxies cannot apply (label -> why): a service of it with
    one of them is an error there, never served without what it asked for. `fixed_networks` maps
    a cluster whose proxies join only the networks its extension's `Networks` lists to them: a
    service reached over another network is an error there (its proxies would never reach it).

    A service that joins a host and path another (older) service routes takes a share of its
    traffic (Interlock's canary rule): always said, as a warning; with `host_sharing="stack"`
    only a service of the owner's stack may join, others are refused there.
    """
    index = _Index(snapshot)
    existing_secrets = None if snapshot.secrets is None else frozenset(s.name for s in snapshot.secrets)
    own_secrets = frozenset(s.name for s in snapshot.secrets or () if s.interlocks_own)
    problems: list[Problem] = []
    cluster_of: dict[str, str] = {}
    per_cluster: dict[str, list[_Resolved]] = {name: [] for name in clusters}
    for service in sorted(snapshot.services, key=lambda s: (s.created_ns, s.id)):
        if not is_service_name(service.name):
            if service.labels:
                reason = (
                    "Docker reported a service name outside Docker's own rule (A-Z a-z 0-9 _ . -, up to 63, "
                    "starting with a letter or digit); not routed"
                )
                problems.append(_problem(service, "-", reason))
            continue
        labels, found = parse_labels(service)
        cluster_of[service.name] = labels.service_cluster if labels else service.label_map.get(CLUSTER_LABEL, "")
        problems.extend(found)
        problems.extend(_container_label_problems(service))
        if labels is None:
            continue
        if labels.service_cluster not in per_cluster:
            known = ", ".join(repr(c) for c in clusters)
            problems.append(
                _problem(
                    service,
                    "service_cluster",
                    f"matches no extension (configured clusters: {known}); not routed",
                    Severity.WARNING,
                )
            )
            continue
        refused = (refused_labels or {}).get(labels.service_cluster, {})
        label = next((n for n in refused if LABEL_PREFIX + n in service.label_map), None)
        if label is not None:
            problems.append(_problem(service, label, f"{refused[label]}; not routed"))
            continue
        if labels.ssl_acme and not acme:
            reason = (
                "no [ACME] table in the core's configuration: add one (Directory, Email, AgreeToTerms = true; "
                "docs/CONFIGURATION.md) and run `interlock up`, or name a certificate with ssl_cert; not routed"
            )
            problems.append(_problem(service, "ssl_acme", reason))
            continue
        named = {k: s for k in SECRET_LABELS if (s := getattr(labels, k))}
        own = [k for k, s in named.items() if is_interlocks_secret_name(s) or s in own_secrets]
        if own:
            reason = (
                f"{named[own[0]]!r} is Interlock's own secret (control-channel credentials), never yours; "
                "name a secret you created; not routed"
            )
            problems.append(_problem(service, own[0], reason))
            continue
        if existing_secrets is not None:
            missing = [k for k, s in named.items() if s not in existing_secrets]
            if missing:
                reason = f"no Docker secret named {named[missing[0]]!r}; create it first"
                problems.append(_problem(service, missing[0], reason))
                continue
        exclusion = (exclusions or {}).get(labels.service_cluster, {}).get(service.label_key)
        if exclusion is not None and exclusion.secret_ids == certificate_secret_ids(snapshot, service.label_map):
            problems.append(_problem(service, exclusion.label, exclusion.reason))
            continue
        resolved = _resolve(service, labels, index, problems)
        fixed = (fixed_networks or {}).get(labels.service_cluster)
        if resolved is not None and fixed is not None and resolved.network and resolved.network not in fixed:
            reason = (
                f"reached over network {resolved.network}, which the proxies of cluster {labels.service_cluster!r} "
                f"never join: its extension's Networks lists only {', '.join(fixed) or 'none'}; attach the service "
                "to one of them, or add the network to Networks and run `interlock up`; not routed"
            )
            problems.append(_problem(service, "network" if labels.network else "-", reason))
        elif resolved is not None:
            per_cluster[labels.service_cluster].append(resolved)
    routings = {
        name: _assemble(
            name,
            entries,
            problems,
            proxy_attachments(snapshot, proxies[name]) if proxies is not None else None,
            host_sharing,
        )
        for name, entries in per_cluster.items()
    }
    return BuildResult(routings=routings, problems=sorted_problems(problems), cluster_of=cluster_of)


def _container_label_problems(service: Service) -> list[Problem]:
    """Labels on the container spec only (compose `labels:`): Interlock reads service labels."""
    misplaced = sorted({key for key, _ in service.container_labels} - {key for key, _ in service.labels})
    if not misplaced:
        return []
    shown = ", ".join(misplaced[:5]) + (f" and {len(misplaced) - 5} more" if len(misplaced) > 5 else "")
    return [
        Problem(
            service.name,
            "-",
            "-",
            f"{shown} {'is' if len(misplaced) == 1 else 'are'} set on the container (compose `labels:`), where "
            "Interlock does not read them; set them on the service (compose `deploy: labels:`, "
            "`docker service create --label`)",
            Severity.WARNING,
            service_id=service.id,
        )
    ]


def _problem(service: Service, label: str, reason: str, severity: Severity = Severity.ERROR) -> Problem:
    key = LABEL_PREFIX + label if label != "-" else "-"
    return Problem(service.name, key, service.label_map.get(key, "-"), reason, severity, service_id=service.id)


def _server_order(server: Server) -> tuple[str, int, str]:
    # A key is much cheaper than the dataclass's generated ordering for tens of thousands.
    return (server.address, server.port, server.service)


def _merged(servers: list[Server]) -> tuple[Server, ...]:
    return tuple(sorted(set(servers), key=_server_order))


class _Unroutable(InterlockError):
    """Internal: a service cannot be routed; carries the problem that says why."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.reason)
        self.problem = problem


def _resolve(service: Service, labels: ServiceLabels, index: _Index, problems: list[Problem]) -> _Resolved | None:
    try:
        port = _target_port(service, labels)
        network = _choose_network(service, labels, index, port)
        servers = _servers(service, labels, index, network, port)
    except _Unroutable as exc:
        problems.append(exc.problem)
        return None
    if not servers:
        reason = "no running task yet; routed as soon as one is running"
        problems.append(_problem(service, "-", reason, Severity.WARNING))
    try:
        auth = _forward_auth_upstream(service, labels, index, network, problems)
    except _Unroutable as exc:
        problems.append(exc.problem)
        return None
    return _Resolved(service, labels, servers, network.name if network else None, auth)


def _forward_auth_upstream(
    service: Service, labels: ServiceLabels, index: _Index, network: Network | None, problems: list[Problem]
) -> Upstream | None:
    """The tasks of the service's forward_auth service on the network it is reached over."""
    if labels.forward_auth is None:
        return None
    name, port, _ = labels.forward_auth
    auth = index.services.get(name)
    if auth is None:
        raise _Unroutable(_problem(service, "forward_auth", f"no Swarm service named {name!r}; not routed"))
    if network is None:
        reason = (
            "forward_auth needs this service reached over an overlay network it shares with the auth "
            "service; it is published in host mode only; not routed"
        )
        raise _Unroutable(_problem(service, "forward_auth", reason))
    if network.id not in auth.network_ids:
        reason = (
            f"the auth service {name} is not on network {network.name}, which this service is reached over: "
            f"attach it (docker service update --network-add {network.name} {name}); not routed"
        )
        raise _Unroutable(_problem(service, "forward_auth", reason))
    servers = _servers(auth, ServiceLabels(), index, network, port)
    if not servers:
        reason = f"the auth service {name} has no running task: its requests are refused (502) until one runs"
        problems.append(_problem(service, "forward_auth", reason, Severity.WARNING))
    return Upstream(f"forward_auth.{name}.{port}.{network.name}", servers)


def _target_port(service: Service, labels: ServiceLabels) -> int:
    if labels.port is not None:
        return labels.port
    target_ports = sorted({p.target_port for p in service.ports})
    if len(target_ports) == 1:
        return target_ports[0]
    raise _Unroutable(_problem(service, "port", "missing; set com.docker.lb.port to the port the tasks listen on"))


def _choose_network(service: Service, labels: ServiceLabels, index: _Index, port: int) -> Network | None:
    """The network whose addresses the proxy uses, or None for host-mode targets."""
    candidates = [n for n in (index.networks.get(i) for i in service.network_ids) if n is not None and not n.ingress]
    names = ", ".join(sorted(n.name for n in candidates)) or "none"
    if labels.network is not None:
        chosen = next((n for n in candidates if labels.network in (n.name, n.id)), None)
        if chosen is None:
            reason = f"the service is not attached to this network (its networks: {names})"
            raise _Unroutable(_problem(service, "network", reason))
        return chosen
    if any(p.mode == "host" and p.target_port == port for p in service.ports):
        return None
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        reason = f"missing; the service is on several networks ({names}): set com.docker.lb.network to one of them"
        raise _Unroutable(_problem(service, "network", reason))
    reason = f"not reachable: on no network the proxy can join, and port {port} is not published in host mode"
    raise _Unroutable(_problem(service, "-", reason))


def _servers(
    service: Service, labels: ServiceLabels, index: _Index, network: Network | None, port: int
) -> tuple[Server, ...]:
    def server(address: str, server_port: int) -> Server:
        return Server(address, server_port, service.name, labels.max_fails, labels.fail_timeout)

    serving = [t for t in index.tasks.get(service.id, ()) if t.is_serving]
    if labels.backend_mode == "vip":
        address = next((v.address for v in service.virtual_ips if network and v.network_id == network.id), None)
        if network is None or service.endpoint_mode != "vip" or address is None:
            where = f"on network {network.name}" if network else "(it is only published in host mode)"
            reason = f"vip needs endpoint mode vip and a virtual IP {where}; endpoint mode is {service.endpoint_mode}"
            raise _Unroutable(_problem(service, "backend_mode", reason))
        # The VIP does not depend on tasks, so scaling never changes the configuration.
        return (server(address, port),)
    found: set[Server] = set()
    for task in serving:
        if network is None:
            node = index.nodes.get(task.node_id)
            if node is None or not node.address:
                continue
            # The first binding is the IPv4 one, which the node's address reaches.
            binding = next(
                (b for b in task.host_ports if b.mode == "host" and b.target_port == port and b.published_port), None
            )
            if binding is not None:
                found.add(server(node.address, binding.published_port))
        else:
            for attachment in task.attachments:
                if attachment.network_id == network.id:
                    found.update(server(a, port) for a in attachment.addresses)
    return tuple(sorted(found, key=_server_order))


def _host_options(labels: ServiceLabels, host: str) -> _HostOptions:
    if labels.ssl_passthrough:
        tls = TLSMode.PASSTHROUGH
    elif labels.ssl_cert or labels.ssl_acme:
        tls = TLSMode.TERMINATE
    else:
        tls = TLSMode.NONE
    rules: list[RedirectRule] = []
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
        acme=tuple(sorted(labels.hosts)) if labels.ssl_acme else (),
    )


def _route_paths(labels: ServiceLabels, policy: Policy | None) -> dict[str, _RouteOptions]:
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
        grpc=labels.backend_protocol == "grpc",
        policy=policy,
    )
    paths = {labels.context_root: base}
    for endpoint in labels.websocket_endpoints:
        if endpoint not in paths:
            paths[endpoint] = _RouteOptions(
                False, True, balance, cookie, base.tls, base.tls_verify, base.vip, policy=base.policy
            )
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
    diffs = [
        f"{name}: {_shown(getattr(a, name))} vs {_shown(getattr(b, name))}"
        for name in fields
        if getattr(a, name) != getattr(b, name)
    ]
    return "; ".join(diffs)


def _waiting_for(entry: _Resolved, attached: ProxyAttachments) -> str | None:
    """What the proxy still lacks to reach this service, if anything."""
    if entry.network and entry.network not in attached.networks:
        return f"network {entry.network}"
    return None


def _assemble(
    cluster: str,
    entries: list[_Resolved],
    problems: list[Problem],
    attached: ProxyAttachments | None,
    host_sharing: str = "any",
) -> Routing:
    hosts: dict[str, _HostDraft] = {}
    default: _HostDraft | None = None
    routed: list[str] = []
    needed_networks = {e.network for e in entries if e.network}
    needed_secrets = {
        s
        for e in entries
        if not e.labels.ssl_passthrough
        for s in (e.labels.ssl_cert, e.labels.ssl_key, e.labels.auth_basic)
        if s
    }
    for entry in entries:
        service = entry.service
        lacking = _waiting_for(entry, attached) if attached is not None else None
        if lacking is not None:
            reason = f"waiting for every proxy task of cluster {cluster!r} to have {lacking}; routed then"
            problems.append(_problem(service, "-", reason, Severity.WARNING))
            continue
        routed.append(service.name)
        if entry.labels.default_backend:
            if default is None:
                default = _HostDraft(_host_options(entry.labels, DEFAULT_HOST), service.name)
                _add_routes(DEFAULT_HOST, default, entry, problems, host_sharing)
            else:
                reason = f"service {default.owner} (older) is already the default backend of cluster {cluster!r}"
                problems.append(_problem(service, "default_backend", reason + "; this one is not"))
        for name in entry.labels.hosts:
            options = _host_options(entry.labels, name)
            draft = hosts.setdefault(name, _HostDraft(options, service.name))
            if draft.options != options:
                reason = (
                    f"host {name} is already routed by service {draft.owner} (older) with other host options "
                    f"({_describe_difference(draft.options, options)}); this service is not routed for {name}"
                )
                problems.append(_problem(service, "hosts", reason))
                continue
            _add_routes(name, draft, entry, problems, host_sharing)

    upstreams: dict[str, Upstream] = {}
    passthrough: dict[str, Upstream] = {}
    built = [_freeze_host(name, hosts[name], upstreams, passthrough) for name in sorted(hosts)]
    virtual_hosts = [h for h in built if h is not None]
    default_host = _freeze_host(DEFAULT_HOST, default, upstreams, passthrough) if default else None
    asked = {u.policy.forward_auth.upstream for u in upstreams.values() if u.policy and u.policy.forward_auth}
    for entry in entries:
        if entry.auth is not None and entry.auth.name in asked:
            upstreams.setdefault(entry.auth.name, entry.auth)
    return Routing(
        cluster=cluster,
        hosts=tuple(virtual_hosts),
        default_host=default_host,
        upstreams=tuple(upstreams[k] for k in sorted(upstreams)),
        passthrough_upstreams=tuple(passthrough[k] for k in sorted(passthrough)),
        networks=tuple(sorted(needed_networks)),
        secrets=tuple(sorted(needed_secrets)),
        services_by_age=tuple(routed),
    )


def _add_routes(
    host: str, draft: _HostDraft, entry: _Resolved, problems: list[Problem], host_sharing: str = "any"
) -> None:
    service = entry.service
    joined = False
    for path, options in _route_paths(entry.labels, entry.policy).items():
        route = draft.routes.get(path)
        if route is None:
            route = draft.routes[path] = _RouteDraft(options, service.name, service.stack)
        elif route.options != options:
            label = "context_root" if path == entry.labels.context_root and path != "/" else "hosts"
            problems.append(
                _problem(
                    service,
                    label,
                    f"{host} path {path} is already routed by service {route.owner} (older) with other options "
                    f"({_describe_difference(route.options, options)}); this service is not routed there",
                )
            )
            continue
        if route.owner != service.name:
            if host_sharing == "stack" and route.owner_stack != service.stack:
                reason = (
                    f"{host} path {path} is routed by service {route.owner} (older, stack "
                    f'{route.owner_stack or "(none)"}); HostSharing = "stack" lets only services of that stack '
                    "join it; this service is not routed there"
                )
                problems.append(_problem(service, "hosts", reason))
                continue
            reason = (
                f"shares {host} path {path} with service {route.owner} (older): its tasks take a share of "
                f"{route.owner}'s traffic (canary). If that is not meant, give it other hosts; HostSharing = "
                '"stack" allows sharing only within one stack'
            )
            problems.append(_problem(service, "hosts", reason, Severity.WARNING))
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


def _freeze_host(
    name: str, draft: _HostDraft, upstreams: dict[str, Upstream], passthrough: dict[str, Upstream]
) -> VirtualHost | None:
    opts = draft.options
    if opts.tls is TLSMode.PASSTHROUGH:
        servers = _merged([s for r in draft.routes.values() for s in r.servers])
        if not servers:
            return None
        route_options = draft.routes["/"].options
        upstream = Upstream(
            "passthrough_" + name,
            servers,
            Balance.IP_HASH if route_options.balance is Balance.IP_HASH else Balance.ROUND_ROBIN,
        )
        passthrough[upstream.name] = upstream
        return VirtualHost(
            name=name,
            tls=opts.tls,
            ssl_only=True,
            passthrough_upstream=upstream.name,
            services=tuple(draft.services),
        )
    routes = []
    # Paths served by the same servers the same way share one upstream (a websocket endpoint
    # shares its host's): a service's labels cannot multiply upstream blocks and server lines.
    shared: dict[Upstream, str] = {}
    for path in sorted(draft.routes):
        route = draft.routes[path]
        if not route.servers:
            continue
        o = route.options
        policy = o.policy
        if policy is not None and policy.auth_basic and not policy.auth_realm:
            policy = replace(policy, auth_realm=route.owner)  # the default realm: the route's owner
        content = Upstream("", _merged(route.servers), o.balance, o.cookie, o.tls, o.tls_verify, o.grpc, policy)
        upstream_ref = shared.get(content)
        if upstream_ref is None:
            upstream_ref = shared[content] = upstream_name(name, path)
            upstreams[upstream_ref] = replace(content, name=upstream_ref)
        routes.append(Route(path=path, upstream=upstream_ref, rewrite=o.rewrite, websocket=o.websocket))
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
        acme=opts.acme,
    )
