"""TLS on a real swarm: terminated by SNI with certificates from Docker secrets, passed through
untouched, and spoken to the tasks (spec §6 items 48-54)."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tests.e2e.swarm import (
    HTTP,
    HTTPS,
    INTERLOCK,
    Cluster,
    get,
    lb,
    poll,
    routed,
    service,
    settled,
    sh,
    unique,
    until_routed,
)

pytestmark = pytest.mark.usefixtures("interlock")


def curl_tls(
    host: str, path: str = "/", *, port: int = HTTPS, ca: str | None = None
) -> tuple[int, str, str, dict[str, str]]:
    """curl over TLS with SNI `host` to 127.0.0.1: (status, body, server certificate subject, headers)."""
    args = ["curl", "-sS", "-v", "--resolve", f"{host}:{port}:127.0.0.1", "-D", "-", "-o", "/dev/stderr"]
    args += ["--cacert", ca] if ca else ["--insecure"]
    proc = subprocess.run(
        [*args, f"https://{host}:{port}{path}"], capture_output=True, text=True, timeout=15, check=False
    )
    if proc.returncode != 0:
        raise AssertionError(f"curl failed ({proc.returncode}): {proc.stderr[-500:]}")
    header_lines = proc.stdout.splitlines()
    status = int(header_lines[0].split()[1])
    headers = {
        k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines[1:] if ":" in line)
    }
    subject = next(
        (line.split("subject:", 1)[1].strip() for line in proc.stderr.splitlines() if "subject:" in line), ""
    )
    body = proc.stderr.rsplit("\n", 1)[-1] if proc.stderr else ""
    return status, body, subject, headers


def answered(
    result: tuple[int, str, str, dict[str, str]],
) -> tuple[int, str, str, dict[str, str]] | None:
    """`curl_tls`'s result once the host is routed (not the proxy's 503 for an unknown host)."""
    return result if result[0] != 503 else None


def test_tls_terminated_by_sni_with_two_certificates(certificates: dict[str, str], cluster: Cluster) -> None:
    name = unique("tls")
    https = cluster.https
    with (
        service(
            f"{name}-a",
            labels=lb(
                hosts="a.tls.local",
                port="8080",
                ssl_cert=certificates["a.tls.local.crt"],
                ssl_key=certificates["a.tls.local.key"],
            )
            | cluster.labels,
        ),
        service(
            f"{name}-b",
            labels=lb(
                hosts="b.tls.local",
                port="8080",
                ssl_cert=certificates["b.tls.local.crt"],
                ssl_key=certificates["b.tls.local.key"],
                ssl_only="true",
            )
            | cluster.labels,
        ),
    ):
        # The certificate may come before the route (the core sends them on their own way):
        # until then the handshake works and the host is unknown (503).
        status, body, subject, headers = poll(
            lambda: answered(curl_tls("a.tls.local", port=https, ca=certificates["a.tls.local.path"])),
            what="a.tls.local over TLS",
            timeout=90,
        )
        assert status == 200 and "CN=a.tls.local" in subject
        assert "x-upstream-addr" in headers
        status, body, subject, _ = poll(
            lambda: answered(curl_tls("b.tls.local", port=https, ca=certificates["b.tls.local.path"])),
            what="b.tls.local over TLS",
            timeout=90,
        )
        assert status == 200 and "CN=b.tls.local" in subject
        settled(https)
        # The task gets plain HTTP with the client's address and the scheme it came in on.
        forwarded = json.loads(body)["headers"]
        assert forwarded["X-Forwarded-Proto"] == "https"
        assert forwarded["X-Real-IP"] not in ("127.0.0.1", "")
        # ssl_only: plain HTTP is redirected to https on the published TLS port.
        redirect = get("b.tls.local", "/x?y=1", port=cluster.http)
        assert redirect.status_code == 302
        assert redirect.headers["Location"] == f"https://b.tls.local:{https}/x?y=1"
        assert get("a.tls.local", port=cluster.http).status_code == 200
        # An unknown name gets no certificate at all.
        with pytest.raises(AssertionError, match="curl failed"):
            curl_tls("unknown.tls.local", port=https)


def tls_app(name: str, labels: dict[str, str], cert_host: str, certificates: dict[str, str]) -> Any:
    """A demo-app service terminating TLS itself on 8443 with `cert_host`'s certificate (secrets)."""
    secrets = (
        "--secret",
        f"source={certificates[f'{cert_host}.crt']},target=app.crt",
        "--secret",
        f"source={certificates[f'{cert_host}.key']},target=app.key",
    )
    listening = "python3 -c \"import socket; socket.create_connection(('127.0.0.1', 8443), 1)\""
    return service(
        name,
        labels=labels,
        args=("--port", "8443", "--tls-cert", "/run/secrets/app.crt", "--tls-key", "/run/secrets/app.key"),
        extra=("--health-cmd", listening, *secrets),
    )


