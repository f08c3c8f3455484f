"""The core's board: snapshot + refusals -> one versioned `ClusterState` per cluster, the
extensions' reports, the long-poll on states, and the status the operator reads.

A cluster's state gets a new version only when its routing or its own problems changed (a
cluster is told only the problems of its own services). What a cluster's roles find that only
they can find becomes an `Exclusion` of that cluster, kept in its slot: a (certificate, key)
pair the core cannot load (`note_refused_certificates`) leaves out the services of its routing
that name that pair, and a service its extension's bisection found making `nginx -t` fail is
left out (the core's certificate desk, `certificates.py`, finds the refused pairs). A report can only
name services of its own cluster's routing; an exclusion lasts while the service keeps its
labels and certificate secrets, and goes with the service. The core keeps no configuration
text of its own: reports name the extension's newest validated configuration by its ids
(`ConfigRef`), and the core asks the extension for the whole of it (`want_config`, answered on
the state long-poll) only when it must store one for new proxy tasks; it keeps a body only when
it is intact (`damaged`).

Pure bookkeeping plus an asyncio condition; no Docker, no HTTP. Time from an injected `Clock`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace

from prometheus_client import Counter, Gauge, Histogram

from interlock.config import CoreConfig
from interlock.edges.clock import Clock, SystemClock
from interlock.model.build import Exclusion, build, certificate_secret_ids
from interlock.model.routing import Routing, TLSMode
from interlock.model.snapshot import LABEL_PREFIX, LabelKey, Service, Snapshot
from interlock.problems import Problem, printable, sorted_problems
from interlock.render.bundle import RenderedConfig
from interlock.roles.runtime import changed_within
from interlock.wire.certificates import Pair
from interlock.wire.delta import state_delta
from interlock.wire.messages import (
    ClusterState,
    ClusterTraffic,
    ExtensionReport,
    ProxyConfig,
    ProxyTraffic,
    encode,
)
from interlock.wire.status import (
    ClusterStatus,
    CoreInfo,
    CoreStatus,
    ProblemView,
    ProxyStatus,
    routes_table,
    with_traffic,
)

log = logging.getLogger("interlock.core")


def damaged(config: ProxyConfig) -> str:
    """Why `config` is not what its extension rendered and validated ('' when intact): its
    digest must be that of its text and targets, and its text must print its id (which the
    running nginx answers, so the proxy agent can confirm a reload)."""
    rendered = RenderedConfig(config.text, config.config_id, config.targets, config.targets_id)
    if rendered.digest != config.digest:
        return "its digest is not that of its text and targets"
    if not config.config_id or config.config_id not in config.text:
        return f"its text does not carry its id {printable(config.config_id, 40)!r}"
    return ""


PUBLISHED = Counter("interlock_core_states_published_total", "New cluster states published", ["cluster"])
PROBLEMS = Gauge("interlock_core_problems", "Current label problems", ["severity"])
CONVERGENCE = Histogram(
    "interlock_core_convergence_seconds",
    "From the core publishing a cluster's new state (a Docker change) to every proxy of the cluster "
    "serving a configuration that reflects it",
    ["cluster"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
STATE_VERSION = Gauge("interlock_core_state_version", "Newest published state of the cluster", ["cluster"])
SERVED_VERSION = Gauge(
    "interlock_core_served_state_version", "Newest state every proxy of the cluster serves", ["cluster"]
)
PROXY_RELOADS = Gauge("interlock_proxy_reloads", "Reloads of the proxy, as it reported them", ["cluster", "proxy"])
PROXY_MOVES = Gauge(
    "interlock_proxy_target_updates",
    "Routing and task changes the proxy took at run time, without a reload, as it reported them",
    ["cluster", "proxy"],
)
_WAITING_KEPT = 256
"""Published versions a cluster's proxies may be behind before the oldest stop being timed."""


@dataclass
class ClusterSlot:
    """One `[Extensions.NAME]`: its newest state and its extension's newest report."""

    name: str
    cluster: str
    state: ClusterState | None = None
    report: ExtensionReport | None = None
    reported_at: float = 0.0
    waiting: dict[int, float] = field(default_factory=dict)
    """Published state version -> when (monotonic), until every proxy serves it."""
    traffic: dict[str, ProxyTraffic] = field(default_factory=dict)
    """Proxy -> what it counted, from the extension's newest `ClusterTraffic`."""
    exclusions: dict[LabelKey, Exclusion] = field(default_factory=dict)
    """Services of this cluster its own roles found unroutable (see `Exclusion`)."""
    metered: set[str] = field(default_factory=set)
    """Proxies with metric series, removed when the proxy leaves the reports."""
    config: ProxyConfig | None = None
    """The newest whole configuration the extension sent (on request), intact."""
    config_error: str = ""
    """Why the last configuration the extension sent was not kept ('' when it was)."""
    wanted: bool = False
    """The core wants the body of the extension's newest configuration; said on the long-poll."""
    previous: ClusterState | None = None
    """The state before `state`: an extension holding it is sent the change (`state_delta`)."""
    _delta: tuple[ClusterState, bytes] | None = None

    def encoded_delta(self) -> bytes:
        """`state` as a change from `previous`, encoded once per state."""
        assert self.state is not None and self.previous is not None
        if self._delta is None or self._delta[0] is not self.state:
            self._delta = (self.state, encode(state_delta(self.previous, self.state)))
        return self._delta[1]

    @property
    def config_stale(self) -> bool:
        """The extension reports a configuration newer than the body held (or none is held)."""
        ref = self.report.config if self.report else None
        return ref is not None and (self.config is None or self.config.digest != ref.digest)


