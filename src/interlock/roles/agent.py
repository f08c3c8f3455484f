"""The proxy agent: runs the proxy (nginx or HAProxy) in the proxy container and keeps it on the
newest good configuration.

At start it serves the configuration the swarm holds for this proxy (the Docker config mounted
at ProxyConfigPath), so a proxy task starting while the core or the extension is down still
routes. It then follows the extension (long-poll), installs each new configuration through the
kind's controller (`edges/proxy_control.py`: check, atomic swap, graceful reload, confirmation),
never asking which kind it runs, keeps the last good one
on any failure, and reports what it serves. A new configuration whose text is the one running
and whose run-time document (targets) changed is applied without a reload. The certificates
(with their keys) come on a long-poll of their own, over the pinned-TLS channel, and are handed
to the running proxy without a reload or a restart (`update_certificates`); at start they are
fetched before the proxy starts, so it never serves TLS without them. If the extension is
unreachable it keeps serving. No Docker socket; no certificate secret mounted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from pathlib import Path

from prometheus_client import REGISTRY

from interlock.constants import METRICS_PORT, PROXY_TOKEN, PROXY_WORKDIR, SECRETS_DIR
from interlock.edges.clock import SystemClock
from interlock.edges.listen import role_listeners
from interlock.edges.metrics_http import serve_metrics
from interlock.edges.peer_http import Peer, PeerClient, read_token
from interlock.edges.proxy_control import ProxyControl
from interlock.edges.proxy_controllers import new_controller
from interlock.edges.role_tls import mounted_peer_cert
from interlock.edges.task_departure import watch_departure
from interlock.edges.traffic_meter import TrafficCollector, TrafficMeter
from interlock.errors import ConfigRejected, InterlockError, PeerUnavailable, ReloadFailed, WireError
from interlock.render.config_delta import ProxyConfigDelta, apply_config_delta
from interlock.roles.proxy_drain import ProxyDrain
from interlock.roles.runtime import answered_get, post_counted
from interlock.wire.certificates import CertificateBundle
from interlock.wire.messages import ProxyConfig, ProxyReport, decode, encode
from interlock.wire.traffic import RouteTraffic, TrafficNames

log = logging.getLogger("interlock.agent")

LEAVING_REPORT_TIMEOUT = 1.0
"""Seconds the agent tries to tell its extension it is leaving, at most (it stops meanwhile)."""


class Agent:
    def __init__(
        self,
        *,
        extension: Peer,
        proxy: ProxyControl,
        name: str,
        meter: TrafficMeter | None = None,
    ) -> None:
        self.extension = extension
        self.proxy = proxy
        self.name = name
        self.meter = meter or TrafficMeter()
        self.reported_traffic: tuple[RouteTraffic, ...] = ()
        self.certificates_tag = ""
        """The tag of the certificates the proxy holds ('' before the first)."""
        self.certificates_error = ""
        self.digest = ""
        self.error = ""
        self.held: ProxyConfig | None = None
        """The newest configuration received: the base of the next change the extension sends."""
        self.served_names = TrafficNames()
        self.changing = asyncio.Lock()
        """One change of the proxy at a time: a configuration (a reload reads the certificate
        files) and certificates (written, then handed to the running proxy) never interleave."""

    async def boot(self, mounted: Path) -> None:
        """Start the proxy on the newest configuration at hand.

        The extension's is the newest; the one the swarm mounted may be older (it is refreshed
        only when the proxy service is updated anyway), so it is the fallback when the extension
        does not answer within a few seconds. The certificates come first, so the proxy starts
        with them.
        """
        try:
            status, body = await self.extension.get("/v1/certificates", params={"wait": "0"}, timeout=3)
            if status == 200:
                await self.apply_certificates(decode(body, CertificateBundle))
        except (PeerUnavailable, WireError) as exc:
            log.info("certificates not at hand at start (%s); they follow", exc)
        try:
            status, body = await self.extension.get("/v1/config", params={"wait": "0"}, timeout=3)
            if status == 200:
                await self.apply(self._received(status, body))
                if self.proxy.running:
                    return
        except PeerUnavailable as exc:
            log.info("extension not reachable at start (%s); using the mounted configuration", exc)
        if not mounted.exists():
            log.info("no configuration mounted at %s; waiting for the extension", mounted)
            return
        try:
            config = decode(mounted.read_bytes(), ProxyConfig)
        except WireError as exc:
            log.error("the mounted configuration is not usable; waiting for the extension: %s", exc)
            return
        try:
            self.meter.use(config.names)
            await self.proxy.install(config.text, config.config_id, config.targets, config.targets_id)
            self.served_names = config.names
            log.info("serving the mounted configuration %s", config.config_id)
        except (ConfigRejected, ReloadFailed) as exc:
            log.error("the mounted configuration is not usable; waiting for the extension: %s", exc)

    async def follow(self) -> None:
        while True:
            params = {"after": self.digest, "wait": "25"}
            if self.held is not None and self.held.digest == self.digest:
                params["delta"] = "1"  # the extension may answer with the change from it (226)
            status, body = await answered_get(
                self.extension,
                "/v1/config",
                params,
                log=log,
                waiting=lambda: f"extension unavailable (still serving {self.proxy.config_id or 'nothing'})",
            )
            if status in (200, 226):
                try:
                    await self.apply(self._received(status, body))
                except InterlockError as exc:
                    # The loop's boundary: say so, keep serving, take the next one.
                    self.error = str(exc)[-2000:]
                    log.error("configuration not used, still serving %s: %s", self.proxy.config_id or "nothing", exc)
                    await asyncio.sleep(1)
            elif status not in (304, 503):
                log.warning("extension answered %d", status)
                await asyncio.sleep(1)
            elif status == 503:
                await asyncio.sleep(0.5)
            await self.report()

    def _received(self, status: int, body: bytes) -> ProxyConfig:
        """The configuration an answer carries: whole (200), or as a change from the one held
        (226), rebuilt and checked against its digest; held as the base of the next change."""
        if status == 226 and self.held is not None:
            try:
                config = apply_config_delta(self.held, decode(body, ProxyConfigDelta))
            except WireError:
                self.held, self.digest = None, ""  # ask for the whole configuration
                raise
        else:
            config = decode(body, ProxyConfig)
        self.held = config
        return config

    async def apply(self, config: ProxyConfig) -> None:
        async with self.changing:
            await self._apply(config)

    async def _apply(self, config: ProxyConfig) -> None:
        if config.config_id == self.proxy.config_id:
            if config.targets_id == self.proxy.targets_id:
                self.digest = config.digest
                return
            try:
                self.meter.use(config.names)
                await self.proxy.update_targets(config.targets, config.targets_id)
                self.served_names = config.names
                self.digest, self.error = config.digest, ""
                log.info("serving targets %s (state %d) without a reload", config.targets_id, config.version)
                return
            except ReloadFailed as exc:
                self.meter.use(self.served_names)
                # The running proxy did not take them; a reload loads them from the file.
                log.warning("targets %s not taken at run time (%s); reloading", config.targets_id, exc)
        try:
            self.meter.use(config.names)
            await self.proxy.install(config.text, config.config_id, config.targets, config.targets_id)
        except (ConfigRejected, ReloadFailed) as exc:
            self.meter.use(self.served_names)
            self.error = str(exc)[-2000:]
            # Remember the digest so the same bad configuration is not retried in a loop; a
            # newer one from the extension is tried as soon as it comes.
            self.digest = config.digest
            log.error("configuration %s refused, still serving %s: %s", config.config_id, self.proxy.config_id, exc)
            return
        self.served_names = config.names
        self.digest, self.error = config.digest, ""
        log.info("serving configuration %s (state %d)", config.config_id, config.version)

    async def apply_certificates(self, bundle: CertificateBundle) -> None:
        """Hand `bundle` to the proxy (running or not: it starts with them); on a refusal keep
        the ones it has and say why (the next bundle is tried as it comes)."""
        try:
            async with self.changing:
                await self.proxy.update_certificates(bundle)
        except ReloadFailed as exc:
            self.certificates_error = f"certificates {bundle.tag} not taken: {exc}"[:2000]
            log.error("%s", self.certificates_error)
            return
        self.certificates_tag, self.certificates_error = bundle.tag, ""
        log.info("serving certificates %s (%d hosts) without a reload", bundle.tag, len(bundle.hosts))

    async def follow_certificates(self) -> None:
        """Long-poll the extension for the cluster's certificates and hand each new bundle to
        the proxy."""
        while True:
            status, body = await answered_get(
                self.extension,
                "/v1/certificates",
                {"after": self.certificates_tag, "wait": "25"},
                log=log,
                waiting=lambda: "extension unavailable for certificates",
            )
            if status == 200:
                try:
                    bundle = decode(body, CertificateBundle)
                except WireError as exc:
                    log.error("certificates not usable: %s", exc)
                    await asyncio.sleep(1)
                    continue
                if bundle.tag != self.certificates_tag:
                    await self.apply_certificates(bundle)
                    await self.report()
                if self.certificates_error:
                    await asyncio.sleep(1)
            elif status != 304:
                await asyncio.sleep(1 if status != 503 else 0.5)

    async def report(self, *, leaving: bool = False) -> None:
        error = "; ".join(e for e in (self.error, self.certificates_error) if e)
        report = ProxyReport(
            self.name,
            self.proxy.config_id,
            self.digest,
            not error,
            error,
            self.proxy.reloads,
            self.proxy.targets_id,
            self.proxy.target_updates,
            leaving,
            self.reported_traffic_now(),
            self.meter.active_connections,
            self.certificates_tag,
        )
        await post_counted(
            self.extension,
            "/v1/report",
            encode(report),
            message="proxy-report",
            to="extension",
            log=log,
            timeout=2 if leaving else 5,
        )

    def reported_traffic_now(self) -> tuple[RouteTraffic, ...]:
        traffic = self.meter.report()
        self.reported_traffic = traffic
        return traffic

    async def traffic_loop(self) -> None:
        """Read the proxy's counters each second; report when what it counted changed (rates
        included, so a route's rate falls back to 0 in the reports too). Where reading takes
        long (HAProxy's `show stat` lists every backend and task: about 0.2 s at 10,000 hosts),
        it reads less often, so that it never takes more than a fifth of a CPU."""
        pause = 1.0
        while True:
            await asyncio.sleep(pause)
            started = time.process_time()
            await self.proxy.poll_traffic(self.meter)
            if self.meter.report() != self.reported_traffic:
                await self.report()
            pause = max(1.0, 5 * (time.process_time() - started))

    async def report_loop(self) -> None:
        while True:
            await asyncio.sleep(10)
            await self.report()

    async def watch_proxy(self) -> None:
        """The proxy should never exit on its own; if it does, start it again on the live file."""
        while True:
            await asyncio.sleep(1)
            if self.proxy.exited:
                log.error("%s exited; starting it again", self.proxy.kind)
                await self.proxy.start()


def process_age() -> float:
    """Seconds since this process began (Linux's /proc); 0 where that cannot be read."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0.0
    return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))


