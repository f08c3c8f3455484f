"""The extension: follows its cluster's state from the core, renders and validates the proxy
configuration, and serves the validated configuration to its proxies. No Docker socket.

Validation runs the proxy's own check (`nginx -t`, `haproxy -c`) here, in the extension's own
container, with stand-in certificates: a configuration the proxy refuses never reaches a proxy,
and the last good one keeps being served. A state whose configuration text is the one already
validated (only the run-time document changed) is checked by that document's own schema. When
the proxy's check refuses a state, a bisection over its services finds those responsible; the
others are served at once, and the report names the ones left out (the core makes them problems).
Proxy agents long-poll `/v1/config` and report what they serve to `/v1/report`; the cluster's
certificates (with their keys) come from the core on a long-poll of their own and go to the
proxies on `/v1/certificates`, over TLS only, untouched and never logged; the extension
relays those reports to the core with its own, and the request counts they carry apart, at most
once a second (`ClusterTraffic`). Its reports name the served configuration by its ids; the whole
configuration goes to the core only when the core asks (a 202 on the state long-poll). A report
that does not arrive is logged with its cause and counted (`interlock_role_report_failures_total`).
A proxy that stops says so and is forgotten at once; one that stops reporting (gone, or cut off)
is forgotten after 30 s.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from aiohttp import web
from prometheus_client import Counter, Histogram
from pydantic import ValidationError

from interlock.config import ExtensionConfig
from interlock.constants import EXTENSION_PORT, EXTENSION_TOKEN, METRICS_PORT, PROXY_TOKEN, SECRETS_DIR
from interlock.edges.listen import role_listeners
from interlock.edges.metrics_http import metrics_response, serve_metrics
from interlock.edges.offline_check import CheckResult
from interlock.edges.peer_http import (
    Peer,
    PeerClient,
    long_poll_wait,
    read_token,
    request_body,
    require_token,
)
from interlock.edges.proxy_kinds import (
    check_proxy_rendered,
    check_proxy_targets,
    failing_services,
    proxy_complaint,
    render_guarded,
    render_proxy,
)
from interlock.edges.role_tls import mounted_peer_cert, mounted_server_context
from interlock.errors import InterlockError, TemplateFailed, WireError
from interlock.model.routing import Routing
from interlock.render.bundle import RenderedConfig
from interlock.render.config_delta import config_delta
from interlock.roles.certificate_relay import CertificateRelay
from interlock.roles.runtime import (
    answered_get,
    changed_within,
    post_counted,
    proxy_config,
    quiet_gc,
    until_stopped,
    woken,
)
from interlock.wire.delta import ClusterStateDelta, apply_delta
from interlock.wire.messages import (
    ClusterState,
    ClusterTraffic,
    ConfigRef,
    ExtensionReport,
    ProxyConfig,
    ProxyReport,
    ProxyTraffic,
    decode,
    encode,
)

log = logging.getLogger("interlock.extension")

RENDERS = Counter("interlock_extension_renders_total", "Configurations rendered and validated", ["result"])
PROXY_REPORT_LIMIT = 32 << 20
"""A proxy's report: ids, refusals and its request counts by route (about 150 bytes a route)."""
RENDER_SECONDS = Histogram("interlock_extension_render_seconds", "Render + the proxy's check time")


