"""The core's reconciler: makes the extension and proxy services the swarm runs match
`render.desired.desired_services`, through a `SwarmWriter`.

Each round looks up the control network, secrets, networks and image identities once, asks the
pure function what should run, and creates, updates (only when a spec hash differs) or removes
(owned, no longer configured) services. A proxy that is created or updated anyway also gets the
newest configuration its extension validated, stored as a Docker config, so a proxy task starting
while the core or the extension is down still routes; configs no service uses are removed. The
core holds that configuration's body only when it asked for it: a proxy update waits (up to
BODY_WAIT) for the extension to send the newest one, then goes on with what it has. The core's
own service mounts exactly the certificate secrets the routed hosts name (the core reads them
and sends the certificates to the proxies), and those it refused while their service is left
out for them: when that set changes, the core updates its own spec and Swarm replaces its task,
which costs no request.

Thin: every decision is in `desired_services`; this module only reads and writes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from prometheus_client import Counter

from interlock.config import CoreConfig
from interlock.constants import CONTROL_NETWORK, LABEL_EXTENSION, LABEL_OWNER, LABEL_ROLE
from interlock.edges.clock import Clock
from interlock.edges.swarm_ops import SwarmWriter
from interlock.errors import DockerUnavailable, InterlockError
from interlock.model.routing import Routing
from interlock.model.snapshot import STACK_NAMESPACE
from interlock.roles.core.board import Board
from interlock.roles.core.watcher import Offload
from interlock.swarm.desired import (
    DesiredCluster,
    SwarmFacts,
    certificate_secrets,
    desired_services,
    images,
    proxy_with_config,
)
from interlock.swarm.records import Ref, ServiceRecord
from interlock.swarm.specs import spec_hash, tls_pairs
from interlock.wire.messages import encode

log = logging.getLogger("interlock.core")

RESYNC = 5.0
"""Seconds between rounds when nothing wakes the reconciler (a deleted service comes back)."""
BODY_WAIT = 10.0
"""Seconds a proxy update waits for the newest configuration's body before it goes on with the
one the core holds (the extension may be down; new tasks then ask the extension anyway)."""
LEFT_NETWORK_PATIENCE = 300.0
"""Seconds the core tries to remove a stack's network it detached its proxies from."""
MAX_DOCKER_CONFIG = 900_000
"""Docker refuses configs over 1,000 KiB (after base64 in the API); keep a margin."""

SERVICE_UPDATES = Counter(
    "interlock_core_service_updates_total", "Extension/proxy service creates and updates", ["role"]
)


