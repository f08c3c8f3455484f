"""The proxy's own check of certificate secrets, with real PEM files made by openssl, and the
agent refusing a configuration that names an unusable one (the core then leaves its services
out: tests/unit/test_core_api.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from interlock.edges.certificates import CertificateVerdicts, unusable_certificates
from interlock.roles.agent import Agent
from interlock.testing.fakes import FakeNginx, FakePeer
from interlock.wire.messages import ProxyConfig, RefusedCertificate


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


def test_good_pairs_and_a_combined_pem_pass(secrets: Path) -> None:
    assert (
        unusable_certificates([("a.crt", "a.key"), ("b.crt", "b.key"), ("combined.pem", "combined.pem")], secrets) == {}
    )


def test_each_bad_pair_is_named_with_the_label_blamed_and_why(secrets: Path) -> None:
    refused = unusable_certificates(
        [("garbage", "a.key"), ("a.crt", "b.key"), ("b.crt", "encrypted.key"), ("a.key", "a.key")], secrets
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
    refused = unusable_certificates([("a.crt", "b.key"), ("b.crt", "b.key")], secrets)
    assert set(refused) == {("a.crt", "b.key")}


def test_a_secret_not_mounted_yet_is_no_verdict(secrets: Path) -> None:
    # Swarm mounts a new secret only when the proxy task restarts; until then nginx -t decides.
    assert unusable_certificates([("missing.crt", "missing.key"), ("a.crt", "missing.key")], secrets) == {}


def test_a_pair_that_loaded_is_not_read_again(secrets: Path, tmp_path: Path) -> None:
    # A mounted secret cannot change while the proxy task runs; each configuration names every
    # certificate again, and re-reading them all would cost every reload.
    for name in ("a.crt", "a.key", "garbage"):
        (tmp_path / name).write_bytes((secrets / name).read_bytes())
    verdicts = CertificateVerdicts(tmp_path)
    assert verdicts.check([("a.crt", "a.key"), ("missing.crt", "a.key")]) == {}
    (tmp_path / "a.crt").write_text("not a certificate any more\n")
    assert verdicts.check([("a.crt", "a.key")]) == {}, "the first verdict stands"
    (tmp_path / "missing.crt").write_text("not a certificate\n")
    refused = verdicts.check([("missing.crt", "a.key"), ("garbage", "a.key")])
    assert set(refused) == {("missing.crt", "a.key"), ("garbage", "a.key")}, "a file missing before had no verdict yet"
    assert verdicts.refused == refused


async def test_the_agent_keeps_serving_and_reports_a_refused_secret(secrets: Path) -> None:
    fake = FakeNginx()
    agent = Agent(extension=FakePeer(), proxy=fake, name="p1", secrets_dir=secrets)
    await agent.apply(ProxyConfig(1, "d1", "id1", "text", certificates=(("a.crt", "a.key"),)))
    await agent.apply(ProxyConfig(2, "d2", "id2", "text2", certificates=(("a.crt", "a.key"), ("garbage", "b.key"))))
    assert fake.installs == ["id1"], "nginx never sees the configuration naming the bad secret"
    assert agent.digest == "d2", "not retried in a loop"
    assert "'garbage' is not a PEM certificate" in agent.error
    # The configuration without the service comes next; the refusal is still reported.
    await agent.apply(ProxyConfig(3, "d3", "id3", "text3", certificates=(("a.crt", "a.key"),)))
    assert fake.installs == ["id1", "id3"] and agent.error == ""
    assert agent.refused_certificates == (
        RefusedCertificate(
            "garbage", "b.key", "ssl_cert", "'garbage' is not a PEM certificate: no certificate or crl found"
        ),
    )
