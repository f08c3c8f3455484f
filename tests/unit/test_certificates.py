"""The core's reading of certificate secrets (real PEM files made by openssl), the bundle it
sends each cluster, and the agent handing certificates to its proxy (the core leaving out the
services of a refused pair: tests/unit/test_core_api.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from interlock.config import load_config
from interlock.edges.certificates import ALLOWED_HASHES, CertificateShelf, check_htpasswd
from interlock.model.docker_json import snapshot_from_api
from interlock.model.routing import Routing, TLSMode, VirtualHost
from interlock.render.nginx_certificates import certificates_document
from interlock.roles.agent import Agent
from interlock.roles.core.board import Board
from interlock.roles.core.certificates import CertificateDesk
from interlock.testing.fakes import FakeClock, FakeNginx, FakePeer
from interlock.testing.swarm_json import swarm_json
from interlock.wire.certificates import Certificate, CertificateBundle, bundle_for
from interlock.wire.messages import encode
from tests.nginx.either_kind import loopback_routing


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("secrets")
    for name in ("a", "b"):
        key, cert = str(directory / f"{name}.key"), str(directory / f"{name}.crt")
        subprocess.run(
            [
                *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
                *("-subj", f"/CN={name}", "-keyout", key, "-out", cert),
            ],
            check=True,
            capture_output=True,
        )
    (directory / "garbage").write_text("not a certificate\n")
    (directory / "combined.pem").write_text((directory / "a.crt").read_text() + (directory / "a.key").read_text())
    subprocess.run(
        [
            *("openssl", "rsa", "-in", str(directory / "a.key"), "-aes256"),
            *("-passout", "pass:secret", "-out", str(directory / "encrypted.key")),
        ],
        check=True,
        capture_output=True,
    )
    return directory


def test_good_pairs_and_a_combined_pem_load_with_chain_and_key_apart(secrets: Path) -> None:
    shelf = CertificateShelf(secrets)
    assert shelf.read([("a.crt", "a.key"), ("b.crt", "b.key"), ("combined.pem", "combined.pem")]) == {}
    combined = shelf.loaded[("combined.pem", "combined.pem")]
    assert combined == shelf.loaded[("a.crt", "a.key")], "the same certificate and key: the same id"
    assert combined.chain.startswith("-----BEGIN CERTIFICATE-----") and "PRIVATE KEY" not in combined.chain
    assert "PRIVATE KEY-----" in combined.key and "CERTIFICATE" not in combined.key


def test_each_bad_pair_is_named_with_the_label_blamed_and_why(secrets: Path) -> None:
    refused = CertificateShelf(secrets).read(
        [("garbage", "a.key"), ("a.crt", "b.key"), ("b.crt", "encrypted.key"), ("a.key", "a.key")]
    )
    assert refused == {
        ("garbage", "a.key"): ("ssl_cert", "'garbage' is not a PEM certificate: no certificate or crl found"),
        ("a.crt", "b.key"): ("ssl_key", "'b.key' is not the unencrypted private key of 'a.crt': key values mismatch"),
        ("b.crt", "encrypted.key"): (
            "ssl_key",
            "'encrypted.key' is not the unencrypted private key of 'b.crt': cannot read it (not PEM, or encrypted)",
        ),
        ("a.key", "a.key"): ("ssl_cert", "'a.key' is not a PEM certificate: no certificate or crl found"),
    }


def test_a_key_that_fits_one_certificate_and_not_another_is_refused_only_with_the_other(secrets: Path) -> None:
    """The attack: naming a victim's key beside one's own certificate must not make the victim's
    key a bad secret; the verdict is about the pair."""
    shelf = CertificateShelf(secrets)
    refused = shelf.read([("a.crt", "b.key"), ("b.crt", "b.key")])
    assert set(refused) == {("a.crt", "b.key")}
    assert ("b.crt", "b.key") in shelf.loaded


def test_a_secret_not_mounted_yet_is_no_verdict_and_a_pair_is_read_once(secrets: Path, tmp_path: Path) -> None:
    # Swarm mounts a new secret into the core when it replaces the core's task; a mounted secret
    # cannot change while the task runs, so a pair read once is not read again.
    for name in ("a.crt", "a.key"):
        (tmp_path / name).write_bytes((secrets / name).read_bytes())
    shelf = CertificateShelf(tmp_path)
    assert shelf.read([("a.crt", "a.key"), ("missing.crt", "a.key")]) == {}
    assert set(shelf.loaded) == {("a.crt", "a.key")}
    (tmp_path / "a.crt").write_text("not a certificate any more\n")
    assert shelf.read([("a.crt", "a.key")]) == {}, "the first reading stands"
    (tmp_path / "missing.crt").write_text("not a certificate\n")
    assert set(shelf.read([("missing.crt", "a.key")])) == {("missing.crt", "a.key")}, "mounted now: read now"


def test_a_certificate_never_prints_its_key() -> None:
    certificate = Certificate.of("CHAIN", "-----BEGIN PRIVATE KEY-----\nsecret\n")
    assert "secret" not in repr(certificate) and "secret" not in repr(CertificateBundle("", (), (certificate,)))


def tls_routing(**hosts: tuple[str, str]) -> Routing:
    return Routing(
        cluster="",
        hosts=tuple(
            VirtualHost(name, TLSMode.TERMINATE, cert_secret=cert, key_secret=key)
            for name, (cert, key) in sorted(hosts.items())
        ),
    )


def test_a_host_whose_new_pair_is_not_read_yet_keeps_its_certificate(secrets: Path) -> None:
    """A rotation: the label names a new secret before the core has it mounted; the host keeps
    serving the certificate it had, and gets the new one once it is read."""
    shelf = CertificateShelf(secrets)
    shelf.read([("a.crt", "a.key"), ("b.crt", "b.key")])
    first = bundle_for(tls_routing(**{"x.local": ("a.crt", "a.key")}), shelf.loaded)
    rotated = tls_routing(**{"x.local": ("new.crt", "new.key"), "y.local": ("b.crt", "b.key")})
    kept = bundle_for(rotated, shelf.loaded, first)
    assert kept.by_host()["x.local"] == shelf.loaded[("a.crt", "a.key")]
    assert kept.by_host()["y.local"] == shelf.loaded[("b.crt", "b.key")]
    assert kept.tag != first.tag
    shelf.loaded[("new.crt", "new.key")] = shelf.loaded[("b.crt", "b.key")]
    now = bundle_for(rotated, shelf.loaded, kept)
    assert now.by_host()["x.local"] == shelf.loaded[("b.crt", "b.key")]
    assert [c.id for c in now.certificates] == [shelf.loaded[("b.crt", "b.key")].id], "each certificate once"
    assert bundle_for(tls_routing(), shelf.loaded, now).hosts == (), "a host gone takes its certificate along"


async def test_the_agent_hands_each_new_bundle_to_the_proxy_and_reports_its_tag(secrets: Path) -> None:
    shelf = CertificateShelf(secrets)
    shelf.read([("a.crt", "a.key")])
    bundle = bundle_for(tls_routing(**{"x.local": ("a.crt", "a.key")}), shelf.loaded)
    fake = FakeNginx()
    peer = FakePeer((200, encode(bundle)), (503, b""))
    agent = Agent(extension=peer, proxy=fake, name="p1")
    await agent.boot(secrets / "no-mounted-config")
    assert fake.certificates == [bundle], "fetched before the proxy starts"
    assert agent.certificates_tag == bundle.tag
    fake.refuse = "no room in the shared dict"
    await agent.apply_certificates(bundle_for(tls_routing(), shelf.loaded))
    assert agent.certificates_tag == bundle.tag, "a refused bundle leaves the one served"
    assert "no room" in agent.certificates_error


GOOD_USERS = (
    "alice:$2y$05$abcdefghijklmnopqrstuuOQiyCxlgf/oeuTqixKmWdcYUh4Hjl0a\n"
    "# a comment, and a blank line\n\n"
    "bob:$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/\n"
    "carol:$5$saltsalt$0IyaXrmV7.sGNS6tirgqHLqX/G.FBvgkYA.lpPdS5sA\n"
)


def test_an_htpasswd_file_passes_with_slow_salted_hashes_only() -> None:
    assert check_htpasswd(GOOD_USERS) == (
        "alice:$2y$05$abcdefghijklmnopqrstuuOQiyCxlgf/oeuTqixKmWdcYUh4Hjl0a",
        "bob:$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/",
        "carol:$5$saltsalt$0IyaXrmV7.sGNS6tirgqHLqX/G.FBvgkYA.lpPdS5sA",
    )
    for bad, said in (
        ("bob:builder", "line 1 (user bob): the hash is not one allowed; allowed: bcrypt"),
        ("bob:{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=", "not one allowed"),
        ("bob:abJnggxhB/yWI", "not one allowed"),  # DES crypt
        ("bob $apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/", "not user:hash"),
        ('b"ob:$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/', "not user:hash"),
        ("bob:$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/\nbob:$apr1$abcdefgh$h9FWgUz3n9YxylKLlR5SQ/", "twice"),
        ("# nobody\n", "no user"),
    ):
        verdict = check_htpasswd(bad)
        assert isinstance(verdict, str) and said in verdict, (bad, verdict)


def test_the_users_of_an_htpasswd_secret_travel_in_the_bundle_and_never_print(tmp_path: Path) -> None:
    (tmp_path / "members").write_text(GOOD_USERS)
    (tmp_path / "plain").write_text("bob:builder\n")
    shelf = CertificateShelf(tmp_path)
    assert shelf.read_credentials(["members", "plain", "not-mounted-yet"]) == {
        "plain": "line 1 (user bob): the hash is not one allowed; allowed: " + ALLOWED_HASHES
    }
    users = shelf.credentials["members"]
    routing = loopback_routing({"shop": {"hosts": "shop.local", "port": "80", "auth_basic": "members"}})
    bundle = bundle_for(routing, {}, credentials=shelf.credentials)
    assert bundle.credentials == (users,)
    assert "$2y$" not in repr(bundle)
    document = certificates_document(bundle)
    assert f"credentials members {users.id} ".encode() in document and b"bob:$apr1$" in document
    rotated = loopback_routing({"shop": {"hosts": "shop.local", "port": "80", "auth_basic": "members-v2"}})
    assert bundle_for(rotated, {}, bundle).credentials == (), "a secret no route names is not sent"
    later = bundle_for(routing, {}, bundle)
    assert later.credentials == (users,) and later.tag == bundle.tag, "kept until read again"


def test_a_bad_htpasswd_secret_leaves_out_only_the_services_naming_it(tmp_path: Path) -> None:
    (tmp_path / "members").write_text(GOOD_USERS)
    (tmp_path / "plain").write_text("bob:builder\n")
    auth = {"shop": {"com.docker.lb.auth_basic": "members"}, "club": {"com.docker.lb.auth_basic": "plain"}}
    services = [
        {
            "name": name,
            "networks": ["n"],
            "labels": {"com.docker.lb.hosts": f"{name}.local", "com.docker.lb.port": "80"} | auth.get(name, {}),
        }
        for name in ("shop", "club", "open")
    ]
    board = Board(load_config("[Extensions.default]\n"), gate_on_proxies=False, clock=FakeClock(), service_name="i")
    board.publish(snapshot_from_api(swarm_json({"services": services})))
    desk = CertificateDesk(board, tmp_path)
    assert desk.read()
    state = board.slots["default"].state
    assert state is not None
    assert sorted(h.name for h in state.routing.hosts) == ["open.local", "shop.local"]
    [problem] = [p for p in board.problems if p.service == "club"]
    assert problem.label.endswith("auth_basic") and "'plain' cannot be used" in problem.reason
    assert [c.secret for c in desk.bundles["default"].credentials] == ["members"]
