"""How HAProxy holds the certificates of a `CertificateBundle`: one combined PEM (chain, then
key) a host, named after the host, and the crt-list the TLS frontend binds, one line a host
with the host as its SNI filter; its first line is the certificate for a handshake no host's
name matches (the default TLS host's, else a throwaway fallback). The proxy agent writes these
files (0400, on the proxy's tmpfs) and changes the running HAProxy through its runtime API
(edges/haproxy_control.py). Pure; render layer; HAProxy only.
"""

from __future__ import annotations

from interlock.wire.certificates import DEFAULT_TLS_HOST, Certificate, CertificateBundle

CERTIFICATES_DIR = "/var/lib/interlock/haproxy/certs"
"""Where the proxy agent writes one combined PEM per certificate secret pair."""

CRT_LIST = "crt-list"
FALLBACK_PEM = "interlock-fallback.pem"
ACME_MAP = "acme.map"
"""ACME HTTP-01 token -> key authorization, the map the HTTP frontend answers challenges from."""
STATE_MAP = "state.map"
"""The proxy's own state: the key `draining` once it drains (its health check then answers 503)."""
DRAINING = "draining"


def pem_name(host: str) -> str:
    """The file of `host`'s certificate (`_.pem` for the default TLS host)."""
    return f"{host}.pem"


def combined_pem(certificate: Certificate) -> str:
    return certificate.chain.rstrip("\n") + "\n" + certificate.key.rstrip("\n") + "\n"


def crt_list_line(directory: str, host: str) -> str:
    """The crt-list line of `host`: its PEM, with its name as the SNI filter (none for the
    default TLS host, whose line comes first)."""
    path = f"{directory}/{pem_name(host)}"
    return path if host == DEFAULT_TLS_HOST else f"{path} {host}"


def crt_list(bundle: CertificateBundle | None, directory: str) -> str:
    hosts = [host for host, _ in bundle.hosts] if bundle else []
    first = crt_list_line(directory, DEFAULT_TLS_HOST) if DEFAULT_TLS_HOST in hosts else f"{directory}/{FALLBACK_PEM}"
    return "\n".join([first, *(crt_list_line(directory, h) for h in hosts if h != DEFAULT_TLS_HOST)]) + "\n"


def acme_map(bundle: CertificateBundle | None) -> str:
    """The ACME map file: one `TOKEN KEY_AUTHORIZATION` line a challenge."""
    return "".join(f"{token} {answer}\n" for token, answer in (bundle.challenges if bundle else ()))
