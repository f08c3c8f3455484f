"""Role-to-role HTTP (aiohttp): signed requests and signed answers, a small client for callers.

Both sides hold the same token (a Docker secret under /run/secrets) and neither ever sends it:
a request carries an HMAC-SHA256 of its method, path, time, a fresh nonce and its body; the
answer carries an HMAC of that nonce, its status and its body. So a server checks its caller, a
caller checks that the answer comes from a holder of the token (an impostor on the control
network answering for the core learns nothing and cannot serve a configuration), and a
captured request is useless after SIGNATURE_WINDOW, and within it a second time (each signed
nonce is kept for the window, `ReplayGuard`). Comparison is constant-time. A call without a valid
signature gets 401 and nothing else. The signature's headers are checked before any of the body
is read, and every endpoint states how large a body it takes (`require_token(max_body=...)`): a
larger one is a 413 naming the limit, never a silent default.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import secrets
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

import aiohttp
from aiohappyeyeballs import AddrInfoType
from aiohttp import web
from yarl import URL

from interlock.edges.role_tls import pinned_context
from interlock.errors import PeerUnavailable

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def read_token(path: str | Path) -> str:
    token = Path(path).read_text().strip()
    if len(token) < 16:
        raise ValueError(f"token in {path} is too short (at least 16 characters)")
    return token


SIGNATURE_WINDOW = 300.0
"""Seconds a signed request stays valid: generous for clocks of different nodes."""
_AUTH_SCHEME = "Interlock "


def _mac(token: str, *parts: str) -> str:
    return hmac.new(token.encode(), "\n".join(parts).encode(), hashlib.sha256).hexdigest()


def _body_digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def signed_headers(
    token: str, method: str, path_qs: str, body: bytes = b"", *, now: float | None = None
) -> dict[str, str]:
    """The headers of a signed request for `method` `path_qs` (raw path and query) and `body`."""
    stamp, nonce = str(int(time.time() if now is None else now)), secrets.token_hex(16)
    signature = _mac(token, method.upper(), path_qs, stamp, nonce, _body_digest(body))
    return {"Authorization": _AUTH_SCHEME + signature, "X-Interlock-Time": stamp, "X-Interlock-Nonce": nonce}


def answer_signature(token: str, nonce: str, status: int, body: bytes) -> str:
    return _mac(token, "answer", nonce, str(status), _body_digest(body))


def plausibly_signed(request: web.Request, *, now: float | None = None) -> bool:
    """The request carries signature headers of the right shape, stamped within SIGNATURE_WINDOW
    of now: checked before its body is read."""
    header = request.headers.get("Authorization", "")
    stamp, nonce = request.headers.get("X-Interlock-Time", ""), request.headers.get("X-Interlock-Nonce", "")
    if not header.startswith(_AUTH_SCHEME) or not stamp.isdigit() or not 16 <= len(nonce) <= 64:
        return False
    return abs((time.time() if now is None else now) - int(stamp)) <= SIGNATURE_WINDOW


def authorized(request: web.Request, token: str | None, body: bytes, *, now: float | None = None) -> bool:
    """A request signed with `token`, within SIGNATURE_WINDOW of now; never without a token."""
    if not token or not plausibly_signed(request, now=now):
        return False
    stamp, nonce = request.headers["X-Interlock-Time"], request.headers["X-Interlock-Nonce"]
    expected = _mac(token, request.method.upper(), request.raw_path, stamp, nonce, _body_digest(body))
    return hmac.compare_digest(request.headers["Authorization"][len(_AUTH_SCHEME) :].encode(), expected.encode())


class ReplayGuard:
    """The nonces of signed requests taken within SIGNATURE_WINDOW: a captured request sent again
    inside the window is refused. Only requests whose signature held are remembered, so nobody
    without a token can fill it; past `capacity` the oldest go first."""

    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        self._seen: dict[str, float] = {}

    def first_use(self, nonce: str, *, now: float | None = None) -> bool:
        """True the first time `nonce` is seen within the window (and remembers it)."""
        moment = time.time() if now is None else now
        if nonce in self._seen:
            return False
        self._seen[nonce] = moment
        if len(self._seen) > self.capacity or next(iter(self._seen.values())) < moment - 2 * SIGNATURE_WINDOW:
            # Insertion order is time order: drop from the front while expired (or too many).
            for old in list(self._seen):
                if len(self._seen) <= self.capacity and self._seen[old] >= moment - 2 * SIGNATURE_WINDOW:
                    break
                del self._seen[old]
        return True


SMALL_BODY = 64 * 1024
"""The limit of an endpoint that takes no real body (GETs, and small notes)."""


async def read_limited(request: web.Request, limit: int) -> bytes | None:
    """The body, or None when it is larger than `limit` bytes (said or found while reading)."""
    if request.content_length is not None and request.content_length > limit:
        return None
    body = await request.content.read(limit + 1)
    while len(body) <= limit and not request.content.at_eof():
        more = await request.content.read(limit + 1 - len(body))
        if not more:
            break
        body += more
    return None if len(body) > limit else body


TokenFor = Callable[[web.Request], str | None]
"""The token a request must be signed with, chosen by what it asks for (a cluster's own)."""


_REPLAYS = ReplayGuard()


def require_token(
    token: str | TokenFor, handler: Handler, *, max_body: int = SMALL_BODY, replays: ReplayGuard | None = None
) -> Handler:
    """`handler` for requests signed with `token` (or the token `token(request)` names) only,
    each taken once, with a body of at most `max_body` bytes (then in `request_body(request)`);
    its answer signed with the same token for the caller's nonce."""
    guard = replays or _REPLAYS

    async def guarded(request: web.Request) -> web.StreamResponse:
        key = token if isinstance(token, str) else token(request)
        if key is None or not plausibly_signed(request):
            return web.json_response({"error": "unauthorized"}, status=401)
        body = await read_limited(request, max_body)
        if body is None:
            # Signed, so the caller (which may hold the token) can trust what it is told.
            answer = web.json_response(
                {"error": f"the body is larger than this endpoint takes ({max_body} bytes)"}, status=413
            )
            return _signed(answer, key, request)
        nonce = request.headers["X-Interlock-Nonce"]
        if not authorized(request, key, body) or not guard.first_use(nonce):
            return web.json_response({"error": "unauthorized"}, status=401)
        request[_BODY] = body
        return _signed(await handler(request), key, request)

    return guarded


_BODY = web.RequestKey("interlock.body", bytes)


def request_body(request: web.Request) -> bytes:
    """The body `require_token` read and checked."""
    body: bytes = request.get(_BODY, b"")
    return body


def _signed(response: web.StreamResponse, key: str, request: web.Request) -> web.StreamResponse:
    body = response.body if isinstance(response, web.Response) and isinstance(response.body, bytes) else b""
    nonce = request.headers["X-Interlock-Nonce"]
    response.headers["X-Interlock-Signature"] = answer_signature(key, nonce, response.status, body)
    return response


def check_answer(token: str, nonce: str, status: int, body: bytes, signature: str, what: str) -> None:
    """Raise PeerUnavailable unless the answer is signed with `token` for `nonce`."""
    if not hmac.compare_digest(signature.encode(), answer_signature(token, nonce, status, body).encode()):
        raise PeerUnavailable(
            f"{what}: the answer is not signed with this cluster's token (a peer without it answered: "
            "an impostor on the control network, or a token that differs); ignored"
        )


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
    """Calls another role at `base_url` with signed requests, and takes only signed answers.

    The name in `base_url` may stand for several addresses (`tasks.NAME`: every task of the
    service, and any other service that took NAME as an alias on the control network). Each
    call tries them in turn, the one that last answered with a valid signature first, and moves
    on from one that does not connect, refuses the call or answers unsigned: an impostor among
    them costs a try, never the call."""

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        peer_cert: Path | None = None,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        """With `peer_cert`, every call is TLS (whatever `base_url`'s scheme says) to a server that
        must present exactly that certificate (`role_tls.pinned_context`)."""
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._tls = pinned_context(peer_cert) if peer_cert is not None else None
        self._session = session
        self._good = ""
        """The address that last gave a signed answer."""

    async def _ensure(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # No DNS cache: Swarm's DNS names the tasks that run now (a core that moved, a
            # proxy's new extension), and answers from the node itself.
            connector = aiohttp.TCPConnector(use_dns_cache=False, socket_factory=peer_socket)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    async def _addresses(self, url: URL) -> list[str]:
        """The addresses `url`'s host stands for now, the last good one first."""
        host = url.raw_host or ""
        try:
            # Bounded: the resolver's own timeouts and retries add up to many seconds.
            infos = await asyncio.wait_for(
                asyncio.get_running_loop().getaddrinfo(host, url.port, type=socket.SOCK_STREAM), CONNECT_TIMEOUT
            )
        except (OSError, TimeoutError) as exc:
            raise PeerUnavailable(f"{url.host}: cannot resolve: {exc!r}") from exc
        found = list(dict.fromkeys(str(info[4][0]) for info in infos))
        return sorted(found, key=lambda address: address != self._good)

    async def _call(self, method: str, path: str, body: bytes, timeout: float) -> tuple[int, bytes]:
        url = URL(self.base_url + path, encoded=True)
        if self._tls is not None:
            url = url.with_scheme("https")
        failures = []
        for address in await self._addresses(url):
            try:
                answer = await self._call_one(method, url, url.with_host(address), body, timeout)
            except PeerUnavailable as exc:
                failures.append(f"{address}: {exc}")
                continue
            self._good = address
            return answer
        raise PeerUnavailable(f"{method} {url}: no address answered as a peer: " + "; ".join(failures))

    async def _call_one(self, method: str, url: URL, target: URL, body: bytes, timeout: float) -> tuple[int, bytes]:
        session = await self._ensure()
        headers = signed_headers(self._token, method, url.raw_path_qs, body)
        headers["Host"] = url.raw_authority
        if body:
            headers["Content-Type"] = "application/json"
        try:
            async with session.request(
                method,
                target,
                data=body or None,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=CONNECT_TIMEOUT),
                ssl=self._tls if self._tls is not None else True,
            ) as response:
                answer = await response.read()
                signature = response.headers.get("X-Interlock-Signature", "")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise PeerUnavailable(repr(exc)) from exc
        if response.status == 401:
            # The peer refuses our signature (another cluster's token, or not a peer at all).
            raise PeerUnavailable("refused the call (401): it does not hold this cluster's token")
        check_answer(self._token, headers["X-Interlock-Nonce"], response.status, answer, signature, str(target))
        return response.status, answer

    async def get(self, path: str, *, params: dict[str, str] | None = None, timeout: float = 30) -> tuple[int, bytes]:
        query = "?" + urllib.parse.urlencode(params) if params else ""
        return await self._call("GET", path + query, b"", timeout)

    async def post(self, path: str, body: bytes, *, timeout: float = 10) -> tuple[int, bytes]:
        return await self._call("POST", path, body, timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def local_get(
    host: str, port: int, path: str, token: str, *, peer_cert: Path | None = None, timeout: float = 10
) -> bytes:
    """One blocking signed GET (`interlock inspect`), taking only a signed 200 (over TLS to the
    holder of `peer_cert`'s key when given); raises PeerUnavailable otherwise."""
    tls = pinned_context(peer_cert) if peer_cert is not None else None
    url = f"{'https' if tls else 'http'}://{host}:{port}{path}"
    headers = signed_headers(token, "GET", path)
    try:
        request = urllib.request.Request(url, headers=headers)
        with urllib.request.urlopen(request, timeout=timeout, context=tls) as response:
            body, status = bytes(response.read()), int(response.status)
            signature = response.headers.get("X-Interlock-Signature", "")
    except (urllib.error.URLError, OSError) as exc:
        raise PeerUnavailable(f"GET {url}: {exc}") from exc
    check_answer(token, headers["X-Interlock-Nonce"], status, body, signature, f"GET {url}")
    return body
