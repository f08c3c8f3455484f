"""Every stack file of docs/STACKS.md, deployed as its reader would deploy it (`docker stack
deploy -c FILE shop`, with the secret files beside it), checked through the published ports:
hosts and context roots, TLS from stack secrets and passthrough, a canary, sticky sessions,
websockets, host-mode publishing, a service cluster, basic and forward authentication. The
stacks use the network the e2e proxies are fixed on (as docs/STACKS.md says for such proxies),
so no proxy restarts; `docker stack rm` at the end. And a stack whose network a proxy joined,
removed with nothing left behind."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.clients import SNIConnection, served_fingerprint
from tests.e2e.swarm import (
    EAST_HTTP,
    HTTP,
    HTTPS,
    INTERLOCK,
    get,
    lb,
    poll,
    routed,
    secret_removed,
    service,
    settled,
    sh,
    unique,
)

pytestmark = pytest.mark.usefixtures("interlock")

STACKS = Path(__file__).parents[2] / "docs" / "STACKS.md"
STACK = "shop"


def stack_files() -> list[str]:
    """The page's stack files, their network `apps` made the external network the e2e proxies
    are fixed on (Networks in tests/e2e/interlock.toml), as the page says to do for such proxies."""
    files = re.findall(r"```yaml\n(.*?)```", STACKS.read_text(), re.S)
    fixed = "  apps:\n    external: true\n    name: e2e-a\n"
    return [text.replace("  apps:\n    driver: overlay\n", fixed) for text in files]


def self_signed(directory: Path, name: str, host: str) -> str:
    """`name`.crt and `name`.key for `host` in `directory`; the certificate's SHA-256."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    sh(
        *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
        *("-days", "2", "-subj", f"/CN={host}", "-addext", f"subjectAltName=DNS:{host}"),
        *("-keyout", str(key), "-out", str(cert)),
    )
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    return hashlib.sha256(der).hexdigest()


def https_status(host: str) -> int:
    connection = SNIConnection(host, HTTPS)
    try:
        connection.request("GET", "/", headers={"Host": host})
        return connection.getresponse().status
    finally:
        connection.close()


def upgraded(host: str, path: str) -> bool | None:
    """Whether a websocket handshake through the proxy gets 101 Switching Protocols."""
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", HTTP), timeout=5) as conn:
        conn.sendall(request.encode())
        return conn.recv(64).startswith(b"HTTP/1.1 101") or None