async def run_agent(
    *,
    extension_url: str,
    mounted_config: str,
    kind: str = "nginx",
    secrets_dir: str = SECRETS_DIR,
    metrics_port: int = METRICS_PORT,
    drain_period: float = 0.0,
    service: str = "",
) -> None:
    """The proxy role: `kind` is the extension's (nginx or haproxy), which this agent runs.
    Its request counters are served as Prometheus text on `metrics_port` (0: not served).
    Stopped, it first drains for `drain_period` seconds (`ProxyDrainPeriod`), counted from
    Docker taking this task out of `service`'s DNS when it does (`roles/proxy_drain.py`)."""
    started_at = process_age()
    controller = new_controller(kind, Path(PROXY_WORKDIR), Path(secrets_dir))
    agent = Agent(
        extension=PeerClient(
            extension_url,
            read_token(Path(secrets_dir) / PROXY_TOKEN),
            peer_cert=mounted_peer_cert(Path(secrets_dir)),
        ),
        proxy=controller,
        name=socket.gethostname(),
    )
    REGISTRY.register(TrafficCollector(agent.meter))
    # Loopback, the control and the monitoring network; never the apps' networks it is on.
    metrics = await serve_metrics(metrics_port, role_listeners(os.environ).metrics) if metrics_port else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGQUIT, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loaded = process_age()
    await agent.boot(Path(mounted_config))
    booted = process_age()
    # A replaced proxy counts as running (and Swarm replaces the next) once this serves.
    log.info(
        "started: %s %.2fs after the process began (loading %.2fs, metrics %.2fs, extension and %s %.2fs)",
        "serving" if controller.running else "not serving yet",
        booted,
        started_at,
        loaded - started_at,
        controller.kind,
        booted - loaded,
    )
    # Now rather than with the first long-poll answer: what it serves.
    await agent.report()
    drain = ProxyDrain(controller, drain_period, SystemClock())
    watching = [watch_departure(service, drain.on_departure)] if service and drain_period > 0 else []
    tasks = [
        asyncio.create_task(c)
        for c in (
            agent.follow(),
            agent.follow_certificates(),
            agent.report_loop(),
            agent.watch_proxy(),
            agent.traffic_loop(),
            *watching,
        )
    ]
    await stop.wait()
    await drain.before_stop()
    await leave(agent, tasks)
    if metrics is not None:
        await metrics.cleanup()


async def leave(agent: Agent, tasks: list[asyncio.Task[None]]) -> None:
    """The proxy finishes its requests and stops (QUIT), while the agent tells the extension it
    is leaving (so that `interlock status` stops listing it now rather than in 30 s). That
    message is a courtesy: bounded, and never ahead of the stop, whose time Swarm counts (an
    extension or a resolver slow to answer would otherwise hold the stop, and Swarm kills a
    proxy still running at the end of its grace period)."""
    log.info("stopping: %s finishes its requests (QUIT)", agent.proxy.kind)
    started = time.monotonic()
    for task in tasks:
        task.cancel()
    told = asyncio.create_task(asyncio.wait_for(agent.report(leaving=True), LEAVING_REPORT_TIMEOUT))
    await agent.proxy.stop(signal.SIGQUIT)
    log.info("stopped: %s exited %.1fs after the stop began", agent.proxy.kind, time.monotonic() - started)
    with contextlib.suppress(TimeoutError):
        await told
    await agent.extension.close()