class Reconciler:
    def __init__(self, config: CoreConfig, ops: SwarmWriter, board: Board, *, owner: str, core_url: str) -> None:
        self.config = config
        self.ops = ops
        self.board = board
        self.owner = owner
        self.core_url = core_url
        self.wake = asyncio.Event()
        self.asked: dict[str, float] = {}
        """Extension -> when (monotonic) this reconciler asked for its configuration's body."""
        self.to_ask: set[str] = set()
        """Extensions whose newest configuration a proxy update is waiting for."""
        self.more_mounts: Callable[[], Sequence[Ref] | None] = tuple
        """Other secrets the core mounts (the ACME desk's); None: not now (an order runs)."""
        self.detached: dict[str, float] = {}
        """Network ID -> when (monotonic) a proxy update took it out of a proxy's spec."""

    async def run(self, clock: Clock, is_ready: Callable[[], bool], offload: Offload = asyncio.to_thread) -> None:
        """Reconcile when woken (a new state, a first validated configuration) and every
        RESYNC seconds; `offload` runs the blocking Docker calls off the event loop."""
        while True:
            await clock.wait(self.wake, RESYNC)
            self.wake.clear()
            if not is_ready():
                continue
            try:
                await offload(self.reconcile_once)
            except InterlockError as exc:
                log.warning("reconcile failed, retrying: %s", exc)
            for name in sorted(self.to_ask):
                await self.board.want_config(name)
            self.to_ask.clear()

    def facts(self) -> SwarmFacts:
        ops = self.ops
        listed = ops.network_records()
        networks = {n.name: n.id for n in listed}
        subnets = {n.name: n.subnets for n in listed}
        control = networks.get(CONTROL_NETWORK)
        secrets = ops.secret_records()
        return SwarmFacts(
            control_network=Ref(control, CONTROL_NETWORK, subnets[CONTROL_NETWORK]) if control else None,
            secrets={s.name: s.id for s in secrets},
            tls=tls_pairs(secrets),
            networks=networks,
            subnets=subnets,
            image_ids={image: ops.image_identity(image) for image in images(self.config)},
            owner=self.owner,
            core_url=self.core_url,
        )

    def reconcile_once(self) -> None:
        routings = {n: (s.state.routing if s.state else None) for n, s in self.board.slots.items()}
        facts = self.facts()
        desired = desired_services(self.config, routings, facts)
        for note in desired.notes:
            log.warning("%s", note)
        if desired.missing:
            log.warning("%s", desired.missing)
            return
        owned = {s.name: s for s in self.ops.service_records(label=f"{LABEL_OWNER}={self.owner}")}
        for cluster in desired.clusters:
            self._ensure(owned.get(cluster.extension["Name"]), cluster.extension, "extension")
            current = owned.get(cluster.proxy["Name"])
            if current is not None and current.spec_hash == spec_hash(cluster.proxy):
                continue
            if self._waiting_for_body(cluster.name):
                continue
            spec = proxy_with_config(self.config, cluster, self._store_proxy_config(cluster))
            if current is not None:
                kept = {str(n.get("Target", "")) for n in spec["TaskTemplate"].get("Networks") or ()}
                now = self.board.clock.monotonic()
                self.detached.update({n: now for n in current.network_ids if n not in kept})
            self._ensure(current, spec, "proxy")
        for name, stale in owned.items():
            if name not in desired.names:
                log.info("removing %s: its extension is no longer configured", name)
                self.ops.remove_service(stale.id)
        self._collect_configs()
        self._mount_certificates(routings, facts)
        self._remove_left_networks()

    def _remove_left_networks(self) -> None:
        """Finish `docker stack rm`: it cannot remove a stack's network while a proxy is on it
        ("in use"), so once the core has taken its proxies off such a network, it removes the
        network itself, when the network is a stack's, that stack has no service left and no
        service is on it. Only networks the core detached its proxies from (since it started),
        never another; tried again each round (old proxy tasks may still be stopping)."""
        if not self.detached:
            return
        now = self.board.clock.monotonic()
        services = self.ops.service_records()
        in_use = {n for s in services for n in s.network_ids}
        stacks = {s.labels.get(STACK_NAMESPACE) for s in services}
        networks = {n.id: n for n in self.ops.network_records()}
        for network_id, since in list(self.detached.items()):
            network = networks.get(network_id)
            stack = network.labels.get(STACK_NAMESPACE) if network else None
            if network is None or not stack or now - since > LEFT_NETWORK_PATIENCE:
                del self.detached[network_id]
                continue
            if network_id in in_use or stack in stacks:
                continue
            try:
                self.ops.remove_network(network_id)
            except DockerUnavailable as exc:
                log.debug("network %s not removed yet: %s", network.name, exc)
                continue
            log.info("removed network %s, which `docker stack rm %s` left while a proxy was on it", network.name, stack)
            del self.detached[network_id]

    def _mount_certificates(self, routings: dict[str, Routing | None], facts: SwarmFacts) -> None:
        """Mount into the core's own task the certificate secrets the routed hosts name and the
        ones it refused (their services stay left out; a secret no service names any more can
        be removed from the swarm), and only those."""
        if any(r is None for r in routings.values()):
            return  # not every cluster has a state yet: what is needed is not known
        more = self.more_mounts()
        if more is None:
            return  # mounting restarts the core: not while it orders a certificate
        refused = {
            secret_id
            for slot in self.board.slots.values()
            for exclusion in slot.exclusions.values()
            for secret_id in exclusion.refused_secret_ids
        }
        wanted = tuple(sorted({*certificate_secrets(routings, facts, refused), *more}, key=lambda ref: ref.name))
        if self.ops.mount_certificates(self.owner, wanted):
            log.info(
                "mounting certificate secrets %s into %s; Swarm replaces this task",
                ", ".join(r.name for r in wanted) or "(none)",
                self.owner,
            )

    def _ensure(self, current: ServiceRecord | None, spec: dict[str, Any], role: str) -> None:
        if current is None:
            log.info("creating %s service %s", role, spec["Name"])
            self.ops.create_service(spec)
        elif current.spec_hash != spec_hash(spec):
            log.info("updating %s service %s (%s -> %s)", role, current.name, current.spec_hash, spec_hash(spec))
            self.ops.update_service(current, spec)
        else:
            return
        SERVICE_UPDATES.labels(role).inc()

    def _waiting_for_body(self, name: str) -> bool:
        """Whether a proxy update of extension `name` should wait for the body of its newest
        configuration: asked for now (the reconciler is woken when it comes), or asked for
        less than BODY_WAIT ago."""
        if not self.board.slots[name].config_stale:
            self.asked.pop(name, None)
            return False
        now = self.board.clock.monotonic()
        asked = self.asked.get(name)
        if asked is None:
            self.asked[name] = now
            self.to_ask.add(name)
            return True
        if now - asked < BODY_WAIT:
            return True
        log.warning("extension %r did not send its newest configuration; the proxy gets the one held", name)
        self.asked.pop(name, None)
        return False

    def _store_proxy_config(self, cluster: DesiredCluster) -> Ref | None:
        """The newest configuration the extension validated, as a Docker config; None before
        there is one (the proxy then waits for its extension)."""
        config = self.board.slots[cluster.name].config
        if config is None:
            return None
        data = encode(config)
        if len(data) > MAX_DOCKER_CONFIG:
            log.warning(
                "proxy configuration of %s is %d bytes, over Docker's config limit; not stored", cluster.name, len(data)
            )
            return None
        labels = {LABEL_OWNER: self.owner, LABEL_ROLE: "proxy-config", LABEL_EXTENSION: cluster.name}
        return self.ops.create_config(f"interlock-proxy-{cluster.name}-{config.digest[:12]}", data, labels)

    def _collect_configs(self) -> None:
        """Remove the proxy configurations nothing can mount any more. Docker refuses to remove
        a config only while a service's spec names it, but a task made from the spec before
        still mounts it when it starts (and fails without it, "config not found"), and a
        rollback's tasks mount the previous spec's: both are kept."""
        mine = f"{LABEL_OWNER}={self.owner}"
        services = [s for s in self.ops.service_records(label=mine) if s.config_ids or s.previous_config_ids]
        named = {c for s in services for c in (*s.config_ids, *s.previous_config_ids)}
        unnamed = [config for config in self.ops.config_records(label=mine) if config.id not in named]
        if not unnamed:
            return  # most rounds: no task listing needed
        mounted = {c for s in services for t in self.ops.task_records(s.id) if t.live for c in t.config_ids}
        for config in unnamed:
            if config.id not in mounted:
                try:
                    self.ops.remove_config(config.id)
                except DockerUnavailable:
                    pass  # still used by a task that is shutting down; next round
