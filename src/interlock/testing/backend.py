"""A small HTTP(S) backend for end-to-end tests and benchmarks: `python -m interlock.testing.backend`.

Every request is answered with JSON naming the task that served it and echoing what it received
(path, headers, client); `Upgrade: websocket` requests become an echo websocket. With
BACKEND_AUTH_TOKEN it is an auth service for forward_auth: `Authorization: Bearer TOKEN` gets
200 with `X-Auth-User`, anything else (but /health) a 302 to /login that echoes what it was sent. With
`--tls-cert/--tls-key` it serves TLS (for passthrough and ssl_backend tests). `?sleep=SECONDS`
delays the answer. On SIGTERM it keeps
serving for `--drain` seconds before it exits, as the README asks applications to do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import ssl

from aiohttp import WSMsgType, web


def _identity() -> str:
    return os.environ.get("BACKEND_NAME") or socket.gethostname()


async def handle(request: web.Request) -> web.StreamResponse:
    if request.headers.get("Upgrade", "").lower() == "websocket":
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(f"hello from {_identity()}")
        async for message in ws:
            if message.type == WSMsgType.TEXT:
                await ws.send_str(f"echo:{message.data}")
        return ws
    body = {
        "task": _identity(),
        "path": request.path_qs,
        "method": request.method,
        "headers": dict(request.headers),
        "remote": request.remote,
        "scheme": request.scheme,
    }
    token = os.environ.get("BACKEND_AUTH_TOKEN")
    if token and request.path != "/health":
        if request.headers.get("Authorization") == f"Bearer {token}":
            user = os.environ.get("BACKEND_AUTH_USER") or "alice"
            return web.json_response(body, headers={"X-Auth-User": user, "X-Auth-Other": "not asked for"})
        denied = web.json_response(body, status=302, headers={"Location": "/login"})
        denied.set_cookie("asked", "1")
        return denied
    if "sleep" in request.query:
        # A slow request (?sleep=SECONDS, at most 10): one in flight while a proxy stops.
        await asyncio.sleep(min(float(request.query["sleep"]), 10.0))
    # BACKEND_STATUS: a task that answers every request with this status (a failing task),
    # except its health check's /health.
    status = 200 if request.path == "/health" else int(os.environ.get("BACKEND_STATUS") or 200)
    response = web.json_response(body, status=status, headers={"x-backend-task": _identity()})
    if "set-session" in request.query:
        response.set_cookie("session", request.query["set-session"])
    return response


async def serve(port: int, cert: str | None, key: str | None, drain: float) -> None:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    context = None
    if cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
    site = web.TCPSite(runner, port=port, ssl_context=context, reuse_address=True)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(json.dumps({"listening": port, "tls": bool(cert), "task": _identity()}), flush=True)
    await stop.wait()
    # Keep serving while the proxy takes the task out of its upstreams.
    await asyncio.sleep(drain)
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--drain", type=float, default=2.0, help="seconds to keep serving after SIGTERM")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.tls_cert, args.tls_key, args.drain))


if __name__ == "__main__":
    main()
