"""The dashboard's web server (aiohttp), on the operator's machine: GET / is the page as it is
now, GET /events pushes each new rendering to the open pages (server-sent events).

One thread follows the core's status (`operator.follow_status`: a `docker exec` stream where the
core runs on this node) and hands each status to the event loop; nothing else talks to Docker.
It listens on loopback unless told otherwise: like `kubectl port-forward`, it is the operator's
own view, with no login of its own. So that a web page elsewhere cannot read it through a name
that resolves to loopback (DNS rebinding), it answers only requests whose Host header names the
address it listens on, or localhost, with its port; any other is a 421.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator

from aiohttp import web
from aiohttp.typedefs import Handler

from interlock.dashboard.view import fragment, page
from interlock.errors import InterlockError
from interlock.wire.status import CoreStatus

log = logging.getLogger("interlock.dashboard")

KEEPALIVE = 15.0
"""Seconds between comments on an idle event stream (so proxies and browsers keep it open)."""


def allowed_hosts(host: str, port: int) -> frozenset[str]:
    """The Host headers the dashboard listening on `host`:`port` answers."""
    names = {host, "localhost", "127.0.0.1", "[::1]"} if host in ("127.0.0.1", "localhost", "::1") else {host}
    shown = {f"[{n}]" if ":" in n and not n.startswith("[") else n for n in names}
    return frozenset(f"{n}:{port}".lower() for n in shown)


class Dashboard:
    def __init__(self, statuses: Callable[[], Iterator[CoreStatus]], hosts: frozenset[str] = frozenset()) -> None:
        """`hosts`: the Host headers answered (`allowed_hosts`); empty answers any (tests)."""
        self.statuses = statuses
        self.hosts = hosts
        self.body = fragment(None, updated="")
        self.version = 0
        self.changed = asyncio.Condition()

    def follow(self, loop: asyncio.AbstractEventLoop) -> None:
        """In a thread: every status the core gives, rendered and handed to the loop."""
        while True:
            try:
                for status in self.statuses():
                    body = fragment(status, updated=time.strftime("%H:%M:%S"))
                    asyncio.run_coroutine_threadsafe(self.publish(body), loop)
            except InterlockError as exc:
                body = fragment(None, updated="", error=f"cannot ask the core: {exc}")
                asyncio.run_coroutine_threadsafe(self.publish(body), loop)
                time.sleep(2)

    async def publish(self, body: str) -> None:
        # The `updated` time alone does not make a change worth sending.
        if _without_time(body) == _without_time(self.body):
            return
        async with self.changed:
            self.body, self.version = body, self.version + 1
            self.changed.notify_all()

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._host_check])
        app.router.add_get("/", self.index)
        app.router.add_get("/events", self.events)
        return app

    @web.middleware
    async def _host_check(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.hosts and request.headers.get("Host", "").lower() not in self.hosts:
            return web.Response(status=421, text="this dashboard answers only to " + ", ".join(sorted(self.hosts)))
        return await handler(request)

    async def index(self, request: web.Request) -> web.Response:
        return web.Response(text=page(self.body), content_type="text/html", headers={"Cache-Control": "no-store"})

    async def events(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
        await response.prepare(request)
        sent = -1
        while True:
            if sent != self.version:
                sent = self.version
                data = "".join(f"data: {line}\n" for line in self.body.splitlines())
                await response.write(f"{data}\n".encode())
                continue
            async with self.changed:
                try:
                    await asyncio.wait_for(self.changed.wait(), KEEPALIVE)
                except TimeoutError:
                    await response.write(b": still here\n\n")


def _without_time(body: str) -> str:
    start = body.find("updated ")
    return body if start < 0 else body[:start] + body[body.find("<", start) :]


async def serve(host: str, port: int, statuses: Callable[[], Iterator[CoreStatus]]) -> None:
    dashboard = Dashboard(statuses, allowed_hosts(host, port))
    loop = asyncio.get_running_loop()
    threading.Thread(target=dashboard.follow, args=(loop,), name="core-status", daemon=True).start()
    runner = web.AppRunner(dashboard.app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    print(f"Interlock dashboard on http://{host}:{port}/ (Ctrl-C stops it)", flush=True)
    await asyncio.Event().wait()
