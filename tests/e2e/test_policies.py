"""Per-service policies on the real swarm, both kinds, through the published port: basic and
forward authentication (nginx; refused with the reason on HAProxy), headers seen
by the task and by the client, a CORS preflight and a simple request, 429 past the rate limit's
burst and 200 once the client waited as told, 403 once the allow-list leaves the client out (a
label update, applied like any routing change), and a bad policy label excluding its service
alone, with the problem shown. The client reaches a host-mode proxy from the docker_gwbridge
gateway (172.16.0.0/12 here), which is the address the allow-list sees."""

from __future__ import annotations

import ctypes
import time
import uuid
from pathlib import Path

import pytest
import requests

from tests.e2e.swarm import (
    INTERLOCK,
    Cluster,
    get,
    lb,
    poll,
    routed,
    secrets_removed_after,
    service,
    service_log,
    settled,
    sh,
    task_history,
    task_ips,
    unique,
    until_routed,
)

pytestmark = pytest.mark.usefixtures("interlock")

EVERY_LOCAL_CLIENT = "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,127.0.0.0/8"


def preflight(host: str, port: int) -> requests.Response:
    headers = {
        "Host": host,
        "Origin": "https://app.example.com",
        "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "content-type",
    }
    return requests.options(f"http://127.0.0.1:{port}/", headers=headers, timeout=10, allow_redirects=False)


def test_headers_cors_rate_limit_and_allow_list_through_the_published_port(cluster: Cluster) -> None:
    name = unique("policy")
    host = f"{name}.local"
    labels = lb(
        hosts=host,
        port="8080",
        allow_ips=EVERY_LOCAL_CLIENT,
        rate_limit="3/s",
        request_headers="X-Tenant: blue; X-Debug:",
        response_headers="X-Frame-Options: DENY",
        cors_origins="https://app.example.com",
    )
    with service(name, labels=labels | cluster.labels):
        answer = until_routed(host, port=cluster.http, what=f"{host} routed")
        echoed = get(host, port=cluster.http, headers={"X-Debug": "1", "X-Tenant": "red"}).json()["headers"]
        seen = {name.lower(): value for name, value in echoed.items()}  # HAProxy sends names in lower case
        assert seen.get("x-tenant") == "blue" and "x-debug" not in seen, seen
        assert answer.headers["X-Frame-Options"] == "DENY"

        asked = preflight(host, cluster.http)
        assert asked.status_code == 204
        assert asked.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
        simple = get(host, port=cluster.http, headers={"Origin": "https://app.example.com"})
        assert simple.headers["Access-Control-Allow-Origin"] == "https://app.example.com"
        assert (
            "Access-Control-Allow-Origin"
            not in get(host, port=cluster.http, headers={"Origin": "https://x.example"}).headers
        )

        # Seven at once: however a window boundary splits them, one window gets a fourth.
        statuses = [get(host, port=cluster.http) for _ in range(7)]
        refused = [r for r in statuses if r.status_code == 429]
        assert refused, [r.status_code for r in statuses]
        wait = int(refused[0].headers["Retry-After"])

        def served_after_waiting() -> bool | None:
            time.sleep(wait)  # a client that waits as Retry-After says
            return get(host, port=cluster.http).status_code == 200 or None

        poll(served_after_waiting, what="200 once the client waited", timeout=15)

        sh("docker", "service", "update", "-d", "--quiet", "--label-add", "com.docker.lb.allow_ips=10.255.0.0/16", name)
        poll(
            lambda: get(host, port=cluster.http).status_code == 403 or None, what="403 from the allow-list", timeout=60
        )


def test_a_bad_policy_label_excludes_its_service_alone_with_the_problem_shown(cluster: Cluster) -> None:
    bad, good = unique("badpolicy"), unique("goodpolicy")
    with (
        service(
            bad, labels=lb(hosts=f"{bad}.local", port="8080", request_headers="Host: evil.example") | cluster.labels
        ),
        service(good, labels=lb(hosts=f"{good}.local", port="8080", response_headers="X-Ok: yes") | cluster.labels),
    ):
        assert until_routed(f"{good}.local", port=cluster.http, what="the good service").headers["X-Ok"] == "yes"

        def shown() -> str | None:
            out = sh(INTERLOCK, "problems", check=False)
            return out if bad in out and "request_headers" in out else None

        assert "kept by the proxy" in poll(shown, what="the problem of the bad label")
        assert get(f"{bad}.local", port=cluster.http).status_code == 503


