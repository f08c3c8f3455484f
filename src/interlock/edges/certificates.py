"""Check the certificate secrets a configuration names before nginx sees them.

Only the proxy holds the real certificates (the extension validates with stand-ins), so a
secret that is not a certificate, or a key that does not match its certificate, is found here.
The proxy agent reports such secrets by name; the core then leaves out the services that name
them, so one bad secret excludes its own services and not every later change. A file that is
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


def unusable_certificates(pairs: Iterable[tuple[str, str]], secrets_dir: Path) -> dict[str, str]:
    """Secret name -> why, for each (certificate secret, key secret) pair nginx could not load.

    The certificate is checked alone first, so a bad certificate is blamed on its own secret and
    a key that does not fit (or is not a key) on the key's."""
    refused: dict[str, str] = {}
    for cert_name, key_name in pairs:
        cert, key = secrets_dir / cert_name, secrets_dir / key_name
        if not (cert.is_file() and key.is_file()):
            continue
        try:
            ssl.create_default_context(cafile=str(cert))
        except ssl.SSLError as exc:
            refused[cert_name] = f"not a PEM certificate: {_reason(exc)}"
            continue
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(str(cert), str(key), password=_no_password)
        except ssl.SSLError as exc:
            refused[key_name] = f"not the unencrypted private key of {cert_name!r}: {_reason(exc)}"
    return refused


class CertificateVerdicts:
    """`unusable_certificates` with a memory, for the proxy agent: a secret mounted in this
    container cannot change while the task runs (Swarm mounts secrets only at task start), so a
    pair that loaded once is not read again on every later configuration."""

    def __init__(self, secrets_dir: Path) -> None:
        self.secrets_dir = secrets_dir
        self.refused: dict[str, str] = {}
        """Every secret refused so far, with why."""
        self._usable: set[tuple[str, str]] = set()

    def check(self, pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
        """The secrets among `pairs` nginx could not load, with why (also kept in `refused`)."""
        unknown = [pair for pair in pairs if pair not in self._usable]
        found = unusable_certificates(unknown, self.secrets_dir)
        for cert_name, key_name in unknown:
            mounted = (self.secrets_dir / cert_name).is_file() and (self.secrets_dir / key_name).is_file()
            if mounted and cert_name not in found and key_name not in found:
                self._usable.add((cert_name, key_name))
        self.refused.update(found)
        return found
