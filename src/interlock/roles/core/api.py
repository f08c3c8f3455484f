"""The core's HTTP API on the control network: /health, /metrics; each cluster's state (long-poll),
its extension's reports and its proxies' request counts, signed with that extension's own token
(an extension cannot read or report for another cluster); the status the operator reads, signed
with the operator's token.

Thin: it decodes, asks the board, encodes. A malformed request is a 400 naming what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import msgspec
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from interlock.edges.peer_http import long_poll_wait, require_token
from interlock.errors import WireError
from interlock.roles.core.board import Board
from interlock.wire.messages import ClusterTraffic, ExtensionReport, decode, encode


class CoreApi:
    def __init__(
        self,
        board: Board,
        *,
        extension_tokens: Mapping[str, str],
        operator_token: str,
        is_ready: Callable[[], bool],
        on_first_config: Callable[[], None],
        listen_addr: str = "",
    ) -> None:
        self.board = board
        self.extension_tokens = dict(extension_tokens)
        self.operator_token = operator_token
        self.is_ready = is_ready
        self.on_first_config = on_first_config
        self.listen_addr = listen_addr

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/v1/clusters/{name}/state", require_token(self._cluster_token, self.get_state))
        app.router.add_post("/v1/clusters/{name}/report", require_token(self._cluster_token, self.post_report))
        app.router.add_post("/v1/clusters/{name}/traffic", require_token(self._cluster_token, self.post_traffic))
        app.router.add_get("/v1/status", require_token(self.operator_token, self.get_status))
        return app

    async def health(self, request: web.Request) -> web.Response:
        ready = self.is_ready()
        return web.json_response(
            {"status": "ok" if ready else "starting", "ready": ready}, status=200 if ready else 503
        )

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

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
        if state is None:
            return web.Response(status=304)
        return web.Response(body=encode(state), content_type="application/json")

    async def post_report(self, request: web.Request) -> web.Response:
        name = self._extension(request)
        try:
            report = decode(await request.read(), ExtensionReport)
        except WireError as exc:
            return web.json_response({"error": str(exc)[:500]}, status=400)
        if await self.board.note_report(name, report):
            self.on_first_config()
        return web.json_response({"ok": True})

    async def post_traffic(self, request: web.Request) -> web.Response:
        name = self._extension(request)
        try:
            traffic = decode(await request.read(), ClusterTraffic)
        except WireError as exc:
            return web.json_response({"error": str(exc)[:500]}, status=400)
        self.board.note_traffic(name, traffic)
        return web.json_response({"ok": True})

    async def get_status(self, request: web.Request) -> web.Response:
        status = self.board.status(ready=self.is_ready(), listen_addr=self.listen_addr)
        return web.Response(body=msgspec.json.encode(status), content_type="application/json")
