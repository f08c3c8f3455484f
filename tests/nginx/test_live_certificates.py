"""Certificates changed in a running proxy, both kinds, through the agent's controllers: a
rotated certificate is served from the next handshake with no reload and by the same process; a
new TLS host's certificate is served whether it comes before or after the routing that names
it; a removed host's handshake is refused; a proxy that starts again serves what it had (from
the 0400 file on its tmpfs); a certificate the proxy cannot take leaves the old one served."""

from __future__ import annotations

import hashlib
import http.client
import signal
import socket
import ssl
from pathlib import Path

import pytest

from interlock.edges.role_identities import new_pair
from interlock.errors import ReloadFailed
from interlock.model.routing import Routing
from interlock.wire.certificates import Certificate, CertificateBundle
from tests.nginx.either_kind import HTTP, HTTPS, LoopbackProxy, LoopbackTLS, certificates_of, loopback_routing

pytestmark = pytest.mark.nginx


def fingerprint(host: str) -> str:
    """SHA-256 of the certificate the proxy presents for SNI `host` ('' when it refuses)."""
    context = ssl._create_unverified_context()
    try:
        with (
            socket.create_connection(("127.0.0.1", HTTPS), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            return hashlib.sha256(tls.getpeercert(binary_form=True) or b"").hexdigest()
    except (ssl.SSLError, ConnectionError):
        return ""


def der_fingerprint(pem: bytes) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem.decode())).hexdigest()


def https_status(host: str) -> int:
    connection = LoopbackTLS(host, HTTPS, timeout=5)
    try:
        connection.request("GET", "/", headers={"Host": host})
        return connection.getresponse().status
    finally:
        connection.close()


async def test_certificates_come_rotate_go_and_outlive_a_restart_without_a_reload(
    proxy: LoopbackProxy, backend: int, tmp_path: Path
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    pems = {name: new_pair(host) for name, host in (("a1", "a.local"), ("a2", "a.local"), ("b", "b.local"))}
    for name, (pem, _) in pems.items():
        (secrets / f"{name}.pem").write_bytes(pem)

    def routing(**hosts: str) -> Routing:
        return loopback_routing(
            {"plain": {"hosts": "plain.local", "port": str(backend)}}
            | {h: {"hosts": f"{h}.local", "port": str(backend), "ssl_cert": f"{pem}.pem"} for h, pem in hosts.items()}
        )

    first = routing(a="a1")
    bundle = certificates_of(first, secrets)
    await proxy.control.update_certificates(bundle)
    await proxy.route(first)
    assert fingerprint("a.local") == der_fingerprint(pems["a1"][1])
    assert https_status("a.local") == 200
    pid, reloads = proxy.pid, proxy.control.reloads

    # Rotated: the same host, a new secret; no reload, the same process.
    rotated = routing(a="a2")
    bundle = certificates_of(rotated, secrets, bundle)
    await proxy.control.update_certificates(bundle)
    await proxy.route(rotated)
    assert fingerprint("a.local") == der_fingerprint(pems["a2"][1])
    assert (proxy.pid, proxy.control.reloads) == (pid, reloads), "no reload, no restart"

    # A new TLS host, its certificate before its routes.
    both = routing(a="a2", b="b")
    bundle = certificates_of(both, secrets, bundle)
    await proxy.control.update_certificates(bundle)
    await proxy.route(both)
    assert fingerprint("b.local") == der_fingerprint(pems["b"][1])
    assert https_status("b.local") == 200
    assert fingerprint("a.local") == der_fingerprint(pems["a2"][1])

    # A host removed: its name gets no certificate any more (the routes go first, as they may).
    only_b = routing(b="b")
    await proxy.route(only_b)
    bundle = certificates_of(only_b, secrets, bundle)
    await proxy.control.update_certificates(bundle)
    assert fingerprint("a.local") == ""
    assert fingerprint("b.local") == der_fingerprint(pems["b"][1])

    # The proxy starts again: it serves the certificates it had, from its own file.
    await proxy.control.stop(signal.SIGTERM, timeout=15)
    await proxy.control.start()
    await proxy.control.proxy.confirm(proxy.control.config_id)
    assert fingerprint("b.local") == der_fingerprint(pems["b"][1])


async def test_a_certificate_the_proxy_cannot_take_leaves_the_one_it_serves(
    proxy: LoopbackProxy, backend: int, tmp_path: Path
) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    good, _ = new_pair("a.local")
    (secrets / "a.pem").write_bytes(good)
    routing = loopback_routing({"a": {"hosts": "a.local", "port": str(backend), "ssl_cert": "a.pem"}})
    bundle = certificates_of(routing, secrets)
    await proxy.control.update_certificates(bundle)
    await proxy.route(routing)
    served = fingerprint("a.local")
    assert served
    broken = Certificate.of("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n", "no key\n")
    with pytest.raises(ReloadFailed):
        await proxy.control.update_certificates(CertificateBundle("", (("a.local", broken.id),), (broken,)))
    assert fingerprint("a.local") == served
    # Nor does the proxy's next start read the refused one.
    await proxy.control.stop(signal.SIGTERM, timeout=15)
    await proxy.control.start()
    await proxy.control.proxy.confirm(proxy.control.config_id)
    assert fingerprint("a.local") == served


def challenge(token: str) -> tuple[int, str]:
    """What the proxy's HTTP port answers for the ACME HTTP-01 path of `token`."""
    connection = http.client.HTTPConnection("127.0.0.1", HTTP, timeout=5)
    try:
        connection.request("GET", f"/.well-known/acme-challenge/{token}", headers={"Host": "shop.example.com"})
        response = connection.getresponse()
        return response.status, response.read().decode()
    finally:
        connection.close()


async def test_acme_challenges_are_answered_from_the_bundle_and_forgotten_with_it(
    proxy: LoopbackProxy, backend: int
) -> None:
    """Pebble or Let's Encrypt asks every replica for the token; the agent's bundle carries it
    and no reload is needed to answer it or to forget it."""
    proxy.ext = proxy.ext.model_copy(update={"config": proxy.ext.config.model_copy(update={"acme_challenges": True})})
    routing = loopback_routing({"shop": {"hosts": "shop.example.com", "port": str(backend)}})
    await proxy.control.update_certificates(CertificateBundle(""))
    await proxy.route(routing)
    # A token the proxy does not hold is not answered by it (nginx: 404; HAProxy: the app's answer).
    assert not challenge("tok-1")[1].startswith("tok-1.")
    pid, reloads = proxy.pid, proxy.control.reloads

    await proxy.control.update_certificates(CertificateBundle("", challenges=(("tok-1", "tok-1.thumb_print-x"),)))
    assert challenge("tok-1") == (200, "tok-1.thumb_print-x")
    assert not challenge("tok-2")[1].startswith("tok-2.")

    await proxy.control.update_certificates(CertificateBundle("", challenges=(("tok-2", "tok-2.other"),)))
    assert challenge("tok-2") == (200, "tok-2.other")
    assert not challenge("tok-1")[1].startswith("tok-1."), "a token the core dropped is not answered any more"
    assert (proxy.pid, proxy.control.reloads) == (pid, reloads), "no reload, no restart"
