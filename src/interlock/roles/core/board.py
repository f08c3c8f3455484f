"""The core's board: snapshot + refusals -> one versioned `ClusterState` per cluster, the
extensions' reports, the long-poll on states, and the status the operator reads.

A cluster's state gets a new version only when its routing or the problems changed. A report
naming certificate secrets a proxy could not load is remembered by (name, ID) and the states are
built again without the services naming them (`build` checks them against the snapshot's secret
IDs, so a secret made again under the same name is tried again). Services an extension's
bisection left out (their routes made `nginx -t` fail) are remembered by ID and labels and left
out of the states until their labels change. The core keeps no configuration
text of its own: only what its cluster's extension (signing with that cluster's token) reports
as validated, and only when it is intact (`damaged`).

Pure bookkeeping plus an asyncio condition; no Docker, no HTTP. Time from an injected `Clock`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field, replace

from prometheus_client import Counter, Gauge, Histogram

from interlock.config import CoreConfig
from interlock.edges.clock import Clock, SystemClock
from interlock.model.build import build
from interlock.model.snapshot import Snapshot
from interlock.problems import Problem, printable
from interlock.render.bundle import RenderedConfig
from interlock.roles.runtime import changed_within
from interlock.wire.messages import ClusterState, ClusterTraffic, ExtensionReport, ProxyConfig, ProxyTraffic
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
    "Task moves the proxy took without a reload (reloads avoided), as it reported them",
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
        self.proxies = (
            {e.service_cluster: config.proxy_service_name(n) for n, e in config.extensions.items()}
            if gate_on_proxies
            else None
        )
        self.changed = asyncio.Condition()
        self.snapshot: Snapshot | None = None
        self.problems: tuple[Problem, ...] = ()
        self.refused_secrets: dict[tuple[str, str], str] = {}
        """(secret name, its ID) -> why: certificate secrets a proxy could not load. Kept after
        the proxies stop naming them (they stop once the services are left out)."""
        self.left_out: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
        """`Service.label_key` -> nginx's complaint: services an extension's bisection found
        making its configuration fail. Kept until the service's labels change."""

    # -- states -----------------------------------------------------------------------------
    def publish(self, snapshot: Snapshot) -> bool:
        """Build every cluster's state from `snapshot`; True when any of them changed."""
        self.snapshot = snapshot
        result = build(
            snapshot,
            tuple(s.cluster for s in self.slots.values()),
            proxies=self.proxies,
            refused_secrets=self.refused_secrets,
            left_out=self.left_out,
            host_sharing=self.config.host_sharing,
        )
        if result.problems != self.problems:
            for problem in set(result.problems) - set(self.problems):
                log.warning("problem: %s", problem.describe())
            for severity in ("error", "warning"):
                PROBLEMS.labels(severity).set(sum(1 for p in result.problems if p.severity == severity))
        self.problems = result.problems
        changed = False
        for slot in self.slots.values():
            routing = result.routings[slot.cluster]
            previous = slot.state
            if previous is not None and previous.routing == routing and previous.problems == result.problems:
                continue
            version = previous.version + 1 if previous else 1
            slot.state = ClusterState(
                version=version,
                cluster=slot.cluster,
                extension=slot.name,
                routing=routing,
                config=self.config.extensions[slot.name].model_dump(by_alias=True, mode="json"),
                problems=result.problems,
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
        when `wait` seconds pass first (or there is no state yet)."""
        slot = self.slots[name]
        if not await changed_within(self.changed, lambda: slot.state is None or slot.state.tag == after, wait):
            return None
        return slot.state

    # -- reports ----------------------------------------------------------------------------
    def note_traffic(self, name: str, traffic: ClusterTraffic) -> None:
        self.slots[name].traffic = {p.proxy: p for p in traffic.proxies}

    async def note_report(self, name: str, report: ExtensionReport) -> bool:
        """Keep an extension's report; True when it carries its first validated configuration
        (the proxy service can now be given it). A configuration that is not intact is not
        kept: the previous one stays, and the report's error says why."""
        slot = self.slots[name]
        if report.config is not None and (damage := damaged(report.config)):
            log.error("extension %r reported a configuration that is not intact (%s); not kept", name, damage)
            kept = slot.report.config if slot.report else None
            report = replace(report, config=kept, validation_error=f"configuration not kept by the core: {damage}")
        first_config = report.config is not None and (slot.report is None or slot.report.config is None)
        slot.report, slot.reported_at = report, self.clock.wall()
        self._note_served(slot, report)
        refused = self._note_refused_secrets(report)
        if (self._note_left_out(report) or refused) and self.snapshot is not None:
            await self.publish_and_notify(self.snapshot)
        return first_config

    def _note_served(self, slot: ClusterSlot, report: ExtensionReport) -> None:
        """The proxies' counters, and the convergence time of every published state the
        cluster's proxies now all serve (all report the configuration that reflects it)."""
        live = [p for p in report.proxies if not p.leaving]
        for proxy in live:
            PROXY_RELOADS.labels(slot.cluster, proxy.proxy).set(proxy.reloads)
            PROXY_MOVES.labels(slot.cluster, proxy.proxy).set(proxy.target_updates)
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

    def _note_left_out(self, report: ExtensionReport) -> bool:
        """Remember the services the report's bisection left out; True when any is new."""
        if not report.left_out or self.snapshot is None:
            return False
        by_name = {s.name: s for s in self.snapshot.services}
        new = {
            name: why
            for name, why in report.left_out
            if name in by_name and by_name[name].label_key not in self.left_out
        }
        for name, why in new.items():
            log.warning("extension %r left out service %s: nginx -t said %s", report.extension, printable(name), why)
            self.left_out[by_name[name].label_key] = why
        return bool(new)

    def _note_refused_secrets(self, report: ExtensionReport) -> bool:
        """Remember the certificate secrets the report's proxies refused; True when any is new."""
        snapshot = self.snapshot
        secret_id = snapshot.secret_id if snapshot is not None else (lambda _name: "")
        new = {
            (name, secret_id(name)): why
            for proxy in report.proxies
            for name, why in proxy.refused_secrets
            if (name, secret_id(name)) not in self.refused_secrets
        }
        for (name, _), why in new.items():
            log.warning("a proxy of %r cannot use secret %r: %s", report.extension, name, why)
        self.refused_secrets.update(new)
        return bool(new)

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
            validation_error=report.validation_error if report else "",
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
                )
                for p in (report.proxies if report else ())
            ),
        )
