"""Read the certificate, key and htpasswd secrets that labels name, where the core mounts them,
and check each (certificate, key) pair as a proxy would load it and each htpasswd file as a proxy
would check passwords with it.

Only the core mounts these secrets (under SECRETS_DIR/certificates); it sends the pairs that
load to its proxies over the pinned-TLS control channel (`wire/certificates.py`). The verdict
is about a pair, never about a secret alone: a key secret that does not fit the certificate one
service names may well be another service's good key, so the core leaves out only the services
that name the refused pair. A file that is not there yet is not a verdict (Swarm mounts a new
secret when it restarts the core's task). A mounted secret cannot change while the task runs,
so each pair is read once. Reads files with the standard `ssl` module; imports no role.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from interlock.wire.certificates import Certificate, Credentials, Pair

MAX_USERS = 1000
_USER = re.compile(r"[A-Za-z0-9_.@+-]{1,64}")
_HASHES = (
    ("bcrypt", re.compile(r"\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}")),
    ("apr1", re.compile(r"\$apr1\$[./A-Za-z0-9]{1,8}\$[./A-Za-z0-9]{22}")),
    ("SHA-crypt", re.compile(r"\$[56]\$(rounds=[0-9]{4,9}\$)?[./A-Za-z0-9]{1,16}\$[./A-Za-z0-9]{43,86}")),
)
ALLOWED_HASHES = "bcrypt ($2y$, htpasswd -B), apr1 ($apr1$, htpasswd -m) or SHA-crypt ($5$, $6$, mkpasswd)"


def check_htpasswd(text: str) -> tuple[str, ...] | str:
    """The `user:hash` lines of an htpasswd file (blank lines and `#` comments left out), or why
    a proxy could not check passwords with it: only salted, slow hashes pass (no plain text, no
    DES crypt, no unsalted {SHA})."""
    lines: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, colon, hashed = line.partition(":")
        if not colon or not _USER.fullmatch(user):
            return f"line {number}: not user:hash, the user 1-64 of A-Z a-z 0-9 _ . @ + -"
        if not any(pattern.fullmatch(hashed) for _, pattern in _HASHES):
            return f"line {number} (user {user}): the hash is not one allowed; allowed: {ALLOWED_HASHES}"
        if user in lines:
            return f"line {number}: user {user} is given twice"
        lines[user] = f"{user}:{hashed}"
    if not lines:
        return "no user in it; allowed: htpasswd lines user:hash"
    if len(lines) > MAX_USERS:
        return f"{len(lines)} users; at most {MAX_USERS} are allowed"
    return tuple(lines[user] for user in sorted(lines))


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
    credentials: dict[str, Credentials] = field(default_factory=dict)
    refused_credentials: dict[str, str] = field(default_factory=dict)
    """htpasswd secret -> why it was refused."""

    def read_credentials(self, secrets: Iterable[str]) -> dict[str, str]:
        """Read every htpasswd secret of `secrets` not read yet whose file is mounted; the
        secrets newly refused, with why (also kept in `refused_credentials`)."""
        found: dict[str, str] = {}
        for secret in secrets:
            path = self.directory / secret
            if secret in self.credentials or secret in self.refused_credentials or not path.is_file():
                continue
            try:
                checked = check_htpasswd(path.read_text(encoding="utf-8"))
            except (UnicodeDecodeError, OSError) as exc:
                checked = f"cannot read it as UTF-8 text: {exc}"
            if isinstance(checked, str):
                found[secret] = self.refused_credentials[secret] = checked
            else:
                self.credentials[secret] = Credentials.of(secret, checked)
        return found

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
