"""The core: the only role with the Docker socket, on a manager.

* watches the swarm: subscribes to the event stream first, then lists; after an event it
  re-lists quickly until the tasks settle (the stream has no task events); resyncs everything
  every PollInterval; reconnects with capped backoff and resyncs after any stream loss; publishes
  nothing before the first full list succeeded;
* publishes each cluster's routing state (a new version only when it changed) to extensions
  over an authenticated long-poll API, with /health and /metrics;
* owns the extension and proxy services of every `[Extensions.NAME]`: creates, updates (only
  when their spec hash changes), recreates when deleted, and keeps a Docker config with the
  newest validated proxy configuration on the proxy service whenever it updates it anyway.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from interlock.config import CoreConfig
from interlock.edges.debounce import Debouncer
from interlock.edges.docker_source import EventStream, SwarmSource, threadsafe
from interlock.edges.peer_http import read_token, require_token
from interlock.edges.swarm_ops import SwarmOps
from interlock.errors import DockerUnavailable, InterlockError
from interlock.model.build import ProxyAttachments, build, proxy_attachments
from interlock.model.docker_json import snapshot_from_api
from interlock.model.snapshot import Snapshot
from interlock.problems import Problem
from interlock.render.nginx import TemplateFailed, render_nginx
from interlock.render.swarm_specs import (
    CONTROL_NETWORK,
    EXTENSION_TOKEN,
    LABEL_EXTENSION,
    LABEL_OWNER,
    LABEL_ROLE,
    LABEL_SPEC,
    PROXY_TOKEN,
    SECRETS_DIR,
    ClusterRefs,
    Ref,
    extension_spec,
    proxy_spec,
    spec_hash,
)
from interlock.render.tables import routes_table
from interlock.roles.runtime import changed_within, proxy_config, quiet_gc, woken
from interlock.wire.messages import ClusterState, ExtensionReport, decode, encode

log = logging.getLogger("interlock.core")

SETTLE_POLL = 0.1
"""Seconds between re-lists while tasks settle after an event."""
MIN_SETTLE = 2.0
"""Keep re-listing at least this long after an event: tasks may not exist yet when it arrives."""
MAX_SETTLE = 60.0
TRANSITIONAL = frozenset({"new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting"})

SNAPSHOTS = Counter("interlock_core_snapshots_total", "Full lists of the swarm")
PUBLISHED = Counter("interlock_core_states_published_total", "New cluster states published", ["cluster"])
EVENTS = Counter("interlock_core_docker_events_total", "Docker events received")
RECONNECTS = Counter("interlock_core_event_stream_reconnects_total", "Event stream (re)connections after a loss")
BUILD_SECONDS = Histogram("interlock_core_build_seconds", "Snapshot conversion and build time")
PROBLEMS = Gauge("interlock_core_problems", "Current label problems", ["severity"])
SERVICE_UPDATES = Counter(
    "interlock_core_service_updates_total", "Extension/proxy service creates and updates", ["role"]
)


@dataclass
class _Cluster:
    name: str
    cluster: str
    state: ClusterState | None = None
    report: ExtensionReport | None = None
    reported_at: float = 0.0


@dataclass
class Core:
    config: CoreConfig
    source: SwarmSource
    ops: SwarmOps | None
    service_name: str
    extension_token: str
    proxy_token: str
    core_url: str
    epoch: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def __post_init__(self) -> None:
        self.clusters = {n: _Cluster(n, e.service_cluster) for n, e in self.config.extensions.items()}
        self.changed = asyncio.Condition()
        self.ready = False
        self.connected = False
        """True while the last call to Docker succeeded and the event stream is up."""
        self.snapshot: Snapshot | None = None
        self.problems: tuple[Problem, ...] = ()
        self.debouncer = Debouncer(quiet=0.02, max_delay=0.25)
        self.stream_lost = asyncio.Event()
        self.settle_until = 0.0
        self.min_settle_until = 0.0
        self.tasks_settled = True
        self.reconcile_wake = asyncio.Event()
        self.image_ids: dict[str, str] = {}
        self.secret_ids: dict[str, str] | None = None
        """Secret name -> ID in the swarm; None until listed (and without SwarmOps)."""
        self.refused_secrets: dict[tuple[str, str], str] = {}
        """(secret name, its ID) -> why: certificate secrets a proxy could not load. Kept after
        the proxies stop naming them (they stop once the services are left out); a secret
        removed and made again under the same name has a new ID and is tried again."""
        self._secrets_stale = True
        self.service_events = 0
        self._seen_service_index = -1
        self._service_events_at_resync = 0
        self._last_resync_at = 0.0

    # -- watching ---------------------------------------------------------------------------
    async def watch(self) -> None:
        loop = asyncio.get_running_loop()
        backoff = 0.5
        while True:
            stream: EventStream | None = None
            self.stream_lost.clear()
            try:
                stream = await asyncio.to_thread(
                    self.source.stream_events, threadsafe(loop, self._on_event), threadsafe(loop, self._on_stream_end)
                )
                self._secrets_stale = True  # events may have been missed while disconnected
                await self.resync()
                backoff = 0.5
                while True:
                    await self._wait_for_change()
                    await self.resync()
            except DockerUnavailable as exc:
                self.connected = False
                log.warning("Docker API unavailable, retrying in %.1fs: %s", backoff, exc)
            finally:
                if stream is not None:
                    stream.close()
            RECONNECTS.inc()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    def _on_event(self, event: dict[str, Any]) -> None:
        EVENTS.inc()
        if event.get("Type") == "service":
            self.service_events += 1
        elif event.get("Type") == "secret":
            self._secrets_stale = True
        now = time.monotonic()
        self.min_settle_until = now + MIN_SETTLE
        self.settle_until = now + MAX_SETTLE
        log.debug(
            "event %s %s %s", event.get("Type"), event.get("Action"), (event.get("Actor") or {}).get("ID", "")[:12]
        )
        self.debouncer.poke()

    def _on_stream_end(self, error: BaseException | None) -> None:
        self.connected = False
        log.warning("Docker event stream ended (%s); reconnecting and resyncing", error or "closed")
        self.stream_lost.set()
        self.debouncer.poke()

    def _settling(self) -> bool:
        now = time.monotonic()
        return now < self.min_settle_until or (now < self.settle_until and not self.tasks_settled)

    async def _wait_for_change(self) -> None:
        timeout = SETTLE_POLL if self._settling() else self.config.poll_interval_seconds
        try:
            await asyncio.wait_for(self.debouncer.wait(), timeout)
        except TimeoutError:
            pass
        if self.stream_lost.is_set():
            raise DockerUnavailable("event stream lost")

    def _stream_missed_a_change(self, raw: dict[str, list[dict[str, Any]]]) -> bool:
        """A service changed (its version index grew) while no service event came: the stream
        is connected but silent, which Docker's stream can be after network trouble."""
        index = max((int((s.get("Version") or {}).get("Index", 0)) for s in raw["services"]), default=0)
        now = time.monotonic()
        # Only a periodic resync (a second or more after the last) can tell: right after an
        # event-driven one, the list may see a change whose event is still on its way.
        quiet = self.service_events == self._service_events_at_resync and now - self._last_resync_at >= 1.0
        missed = self._seen_service_index >= 0 and index > self._seen_service_index and quiet
        self._seen_service_index, self._service_events_at_resync = index, self.service_events
        self._last_resync_at = now
        return missed

    async def resync(self) -> None:
        raw = await asyncio.to_thread(self.source.list_swarm)
        stalled = self._stream_missed_a_change(raw)
        if self.ops is not None and (self._secrets_stale or not self._settling()):
            # Secrets change only with a secret event; re-listing them on every settle poll
            # (ten a second) would be wasted calls. Periodic resyncs still re-list them.
            secrets_list = await asyncio.to_thread(self.ops.secrets)
            self.secret_ids = {s["Spec"]["Name"]: s["ID"] for s in secrets_list}
            self._secrets_stale = False
        SNAPSHOTS.inc()
        started = time.perf_counter()
        with quiet_gc():
            snapshot = snapshot_from_api(raw)
            self.tasks_settled = not any(
                t.desired_state == "running" and t.state in TRANSITIONAL for t in snapshot.tasks
            )
            changed = self.publish(snapshot)
        BUILD_SECONDS.observe(time.perf_counter() - started)
        if not self.ready:
            log.info("first full list done: %d services, %d tasks", len(snapshot.services), len(snapshot.tasks))
        self.ready = self.connected = True
        if changed:
            async with self.changed:
                self.changed.notify_all()
        self.reconcile_wake.set()
        if stalled:
            raise DockerUnavailable("a service changed without an event: the event stream looks stalled")

    # -- publishing -------------------------------------------------------------------------
    def attachments(self, snapshot: Snapshot) -> dict[str, ProxyAttachments]:
        return {
            ext.service_cluster: proxy_attachments(snapshot, self.config.proxy_service_name(name))
            for name, ext in self.config.extensions.items()
        }

    def publish(self, snapshot: Snapshot) -> bool:
        """Build every cluster's state; True when any of them changed."""
        self.snapshot = snapshot
        result = build(
            snapshot,
            tuple(c.cluster for c in self.clusters.values()),
            attachments=self.attachments(snapshot) if self.ops is not None else None,
            existing_secrets=frozenset(self.secret_ids) if self.secret_ids is not None else None,
            refused_secrets={
                name: why
                for (name, secret_id), why in self.refused_secrets.items()
                if secret_id == self._secret_id(name)
            },
        )
        if result.problems != self.problems:
            for problem in set(result.problems) - set(self.problems):
                log.warning("problem: %s", problem.describe())
            for severity in ("error", "warning"):
                PROBLEMS.labels(severity).set(sum(1 for p in result.problems if p.severity == severity))
        self.problems = result.problems
        changed = False
        for slot in self.clusters.values():
            ext = self.config.extensions[slot.name]
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
                config=ext.model_dump(by_alias=True, mode="json"),
                problems=result.problems,
                epoch=self.epoch,
            )
            PUBLISHED.labels(slot.cluster).inc()
            log.info("cluster %r: state %d (%d hosts)", slot.cluster, version, len(routing.hosts))
            changed = True
        return changed

    # -- owning the extension and proxy services -------------------------------------------
    async def reconcile_loop(self) -> None:
        while True:
            await woken(self.reconcile_wake, 5.0)
            if not self.ready or self.ops is None:
                continue
            try:
                await asyncio.to_thread(self.reconcile_once)
            except InterlockError as exc:
                log.warning("reconcile failed, retrying: %s", exc)

    def _refs(self, name: str, control: Ref, secret_ids: dict[str, str]) -> ClusterRefs:
        slot = self.clusters[name]
        ext = self.config.extensions[name]
        routing = slot.state.routing if slot.state else None
        wanted_networks = ext.networks if ext.networks is not None else (routing.networks if routing else ())
        by_name = {n.name: n.id for n in (self.snapshot.networks if self.snapshot else ())}
        missing = [n for n in wanted_networks if n not in by_name]
        if missing and ext.networks is not None:
            log.warning("Extensions.%s.Networks names networks that do not exist: %s", name, ", ".join(missing))
        networks = tuple(Ref(by_name[n], n) for n in wanted_networks if n in by_name and n != CONTROL_NETWORK)
        tls = tuple(Ref(secret_ids[s], s) for s in (routing.secrets if routing else ()) if s in secret_ids)
        tokens = Ref(secret_ids[EXTENSION_TOKEN], EXTENSION_TOKEN), Ref(secret_ids[PROXY_TOKEN], PROXY_TOKEN)
        return ClusterRefs(
            control, *tokens, self.core_url, networks, tls, owner=self.service_name, image_ids=self.image_ids
        )

    def reconcile_once(self) -> None:
        ops = self.ops
        assert ops is not None
        # Looked up once per round, for every cluster.
        control = ops.network(CONTROL_NETWORK)
        secret_ids = {s["Spec"]["Name"]: s["ID"] for s in ops.secrets()}
        images = {e.image for e in self.config.extensions.values()} | {
            e.proxy_image for e in self.config.extensions.values()
        }
        self.image_ids = {image: ops.image_identity(image) for image in sorted(images)}
        if control is None or EXTENSION_TOKEN not in secret_ids or PROXY_TOKEN not in secret_ids:
            log.warning("control network %r or token secrets missing; run `interlock up`", CONTROL_NETWORK)
            return
        owned = {s["Spec"]["Name"]: s for s in ops.services(label=f"{LABEL_OWNER}={self.service_name}")}
        wanted: set[str] = set()
        for name in self.config.extensions:
            refs = self._refs(name, control, secret_ids)
            ext_spec = extension_spec(self.config, name, refs)
            wanted.add(ext_spec["Name"])
            self._ensure(ops, owned.get(ext_spec["Name"]), ext_spec, "extension")
            base = proxy_spec(self.config, name, refs)
            wanted.add(base["Name"])
            current = owned.get(base["Name"])
            if current is not None and spec_hash(current["Spec"]) == spec_hash(base):
                continue
            # The proxy is created or updated anyway: give it the newest configuration too, so a
            # proxy task starting while the core or the extension is down still has it.
            config_ref = self._persist_proxy_config(ops, name)
            spec = proxy_spec(self.config, name, replace(refs, proxy_config=config_ref))
            spec["Labels"][LABEL_SPEC] = spec_hash(base)
            self._ensure(ops, current, spec, "proxy")
        for stale_name, stale in owned.items():
            if stale_name not in wanted:
                log.info("removing %s: its extension is no longer configured", stale_name)
                ops.remove_service(stale["ID"])
        self._collect_configs(ops)

    def _ensure(self, ops: SwarmOps, current: dict[str, Any] | None, spec: dict[str, Any], role: str) -> None:
        if current is None:
            log.info("creating %s service %s", role, spec["Name"])
            ops.create_service(spec)
        elif spec_hash(current["Spec"]) != spec_hash(spec):
            log.info(
                "updating %s service %s (spec %s -> %s)",
                role,
                spec["Name"],
                spec_hash(current["Spec"]),
                spec_hash(spec),
            )
            ops.update_service(current, spec)
        else:
            return
        SERVICE_UPDATES.labels(role).inc()

    def _persist_proxy_config(self, ops: SwarmOps, name: str) -> Ref | None:
        slot = self.clusters[name]
        report = slot.report
        if report is not None and report.config is not None:
            config = report.config
        elif slot.state is not None:
            # No validated configuration yet: the proxy agent checks this one with nginx -t
            # before it uses it, and falls back to waiting for the extension.
            try:
                rendered = render_nginx(slot.state.routing, self.config.extensions[name])
            except TemplateFailed as exc:
                log.error("extension %s: %s", name, exc)
                return None
            config = proxy_config(slot.state.version, slot.state.routing, rendered)
        else:
            return None
        digest = config.digest
        data = encode(config)
        if len(data) > 900_000:
            log.warning(
                "proxy configuration of %s is %d bytes, over Docker's config limit; not stored", name, len(data)
            )
            return None
        labels = {LABEL_OWNER: self.service_name, LABEL_ROLE: "proxy-config", LABEL_EXTENSION: name}
        return ops.create_config(f"interlock-proxy-{name}-{digest[:12]}", data, labels)

    def _collect_configs(self, ops: SwarmOps) -> None:
        in_use = {
            c.get("ConfigID")
            for s in ops.services(label=f"{LABEL_OWNER}={self.service_name}")
            for c in s["Spec"]["TaskTemplate"]["ContainerSpec"].get("Configs") or ()
        }
        for config in ops.configs(label=f"{LABEL_OWNER}={self.service_name}"):
            if config["ID"] not in in_use:
                try:
                    ops.remove_config(config["ID"])
                except DockerUnavailable:
                    pass  # still used by a task that is shutting down; next round

    # -- API --------------------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application()
        guard = self.extension_token
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/v1/clusters/{name}/state", require_token(guard, self.get_state))
        app.router.add_post("/v1/clusters/{name}/report", require_token(guard, self.post_report))
        app.router.add_get("/v1/status", require_token(guard, self.get_status))
        return app

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"status": "ok" if self.ready else "starting", "ready": self.ready}, status=200 if self.ready else 503
        )

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def get_state(self, request: web.Request) -> web.Response:
        slot = self.clusters.get(request.match_info["name"])
        if slot is None:
            return web.json_response({"error": f"no extension {request.match_info['name']!r}"}, status=404)
        after = request.query.get("after", "")
        wait = min(float(request.query.get("wait", "0")), 55.0)
        if not await changed_within(self.changed, lambda: slot.state is None or slot.state.tag == after, wait):
            return web.Response(status=304)
        state = slot.state
        return web.Response(body=encode(state), content_type="application/json")

    async def post_report(self, request: web.Request) -> web.Response:
        slot = self.clusters.get(request.match_info["name"])
        if slot is None:
            return web.json_response({"error": "unknown extension"}, status=404)
        report = decode(await request.read(), ExtensionReport)
        first_config = report.config is not None and (slot.report is None or slot.report.config is None)
        slot.report, slot.reported_at = report, time.time()
        if first_config:
            self.reconcile_wake.set()
        await self._note_refused_secrets(report)
        return web.json_response({"ok": True})

    async def _note_refused_secrets(self, report: ExtensionReport) -> None:
        """Remember the certificate secrets a proxy could not load, and build again without the
        services that name them."""
        new = {
            (name, self._secret_id(name)): why
            for proxy in report.proxies
            for name, why in proxy.refused_secrets
            if (name, self._secret_id(name)) not in self.refused_secrets
        }
        if not new:
            return
        for (name, _), why in new.items():
            log.warning("a proxy of %r cannot use secret %r: %s", report.extension, name, why)
        self.refused_secrets.update(new)
        if self.snapshot is not None and self.publish(self.snapshot):
            async with self.changed:
                self.changed.notify_all()

    def _secret_id(self, name: str) -> str:
        return (self.secret_ids or {}).get(name, "")

    def status(self) -> dict[str, Any]:
        clusters = []
        for slot in self.clusters.values():
            report, state = slot.report, slot.state
            clusters.append(
                {
                    "extension": slot.name,
                    "cluster": slot.cluster,
                    "extension_service": self.config.extension_service_name(slot.name),
                    "proxy_service": self.config.proxy_service_name(slot.name),
                    "state_version": state.version if state else None,
                    "hosts": len(state.routing.hosts) if state else 0,
                    "config_version": report.config.version if report and report.config else None,
                    "config_id": report.config.config_id if report and report.config else None,
                    "targets_id": report.config.targets_id if report and report.config else None,
                    "validation_error": report.validation_error if report else "",
                    "extension_seen_seconds_ago": round(time.time() - slot.reported_at, 1)
                    if slot.reported_at
                    else None,
                    "proxies": [
                        {
                            "proxy": p.proxy,
                            "config_id": p.config_id,
                            "targets_id": p.targets_id,
                            "ok": p.ok,
                            "error": p.error,
                            "reloads": p.reloads,
                            "target_updates": p.target_updates,
                        }
                        for p in (report.proxies if report else ())
                    ],
                }
            )
        routes = [row for slot in self.clusters.values() if slot.state for row in routes_table(slot.state.routing)]
        return {
            "ready": self.ready,
            "core": {"service": self.service_name, "epoch": self.epoch},
            "clusters": clusters,
            "routes": routes,
            "problems": [
                {
                    "service": p.service,
                    "label": p.label,
                    "value": p.value,
                    "reason": p.reason,
                    "severity": str(p.severity),
                }
                for p in self.problems
            ],
        }

    async def get_status(self, request: web.Request) -> web.Response:
        return web.json_response(self.status())