@pytest.fixture
def deployed(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Every file of docs/STACKS.md deployed as the stack `shop`; the certificates' SHA-256."""
    fingerprints = {
        "secure": self_signed(tmp_path, "secure", "secure.example.com"),
        "vault": self_signed(tmp_path, "vault", "vault.example.com"),
    }
    (tmp_path / "admin.htpasswd").write_text(
        "alice:$2y$05$abcdefghijklmnopqrstuuOQiyCxlgf/oeuTqixKmWdcYUh4Hjl0a\n"  # password: secret
    )
    try:
        for index, text in enumerate(stack_files()):
            path = tmp_path / f"stack{index}.yml"
            path.write_text(text)
            sh("docker", "stack", "deploy", "--compose-file", str(path), STACK, timeout=180)
        yield fingerprints
    finally:
        sh("docker", "stack", "rm", STACK, check=False)
        poll(
            lambda: (
                not sh("docker", "service", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={STACK}").strip()
                or None
            ),
            what="the stack's services gone",
            timeout=120,
        )
        for secret in sh(
            "docker", "secret", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={STACK}"
        ).split():
            # The core lets go of the secrets the stack's labels named (a task replacement later).
            poll(lambda secret=secret: secret_removed(secret), what=f"secret {secret} removed", timeout=120)  # type: ignore[misc]


def test_every_stack_file_of_the_docs_serves_through_the_proxy(deployed: dict[str, str]) -> None:
    poll(routed("shop.example.com"), what="shop.example.com", timeout=180)
    # Until `api` is routed, `web` (the host's root) answers /api/orders itself, unrewritten.
    poll(
        lambda: get("shop.example.com", "/api/orders").json().get("path") == "/orders" or None,
        what="/api/orders served by api, rewritten to /orders",
    )

    poll(
        lambda: served_fingerprint("secure.example.com", HTTPS) == deployed["secure"] or None,
        what="secure's certificate",
        timeout=120,
    )
    # The certificate and the route travel apart (certificates on their own channel): the route
    # may follow the certificate by a moment.
    poll(lambda: https_status("secure.example.com") == 200 or None, what="secure over HTTPS", timeout=60)
    assert get("secure.example.com").status_code in (301, 302, 308), "ssl_only sends HTTP to HTTPS"
    poll(
        lambda: served_fingerprint("vault.example.com", HTTPS) == deployed["vault"] or None,
        what="vault passed through",
        timeout=120,
    )

    poll(
        # Before both services are routed an answer may be a 503 without the header: not yet.
        lambda: (
            len({get("checkout.example.com").headers.get("x-upstream-addr") for _ in range(20)} - {None}) == 3 or None
        ),
        what="checkout's three tasks, v1 and v2",
        timeout=120,
    )
    # Both of cart's tasks routed first: a task joining later may take over a cookie's clients.
    poll(
        lambda: len({get("cart.example.com").headers.get("x-upstream-addr") for _ in range(12)} - {None}) == 2 or None,
        what="cart's two tasks",
        timeout=120,
    )
    settled()
    pinned = {get("cart.example.com", headers={"Cookie": "session=one"}).headers["x-upstream-addr"] for _ in range(8)}
    assert len(pinned) == 1, pinned
    poll(lambda: upgraded("chat.example.com", "/ws"), what="chat's websocket", timeout=120)

    poll(routed("edge.example.com"), what="edge, published in host mode", timeout=120)
    poll(routed("reports.example.com", port=EAST_HTTP), what="reports on the east cluster", timeout=120)
    assert get("reports.example.com").status_code == 503, "not routed by the default cluster"

    poll(routed("admin.example.com", status=401), what="admin asks for a user", timeout=120)
    assert get("admin.example.com", auth=("alice", "secret")).status_code == 200
    poll(routed("orders.example.com", status=302), what="orders asks the sso service", timeout=120)
    allowed = get("orders.example.com", headers={"Authorization": "Bearer demo-token"})
    assert allowed.status_code == 200 and allowed.json()["headers"]["X-Auth-User"] == "alice"


REMOVABLE = """
services:
  reports:
    image: interlock:0.1.0
    command: demo-app
    networks: [apps]
    deploy:
      labels:
        com.docker.lb.hosts: {host}
        com.docker.lb.port: "8080"
        com.docker.lb.service_cluster: east
networks:
  apps:
    driver: overlay
"""


def network_exists(name: str) -> bool:
    return subprocess.run(["docker", "network", "inspect", name], capture_output=True, check=False).returncode == 0


def test_docker_stack_rm_leaves_no_network_behind(tmp_path: Path) -> None:
    """The east cluster's proxy joins the stack's own network (it has no fixed Networks), so
    `docker stack rm` cannot remove that network at once; the core does, once it has taken its
    proxy off it."""
    stack = unique("gone")
    host = f"{stack}.example.com"
    (tmp_path / "stack.yml").write_text(REMOVABLE.format(host=host))
    sh("docker", "stack", "deploy", "--compose-file", str(tmp_path / "stack.yml"), stack, timeout=180)
    try:
        poll(routed(host, port=EAST_HTTP), what=f"{host} on the east cluster", timeout=180)
    finally:
        sh("docker", "stack", "rm", stack, check=False)
    poll(lambda: not network_exists(f"{stack}_apps") or None, what=f"network {stack}_apps removed", timeout=180)
    spec = sh("docker", "service", "inspect", "-f", "{{json .Spec.TaskTemplate.Networks}}", "interlock-proxy-east")
    assert f"{stack}_apps" not in spec


def test_lint_against_the_swarm_finds_a_host_a_live_service_already_routes(tmp_path: Path) -> None:
    """`interlock lint --against-swarm`: the file's service would join a host a running service
    routes with other options, which only the live swarm can show."""
    name = unique("live")
    host = f"{name}.example.com"
    labels = lb(hosts=host, port="8080", sticky_session_cookie="session")
    stack = tmp_path / "stack.yml"
    stack.write_text(REMOVABLE.format(host=host).replace("        com.docker.lb.service_cluster: east\n", ""))
    with service(name, labels=labels):
        poll(routed(host), what=f"{host} routed", timeout=120)
        offline = subprocess.run(
            [INTERLOCK, "lint", "--stack", "shop", str(stack)], capture_output=True, text=True, check=False
        )
        assert offline.returncode == 0, offline.stdout + offline.stderr
        live = subprocess.run(
            [INTERLOCK, "lint", "--stack", "shop", "--against-swarm", "--json", str(stack)],
            capture_output=True,
            text=True,
            check=False,
        )
    assert live.returncode == 1, live.stdout + live.stderr
    assert any(
        p["service"] == "shop_reports" and f"is already routed by service {name} (older) with other" in p["reason"]
        for p in json.loads(live.stdout)
    ), live.stdout
