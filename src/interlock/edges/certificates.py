"""Check the certificate secrets a configuration names before nginx sees them.

Only the proxy holds the real certificates (the extension validates with stand-ins), so a
secret that is not a certificate, or a key that does not match its certificate, is found here.
The verdict is about a (certificate, key) pair, never about a secret alone: a key secret that
does not fit the certificate one service names may well be another service's good key, so the
proxy agent reports the pair, and the core leaves out only the services of its cluster that name
that pair; one bad pair excludes its own services and not every later change. A file that is
not there yet is not a verdict (Swarm mounts a new secret only when it restarts the proxy
task). `CertificateVerdicts` remembers what it found. Reads files with the standard `ssl`
module; imports nothing from the roles.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from pathlib import Path


def _no_password() -> bytes:
    # An encrypted key must fail here, as it fails in nginx (which is given no password),
    # instead of OpenSSL asking for one on a terminal.
    return b""


def _reason(exc: ssl.SSLError) -> str:
    # OpenSSL's reason code (KEY_VALUES_MISMATCH) reads well in lower case; without one the
    # message is only where in the ssl module it failed.
    return exc.reason.replace("_", " ").lower() if exc.reason else "cannot read it (not PEM, or encrypted)"


Pair = tuple[str, str]
"""(certificate secret, key secret); the key is the certificate's own for a combined PEM."""
Verdict = tuple[str, str]
"""(the label blamed: ssl_cert or ssl_key, why)."""


def unusable_certificates(pairs: Iterable[Pair], secrets_dir: Path) -> dict[Pair, Verdict]:
    """Pair -> (label, why), for each (certificate secret, key secret) pair nginx could not load.

    The certificate is checked alone first, so a bad certificate is said of `ssl_cert` and a key
    that does not fit it (or is not a key) of `ssl_key`."""
    refused: dict[Pair, Verdict] = {}
    for cert_name, key_name in pairs:
        cert, key = secrets_dir / cert_name, secrets_dir / key_name
        if not (cert.is_file() and key.is_file()):
            continue
        try:
            ssl.create_default_context(cafile=str(cert))
        except ssl.SSLError as exc:
            refused[(cert_name, key_name)] = ("ssl_cert", f"{cert_name!r} is not a PEM certificate: {_reason(exc)}")
            continue
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(str(cert), str(key), password=_no_password)
        except ssl.SSLError as exc:
            refused[(cert_name, key_name)] = (
                "ssl_key",
                f"{key_name!r} is not the unencrypted private key of {cert_name!r}: {_reason(exc)}",
            )
    return refused


class CertificateVerdicts:
    """`unusable_certificates` with a memory, for the proxy agent: a secret mounted in this
    container cannot change while the task runs (Swarm mounts secrets only at task start), so a
    pair that loaded once is not read again on every later configuration."""

    def __init__(self, secrets_dir: Path) -> None:
        self.secrets_dir = secrets_dir
        self.refused: dict[Pair, Verdict] = {}
        """Every pair refused so far, with the label blamed and why."""
        self._usable: set[Pair] = set()

    def check(self, pairs: Iterable[Pair]) -> dict[Pair, Verdict]:
        """The pairs among `pairs` nginx could not load, with why (also kept in `refused`)."""
        unknown = [pair for pair in pairs if pair not in self._usable]
        found = unusable_certificates(unknown, self.secrets_dir)
        for cert_name, key_name in unknown:
            mounted = (self.secrets_dir / cert_name).is_file() and (self.secrets_dir / key_name).is_file()
            if mounted and (cert_name, key_name) not in found:
                self._usable.add((cert_name, key_name))
        self.refused.update(found)
        return found
