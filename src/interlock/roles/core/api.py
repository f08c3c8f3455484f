"""The core's HTTP API on the control network: /health, /metrics; each cluster's state (long-poll;
to an extension that holds the state before, only the change: 226 and a `ClusterStateDelta`),
its certificates (long-poll, over TLS only), its extension's reports, its configuration (sent
when the core asks, answering the long-poll with 202) and its proxies' request counts, signed
with that extension's own token (an extension cannot read or report for another cluster);
the status the operator reads, signed with the
operator's token. Every endpoint states the largest body it takes.

Thin: it decodes, asks the board, encodes. A malformed request is a 400 naming what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

import msgspec
from aiohttp import web

from interlock.edges.metrics_http import metrics_response
from interlock.edges.peer_http import long_poll_wait, request_body, require_token
from interlock.errors import WireError
from interlock.roles.core.board import Board
from interlock.roles.core.certificates import CertificateDesk
from interlock.wire.messages import ClusterTraffic, ExtensionReport, ProxyConfig, decode, encode
from interlock.wire.status import with_acme_expiry

REPORT_LIMIT = 8 << 20
"""An extension's report: ids, counts and refusals of each of its proxies (a few hundred bytes each)."""
TRAFFIC_LIMIT = 64 << 20
"""Every proxy's request counts by route: about 150 bytes a route a proxy."""
CONFIG_LIMIT = 256 << 20
"""A whole proxy configuration (nginx.conf and targets: about 1 kB a host)."""


class CoreApi:
    def __init__(
        self,
        board: Board,
        certificates: CertificateDesk,
        *,
        extension_tokens: Mapping[str, str],
        operator_token: str,
        is_ready: Callable[[], bool],
        on_config: Callable[[], None],
        listen_addr: str = "",
        plain_keys: bool = False,
    ) -> None:
        """`plain_keys`: send certificates (keys) over plain HTTP too; only for tests, where
        every role is a process on loopback."""
        self.board = board
        self.certificates = certificates
        self.plain_keys = plain_keys
        self.extension_tokens = dict(extension_tokens)
        self.operator_token = operator_token
        self.is_ready = is_ready
        self.on_config = on_config
        self.listen_addr = listen_addr
        self.acme_expiries: Callable[[], Mapping[str, float]] = dict
        """Host -> when its ACME certificate expires (the ACME desk's), for the TLS column."""

    def app(self) -> web.Application:
        # require_token reads each body under its own limit; the app's is the largest of them.
        app = web.Application(client_max_size=CONFIG_LIMIT)
        token = self._cluster_token
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/v1/clusters/{name}/state", require_token(token, self.get_state))
        app.router.add_get("/v1/clusters/{name}/certificates", require_token(token, self.get_certificates))
        app.router.add_post("/v1/clusters/{name}/report", require_token(token, self.post_report, max_body=REPORT_LIMIT))
        app.router.add_post("/v1/clusters/{name}/config", require_token(token, self.post_config, max_body=CONFIG_LIMIT))
        app.router.add_post(
            "/v1/clusters/{name}/traffic", require_token(token, self.post_traffic, max_body=TRAFFIC_LIMIT)
        )
        app.router.add_get("/v1/status", require_token(self.operator_token, self.get_status))
        return app

    async def health(self, request: web.Request) -> web.Response:
        ready = self.is_ready()
        return web.json_response(
            {"status": "ok" if ready else "starting", "ready": ready}, status=200 if ready else 503
        )

    async def metrics(self, request: web.Request) -> web.Response:
        return await metrics_response()

    def _cluster_token(self, request: web.Request) -> str | None:
        """The token of the extension the path names; None for a name not configured (401)."""
        return self.extension_tokens.get(request.match_info.get("name", ""))

    def _extension(self, request: web.Request) -> str:
        name = request.match_info["name"]
        if name not in self.board.slots:
            known = ", ".join(sorted(self.board.slots))
            raise web.HTTPNotFound(
                text=f'{{"error": "no extension {name[:64]!r}; configured: {known}"}}', content_type="application/json"
            )
        return name

    async def get_state(self, request: web.Request) -> web.Response:
        name = self._extension(request)
        state = await self.board.state_after(name, request.query.get("after", ""), long_poll_wait(request))
        if self.board.take_want(name):
            return web.json_response({"send": "config"}, status=202)
        if state is None:
            return web.Response(status=304)
        slot = self.board.slots[name]
        after = request.query.get("after", "")
        if request.query.get("delta") == "1" and slot.previous is not None and slot.previous.tag == after:
            # 226 IM Used (RFC 3229): the answer is the change from the state the caller holds.
            return web.Response(status=226, body=slot.encoded_delta(), content_type="application/json")
        return web.Response(body=encode(state), content_type="application/json")

    async def get_certificates(self, request: web.Request) -> web.Response:
        """The long-poll of the cluster's certificates (with their keys): on the pinned-TLS
        listener only, to the cluster's own extension only (its token)."""
        name = self._extension(request)
        if not request.secure and not self.plain_keys:
            return web.json_response({"error": "certificates are sent over TLS only"}, status=403)
        bundle = await self.certificates.after(name, request.query.get("after", ""), long_poll_wait(request))
        if bundle is None:
            return web.Response(status=304)
        return web.Response(body=encode(bundle), content_type="application/json")

    async def post_report(self, request: web.Request) -> web.Response:
        name = self._extension(request)
        try:
            report = decode(request_body(request), ExtensionReport)
        except WireError as exc:
            return web.json_response({"error": str(exc)[:500]}, status=400)
        await self.board.note_report(name, report)
        return web.json_response({"ok": True})

    async def post_config(self, request: web.Request) -> web.Response:
        name = self._extension(request)
        try:
            config = decode(request_body(request), ProxyConfig)
        except WireError as exc:
            return web.json_response({"error": str(exc)[:500]}, status=400)
        if not self.board.note_config(name, config):
            return web.json_response({"error": self.board.slots[name].config_error}, status=422)
        self.on_config()
        return web.json_response({"ok": True})

    async def post_traffic(self, request: web.Request) -> web.Response:
        name = self._extension(request)
        try:
            traffic = decode(request_body(request), ClusterTraffic)
        except WireError as exc:
            return web.json_response({"error": str(exc)[:500]}, status=400)
        self.board.note_traffic(name, traffic)
        return web.json_response({"ok": True})

    async def get_status(self, request: web.Request) -> web.Response:
        status = self.board.status(ready=self.is_ready(), listen_addr=self.listen_addr)
        status = replace(status, routes=with_acme_expiry(status.routes, self.acme_expiries()))
        return web.Response(body=msgspec.json.encode(status), content_type="application/json")
