"""The certificates document nginx's Lua (lua/certificates.lua) reads: the proxy agent writes
it to a 0400 file on the proxy's tmpfs for nginx's next start and posts it to the running nginx.

    interlock certificates 1 TAG
    host NAME ID                      (NAME `_`: the default TLS host)
    certificate ID CHAIN_BYTES KEY_BYTES
    <the PEM chain><the PEM key>
    challenge TOKEN KEY_AUTHORIZATION  (ACME HTTP-01)
    credentials SECRET ID BYTES        (the htpasswd users of an auth_basic secret)
    <the user:hash lines>

Lengths rather than delimiters: a PEM is opaque here. Pure; render layer; nginx only.
"""

from __future__ import annotations

import re

from interlock.render.targets import targets_field
from interlock.wire.certificates import CertificateBundle

FALLBACK_CERTIFICATE = "interlock-fallback.pem"
"""A throwaway self-signed certificate and key, beside nginx.conf (a relative path is read from
the configuration's directory): nginx wants one on an `ssl` listener, and the Lua certificates
(lua/certificates.lua) replace it in every handshake."""

_CHALLENGE = re.compile(r"[A-Za-z0-9_-]+ [A-Za-z0-9_.-]+")
"""A token and its key authorization: base64url, and a dot between the token and the thumbprint."""

CERTIFICATES_FILE = "certificates"
"""The document's file name in nginx's prefix (the proxy's tmpfs work directory)."""


def certificates_document(bundle: CertificateBundle) -> bytes:
    lines = [f"interlock certificates 1 {bundle.tag}".encode()]
    lines += [f"host {host} {cert}".encode() for host, cert in bundle.hosts]
    lines += [
        f"challenge {token} {answer}".encode()
        for token, answer in bundle.challenges
        if _CHALLENGE.fullmatch(token + " " + answer)
    ]
    document = b"\n".join(lines) + b"\n"
    for certificate in bundle.certificates:
        chain, key = certificate.chain.encode(), certificate.key.encode()
        document += f"certificate {certificate.id} {len(chain)} {len(key)}\n".encode() + chain + key
    for users in bundle.credentials:
        text = "".join(line + "\n" for line in users.lines).encode()
        document += f"credentials {targets_field(users.secret)} {users.id} {len(text)}\n".encode() + text
    return document
