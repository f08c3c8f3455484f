"""The extension's certificate relay: long-polls the core for its cluster's certificates (with
their keys) and hands them, as the core sent them, to its proxies on `/v1/certificates`. Over
TLS only (both ways), never logged, never stored anywhere but in memory; the last bundle stays
while the core is away. No Docker socket.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from interlock.edges.peer_http import Peer, long_poll_wait
from interlock.errors import WireError
from interlock.roles.runtime import answered_get, changed_within
from interlock.wire.certificates import CertificateBundle
from interlock.wire.messages import decode

log = logging.getLogger("interlock.extension")


class CertificateRelay:
    def __init__(self, name: str, core: Peer, *, plain_keys: bool = False) -> None:
        """`plain_keys`: hand certificates over plain HTTP too; only for tests on loopback."""
        self.name = name
        self.core = core
        self.plain_keys = plain_keys
        self.held: tuple[str, bytes] | None = None
        """The newest certificates as the core sent them: (tag, body); None until the first."""
        self.changed = asyncio.Condition()

    async def follow_core(self) -> None:
        """Long-poll the core for this cluster's certificates; keep the newest."""
        while True:
            status, body = await answered_get(
                self.core,
                f"/v1/clusters/{self.name}/certificates",
                {"after": self.held[0] if self.held else "", "wait": "25"},
                log=log,
                waiting=lambda: "core unavailable for certificates",
            )
            if status == 304:
                continue
            try:
                if status != 200:
                    raise WireError(f"the core answered {status}: {body[:200]!r}")
                bundle = decode(body, CertificateBundle)
            except WireError as exc:
                log.error("certificates from the core not usable: %s", exc)
                await asyncio.sleep(1)
                continue
            self.held = (bundle.tag, body)
            log.info("certificates %s (%d hosts)", bundle.tag, len(bundle.hosts))
            async with self.changed:
                self.changed.notify_all()

    async def get(self, request: web.Request) -> web.Response:
        """The proxies' long-poll: the newest certificates once their tag is not `after` (503
        before the core sent any)."""
        if not request.secure and not self.plain_keys:
            return web.json_response({"error": "certificates are sent over TLS only"}, status=403)
        after = request.query.get("after", "")

        def unchanged() -> bool:
            return self.held is None or self.held[0] == after

        if not await changed_within(self.changed, unchanged, long_poll_wait(request)):
            return web.Response(status=304 if self.held else 503)
        assert self.held is not None
        return web.Response(body=self.held[1], content_type="application/json")
