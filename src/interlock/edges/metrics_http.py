"""The plain-HTTP Prometheus endpoint every role serves on `METRICS_PORT`: GET /metrics only.

It is separate from the roles' authenticated APIs so that a Prometheus on the monitoring network
scrapes it without a token and without joining the control network. It serves what the process
registered with prometheus_client (read-only; nothing here changes state).
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest


async def serve_metrics(port: int, host: str = "0.0.0.0", registry: CollectorRegistry = REGISTRY) -> web.AppRunner:
    """Start serving `registry` at http://host:port/metrics; the runner's cleanup() stops it."""

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner
