"""ACME on the swarm, with Debian's pebble as the ACME server (run as a Swarm service from a
local image): a service labelled `ssl_acme=true` is served over TLS, on both kinds, with a
certificate that chains to pebble's root; a restarted core orders nothing again; pebble issues
certificates valid for 150 s and tests/e2e/interlock.toml renews 100 s before expiry, so a
renewal comes within a minute and is served with no proxy task replaced; a challenge that cannot
succeed is a problem of that service, with pebble's reason, and other services keep serving.

Pebble's validation asks the proxies themselves: pebble-challtestsrv, in the same container,
is its DNS server, and the test points each host name at its cluster's proxy task on e2e-a
(where the proxies listen on port 80, pebble's `httpPort`). Pebble is on the control network
too, where the core finds it by name as it would a public ACME server by DNS.
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from interlock.constants import LABEL_ACME
from tests.e2e.swarm import CLUSTERS, IMAGE, INTERLOCK, Cluster, get, lb, poll, service, settled, sh, task_ips, unique

pytestmark = pytest.mark.usefixtures("interlock")

PEBBLE = "e2e-pebble"
PEBBLE_IMAGE = "interlock-e2e-pebble:latest"
CA_SECRET = "e2e-pebble-ca"
"""tests/e2e/interlock.toml's [ACME] CACertificate: the certificate of pebble's listener."""
KEPT = Path("/var/tmp/interlock-e2e-pebble")
"""Pebble's listener key and certificate, kept between runs on one machine: the core mounts the
CA secret and Docker cannot change a secret, so a second run must present the same one."""
ROOTS_PORT, DNS_PORT = 15000, 18055
PROXIES = {"nginx": "interlock-proxy", "haproxy": "interlock-proxy-hap"}
START = """
pebble-challtestsrv -management :8055 -dns01 :8053 -http01 "" -https01 "" -tlsalpn01 "" \
    -defaultIPv4 127.0.0.1 -defaultIPv6 "" &
exec pebble -config /pebble/config.json -dnsserver 127.0.0.1:8053
"""


def _listener_pair() -> None:
    KEPT.mkdir(parents=True, exist_ok=True)
    if (KEPT / "cert.pem").exists() and (KEPT / "key.pem").exists():
        return
    sh(
        *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
        *("-days", "3650", "-subj", "/CN=pebble", "-addext", "subjectAltName=DNS:pebble,DNS:e2e-pebble"),
        *("-keyout", str(KEPT / "key.pem"), "-out", str(KEPT / "cert.pem")),
    )


def _build_image(context: Path) -> None:
    for binary in ("pebble", "pebble-challtestsrv"):
        shutil.copy(f"/usr/bin/{binary}", context / binary)
    shutil.copy(KEPT / "cert.pem", context / "cert.pem")
    shutil.copy(KEPT / "key.pem", context / "key.pem")
    config = {
        "pebble": {
            "listenAddress": "0.0.0.0:14000",
            "managementListenAddress": "0.0.0.0:15000",
            "certificate": "/pebble/cert.pem",
            "privateKey": "/pebble/key.pem",
            "httpPort": 80,
            "tlsPort": 443,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
            "certificateValidityPeriod": 150,
        }
    }
    (context / "config.json").write_text(json.dumps(config))
    (context / "start.sh").write_text(START)
    (context / "Dockerfile").write_text(
        f"FROM {IMAGE}\nCOPY . /pebble/\nRUN cp /pebble/pebble /pebble/pebble-challtestsrv /usr/local/bin/\n"
        'ENTRYPOINT ["sh", "/pebble/start.sh"]\n'
    )
    sh("docker", "build", "-q", "-t", PEBBLE_IMAGE, str(context), timeout=300)


@pytest.fixture(scope="module")
def pebble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Pebble running; returns its root CA (PEM), which issued certificates chain to."""
    _listener_pair()
    _build_image(tmp_path_factory.mktemp("pebble"))
    if subprocess.run(["docker", "secret", "inspect", CA_SECRET], capture_output=True, check=False).returncode:
        sh("docker", "secret", "create", CA_SECRET, str(KEPT / "cert.pem"))
    sh("docker", "service", "rm", PEBBLE, check=False)
    sh(
        *("docker", "service", "create", "-d", "--quiet", "--name", PEBBLE, "--endpoint-mode", "dnsrr"),
        *("--network", "name=interlock,alias=pebble", "--network", "e2e-a"),
        *("--publish", f"mode=host,target=15000,published={ROOTS_PORT}"),
        *("--publish", f"mode=host,target=8055,published={DNS_PORT}"),
        *("--env", "PEBBLE_VA_NOSLEEP=1", "--env", "PEBBLE_WFE_NONCEREJECT=0"),
        PEBBLE_IMAGE,
    )
    try:
        yield poll(_root, what="pebble's root CA", timeout=120)
    finally:
        sh("docker", "service", "rm", PEBBLE, check=False)


def _root() -> str | None:
    context = ssl.create_default_context(cafile=str(KEPT / "cert.pem"))
    context.check_hostname = False
    try:
        with urllib.request.urlopen(f"https://127.0.0.1:{ROOTS_PORT}/roots/0", context=context, timeout=5) as answer:
            return str(answer.read().decode())
    except OSError:
        return None


