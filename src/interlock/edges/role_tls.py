"""TLS between the roles: each server role (the core, every extension) has its own self-signed
key pair, made with openssl by `interlock up` and kept in two Docker secrets; its clients pin its
certificate. So the control channel is private on the wire and a client talks only to the holder
of that one key, whatever answers for the name on the overlay.

Pinning one certificate (instead of a CA and host names) keeps this independent of the names
roles are reached by (`tasks.NAME`, an `EndpointOverride`, an address). Keys never leave Docker
secrets: the key secret is mounted only into its own role, root's, 0400. The contexts every role
uses, from the standard `ssl` module; making the pairs is edges/role_identities.py (the proxy
agent, which only pins, does not load it or the Docker SDK). Imports nothing from the roles.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from interlock.constants import PEER_CERT, SERVER_TLS


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
