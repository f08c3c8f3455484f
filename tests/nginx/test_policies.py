"""Per-service policies on a real proxy of each kind, through its HTTP port on loopback: basic
authentication answers 401 until a user gives its password (bcrypt, apr1, SHA-crypt), an
allow-list answers 403 to a client outside it, a rate limit 429 with Retry-After past the burst
and 200 again in the next window, request headers reach the task (an empty value removes one),
response headers reach the client, CORS answers a preflight itself and marks allowed answers.
On nginx a policy change is applied without a reload, as any routing change."""

from __future__ import annotations

import base64
import ctypes
import http.client
import json
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from interlock.wire.certificates import CertificateBundle, Credentials
from tests.nginx.either_kind import HTTP, LoopbackProxy, free_port, loopback_routing, start_backend

pytestmark = pytest.mark.nginx


def ask(host: str, method: str = "GET", headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", HTTP, timeout=5)
    connection.request(method, "/", headers={"Host": host, **(headers or {})})
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def answered_within(host: str, status: int, seconds: float, interval: float) -> bool:
    """Whether `host` answers `status` within `seconds`, asked every `interval` seconds (a
    client that waits as Retry-After says)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ask(host).status == status:
            return True
        time.sleep(interval)
    return False


def seen_by_task(host: str, headers: dict[str, str]) -> dict[str, str]:
    """The request headers the task received (the test backend echoes them)."""
    connection = http.client.HTTPConnection("127.0.0.1", HTTP, timeout=5)
    connection.request("GET", "/", headers={"Host": host, **headers})
    body = json.loads(connection.getresponse().read())
    connection.close()
    return {k.lower(): v for k, v in body["headers"].items()}


def services(backend: int, **shop: str) -> dict[str, dict[str, str]]:
    return {
        "shop": {"hosts": "shop.local", "port": str(backend), **shop},
        "plain": {"hosts": "plain.local", "port": str(backend)},
    }


async def test_an_allow_list_refuses_other_clients_and_changes_without_a_reload(
    proxy: LoopbackProxy, backend: int
) -> None:
    await proxy.route(loopback_routing(services(backend, allow_ips="10.0.0.0/8,2001:db8::/32")))
    assert ask("shop.local").status == 403
    assert ask("plain.local").status == 200, "another service is not touched"
    reloads = proxy.control.reloads
    await proxy.route(loopback_routing(services(backend, allow_ips="10.0.0.0/8,127.0.0.0/8")))
    assert ask("shop.local").status == 200
    if proxy.kind == "nginx":
        assert proxy.control.reloads == reloads, "a policy change is a routing change: no reload"


async def test_a_rate_limit_answers_429_past_the_burst_and_200_in_the_next_window(
    proxy: LoopbackProxy, backend: int
) -> None:
    await proxy.route(loopback_routing(services(backend, rate_limit="2/s")))
    # Five at once: however the second boundary splits them, one window gets a third.
    answers = [ask("shop.local") for _ in range(5)]
    refused = [a for a in answers if a.status == 429]
    assert refused, [a.status for a in answers]
    assert int(refused[0].headers["Retry-After"]) >= 1
    assert ask("plain.local").status == 200, "another service is not limited"
    wait = int(refused[0].headers["Retry-After"])
    assert answered_within("shop.local", 200, 10, wait), "200 again once the client waited as told"


async def test_request_and_response_headers(proxy: LoopbackProxy, backend: int) -> None:
    labels = {
        "request_headers": "X-Tenant: blue; X-Debug:",
        "response_headers": "X-Frame-Options: DENY; X-Backend-Task:",
    }
    await proxy.route(loopback_routing(services(backend, **labels)))
    seen = seen_by_task("shop.local", {"X-Debug": "1", "X-Tenant": "red"})
    assert seen["x-tenant"] == "blue"
    assert "x-debug" not in seen
    answer = ask("shop.local")
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert answer.headers.get("X-Backend-Task") is None, "an empty value removes the task's header"
    assert ask("plain.local").headers.get("X-Backend-Task"), "another service's answers keep it"


async def test_cors_preflight_and_simple_requests(proxy: LoopbackProxy, backend: int) -> None:
    await proxy.route(loopback_routing(services(backend, cors_origins="https://app.example.com")))
    preflight = ask(
        "shop.local",
        "OPTIONS",
        {
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "PUT",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    assert "PUT" in preflight.headers["Access-Control-Allow-Methods"]
    assert "content-type" in preflight.headers["Access-Control-Allow-Headers"].lower()
    simple = ask("shop.local", headers={"Origin": "https://app.example.com"})
    assert simple.status == 200
    assert simple.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
    stranger = ask("shop.local", headers={"Origin": "https://evil.example"})
    assert stranger.status == 200 and stranger.headers.get("Access-Control-Allow-Origin") is None


async def test_behind_a_trusted_proxy_the_client_is_the_one_it_forwarded(proxy: LoopbackProxy, backend: int) -> None:
    proxy.ext = proxy.ext.model_copy(
        update={"config": proxy.ext.config.model_copy(update={"trusted_proxies": ("127.0.0.0/8",)})}
    )
    await proxy.route(loopback_routing(services(backend, allow_ips="192.0.2.0/24")))
    assert ask("shop.local", headers={"X-Forwarded-For": "198.51.100.1, 192.0.2.7"}).status == 200
    assert ask("shop.local").status == 403, "without the header: the connection's own address"
    assert ask("shop.local", headers={"X-Forwarded-For": "198.51.100.1"}).status == 403


async def test_retries_reach_a_healthy_task_while_another_answers_503(proxy: LoopbackProxy, backend: int) -> None:
    port, failing = start_backend("failing", status=503)
    try:

        def canary(retries: str) -> dict[str, dict[str, str]]:
            # Two services on one host and path (Interlock's canary rule): one of them fails,
            # and is never set aside for failing (max_fails 0), so only retries hide it.
            both = {"hosts": "shop.local", "retries": retries, "max_fails": "0"}
            return {"shop": {**both, "port": str(backend)}, "shop-canary": {**both, "port": str(port)}}

        await proxy.route(loopback_routing(canary("2")))
        assert [ask("shop.local").status for _ in range(12)] == [200] * 12
        assert 503 in [ask("shop.local", "POST").status for _ in range(12)], "a POST is not idempotent: not retried"
        await proxy.route(loopback_routing(canary("0")))
        assert 503 in [ask("shop.local").status for _ in range(12)], "without retries the failing task answers"
    finally:
        failing.terminate()
        failing.wait(timeout=10)


async def test_tasks_that_refuse_connections_cost_no_request_while_one_task_answers(
    proxy: LoopbackProxy, backend: int
) -> None:
    """A task Swarm runs that this proxy cannot reach yet (or one just gone) fails at connect,
    before the request is sent: the proxy tries the next task, past the default retries and for a
    POST too, until one answers. Here four of five tasks of a host refuse every connection."""
    refusing = {f"shop-{n}": {"hosts": "shop.local", "port": str(free_port())} for n in range(4)}
    await proxy.route(loopback_routing({**refusing, "shop": {"hosts": "shop.local", "port": str(backend)}}))
    answers = [ask("shop.local", method).status for _ in range(10) for method in ("GET", "POST")]
    assert answers == [200] * 20


def crypt(password: str, setting: str) -> str:
    """A hash as htpasswd would write it: bcrypt and SHA-crypt from the C library, apr1 from
    openssl (the C library has no apr1; nginx's Lua computes it itself)."""
    if setting.startswith("$apr1$"):
        salt = setting.split("$")[2]
        command = ["openssl", "passwd", "-apr1", "-salt", salt, password]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()
    libcrypt = ctypes.CDLL("libcrypt.so.1")
    libcrypt.crypt.restype = ctypes.c_char_p
    hashed: bytes = libcrypt.crypt(password.encode(), setting.encode())
    return hashed.decode()


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def test_basic_auth_lets_through_only_a_user_with_its_password(
    proxy: LoopbackProxy, backend: int, tmp_path: Path
) -> None:
    users = (
        f"alice:{crypt('wonder land', '$2b$05$abcdefghijklmnopqrstuu')}",
        f"bob:{crypt('builder', '$apr1$Zq1pW8.x$')}",
        f"carol:{crypt('s3cret:with:colons', '$6$saltsalt$')}",
    )
    await proxy.control.update_certificates(CertificateBundle("", credentials=(Credentials.of("members", users),)))
    await proxy.route(loopback_routing(services(backend, auth_basic="members", auth_basic_realm="Members only")))
    if proxy.kind == "haproxy":
        # Refused on HAProxy by the core; a backend that names it anyway lets nobody through.
        assert ask("shop.local", headers=basic("alice", "wonder land")).status == 503
        return
    refused = ask("shop.local")
    assert refused.status == 401
    assert refused.headers["WWW-Authenticate"] == 'Basic realm="Members only", charset="UTF-8"'
    for user, password in (("alice", "wonder land"), ("bob", "builder"), ("carol", "s3cret:with:colons")):
        assert ask("shop.local", headers=basic(user, password)).status == 200, user
        assert ask("shop.local", headers=basic(user, password)).status == 200, f"{user}, remembered"
        assert ask("shop.local", headers=basic(user, password + "x")).status == 401, f"{user}, wrong password"
    assert ask("shop.local", headers=basic("mallory", "builder")).status == 401
    assert ask("shop.local", headers={"Authorization": "Bearer builder"}).status == 401
    assert ask("plain.local").status == 200, "another service asks for nothing"
    # Other users: a new secret, the label pointed at it; applied without a reload.
    reloads = proxy.control.reloads
    newer = CertificateBundle("", credentials=(Credentials.of("members-v2", users[:1]),))
    await proxy.control.update_certificates(newer)
    await proxy.route(loopback_routing(services(backend, auth_basic="members-v2")))
    assert ask("shop.local", headers=basic("bob", "builder")).status == 401, "bob is no longer a user"
    assert ask("shop.local", headers=basic("alice", "wonder land")).status == 200
    assert ask("shop.local").headers["WWW-Authenticate"] == 'Basic realm="shop", charset="UTF-8"'
    assert proxy.control.reloads == reloads


async def test_basic_auth_before_the_users_arrive_lets_nobody_through(proxy: LoopbackProxy, backend: int) -> None:
    await proxy.route(loopback_routing(services(backend, auth_basic="not-sent-yet")))
    answer = ask("shop.local", headers=basic("alice", "wonder land"))
    assert answer.status == 503


@pytest.fixture(scope="module")
def auth_service() -> Iterator[int]:
    """An auth service on loopback: `Bearer good` passes as alice, anything else is sent to /login."""
    port, proc = start_backend("auth", BACKEND_AUTH_TOKEN="good")
    yield port
    proc.terminate()
    proc.wait(10)


def asked(host: str, path: str, headers: dict[str, str], method: str = "GET", body: bytes | None = None) -> Answer:
    connection = http.client.HTTPConnection("127.0.0.1", HTTP, timeout=5)
    connection.request(method, path, body=body, headers={"Host": host, **headers})
    response = connection.getresponse()
    answer = Answer(response.status, response.headers, response.read())
    connection.close()
    return answer


@dataclass
class Answer:
    status: int
    headers: Message
    body: bytes

    def json(self) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.body)
        return found


async def test_forward_auth_lets_through_what_the_auth_service_allows_with_its_headers(
    proxy: LoopbackProxy, backend: int, auth_service: int
) -> None:
    labels = {
        "forward_auth": f"http://authsvc:{auth_service}/check?from=proxy",
        "forward_auth_headers": "Authorization,X-Tenant",
        "forward_auth_response_headers": "X-Auth-User",
    }
    routing = loopback_routing({**services(backend, **labels), "authsvc": {}})
    await proxy.route(routing)
    if proxy.kind == "haproxy":
        # Refused on HAProxy by the core; a backend that names it anyway lets nobody through.
        assert asked("shop.local", "/", {"Authorization": "Bearer good"}).status == 503
        return
    denied = asked("shop.local", "/cart?item=1", {"Cookie": "session=s", "X-Tenant": "blue", "X-User": "mallory"})
    assert denied.status == 302, "the auth service's answer is the client's"
    assert denied.headers["Location"] == "/login" and "asked=1" in denied.headers["Set-Cookie"]
    seen = {k.lower(): v for k, v in denied.json()["headers"].items()}
    assert denied.json()["path"] == "/check?from=proxy"
    assert seen["x-forwarded-method"] == "GET" and seen["x-forwarded-uri"] == "/cart?item=1"
    assert seen["x-forwarded-host"] == "shop.local" and seen["x-forwarded-proto"] == "http"
    assert seen["x-tenant"] == "blue", "a header the label names goes to the auth service"
    assert "cookie" not in seen and "x-user" not in seen, "no other client header does"
    allowed = asked("shop.local", "/cart", {"Authorization": "Bearer good", "X-User": "mallory"})
    assert allowed.status == 200 and allowed.json()["task"] == "first"
    at_task = {k.lower(): v for k, v in allowed.json()["headers"].items()}
    assert at_task["x-auth-user"] == "alice", "the answer's named header reaches the task"
    assert "x-auth-other" not in at_task
    assert at_task.get("x-user") == "mallory", "headers the label does not take are the client's"
    spoofed = asked("shop.local", "/", {"Authorization": "Bearer good", "X-Auth-User": "root"})
    assert spoofed.json()["headers"].get("X-Auth-User") == "alice", "a client cannot set a taken header"
    posted = asked("shop.local", "/order", {"Authorization": "Bearer good"}, "POST", b'{"n": 1}')
    assert posted.status == 200 and posted.json()["method"] == "POST"
    assert asked("plain.local", "/", {}).status == 200, "another service asks no one"
    # However many headers a client sends, none it was not asked for reaches the auth service.
    many = {f"X-Filler-{i}": "1" for i in range(250)} | {"X-Secret-Last": "leak"}
    flooded = {k.lower() for k in asked("shop.local", "/", many).json()["headers"]}
    assert not any(name.startswith(("x-filler", "x-secret")) for name in flooded), sorted(flooded)[:5]
