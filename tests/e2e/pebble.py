"""Debian's pebble (the ACME test server) and pebble-challtestsrv (its DNS) as one Swarm
service from a local image, for the ACME tests on one node and on several, and the benchmark.

Pebble is on the control network, where the core finds it by name as it would a public ACME
server by DNS, and on the networks where it reaches the proxies: the tests point each host name
at a proxy task's address there (`resolve`), where the proxy listens on port 80, pebble's
`httpPort`. Certificates live 150 s (`certificateValidityPeriod`).
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.e2e.swarm import E2E_LABEL, IMAGE, poll, sh

PEBBLE = "e2e-pebble"
PEBBLE_IMAGE = "interlock-e2e-pebble:latest"
CA_SECRET = "e2e-pebble-ca"
"""tests/e2e/interlock.toml's [ACME] CACertificate: the certificate of pebble's listener."""
KEPT = Path("/var/tmp/interlock-e2e-pebble")
"""Pebble's listener key and certificate, kept between runs on one machine: the core mounts the
CA secret and Docker cannot change a secret, so a second run must present the same one."""
ROOTS_PORT, DNS_PORT = 15000, 18055
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


def _containers() -> list[str]:
    return sh("docker", "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={PEBBLE}").split()


@contextmanager
def running_pebble(context: Path, networks: tuple[str, ...], *, extra: tuple[str, ...] = ()) -> Iterator[str]:
    """Pebble as a Swarm service on the control network (alias `pebble`) and `networks` (where
    it reaches the proxies); yields its root CA (PEM), which issued certificates chain to."""
    _listener_pair()
    _build_image(context)
    if subprocess.run(["docker", "secret", "inspect", CA_SECRET], capture_output=True, check=False).returncode:
        sh("docker", "secret", "create", CA_SECRET, str(KEPT / "cert.pem"))
    sh("docker", "service", "rm", PEBBLE, check=False)
    # An earlier pebble (a run that was interrupted) holds the host ports, and a challenge record
    # sent now could reach it: the new one starts once its containers are gone.
    poll(lambda: not _containers() or None, what="an earlier pebble gone", timeout=60)
    sh(
        *(
            "docker",
            "service",
            "create",
            "-d",
            "--quiet",
            "--label",
            f"{E2E_LABEL}=1",
            "--name",
            PEBBLE,
            "--endpoint-mode",
            "dnsrr",
        ),
        *("--network", "name=interlock,alias=pebble", *(f for n in networks for f in ("--network", n))),
        *extra,
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


def resolve(host: str, address: str) -> None:
    """Pebble's DNS answers `host` with `address` (a proxy task's, where it listens on port 80)."""
    body = json.dumps({"host": host, "addresses": [address]}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{DNS_PORT}/add-a", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=5):
        pass


def issued(host: str, port: int, root: str, address: str = "127.0.0.1") -> str | None:
    """The serial of the certificate the proxy at `address`:`port` presents for `host`, if it
    chains to pebble's root and names the host; None otherwise."""
    context = ssl.create_default_context(cadata=root)
    try:
        with (
            socket.create_connection((address, port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            certificate = tls.getpeercert()
    except (ssl.SSLError, OSError):
        return None
    return str(certificate.get("serialNumber")) if certificate else None
