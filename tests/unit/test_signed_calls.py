"""Role-to-role calls are authenticated both ways and never carry the token: an impostor that
answers for the core (or the extension) on the control network learns no credential and cannot
serve a configuration; a captured request stops working; with TLS, only the holder of the
pinned key is talked to at all."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import BaseTestServer, TestServer
from yarl import URL

from interlock.edges.peer_http import (
    SIGNATURE_WINDOW,
    PeerClient,
    ReplayGuard,
    request_body,
    require_token,
    signed_headers,
)
from interlock.edges.role_identities import new_pair
from interlock.edges.role_tls import server_context
from interlock.errors import PeerUnavailable

TOKEN = "cluster-token-0123456789abcdef"


async def state(request: web.Request) -> web.Response:
    return web.json_response({"config": "from the real core"})


@pytest.fixture
async def real() -> AsyncIterator[BaseTestServer]:
    app = web.Application()
    app.router.add_get("/v1/state", require_token(TOKEN, state))
    async with TestServer(app) as server:
        yield server


@pytest.fixture
async def impostor() -> AsyncIterator[tuple[BaseTestServer, list[dict[str, str]]]]:
    seen: list[dict[str, str]] = []

    async def anything(request: web.Request) -> web.Response:
        seen.append(dict(request.headers))
        return web.json_response({"config": "the impostor's"})

    app = web.Application()
    app.router.add_get("/v1/state", anything)
    async with TestServer(app) as server:
        yield server, seen


async def test_a_caller_with_the_token_gets_a_signed_answer(real: BaseTestServer) -> None:
    client = PeerClient(str(real.make_url("")), TOKEN)
    try:
        status, body = await client.get("/v1/state", params={"after": "x.1", "wait": "0"})
    finally:
        await client.close()
    assert (status, body) == (200, b'{"config": "from the real core"}')


async def test_a_caller_without_the_token_is_refused(real: BaseTestServer) -> None:
    client = PeerClient(str(real.make_url("")), "another-token-0123456789abcdef")
    try:
        with pytest.raises(PeerUnavailable, match=r"refused the call \(401\)"):
            await client.get("/v1/state")
    finally:
        await client.close()


class TwoAddresses(PeerClient):
    """A client whose peer name stands for an impostor first and the real peer second, as
    `tasks.interlock` does when another service takes `interlock` as an alias."""

    async def _addresses(self, url: URL) -> list[str]:
        return sorted(["127.0.0.2", "127.0.0.1"], key=lambda address: address != self._good)


async def test_an_impostor_among_the_peers_addresses_costs_a_try_not_the_call(unused_tcp_port: int) -> None:
    seen: list[str] = []

    async def anything(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.json_response({"config": "the impostor's"})

    real_app, impostor_app = web.Application(), web.Application()
    real_app.router.add_get("/v1/state", require_token(TOKEN, state))
    impostor_app.router.add_get("/v1/state", anything)
    async with (
        TestServer(real_app, host="127.0.0.1", port=unused_tcp_port),
        TestServer(impostor_app, host="127.0.0.2", port=unused_tcp_port),
    ):
        client = TwoAddresses(f"http://peer.test:{unused_tcp_port}", TOKEN)
        try:
            for _ in range(3):
                assert await client.get("/v1/state") == (200, b'{"config": "from the real core"}')
        finally:
            await client.close()
    assert seen == ["/v1/state"], "asked once, then the address that answered signed comes first"


async def test_an_impostor_gets_no_credential_and_its_answer_is_not_taken(
    impostor: tuple[BaseTestServer, list[dict[str, str]]],
) -> None:
    server, seen = impostor
    client = PeerClient(str(server.make_url("")), TOKEN)
    try:
        with pytest.raises(PeerUnavailable, match="not signed with this cluster's token"):
            await client.get("/v1/state")
    finally:
        await client.close()
    (headers,) = seen
    assert all(TOKEN not in value for value in headers.values()), headers


async def test_a_captured_request_stops_working(real: BaseTestServer) -> None:
    """Replayed after SIGNATURE_WINDOW, or with another path, a signed request is refused."""
    import aiohttp

    old = signed_headers(TOKEN, "GET", "/v1/state", now=time.time() - SIGNATURE_WINDOW - 5)
    fresh = signed_headers(TOKEN, "GET", "/v1/other")
    async with aiohttp.ClientSession() as session:
        for headers in (old, fresh):
            async with session.get(real.make_url("/v1/state"), headers=headers) as response:
                assert response.status == 401


async def test_calls_are_private_on_the_wire_and_only_the_pinned_key_is_talked_to(
    tmp_path: Path, unused_tcp_port: int
) -> None:
    """TLS between roles: the client pins the server role's own certificate. A server with any
    other key (an impostor that also speaks TLS) is not talked to: no request, signed or not,
    reaches it, and the call goes to the real peer."""
    (real_pem, real_cert), (other_pem, _) = new_pair("interlock core"), new_pair("impostor")
    (tmp_path / "real.pem").write_bytes(real_pem)
    (tmp_path / "other.pem").write_bytes(other_pem)
    (tmp_path / "peer-cert.pem").write_bytes(real_cert)
    seen: list[str] = []

    async def anything(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.json_response({})

    real_app, impostor_app = web.Application(), web.Application()
    real_app.router.add_get("/v1/state", require_token(TOKEN, state))
    impostor_app.router.add_get("/v1/state", anything)
    real_runner, impostor_runner = web.AppRunner(real_app), web.AppRunner(impostor_app)
    await real_runner.setup()
    await impostor_runner.setup()
    try:
        tls = server_context(tmp_path / "real.pem")
        await web.TCPSite(real_runner, "127.0.0.1", unused_tcp_port, ssl_context=tls).start()
        other = server_context(tmp_path / "other.pem")
        await web.TCPSite(impostor_runner, "127.0.0.2", unused_tcp_port, ssl_context=other).start()
        client = TwoAddresses(f"http://peer.test:{unused_tcp_port}", TOKEN, peer_cert=tmp_path / "peer-cert.pem")
        try:
            assert await client.get("/v1/state") == (200, b'{"config": "from the real core"}')
        finally:
            await client.close()
        plain = PeerClient(f"http://127.0.0.1:{unused_tcp_port}", TOKEN)
        try:
            with pytest.raises(PeerUnavailable):
                await plain.get("/v1/state")  # no plain-text answer from a TLS role
        finally:
            await plain.close()
    finally:
        await real_runner.cleanup()
        await impostor_runner.cleanup()
    assert seen == []


async def test_a_captured_request_replayed_within_the_window_is_refused(real: BaseTestServer) -> None:
    import aiohttp

    headers = signed_headers(TOKEN, "GET", "/v1/state")
    async with aiohttp.ClientSession() as session:
        statuses = []
        for _ in range(2):
            async with session.get(real.make_url("/v1/state"), headers=headers) as response:
                statuses.append(response.status)
    assert statuses == [200, 401]


async def test_a_body_over_the_endpoints_limit_is_a_signed_413_naming_it_and_never_read() -> None:
    taken: list[bytes] = []

    async def note(request: web.Request) -> web.Response:
        taken.append(request_body(request))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/v1/note", require_token(TOKEN, note, max_body=1000))
    async with TestServer(app) as server:
        client = PeerClient(str(server.make_url("")), TOKEN)
        try:
            assert await client.post("/v1/note", b"x" * 1000) == (200, b'{"ok": true}')
            status, body = await client.post("/v1/note", b"x" * 1001)
        finally:
            await client.close()
    assert status == 413 and b"larger than this endpoint takes (1000 bytes)" in body
    assert taken == [b"x" * 1000]


def test_the_replay_guard_forgets_nonces_after_the_window_and_past_its_capacity() -> None:
    guard = ReplayGuard(capacity=3)
    assert guard.first_use("a", now=0) and not guard.first_use("a", now=1)
    assert guard.first_use("b", now=2 * SIGNATURE_WINDOW + 1), "a's window is over"
    assert guard.first_use("a", now=2 * SIGNATURE_WINDOW + 2), "forgotten with its window"
    for nonce in "cdef":
        guard.first_use(nonce, now=2 * SIGNATURE_WINDOW + 3)
    assert len(guard._seen) == 3