def own_service_name(ops: SwarmOps | None) -> str:
    if os.environ.get("INTERLOCK_SERVICE_NAME"):
        return os.environ["INTERLOCK_SERVICE_NAME"]
    if ops is not None:
        try:
            labels = ops.container_labels(socket.gethostname())
            return labels.get("com.docker.swarm.service.name", "interlock")
        except DockerUnavailable:
            pass
    return "interlock"


def bootstrap_tokens(ops: SwarmOps, service_name: str) -> None:
    """Started without the control tokens mounted (a manual install): create the token secrets
    and update our own service to mount them; Swarm then replaces this task."""
    service = ops.service_named(service_name)
    if service is None:
        raise InterlockError(f"control tokens are not mounted and service {service_name!r} was not found")
    spec = service["Spec"]
    container = spec["TaskTemplate"]["ContainerSpec"]
    mounted = {s["SecretName"] for s in container.get("Secrets") or ()}
    for name in (EXTENSION_TOKEN, PROXY_TOKEN):
        ref = ops.secret(name) or ops.create_secret(
            name, secrets.token_urlsafe(32).encode(), {LABEL_OWNER: service_name}
        )
        if name not in mounted:
            container.setdefault("Secrets", []).append(
                {"File": {"Name": name, "UID": "0", "GID": "0", "Mode": 0o400}, "SecretID": ref.id, "SecretName": name}
            )
    log.info("mounting control tokens into %s; Swarm restarts this task", service_name)
    ops.update_service(service, spec)


async def run_core(config: CoreConfig, *, source: SwarmSource, ops: SwarmOps) -> None:
    service_name = own_service_name(ops)
    token_dir = Path(SECRETS_DIR)
    if not (token_dir / EXTENSION_TOKEN).exists() or not (token_dir / PROXY_TOKEN).exists():
        await asyncio.to_thread(bootstrap_tokens, ops, service_name)
        await asyncio.Event().wait()
    host, _, port = config.listen_addr.rpartition(":")
    core_url = config.endpoint_override or f"http://tasks.{service_name}:{port}"
    if "://" not in core_url:
        core_url = "http://" + core_url
    core = Core(
        config=config,
        source=source,
        ops=ops,
        service_name=service_name,
        extension_token=read_token(token_dir / EXTENSION_TOKEN),
        proxy_token=read_token(token_dir / PROXY_TOKEN),
        core_url=core_url,
    )
    runner = web.AppRunner(core.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host or None, int(port)).start()
    log.info("core %s listening on %s; extensions reach it at %s", service_name, config.listen_addr, core_url)
    await asyncio.gather(core.watch(), core.reconcile_loop())