def test_tls_passthrough_client_sees_the_apps_certificate(certificates: dict[str, str], cluster: Cluster) -> None:
    name = unique("pt")
    labels = lb(hosts="pt.local", port="8443", ssl_passthrough="true") | cluster.labels
    with tls_app(name, labels, "pt.local", certificates):
        status, body, subject, headers = poll(
            lambda: curl_tls("pt.local", port=cluster.https, ca=certificates["pt.local.path"]),
            what="passthrough",
            timeout=90,
        )
        assert status == 200
        assert "CN=pt.local" in subject
        assert json.loads(body)["scheme"] == "https", "the app itself terminated TLS"
        assert not any(h.startswith("x-upstream") or h == "x-request-id" for h in headers), headers
        settled(cluster.https)
        redirect = get("pt.local", "/x", port=cluster.http)
        assert redirect.status_code == 302, "plain HTTP for a passthrough host is redirected to https"
        assert redirect.headers["Location"] == f"https://pt.local:{cluster.https}/x"


def test_ssl_backend_speaks_tls_to_the_tasks(certificates: dict[str, str], cluster: Cluster) -> None:
    name = unique("tlsbackend")
    host = f"{name}.local"
    with tls_app(name, lb(hosts=host, port="8443", ssl_backend="true") | cluster.labels, "backend.local", certificates):
        response = until_routed(host, port=cluster.http, what="ssl_backend routed", timeout=90)
        assert response.json()["scheme"] == "https"


def test_a_bad_certificate_secret_leaves_out_only_its_service(certificates: dict[str, str]) -> None:
    # The core reads the secret (it alone mounts certificate secrets) and finds it is no
    # certificate: it leaves that service out and every other change goes on.
    bad, good = unique("badcert"), unique("good")
    secret = f"not-a-cert-{bad}"
    subprocess.run(["docker", "secret", "create", secret, "-"], input=b"not a certificate\n", check=True)
    try:
        labels = lb(hosts=f"{bad}.local", port="8080", ssl_cert=secret, ssl_key=certificates["a.tls.local.key"])
        with service(bad, labels=labels), service(good, labels=lb(hosts=f"{good}.local", port="8080")):

            def refusal_reported() -> list[dict[str, str]]:
                # Before it (until the core's task that mounts the secret runs), none is said.
                problems = json.loads(sh(INTERLOCK, "problems", "--json"))
                return [p for p in problems if p["service"] == bad and p["severity"] == "error"]

            (problem,) = poll(refusal_reported, what="the refused secret reported as a problem", timeout=120)
            assert problem["label"] == "com.docker.lb.ssl_cert"
            assert f"cannot be loaded ('{secret}' is not a PEM certificate" in problem["reason"]
            until_routed(f"{good}.local", what="the other service routed")
            poll(routed(f"{bad}.local", status=503), what=f"{bad}.local answered 503", timeout=60)
            proxies = settled(HTTP)["proxies"]
            assert all(p["ok"] for p in proxies), proxies
            poll(routed(f"{bad}.local", status=503), what=f"{bad}.local still 503 once settled", timeout=30)
            poll(routed(f"{good}.local"), what=f"{good}.local still routed once settled", timeout=30)
    finally:
        subprocess.run(["docker", "secret", "rm", secret], capture_output=True, check=False)


def test_naming_a_victims_key_beside_another_certificate_leaves_only_the_attacker_out(
    certificates: dict[str, str],
) -> None:
    """A label author names another tenant's key secret beside a certificate it does not fit:
    the core refuses that pair, leaves out the attacker's service alone, and the victim's TLS
    host is served before, during and after, also once the attacker is gone."""
    victim, attacker = unique("victim"), unique("attacker")
    victim_labels = lb(
        hosts="a.tls.local",
        port="8080",
        ssl_cert=certificates["a.tls.local.crt"],
        ssl_key=certificates["a.tls.local.key"],
    )
    attack = lb(
        hosts=f"{attacker}.local",
        port="8080",
        ssl_cert=certificates["b.tls.local.crt"],
        ssl_key=certificates["a.tls.local.key"],
    )

    def victim_served() -> bool | None:
        try:
            status, _, subject, _ = curl_tls("a.tls.local", ca=certificates["a.tls.local.path"])
        except AssertionError:
            return None
        return True if status == 200 and "a.tls.local" in subject else None

    with service(victim, labels=victim_labels):
        poll(victim_served, what="the victim's TLS host served", timeout=120)
        with service(attacker, labels=attack):

            def attacker_left_out() -> list[dict[str, str]]:
                problems = json.loads(sh(INTERLOCK, "problems", "--json"))
                return [p for p in problems if p["service"] == attacker and p["severity"] == "error"]

            (problem,) = poll(attacker_left_out, what="the attacker's pair refused", timeout=120)
            assert problem["label"] == "com.docker.lb.ssl_key", problem
            assert not [p for p in json.loads(sh(INTERLOCK, "problems", "--json")) if p["service"] == victim]
            # The core restarts to mount the secrets the attacker named (then lets them go), and
            # the proxies report to the new core: on a busy machine that took more than 60 s once.
            settled(HTTP, timeout=120)
            poll(victim_served, what="the victim still served beside the attacker", timeout=60)
        poll(
            lambda: (
                not [p for p in json.loads(sh(INTERLOCK, "problems", "--json")) if p["service"] == attacker] or None
            ),
            what="the attacker's problem gone with it",
            timeout=60,
        )
        settled(HTTP, timeout=120)
        poll(victim_served, what="the victim served once the attacker is gone", timeout=60)