@dataclass
class Extension:
    name: str
    core: Peer
    proxy_token: str
    cluster: str = ""
    current: ProxyConfig | None = None
    _encoded: tuple[ProxyConfig | None, bytes] = (None, b"")
    previous: ProxyConfig | None = None
    """The configuration before `current`: a proxy serving it is sent the change."""
    _delta: tuple[ProxyConfig | None, bytes] = (None, b"")
    validation_error: str = ""
    state_version: int = 0
    """The newest state `current` reflects: reported, so the core can time its changes."""
    left_out: dict[str, str] = field(default_factory=dict)
    """Service -> the proxy's complaint: left out of the served configuration by bisection."""
    proxies: dict[str, tuple[float, ProxyReport]] = field(default_factory=dict)
    plain_keys: bool = False
    """Send certificates to proxies over plain HTTP too: only for tests on loopback."""

    def __post_init__(self) -> None:
        self.changed = asyncio.Condition()
        self.certificates = CertificateRelay(self.name, self.core, plain_keys=self.plain_keys)
        self.delta_lock = asyncio.Lock()
        self.report_wake = asyncio.Event()
        self.traffic_wake = asyncio.Event()

    @property
    def current_body(self) -> bytes:
        """`current` as encoded (once): what proxies and the core are sent."""
        if self._encoded[0] is not self.current:
            self._encoded = (self.current, encode(self.current) if self.current else b"")
        return self._encoded[1]

    async def follow_core(self) -> None:
        """Long-poll the core for this cluster's state; once it holds one, the core answers with
        the change from it (226), which is applied to the state held."""
        held: ClusterState | None = None
        while True:
            params = {"after": held.tag, "wait": "25", "delta": "1"} if held else {"after": "", "wait": "25"}
            status, body = await answered_get(
                self.core, f"/v1/clusters/{self.name}/state", params, log=log, waiting=lambda: "core unavailable"
            )
            if status == 304:
                continue
            if status == 202:
                await self.send_config()
                continue
            if status not in (200, 226):
                log.warning("core answered %d: %s", status, body[:200])
                await asyncio.sleep(1)
                continue
            try:
                if status == 226 and held is not None:
                    try:
                        state = apply_delta(held, decode(body, ClusterStateDelta))
                    except WireError as exc:
                        log.warning("the core's change did not fit the state held (%s); asking for the whole", exc)
                        held = None
                        continue
                else:
                    state = decode(body, ClusterState)
                held = state
                self.cluster = state.cluster
                await self.apply(state)
            except InterlockError as exc:
                # The loop's boundary: say so, keep serving the last good configuration, go on.
                self.validation_error = str(exc)[-2000:]
                log.error(
                    "state not used, still serving %s: %s", self.current.config_id if self.current else "nothing", exc
                )
                self.report_wake.set()
                await asyncio.sleep(1)

    async def _render_and_check(self, routing: Routing, ext: ExtensionConfig) -> tuple[RenderedConfig, CheckResult]:
        with quiet_gc():
            if ext.template:  # the operator's template: in a child process, under limits
                rendered = await asyncio.to_thread(render_guarded, routing, ext)
            else:
                rendered = render_proxy(routing, ext)
            if self.current is not None and rendered.config_id == self.current.config_id:
                # The same configuration text passed already: only the run-time document
                # changed (hosts, routes, tasks), checked on its own, with no full check.
                return rendered, check_proxy_targets(rendered.targets, ext)
            # The text checked is the text served (certificates stood in for), not a second render.
            return rendered, await asyncio.to_thread(check_proxy_rendered, rendered.text, routing, ext)

    async def apply(self, state: ClusterState) -> None:
        started = time.perf_counter()
        try:
            ext = ExtensionConfig.model_validate(state.config)
        except ValidationError as exc:
            raise WireError(f"state {state.version}: the extension settings are not valid: {exc}") from exc
        routing, left_out = state.routing, {}
        try:
            rendered, result = await self._render_and_check(routing, ext)
            if not result.ok:
                # The safety net: find the services without which the proxy takes the configuration,
                # serve the others, and say which (the core leaves them out of the next state).
                found = await asyncio.to_thread(failing_services, routing, ext, result)
                if found:
                    routing, left_out = (
                        routing.without(frozenset(found)),
                        {k: proxy_complaint(v, ext) for k, v in found.items()},
                    )
                    rendered, result = await self._render_and_check(routing, ext)
                    log.error(
                        "state %d: the proxy's check refused the configuration; left out %s",
                        state.version,
                        "; ".join(f"{name}: {why}" for name, why in left_out.items()),
                    )
        except TemplateFailed as exc:
            result = CheckResult(False, str(exc))
        self.left_out = left_out if result.ok else {}
        RENDER_SECONDS.observe(time.perf_counter() - started)
        if not result.ok:
            RENDERS.labels("rejected").inc()
            self.validation_error = result.output[-2000:]
            log.error(
                "state %d: the configuration was refused; still serving %s:\n%s",
                state.version,
                self.current.config_id if self.current else "nothing",
                result.output,
            )
        else:
            RENDERS.labels("ok").inc()
            self.validation_error = ""
            self.state_version = state.version
            if self.current is None or self.current.digest != rendered.digest:
                self.previous, self.current = self.current, proxy_config(state.version, routing, rendered)
                log.info(
                    "state %d: configuration %s validated (%d hosts, %.0f ms)",
                    state.version,
                    rendered.config_id,
                    len(routing.hosts),
                    (time.perf_counter() - started) * 1000,
                )
                async with self.changed:
                    self.changed.notify_all()
        self.report_wake.set()

    async def report_to_core(self) -> None:
        while True:
            await woken(self.report_wake, 5.0)
            now = time.monotonic()
            # Proxies that stopped reporting (gone, or cut off) age out after 30 s.
            self.proxies = {k: v for k, v in self.proxies.items() if now - v[0] < 30}
            report = ExtensionReport(
                self.name,
                self.cluster,
                ConfigRef.of(self.current, len(self.current_body)) if self.current else None,
                self.validation_error,
                tuple(_without_traffic(r) for _, r in sorted(self.proxies.values(), key=lambda v: v[1].proxy)),
                tuple(sorted(self.left_out.items())),
                self.state_version,
            )
            await self._to_core("report", "report", encode(report))

    async def send_config(self) -> None:
        """The whole current configuration, which the core asked for to store it."""
        if self.current is not None:
            await self._to_core("config", "config", self.current_body, timeout=60)

    async def _to_core(self, endpoint: str, message: str, body: bytes, *, timeout: float = 10) -> bool:
        path = f"/v1/clusters/{self.name}/{endpoint}"
        return await post_counted(self.core, path, body, message=message, to="core", log=log, timeout=timeout)

    async def traffic_to_core(self) -> None:
        """The proxies' request counts, on their own: at most once a second while they change
        (and every 10 s anyway), so live rates never resend the configuration."""
        while True:
            await woken(self.traffic_wake, 10.0)
            traffic = ClusterTraffic(
                tuple(
                    ProxyTraffic(r.proxy, r.traffic, r.active_connections)
                    for _, r in sorted(self.proxies.values(), key=lambda v: v[1].proxy)
                )
            )
            await self._to_core("traffic", "traffic", encode(traffic))
            await asyncio.sleep(1.0)

    # -- API for proxies ----------------------------------------------------------------------
    def app(self) -> web.Application:
        app = web.Application(client_max_size=PROXY_REPORT_LIMIT)
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/v1/config", require_token(self.proxy_token, self.get_config))
        app.router.add_get("/v1/certificates", require_token(self.proxy_token, self.certificates.get))
        app.router.add_post(
            "/v1/report", require_token(self.proxy_token, self.post_report, max_body=PROXY_REPORT_LIMIT)
        )
        return app

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "config_id": self.current.config_id if self.current else None})

    async def metrics(self, request: web.Request) -> web.Response:
        return await metrics_response()

    async def get_config(self, request: web.Request) -> web.Response:
        """The long-poll of the proxies: the newest configuration once it is not `after`; to a
        proxy serving the one before (and saying it takes one), only the change (226)."""
        after = request.query.get("after", "")
        wait = long_poll_wait(request)
        if not await changed_within(self.changed, lambda: self.current is None or self.current.digest == after, wait):
            return web.Response(status=304 if self.current else 503)
        if request.query.get("delta") == "1" and self.previous is not None and self.previous.digest == after:
            return web.Response(status=226, body=await self._delta_body(), content_type="application/json")
        return web.Response(body=self.current_body, content_type="application/json")

    async def _delta_body(self) -> bytes:
        """`current` as a change from `previous`, worked out once (in a thread: about 0.1 s at
        10,000 hosts) however many proxies ask."""
        async with self.delta_lock:
            current, previous = self.current, self.previous
            if self._delta[0] is not current:
                assert current is not None and previous is not None
                body = await asyncio.to_thread(lambda: encode(config_delta(previous, current)))
                self._delta = (current, body)
            return self._delta[1]

    async def post_report(self, request: web.Request) -> web.Response:
        try:
            report = decode(request_body(request), ProxyReport)
        except WireError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        if report.leaving:
            if self.proxies.pop(report.proxy, None) is not None:
                self.report_wake.set()
            return web.json_response({"ok": True})
        previous = self.proxies.get(report.proxy)
        self.proxies[report.proxy] = (time.monotonic(), report)
        if previous is None or _without_traffic(previous[1]) != _without_traffic(report):
            self.report_wake.set()
        if previous is None or (previous[1].traffic, previous[1].active_connections) != (
            report.traffic,
            report.active_connections,
        ):
            self.traffic_wake.set()
        return web.json_response({"ok": True})


def _without_traffic(report: ProxyReport) -> ProxyReport:
    """The report as its state goes to the core: its counts travel in `ClusterTraffic`."""
    return replace(report, traffic=(), active_connections=0)


async def run_extension(*, name: str, core_url: str, secrets_dir: str = SECRETS_DIR) -> None:
    directory = Path(secrets_dir)
    extension = Extension(
        name=name,
        core=PeerClient(core_url, read_token(directory / EXTENSION_TOKEN), peer_cert=mounted_peer_cert(directory)),
        proxy_token=read_token(directory / PROXY_TOKEN),
    )
    runner = web.AppRunner(extension.app(), access_log=None)
    await runner.setup()
    listeners = role_listeners(os.environ)
    tls = mounted_server_context(directory)
    for host in listeners.api:
        await web.TCPSite(runner, host, EXTENSION_PORT, ssl_context=tls).start()
    await serve_metrics(METRICS_PORT, listeners.metrics)
    log.info(
        "extension %s (%s) listening on %s, following the core at %s",
        name,
        socket.gethostname(),
        ", ".join(listeners.api),
        core_url,
    )
    await until_stopped(
        extension.follow_core(),
        extension.certificates.follow_core(),
        extension.report_to_core(),
        extension.traffic_to_core(),
    )
