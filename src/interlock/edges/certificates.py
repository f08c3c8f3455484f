"""Read the certificate and key secrets that labels name, where the core mounts them, and
check each (certificate, key) pair as a proxy would load it.

Only the core mounts these secrets (under SECRETS_DIR/certificates); it sends the pairs that
load to its proxies over the pinned-TLS control channel (`wire/certificates.py`). The verdict
is about a pair, never about a secret alone: a key secret that does not fit the certificate one
service names may well be another service's good key, so the core leaves out only the services
that name the refused pair. A file that is not there yet is not a verdict (Swarm mounts a new
secret when it restarts the core's task). A mounted secret cannot change while the task runs,
so each pair is read once. Reads files with the standard `ssl` module; imports no role.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from interlock.wire.certificates import Certificate, Pair


def _no_password() -> bytes:
    # An encrypted key must fail here, as it fails in the proxy (which is given no password),
    # instead of OpenSSL asking for one on a terminal.
    return b""


def _reason(exc: ssl.SSLError) -> str:
    # OpenSSL's reason code (KEY_VALUES_MISMATCH) reads well in lower case; without one the
    # message is only where in the ssl module it failed.
    return exc.reason.replace("_", " ").lower() if exc.reason else "cannot read it (not PEM, or encrypted)"


Verdict = tuple[str, str]
"""(the label blamed: ssl_cert or ssl_key, why)."""


def check_pair(cert: Path, key: Path) -> Verdict | None:
    """Why a proxy could not load certificate `cert` with key `key` (None when it can). The
    certificate is checked alone first, so a bad certificate is said of `ssl_cert` and a key
    that does not fit it (or is not a key) of `ssl_key`."""
    try:
        ssl.create_default_context(cafile=str(cert))
    except ssl.SSLError as exc:
        return ("ssl_cert", f"{cert.name!r} is not a PEM certificate: {_reason(exc)}")
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(str(cert), str(key), password=_no_password)
    except ssl.SSLError as exc:
        return ("ssl_key", f"{key.name!r} is not the unencrypted private key of {cert.name!r}: {_reason(exc)}")
    return None


def _pem_blocks(text: str, *kinds: str) -> str:
    """The PEM blocks of `text` whose type ends with one of `kinds`, in order (a combined PEM
    holds the chain and the key)."""
    blocks, current = [], []
    for line in text.splitlines():
        if line.startswith("-----BEGIN "):
            current = [line]
        elif current:
            current.append(line)
            if line.startswith("-----END "):
                if line.removeprefix("-----END ").rstrip("-").endswith(kinds):
                    blocks.append("\n".join(current))
                current = []
    return "\n".join(blocks) + "\n" if blocks else ""


@dataclass
class CertificateShelf:
    """The pairs read so far from `directory`: loaded (as `Certificate`s) or refused."""

    directory: Path
    loaded: dict[Pair, Certificate] = field(default_factory=dict)
    refused: dict[Pair, Verdict] = field(default_factory=dict)

    def read(self, pairs: Iterable[Pair]) -> dict[Pair, Verdict]:
        """Read every pair of `pairs` not read yet whose files are mounted; the pairs newly
        refused, with why (also kept in `refused`)."""
        found: dict[Pair, Verdict] = {}
        for pair in pairs:
            if pair in self.loaded or pair in self.refused:
                continue
            cert, key = (self.directory / name for name in pair)
            if not (cert.is_file() and key.is_file()):
                continue
            verdict = check_pair(cert, key)
            if verdict is not None:
                found[pair] = self.refused[pair] = verdict
                continue
            chain_text, key_text = cert.read_text(), key.read_text()
            chain = _pem_blocks(chain_text, "CERTIFICATE")
            private = _pem_blocks(key_text, "PRIVATE KEY")
            self.loaded[pair] = Certificate.of(chain, private)
        return found
