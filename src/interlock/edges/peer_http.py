"""Role-to-role HTTP (aiohttp): bearer-token checks for servers, a small client for callers.

Tokens come from Docker secrets (files under /run/secrets); comparison is constant-time. A call
without the right token gets 401 and nothing else.
"""

from __future__ import annotations

import hmac
import math
import socket
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

import aiohttp
from aiohappyeyeballs import AddrInfoType
from aiohttp import web

from interlock.errors import PeerUnavailable

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def read_token(path: str | Path) -> str:
    token = Path(path).read_text().strip()
    if len(token) < 16:
        raise ValueError(f"token in {path} is too short (at least 16 characters)")
    return token


def authorized(request: web.Request, token: str) -> bool:
    header = request.headers.get("Authorization", "")
    return header.startswith("Bearer ") and hmac.compare_digest(header[7:].encode(), token.encode())


def require_token(token: str, handler: Handler) -> Handler:
    async def guarded(request: web.Request) -> web.StreamResponse:
        if not authorized(request, token):
            return web.json_response({"error": "unauthorized"}, status=401)
        return await handler(request)

    return guarded


MAX_WAIT = 55.0
"""Longest long-poll, under the usual 60 s idle timeouts of proxies between roles."""


def long_poll_wait(request: web.Request) -> float:
    """The `wait` query parameter in seconds, within [0, MAX_WAIT]; anything else (nan, inf,
    negative, not a number) is a 400 saying what is allowed."""
    text = request.query.get("wait", "0")
    try:
        wait = float(text)
    except ValueError:
        wait = math.nan
    if not math.isfinite(wait) or wait < 0:
        raise web.HTTPBadRequest(text=f"wait={text[:20]!r}: a number of seconds from 0 to {MAX_WAIT:.0f} is allowed")
    return min(wait, MAX_WAIT)


class Peer(Protocol):
    """Another role, as a caller sees it; `PeerClient` in production, a scripted fake in tests."""

    async def get(
        self, path: str, *, params: dict[str, str] | None = None, timeout: float = 30
    ) -> tuple[int, bytes]: ...

    async def post(self, path: str, body: bytes, *, timeout: float = 10) -> tuple[int, bytes]: ...

    async def close(self) -> None: ...


RETRY_FIRST, RETRY_MAX = 0.25, 1.0
"""Seconds between tries to reach a peer that did not answer, doubling up to RETRY_MAX. The
peer's replacement (a core Swarm started on another manager) is in Swarm's DNS as soon as it
runs; a try a second finds it within a second, for one local DNS lookup a second."""

CONNECT_TIMEOUT = 3.0
"""Seconds to connect to another role over the overlay: a task on a lost node never answers,
and the next address (another task) should be tried long before a long-poll's timeout."""


def peer_socket(addr_info: AddrInfoType) -> socket.socket:
    """A TCP socket that notices a vanished peer within seconds. A node cut off sends no reset,
    so without this a long-poll to a core on it would wait out its whole timeout: keep-alive
    probes after 2 s idle, and at most 5 s of unacknowledged data."""
    family, kind, proto, _, _ = addr_info
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 2)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 5000)
    return sock


class PeerClient:
    """Calls another role at `base_url` with a bearer token."""

    def __init__(self, base_url: str, token: str, *, session: aiohttp.ClientSession | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {token}"}
        self._session = session

    async def _ensure(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # No DNS cache: Swarm's DNS names the tasks that run now (a core that moved, a
            # proxy's new extension), and answers from the node itself.
            connector = aiohttp.TCPConnector(use_dns_cache=False, socket_factory=peer_socket)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def get(self, path: str, *, params: dict[str, str] | None = None, timeout: float = 30) -> tuple[int, bytes]:
        session = await self._ensure()
        try:
            async with session.get(
                self.base_url + path,
                params=params,
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=CONNECT_TIMEOUT),
            ) as response:
                return response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise PeerUnavailable(f"GET {self.base_url}{path}: {exc!r}") from exc

    async def post(self, path: str, body: bytes, *, timeout: float = 10) -> tuple[int, bytes]:
        session = await self._ensure()
        try:
            async with session.post(
                self.base_url + path,
                data=body,
                headers={**self._headers, "Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=CONNECT_TIMEOUT),
            ) as response:
                return response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise PeerUnavailable(f"POST {self.base_url}{path}: {exc!r}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def local_get(host: str, port: int, path: str, token: str, *, timeout: float = 10) -> bytes:
    """One blocking authenticated GET (the `inspect` command inside the core's container);
    raises PeerUnavailable when it gets no 200."""
    request = urllib.request.Request(f"http://{host}:{port}{path}", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return bytes(response.read())
    except (urllib.error.URLError, OSError) as exc:
        raise PeerUnavailable(f"GET http://{host}:{port}{path}: {exc}") from exc
