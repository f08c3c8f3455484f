"""The roles' TLS identities (see edges/role_tls.py): a self-signed key pair made with openssl,
kept in two Docker secrets that `interlock up` (or the core) creates once. Used by the operator
and the core only; imports nothing from the roles.
"""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from interlock.constants import LABEL_TLS, LABEL_TLS_FINGERPRINT, LABEL_TLS_PART, TLS_SECRET_PREFIX
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