def point_at_proxy(host: str, cluster: Cluster) -> None:
    """Pebble's DNS answers `host` with the address of the cluster's proxy task on e2e-a."""
    address = sorted(poll(lambda: task_ips(PROXIES[cluster.kind], "e2e-a") or None, what="proxy address"))[0]
    body = json.dumps({"host": host, "addresses": [address]}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{DNS_PORT}/add-a", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=5):
        pass


def issued(host: str, port: int, root: str) -> str | None:
    """The serial of the certificate the proxy presents for `host`, if it chains to pebble's
    root and names the host; None otherwise."""
    context = ssl.create_default_context(cadata=root)
    try:
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            certificate = tls.getpeercert()
    except (ssl.SSLError, OSError):
        return None
    return str(certificate.get("serialNumber")) if certificate else None


def proxy_tasks() -> set[str]:
    found = set()
    for proxy in PROXIES.values():
        found |= set(sh("docker", "service", "ps", "-q", "--filter", "desired-state=running", proxy).split())
    return found


def acme_secrets(host: str) -> set[str]:
    """The names of the secrets the core made for `host`'s certificates."""
    listed = sh("docker", "secret", "ls", "--filter", f"label={LABEL_ACME}", "--format", "{{.Name}} {{.Labels}}")
    return {line.split()[0] for line in listed.splitlines() if host in line}


def problems() -> list[dict[str, str]]:
    """`interlock problems --json` ([] while the core does not answer)."""
    run = subprocess.run([INTERLOCK, "problems", "--json"], capture_output=True, text=True, check=False, timeout=60)
    try:
        return list(json.loads(run.stdout)) if run.returncode == 0 else []
    except ValueError:
        return []


def core_task() -> str | None:
    """The core's running task, once its status answers."""
    tasks = sh("docker", "service", "ps", "-q", "--filter", "desired-state=running", "interlock").split()
    status = subprocess.run([INTERLOCK, "status"], capture_output=True, check=False, timeout=60)
    return tasks[0] if len(tasks) == 1 and status.returncode == 0 else None


def core_mounts() -> set[str]:
    spec = json.loads(sh("docker", "service", "inspect", "interlock"))[0]["Spec"]
    return {m["SecretName"] for m in spec["TaskTemplate"]["ContainerSpec"].get("Secrets") or ()}


def test_ssl_acme_is_served_with_pebbles_certificate_on_both_kinds_kept_over_a_restart_and_renewed(
    pebble: str,
) -> None:
    names = {c.kind: unique(f"acme-{c.kind}") for c in CLUSTERS}
    hosts = {kind: f"{name}.e2e.test" for kind, name in names.items()}
    for cluster in CLUSTERS:
        point_at_proxy(hosts[cluster.kind], cluster)
    tasks = proxy_tasks()
    started = time.monotonic()
    with (
        service(names["nginx"], labels=lb(hosts=hosts["nginx"], port="8080", ssl_acme="true")),
        service(names["haproxy"], labels=lb(hosts=hosts["haproxy"], port="8080", ssl_acme="true") | CLUSTERS[1].labels),
    ):
        first = {}
        for cluster in CLUSTERS:
            host = hosts[cluster.kind]
            first[cluster.kind] = poll(
                lambda h=host, port=cluster.https: issued(h, port, pebble),  # type: ignore[misc]
                what=f"{host} issued",
                timeout=180,
            )
        print(f"\nssl_acme=true -> first handshake with pebble's certificate: {time.monotonic() - started:.1f}s")

        # The core restarted: it reads back what it holds and orders nothing again. (It first
        # restarts by itself, to mount the new secrets.)
        made = {kind: acme_secrets(host) for kind, host in hosts.items()}
        poll(lambda: set().union(*made.values()) <= core_mounts() or None, what="the core mounting its certificates")
        before = poll(core_task, what="the core serving")
        sh("docker", "service", "update", "-d", "--force", "interlock")
        poll(lambda: core_task() not in (None, before), what="a new core serving", timeout=120)
        for cluster in CLUSTERS:
            settled(cluster.http)
            host = hosts[cluster.kind]
            assert issued(host, cluster.https, pebble) == first[cluster.kind]
            assert acme_secrets(host) == made[cluster.kind], "the restarted core ordered again"

        # Renewal: 100 s before the 150 s certificates expire, served with no proxy restart.
        for cluster in CLUSTERS:
            host = hosts[cluster.kind]

            def renewed(host: str = host, cluster: Cluster = cluster) -> str | None:
                serial = issued(host, cluster.https, pebble)
                return serial if serial not in (None, first[cluster.kind]) else None

            poll(renewed, what=f"{host} renewed", timeout=150)
        assert proxy_tasks() == tasks, "no proxy task was replaced"


def test_a_challenge_that_fails_is_a_problem_with_pebbles_reason_and_others_keep_serving(pebble: str) -> None:
    # No DNS record: pebble's DNS answers 127.0.0.1, where nothing serves port 80.
    broken, fine = unique("acme-broken"), unique("acme-fine")
    with (
        service(broken, labels=lb(hosts=f"{broken}.e2e.test", port="8080", ssl_acme="true")),
        service(fine, labels=lb(hosts=f"{fine}.e2e.test", port="8080")),
    ):

        def reported() -> dict[str, str] | None:
            # The core's word: while it restarts the CLI computes problems itself, without ACME's.
            return next((p for p in problems() if p.get("service") == broken and "ACME order" in p["reason"]), None)

        problem = poll(reported, what="the failed order as a problem", timeout=120)
        assert problem["label"] == "com.docker.lb.ssl_acme"
        assert "connection" in problem["reason"].lower(), problem
        assert not [p for p in problems() if p.get("service") == fine]
        assert poll(lambda: get(f"{fine}.e2e.test").status_code == 200 or None, what="the other service served")
