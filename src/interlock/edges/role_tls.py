"""TLS between the roles: each server role (the core, every extension) has its own self-signed
key pair, made with openssl by `interlock up` and kept in two Docker secrets; its clients pin its
certificate. So the control channel is private on the wire and a client talks only to the holder
of that one key, whatever answers for the name on the overlay.

Pinning one certificate (instead of a CA and host names) keeps this independent of the names
roles are reached by (`tasks.NAME`, an `EndpointOverride`, an address). Keys never leave Docker
secrets: the key secret is mounted only into its own role, root's, 0400. Wraps openssl and the
standard `ssl` module; imports nothing from the roles.
"""

from __future__ import annotations

import hashlib
import ssl
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from interlock.constants import (
    LABEL_TLS,
    LABEL_TLS_FINGERPRINT,
    LABEL_TLS_PART,
    PEER_CERT,
    SERVER_TLS,
    TLS_SECRET_PREFIX,
)
from interlock.edges.swarm_ops import SwarmWriter
from interlock.errors import InterlockError
from interlock.swarm.specs import TLSPair, tls_pairs

VALID_DAYS = 36500
"""The pinned certificate is the identity itself; it is replaced by making a new pair, not by
expiry (a role that outlives its certificate would lose its clients without any gain)."""


def new_pair(common_name: str) -> tuple[bytes, bytes]:
    """(key and certificate PEM, certificate PEM) of a new self-signed P-256 pair."""
    with tempfile.TemporaryDirectory(prefix="interlock-tls-") as scratch:
        key, cert = Path(scratch) / "key.pem", Path(scratch) / "cert.pem"
        try:
            subprocess.run(
                [
                    "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", str(VALID_DAYS), "-subj", f"/CN={common_name}",
                    "-keyout", str(key), "-out", str(cert),
                ],
                check=True,
                capture_output=True,
                timeout=60,
            )  # fmt: skip
        except (OSError, subprocess.SubprocessError) as exc:
            raise InterlockError(f"could not make a TLS key pair for {common_name} with openssl: {exc}") from exc
        return key.read_bytes() + cert.read_bytes(), cert.read_bytes()


def ensure_identities(ops: SwarmWriter, identities: Sequence[str], labels: Mapping[str, str]) -> dict[str, TLSPair]:
    """Identity -> its TLS pair of secrets, made where an identity has none (a pair is only ever
    used whole: a key secret without its certificate secret, left by a failed run, is ignored)."""
    pairs = tls_pairs(ops.secret_records())
    for identity in identities:
        if identity in pairs:
            continue
        both, cert = new_pair(f"interlock {identity}")
        fingerprint = hashlib.sha256(cert).hexdigest()[:12]
        tagged = {**labels, LABEL_TLS: identity, LABEL_TLS_FINGERPRINT: fingerprint}
        # The certificate first: a key secret exists only with its certificate beside it.
        cert_ref = ops.create_secret(f"{TLS_SECRET_PREFIX}{fingerprint}-cert", cert, {**tagged, LABEL_TLS_PART: "cert"})
        key_ref = ops.create_secret(f"{TLS_SECRET_PREFIX}{fingerprint}-key", both, {**tagged, LABEL_TLS_PART: "key"})
        pairs[identity] = TLSPair(key_ref, cert_ref)
    return pairs


def server_context(pem: Path) -> ssl.SSLContext:
    """What a server role listens with: its key and certificate, TLS 1.2 or newer."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(pem)
    return context


def pinned_context(cert: Path) -> ssl.SSLContext:
    """What a client calls with: only the server holding the key of `cert` is accepted. The
    certificate is the identity, so its names are not checked (roles are reached by several)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cert))
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def mounted_server_context(secrets_dir: Path) -> ssl.SSLContext | None:
    """The server context from this role's mounted key pair, None where none is mounted (tests
    and hand-run roles serve plain HTTP; every role `interlock up` deploys has one)."""
    pem = secrets_dir / SERVER_TLS
    return server_context(pem) if pem.exists() else None


def mounted_peer_cert(secrets_dir: Path) -> Path | None:
    """The certificate of the server this role calls, where one is mounted."""
    cert = secrets_dir / PEER_CERT
    return cert if cert.exists() else None