class Board:
    def __init__(
        self,
        config: CoreConfig,
        *,
        gate_on_proxies: bool,
        service_name: str = "interlock",
        clock: Clock | None = None,
        epoch: str | None = None,
    ) -> None:
        """`gate_on_proxies`: hold a service back until its cluster's proxy tasks have its network
        and secrets (the core attaches them); off where nothing manages the proxies."""
        self.config = config
        self.service_name = service_name
        self.clock: Clock = clock or SystemClock()
        self.epoch = epoch or uuid.uuid4().hex[:8]
        self.slots = {n: ClusterSlot(n, e.service_cluster) for n, e in config.extensions.items()}
        proxies = {e.service_cluster: config.proxy_service_name(n) for n, e in config.extensions.items()}
        self.proxies = proxies if gate_on_proxies else None
        self.late_problems: Callable[[Mapping[str, Routing]], list[Problem]] = lambda _: []
        """Problems found after the build, by the routings: the ACME desk's failed orders."""
        self.changed = asyncio.Condition()
        self.snapshot: Snapshot | None = None
        self.problems: tuple[Problem, ...] = ()

    # -- states -----------------------------------------------------------------------------
    def publish(self, snapshot: Snapshot) -> bool:
        """Build every cluster's state from `snapshot`; True when any of them changed."""
        self.snapshot = snapshot
        _forget_gone(self.slots.values(), snapshot)
        result = build(
            snapshot,
            tuple(s.cluster for s in self.slots.values()),
            proxies=self.proxies,
            exclusions={s.cluster: s.exclusions for s in self.slots.values()},
            **self.config.build_options,
        )
        if late := self.late_problems(result.routings):
            result = replace(result, problems=sorted_problems([*result.problems, *late]))
        if result.problems != self.problems:
            for problem in set(result.problems) - set(self.problems):
                log.warning("problem: %s", problem.describe())
            for severity in ("error", "warning"):
                PROBLEMS.labels(severity).set(sum(1 for p in result.problems if p.severity == severity))
        self.problems = result.problems
        changed = False
        for slot in self.slots.values():
            routing, problems = result.routings[slot.cluster], result.problems_of(slot.cluster)
            previous = slot.state
            if previous is not None and previous.routing == routing and previous.problems == problems:
                continue
            version = previous.version + 1 if previous else 1
            slot.previous = previous
            slot.state = ClusterState(
                version=version,
                cluster=slot.cluster,
                extension=slot.name,
                routing=routing,
                config=self.config.extensions[slot.name].model_dump(by_alias=True, mode="json"),
                problems=problems,
                epoch=self.epoch,
            )
            PUBLISHED.labels(slot.cluster).inc()
            STATE_VERSION.labels(slot.cluster).set(version)
            slot.waiting[version] = self.clock.monotonic()
            for stale in sorted(slot.waiting)[:-_WAITING_KEPT]:
                del slot.waiting[stale]
            log.info("cluster %r: state %d (%d hosts)", slot.cluster, version, len(routing.hosts))
            changed = True
        return changed

    async def notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    async def publish_and_notify(self, snapshot: Snapshot) -> bool:
        changed = self.publish(snapshot)
        if changed:
            await self.notify()
        return changed

    async def state_after(self, name: str, after: str, wait: float) -> ClusterState | None:
        """The long-poll: the state of extension `name` once its tag is not `after`, or None
        when `wait` seconds pass first (or there is no state yet), or as soon as the core wants
        the extension's configuration (`take_want` says so)."""
        slot = self.slots[name]

        def unchanged() -> bool:
            return (slot.state is None or slot.state.tag == after) and not slot.wanted

        if not await changed_within(self.changed, unchanged, wait) or slot.wanted:
            return None
        return slot.state

    async def want_config(self, name: str) -> None:
        """Ask extension `name` for its newest configuration (it learns on its long-poll)."""
        self.slots[name].wanted = True
        await self.notify()

    def take_want(self, name: str) -> bool:
        """Whether the core wants extension `name`'s configuration, once."""
        slot = self.slots[name]
        wanted, slot.wanted = slot.wanted, False
        return wanted

    def note_config(self, name: str, config: ProxyConfig) -> bool:
        """Keep a configuration the extension sent if it is intact; True when kept."""
        slot = self.slots[name]
        if damage := damaged(config):
            slot.config_error = f"configuration not kept by the core: {damage}"
            log.error("extension %r sent a configuration that is not intact (%s); not kept", name, damage)
            return False
        slot.config, slot.config_error = config, ""
        return True

    # -- reports ----------------------------------------------------------------------------
    def note_traffic(self, name: str, traffic: ClusterTraffic) -> None:
        self.slots[name].traffic = {p.proxy: p for p in traffic.proxies}

    async def note_report(self, name: str, report: ExtensionReport) -> None:
        """Keep an extension's report. The first configuration it names is asked for at once
        (a proxy service can then be given it); later ones when the reconciler must store one."""
        slot = self.slots[name]
        slot.report, slot.reported_at = report, self.clock.wall()
        self._note_served(slot, report)
        if self._note_exclusions(slot, report) and self.snapshot is not None:
            await self.publish_and_notify(self.snapshot)
        if slot.config is None and slot.config_stale and not slot.wanted:
            await self.want_config(name)

    def _note_served(self, slot: ClusterSlot, report: ExtensionReport) -> None:
        """The proxies' counters, and the convergence time of every published state the
        cluster's proxies now all serve (all report the configuration that reflects it)."""
        live = [p for p in report.proxies if not p.leaving]
        for proxy in live:
            PROXY_RELOADS.labels(slot.cluster, proxy.proxy).set(proxy.reloads)
            PROXY_MOVES.labels(slot.cluster, proxy.proxy).set(proxy.target_updates)
        for gone in slot.metered - {p.proxy for p in live}:
            PROXY_RELOADS.remove(slot.cluster, gone)
            PROXY_MOVES.remove(slot.cluster, gone)
        slot.metered = {p.proxy for p in live}
        config = report.config
        if config is None or not live or not report.state_version:
            return
        newest = (config.config_id, config.targets_id or "")
        if not all(p.ok and (p.config_id, p.targets_id or "") == newest for p in live):
            return
        SERVED_VERSION.labels(slot.cluster).set(report.state_version)
        now = self.clock.monotonic()
        for version in [v for v in slot.waiting if v <= report.state_version]:
            CONVERGENCE.labels(slot.cluster).observe(now - slot.waiting.pop(version))

    def _note_exclusions(self, slot: ClusterSlot, report: ExtensionReport) -> bool:
        """Turn the services the report's bisection left out into exclusions of `slot`'s
        cluster; True when any is new. Only services of the cluster's own routing can be named:
        a report naming another cluster's service changes nothing."""
        snapshot, state = self.snapshot, slot.state
        if snapshot is None or state is None or not report.left_out:
            return False  # most reports: nothing found, and no need to index the routing
        ours = _routed_services(snapshot, state.routing)
        found: dict[LabelKey, Exclusion] = {}
        for name, why in report.left_out:
            if (service := ours.get(name)) is None:
                log.warning(
                    "extension %r named service %s, not one of its cluster; ignored", slot.name, printable(name)
                )
                continue
            reason = (
                "the proxy's check refused its cluster's configuration with this service's routes "
                f"({printable(why, 300)}); left out so the others are served. Change its labels to try again"
            )
            found[service.label_key] = Exclusion("-", reason, certificate_secret_ids(snapshot, service.label_map))
        return _exclude(slot, found, ours)

    def note_refused_certificates(
        self, refused: dict[Pair, tuple[str, str]], refused_credentials: dict[str, str] | None = None
    ) -> bool:
        """Leave out, in every cluster, the services whose hosts terminate TLS with a pair the
        core could not load ((label blamed, why) by pair), or whose auth_basic names an htpasswd
        secret it refused (why by secret); True when any exclusion is new (the caller then
        publishes again)."""
        snapshot = self.snapshot
        if snapshot is None or not (refused or refused_credentials):
            return False
        new = False
        for slot in self.slots.values():
            if slot.state is None:
                continue
            ours = _routed_services(snapshot, slot.state.routing)
            found = {
                service.label_key: Exclusion(label, reason, certificate_secret_ids(snapshot, service.label_map))
                for service, label, reason in _refusals(ours, slot.state.routing, refused, refused_credentials or {})
            }
            new = _exclude(slot, found, ours) or new
        return new

    # -- the operator's view ----------------------------------------------------------------
    def status(self, *, ready: bool, listen_addr: str = "") -> CoreStatus:
        now = self.clock.wall()
        return CoreStatus(
            ready=ready,
            core=CoreInfo(self.service_name, self.epoch, listen_addr),
            clusters=tuple(self._cluster_status(slot, now) for slot in self.slots.values()),
            routes=with_traffic(
                tuple(row for s in self.slots.values() if s.state for row in routes_table(s.state.routing)),
                {s.cluster: [t for p in self._live_traffic(s) for t in p.traffic] for s in self.slots.values()},
            ),
            problems=tuple(ProblemView.of(p) for p in self.problems),
        )

    @staticmethod
    def _live_traffic(slot: ClusterSlot) -> list[ProxyTraffic]:
        """The counts of the proxies the extension's newest report lists as serving."""
        live = {p.proxy for p in slot.report.proxies if not p.leaving} if slot.report else set()
        return [t for proxy, t in slot.traffic.items() if proxy in live]

    def _cluster_status(self, slot: ClusterSlot, now: float) -> ClusterStatus:
        report, state = slot.report, slot.state
        config = report.config if report else None
        return ClusterStatus(
            extension=slot.name,
            cluster=slot.cluster,
            extension_service=self.config.extension_service_name(slot.name),
            proxy_service=self.config.proxy_service_name(slot.name),
            state_version=state.version if state else None,
            hosts=len(state.routing.hosts) if state else 0,
            config_version=config.version if config else None,
            config_id=config.config_id if config else None,
            targets_id=config.targets_id if config else None,
            validation_error=(report.validation_error if report else "") or slot.config_error,
            extension_seen_seconds_ago=round(now - slot.reported_at, 1) if slot.reported_at else None,
            proxies=tuple(
                ProxyStatus(
                    p.proxy,
                    p.config_id,
                    p.targets_id,
                    p.ok,
                    p.error,
                    p.reloads,
                    p.target_updates,
                    slot.traffic[p.proxy].active_connections if p.proxy in slot.traffic else 0,
                    p.certificates,
                )
                for p in (report.proxies if report else ())
            ),
        )


