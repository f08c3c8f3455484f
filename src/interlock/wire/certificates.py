"""The certificates a cluster's proxies serve, as the core sends them: `CertificateBundle`
(host -> certificate, each certificate with its chain and key once; the htpasswd users of
`auth_basic` policies), and `bundle_for`, which makes a cluster's bundle from its routing and the
pairs and credentials the core could read.

Keys and password hashes travel only in this message, only on the pinned-TLS control channel (core -> extension ->
proxy agent), never in a `ClusterState`, a Docker config or a log: `Certificate`'s repr leaves
the key out. A host whose pair the core cannot read yet (the secret is not mounted in the core
yet) keeps the certificate it had, so rotating a certificate never leaves a moment without one.
Pure; wire layer.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from interlock.model.routing import Routing
from interlock.wire.messages import SCHEMA

DEFAULT_TLS_HOST = "_"
"""The host name of the default backend: its certificate answers a handshake whose name (SNI)
no other host has, or that has none."""

Pair = tuple[str, str]
"""(certificate secret, key secret); the key is the certificate's own for a combined PEM."""


@dataclass(frozen=True, slots=True)
class Certificate:
    id: str
    """Content id: a digest of the chain and the key (a rotation is a new id)."""
    chain: str
    """PEM: the certificate, then its intermediates."""
    key: str = field(repr=False)
    """PEM: the unencrypted private key. Never printed."""

    @classmethod
    def of(cls, chain: str, key: str) -> Certificate:
        digest = hashlib.sha256(chain.encode() + b"\0" + key.encode()).hexdigest()[:16]
        return cls(digest, chain, key)


@dataclass(frozen=True, slots=True)
class Credentials:
    """The users of one htpasswd secret, as checked by the core (`edges/certificates.py`)."""

    secret: str
    id: str
    """Content id: a digest of the lines (a new secret with other users is a new id)."""
    lines: tuple[str, ...] = field(repr=False)
    """`user:hash`, one per user; the hashes are never printed."""

    @classmethod
    def of(cls, secret: str, lines: tuple[str, ...]) -> Credentials:
        return cls(secret, hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16], lines)


@dataclass(frozen=True, slots=True)
class CertificateBundle:
    cluster: str
    hosts: tuple[tuple[str, str], ...] = ()
    """(host, certificate id), sorted; `_` is the default TLS host."""
    certificates: tuple[Certificate, ...] = ()
    """Every certificate a host names, once, sorted by id."""
    challenges: tuple[tuple[str, str], ...] = ()
    """(token, key authorization) of each ACME HTTP-01 challenge the proxies answer now, sorted."""
    credentials: tuple[Credentials, ...] = ()
    """The htpasswd secrets the routes' `auth_basic` policies name, sorted by secret."""
    schema: int = SCHEMA

    @property
    def tag(self) -> str:
        """Names the bundle's content: which host has which certificate, which challenges."""
        lines = [f"{host} {cert}" for host, cert in self.hosts]
        lines += [f"challenge {token} {answer}" for token, answer in self.challenges]
        lines += [f"credentials {c.secret} {c.id}" for c in self.credentials]
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]

    def by_host(self) -> dict[str, Certificate]:
        certificates = {c.id: c for c in self.certificates}
        return {host: certificates[cert] for host, cert in self.hosts if cert in certificates}


def bundle_for(
    routing: Routing,
    loaded: Mapping[Pair, Certificate],
    previous: CertificateBundle | None = None,
    *,
    acme: Mapping[tuple[str, ...], Pair] | None = None,
    challenges: Mapping[str, str] | None = None,
    credentials: Mapping[str, Credentials] | None = None,
) -> CertificateBundle:
    """The bundle of `routing`'s cluster: each terminated host with the certificate of its pair
    in `loaded` (an `ssl_acme` host: the pair `acme` has for its host names); a host whose pair
    is not loaded keeps its certificate from `previous`. `challenges`: token -> key
    authorization of the ACME challenges its proxies answer. `credentials`: the htpasswd secrets
    the core could read; a secret not read yet keeps its users from `previous`."""
    kept = previous.by_host() if previous is not None else {}
    pairs: dict[str, Pair | None] = dict(routing.terminated_pairs())
    pairs.update({host: (acme or {}).get(names) for host, names in routing.acme_names().items()})
    chosen: dict[str, Certificate] = {}
    for host, pair in pairs.items():
        certificate = (loaded.get(pair) if pair else None) or kept.get(host)
        if certificate is not None:
            chosen[host] = certificate
    unique = {c.id: c for c in chosen.values()}
    kept_users = {c.secret: c for c in previous.credentials} if previous is not None else {}
    users = [
        found
        for secret in routing.credential_secrets()
        if (found := (credentials or {}).get(secret) or kept_users.get(secret)) is not None
    ]
    return CertificateBundle(
        routing.cluster,
        tuple(sorted((host, c.id) for host, c in chosen.items())),
        tuple(unique[i] for i in sorted(unique)),
        tuple(sorted((challenges or {}).items())),
        tuple(users),
    )
