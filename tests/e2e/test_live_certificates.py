"""Certificates without restarts, on both kinds: a TLS service with new secrets added, its
certificate rotated (a new secret, the label updated) and the service removed leave every proxy
task as it was, while a TLS client that never retries, on a keep-alive connection to another
TLS host, sees only 200s. The core alone mounts the secrets (Swarm replaces the core's task to
mount a new one) and sends the certificates to the proxies over the control channel."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.clients import NeverRetryingTLS, served_fingerprint
from tests.e2e.swarm import Cluster, lb, poll, secrets_removed_after, service, sh, unique

pytestmark = pytest.mark.usefixtures("interlock")

CLIENT_SECONDS = 400
CLIENT_REQUESTS = 150_000


def make_secret_pair(directory: Path, host: str, tag: str) -> tuple[str, str, str]:
    """A self-signed certificate for `host` and its key as Docker secrets: (cert secret, key
    secret, the certificate's SHA-256 fingerprint as openssl prints it)."""
    cert, key = directory / f"{tag}.crt", directory / f"{tag}.key"
    sh(
        *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
        *("-days", "2", "-subj", f"/CN={host}", "-addext", f"subjectAltName=DNS:{host}"),
        *("-keyout", str(key), "-out", str(cert)),
    )
    fingerprint = sh("openssl", "x509", "-in", str(cert), "-noout", "-fingerprint", "-sha256").split("=", 1)[1]
    names = (f"{tag}.crt", f"{tag}.key")
    for name, path in zip(names, (cert, key), strict=True):
        sh("docker", "secret", "create", name, str(path))
    return names[0], names[1], fingerprint.strip().replace(":", "").lower()


def proxy_tasks(cluster: Cluster) -> set[str]:
    name = cluster.labels.get("com.docker.lb.service_cluster", "")
    proxy = f"interlock-proxy-{name}" if name else "interlock-proxy"
    return set(sh("docker", "service", "ps", "-q", "--filter", "desired-state=running", proxy).split())


def test_certificates_come_rotate_and_go_without_a_proxy_restart_or_a_failed_request(
    cluster: Cluster, tmp_path: Path
) -> None:
    name = unique("live")
    steady_host, live_host = f"{name}-steady.local", f"{name}.local"
    steady = make_secret_pair(tmp_path, steady_host, f"{name}-steady")
    first = make_secret_pair(tmp_path, live_host, f"{name}-first")
    second = make_secret_pair(tmp_path, live_host, f"{name}-second")
    port = cluster.https
    with secrets_removed_after(*steady[:2], *first[:2], *second[:2]):
        steady_labels = lb(hosts=steady_host, port="8080", ssl_cert=steady[0], ssl_key=steady[1]) | cluster.labels
        with service(f"{name}-steady", labels=steady_labels):
            poll(
                lambda: served_fingerprint(steady_host, port) == steady[2] or None, what="the steady host", timeout=120
            )
            before = proxy_tasks(cluster)
            assert before
            with NeverRetryingTLS(steady_host, port, seconds=CLIENT_SECONDS, limit=CLIENT_REQUESTS) as client:
                live_labels = lb(hosts=live_host, port="8080", ssl_cert=first[0], ssl_key=first[1]) | cluster.labels
                with service(name, labels=live_labels):
                    poll(lambda: served_fingerprint(live_host, port) == first[2] or None, what="added", timeout=120)
                    sh(
                        *("docker", "service", "update", "-d", "--label-add"),
                        f"com.docker.lb.ssl_cert={second[0]}",
                        *("--label-add", f"com.docker.lb.ssl_key={second[1]}", name),
                    )
                    poll(lambda: served_fingerprint(live_host, port) == second[2] or None, what="rotated", timeout=120)
                poll(lambda: served_fingerprint(live_host, port) == "" or None, what="removed", timeout=120)
            after = proxy_tasks(cluster)
    assert after == before, "no proxy task was replaced"
    assert set(client.outcomes) == {"200"}, (
        f"a TLS client that never retries saw {dict(client.outcomes)}: {client.failures}"
    )
    assert client.outcomes["200"] > 200, client.outcomes