def _exclude(slot: ClusterSlot, found: dict[LabelKey, Exclusion], ours: dict[str, Service]) -> bool:
    """Add to `slot` the exclusions of `found` it lacks; True when any is new."""
    names = {s.label_key: s.name for s in ours.values()}
    new = {k: e for k, e in found.items() if slot.exclusions.get(k) != e}
    for key, exclusion in new.items():
        log.warning("cluster %r leaves out service %s: %s", slot.cluster, names[key], exclusion.reason)
    slot.exclusions.update(new)
    return bool(new)


def _routed_services(snapshot: Snapshot, routing: Routing) -> dict[str, Service]:
    """The services of `snapshot` that `routing` routes, by name."""
    routed = set(routing.service_names())
    return {s.name: s for s in snapshot.services if s.name in routed}


def _refusals(
    ours: dict[str, Service], routing: Routing, refused: dict[Pair, tuple[str, str]], credentials: dict[str, str]
) -> list[tuple[Service, str, str]]:
    """(service, label blamed, why it is left out) for each of `ours` that names a refused
    certificate pair or htpasswd secret."""
    found = []
    for pair, (label, why) in refused.items():
        reason = (
            f"this certificate and key cannot be loaded ({printable(why, 300)}); not routed. "
            "A secret cannot be changed: create a good PEM (certificate chain, and its unencrypted "
            "private key) as a new secret and point the label at it"
        )
        found += [(service, label, reason) for service in _naming(ours, routing, pair)]
    for secret, why in credentials.items():
        reason = (
            f"the htpasswd secret {secret!r} cannot be used ({printable(why, 300)}); not routed. A secret "
            "cannot be changed: create a good htpasswd file as a new secret and point the label at it"
        )
        found += [
            (service, "auth_basic", reason)
            for service in ours.values()
            if service.label_map.get(LABEL_PREFIX + "auth_basic", "").strip() == secret
        ]
    return found


def _naming(services: dict[str, Service], routing: Routing, pair: Pair) -> list[Service]:
    """The services among `services` whose hosts terminate TLS in `routing` with `pair`."""
    hosts = (*routing.hosts, *((routing.default_host,) if routing.default_host else ()))
    names = {
        name
        for h in hosts
        if h.tls is TLSMode.TERMINATE and (h.cert_secret, h.key_secret or h.cert_secret) == pair
        for name in h.services
    }
    return [services[n] for n in sorted(names) if n in services]


def _forget_gone(slots: Collection[ClusterSlot], snapshot: Snapshot) -> None:
    """Drop the exclusions of services that are gone, relabelled, or whose certificate
    secrets were made again: what was found about them no longer holds."""
    if not any(slot.exclusions for slot in slots):
        return  # the usual case: nothing to look up (secret IDs are a scan of the secrets)
    services = {s.label_key: s for s in snapshot.services}
    for slot in slots:
        slot.exclusions = {
            key: exclusion
            for key, exclusion in slot.exclusions.items()
            if key in services and certificate_secret_ids(snapshot, services[key].label_map) == exclusion.secret_ids
        }