def test_a_retried_get_reaches_a_healthy_task_while_another_answers_503(cluster: Cluster) -> None:
    stable, failing = unique("retried"), unique("failing")
    host = f"{stable}.local"
    # A canary on the same host and path whose task answers 503 and is never set aside (max_fails
    # 0): only the retries hide it.
    labels = lb(hosts=host, port="8080", retries="2", max_fails="0") | cluster.labels
    with (
        service(stable, labels=labels),
        service(failing, labels=labels, extra=("--env", "BACKEND_STATUS=503"), health_path="/health"),
    ):
        try:
            until_routed(host, port=cluster.http, what=f"{host} routed")
        except AssertionError as failed:
            # Once seen on HAProxy: both tasks answered 503 for a minute. What each task said.
            tasks = {name: task_history(name) for name in (stable, failing)}
            addresses = {name: task_ips(name, "e2e-a") for name in tasks}
            logs = {name: service_log(name, tail=30) for name in tasks}
            # Which task (or what else) gave the last answer: the body names its task.
            answer = get(host, port=cluster.http)
            seen = f"{answer.status_code} {dict(answer.headers)} {answer.text[:600]!r}"
            raise AssertionError(
                f"{failed}\ntasks: {tasks}\naddresses: {addresses}\nlast answer: {seen}\nlogs: {logs}"
            ) from None
        poll(lambda: failing in sh(INTERLOCK, "routes", check=False) or None, what="the failing canary routed too")
        settled(cluster.http)
        assert [get(host, port=cluster.http).status_code for _ in range(20)] == [200] * 20


def bcrypt(password: str) -> str:
    libcrypt = ctypes.CDLL("libcrypt.so.1")
    libcrypt.crypt.restype = ctypes.c_char_p
    hashed: bytes = libcrypt.crypt(password.encode(), b"$2b$05$" + uuid.uuid4().hex[:22].encode())
    return hashed.decode()


def test_basic_and_forward_authentication_through_the_published_port(cluster: Cluster, tmp_path: Path) -> None:
    """nginx: 401 with the realm until a user of the htpasswd secret gives its password; the auth
    service's 302 until it says yes, then its user header at the task. HAProxy: both refused,
    with the reason, and the services not routed."""
    name = unique("authn")
    users, sso = f"{name}-users", f"{name}-sso"
    (tmp_path / "htpasswd").write_text(f"alice:{bcrypt('wonder land')}\n")
    sh("docker", "secret", "create", users, str(tmp_path / "htpasswd"))
    basic_host, forward_host = f"{name}-basic.local", f"{name}-forward.local"
    basic_labels = lb(hosts=basic_host, port="8080", auth_basic=users, auth_basic_realm="E2E members")
    forward_labels = lb(
        hosts=forward_host,
        port="8080",
        forward_auth=f"http://{sso}:8080/check",
        forward_auth_headers="Authorization",
        forward_auth_response_headers="X-Auth-User",
    )
    alice = ("alice", "wonder land")
    with (
        secrets_removed_after(users),
        service(sso, extra=("--env", "BACKEND_AUTH_TOKEN=good"), health_path="/health"),
        service(f"{name}-basic", labels=basic_labels | cluster.labels),
        service(f"{name}-forward", labels=forward_labels | cluster.labels),
    ):
        if cluster.kind == "haproxy":

            def refused() -> str | None:
                out = sh(INTERLOCK, "problems", check=False)
                return out if out.count("built for nginx clusters only") >= 2 else None

            poll(refused, what="both services refused on HAProxy, with the reason", timeout=90)
            assert get(basic_host, port=cluster.http, auth=alice).status_code == 503, "not routed"
            return
        # 503 while the core mounts the secret and sends its users; never the task.
        asked = poll(
            routed(basic_host, port=cluster.http, status=401), what="401 from basic authentication", timeout=120
        )
        assert asked.headers["WWW-Authenticate"] == 'Basic realm="E2E members", charset="UTF-8"'
        assert get(basic_host, port=cluster.http, auth=("alice", "wrong")).status_code == 401
        assert get(basic_host, port=cluster.http, auth=alice).status_code == 200

        denied = poll(routed(forward_host, port=cluster.http, status=302), what="the auth service's 302", timeout=90)
        assert denied.headers["Location"] == "/login"
        assert denied.json()["headers"]["X-Forwarded-Host"] == forward_host
        allowed = get(forward_host, port=cluster.http, headers={"Authorization": "Bearer good", "X-Auth-User": "root"})
        assert allowed.status_code == 200 and allowed.json()["headers"]["X-Auth-User"] == "alice"
