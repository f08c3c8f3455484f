"""The plain-HTTP Prometheus endpoint every role serves on `METRICS_PORT`: GET /metrics only.

It is separate from the roles' authenticated APIs so that a Prometheus on the monitoring network
scrapes it without a token and without joining the control network; it listens only where a
scraper should reach it (`edges.listen`). It serves what the process registered with
prometheus_client (read-only; nothing here changes state). A scrape is rendered in a thread, at
most once a second however many scrapers ask (`scrape`): at 5,000 routes one rendering costs a
proxy agent's process most of a second of CPU, and a client looping on it must not starve the
agent's event loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

CACHE_SECONDS = 1.0


class _Scrape:
    """One registry's rendering, shared by every scrape within CACHE_SECONDS."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.lock = asyncio.Lock()
        self.body = b""
        self.at = -CACHE_SECONDS

    async def get(self) -> bytes:
        async with self.lock:
            if time.monotonic() - self.at >= CACHE_SECONDS:
                self.body = await asyncio.to_thread(generate_latest, self.registry)
                self.at = time.monotonic()
            return self.body


_SCRAPES: dict[int, _Scrape] = {}


async def scrape(registry: CollectorRegistry = REGISTRY) -> bytes:
    """The Prometheus text of `registry`, rendered off the event loop, at most once a second."""
    key = id(registry)
    if key not in _SCRAPES or _SCRAPES[key].registry is not registry:
        _SCRAPES[key] = _Scrape(registry)
    return await _SCRAPES[key].get()


async def metrics_response(registry: CollectorRegistry = REGISTRY) -> web.Response:
    return web.Response(body=await scrape(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def serve_metrics(
    port: int, hosts: Sequence[str] = ("0.0.0.0",), registry: CollectorRegistry = REGISTRY
) -> web.AppRunner:
    """Start serving `registry` at http://HOST:port/metrics on each of `hosts`; the runner's
    cleanup() stops it."""

    async def metrics(request: web.Request) -> web.Response:
        return await metrics_response(registry)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    for host in hosts:
        await web.TCPSite(runner, host, port).start()
    return runner
