"""Certificates on the real swarm, both kinds: a TLS service with new secrets created -> the
first TLS handshake presenting its certificate; its certificate rotated (a new secret, the label
updated) -> the first handshake presenting the new one; the service removed -> handshakes for
its name refused. Each next to the baseline measured in the same trial: the same service's
first 200 over plain HTTP (routing alone, no certificate).

A new certificate secret makes the core update its own service to mount it (Swarm replaces the
core's task: proxies mount none); "after the core started" is the part from the new core task's
`running` timestamp to the handshake: the core reading the secret, and the certificate's way to
every proxy. Proxy tasks replaced during the trials are counted (the goal: none). TLS clients go
to 127.0.0.1 only.

Usage: python bench/certificates.py [--trials 3]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from common import create_backend, dump, sh, summary, until

CLUSTERS = {"nginx": ("", 8080, 8443), "haproxy": ("hap", 7080, 7443)}
"""Kind -> (service cluster, HTTP port, TLS port) in tests/e2e/interlock.toml."""


def fingerprint_served(host: str, port: int) -> str:
    """SHA-256 of the certificate presented for SNI `host` ('' when the handshake fails)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=2) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            return hashlib.sha256(tls.getpeercert(binary_form=True) or b"").hexdigest()
    except OSError:
        return ""


def http_status(host: str, port: int) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/", headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def secret_pair(directory: Path, host: str, tag: str) -> tuple[str, str, str]:
    """(cert secret, key secret, SHA-256 of the certificate in DER) of a new self-signed pair."""
    cert, key = directory / f"{tag}.crt", directory / f"{tag}.key"
    sh(
        *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
        *("-days", "2", "-subj", f"/CN={host}", "-keyout", str(key), "-out", str(cert)),
    )
    der = sh("openssl", "x509", "-in", str(cert), "-noout", "-fingerprint", "-sha256").split("=", 1)[1]
    for name, path in ((f"{tag}.crt", cert), (f"{tag}.key", key)):
        sh("docker", "secret", "create", name, str(path))
    return f"{tag}.crt", f"{tag}.key", der.strip().replace(":", "").lower()


def removed(secret: str) -> bool:
    return sh("docker", "secret", "rm", secret, check=False).strip() == secret


def core_running_since() -> float:
    """When the core's current task started running."""
    ids = sh("docker", "service", "ps", "-q", "--filter", "desired-state=running", "interlock").split()
    task = json.loads(sh("docker", "inspect", *ids))[0]
    stamp = task["Status"]["Timestamp"][:26].rstrip("Z")
    return datetime.datetime.fromisoformat(stamp).replace(tzinfo=datetime.UTC).timestamp()


def core_saw(cluster: str) -> float:
    """When the running core task first published cluster `cluster`'s certificates: its log
    line `cluster 'NAME': certificates TAG`, by Docker's timestamp (from its container on this
    node: `docker service logs` lags behind a task just started)."""
    task = sh("docker", "service", "ps", "-q", "--no-trunc", "--filter", "desired-state=running", "interlock").split()[
        0
    ]
    container = sh("docker", "ps", "-q", "--filter", f"label=com.docker.swarm.task.id={task}").split()[0]
    logs = subprocess.run(["docker", "logs", "--timestamps", container], capture_output=True, text=True, check=True)
    for line in (logs.stdout + logs.stderr).splitlines():
        if f"cluster '{cluster}': certificates" in line:
            stamp = line.split()[0][:26].rstrip("Z")
            return datetime.datetime.fromisoformat(stamp).replace(tzinfo=datetime.UTC).timestamp()
    raise RuntimeError(f"core task {task} did not say it published the certificates of cluster {cluster!r}")


def proxy_tasks(cluster: str) -> set[str]:
    service = f"interlock-proxy-{cluster}" if cluster else "interlock-proxy"
    return set(sh("docker", "service", "ps", "-q", "--filter", "desired-state=running", service).split())


def trial(kind: str, index: int, directory: Path) -> dict[str, float]:
    cluster, http_port, tls_port = CLUSTERS[kind]
    name = f"certs-{kind}-{index}-{int(time.time())}"
    host = f"{name}.local"
    first = secret_pair(directory, host, f"{name}-1")
    second = secret_pair(directory, host, f"{name}-2")
    labels = {"com.docker.lb.ssl_cert": first[0], "com.docker.lb.ssl_key": first[1]}
    if cluster:
        labels["com.docker.lb.service_cluster"] = cluster
    create_backend(name, host, labels=labels)
    created = time.time()
    routed = until(lambda: http_status(host, http_port) == 200, timeout=120)
    served = until(lambda: fingerprint_served(host, tls_port) == first[2], timeout=120)
    core_started = core_running_since()
    seen = core_saw(cluster)
    sh(
        *("docker", "service", "update", "-d", "--quiet", "--label-add", f"com.docker.lb.ssl_cert={second[0]}"),
        *("--label-add", f"com.docker.lb.ssl_key={second[1]}", name),
    )
    rotate = time.time()
    rotated = until(lambda: fingerprint_served(host, tls_port) == second[2], timeout=120)
    rotated_core = core_running_since()
    rotated_seen = core_saw(cluster)
    sh("docker", "service", "rm", name)
    removed_at = time.time()
    refused = until(lambda: fingerprint_served(host, tls_port) == "", timeout=120)
    for secret in (*first[:2], *second[:2]):
        # The core lets go of them once no host names them (its task replaced again).
        until(lambda secret=secret: removed(secret), timeout=180)  # type: ignore[misc]
    return {
        "create_to_http_200": routed - created,
        "create_to_handshake": served - created,
        "core_start_to_handshake": served - core_started,
        "core_saw_to_handshake": served - seen,
        "rotate_to_handshake": rotated - rotate,
        "rotate_core_start_to_handshake": rotated - rotated_core,
        "rotate_core_saw_to_handshake": rotated - rotated_seen,
        "remove_to_refused": refused - removed_at,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="interlock-bench-certs-") as scratch:
        for kind, (cluster, _, _) in CLUSTERS.items():
            before = proxy_tasks(cluster)
            trials = [trial(kind, i, Path(scratch)) for i in range(args.trials)]
            replaced = len(before - proxy_tasks(cluster))
            results[kind] = {
                "trials": trials,
                "summary": {key: summary([t[key] for t in trials]) for key in trials[0]},
                "proxy_tasks_replaced": replaced,
            }
    dump({"kinds": results, "trials": args.trials})


if __name__ == "__main__":
    main()
