"""Per-service policies: what a proxy checks or changes on a service's requests before they
reach its tasks (basic and forward authentication, client address allow-lists, rate limits,
headers, CORS, retries), as frozen values and the strict grammars of the labels that set them.

A `Policy` belongs to the services an upstream serves (the label table's values, checked here),
so every route to a service carries that service's policy, context roots included. Every value a
proxy configuration or the targets document prints passed one of these grammars. Pure; model
layer: imports nothing outside `interlock.model` and the standard library.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from interlock.errors import GrammarError

MAX_ADDRESSES = 100
MAX_HEADERS = 20
MAX_ORIGINS = 20

HEADER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,63}")
HEADER_VALUE = re.compile(r"[A-Za-z0-9 _.,:/=+*()@!#%&?~-]{0,256}")
"""A header value: no quote, backslash, `$` or `;`, which a proxy configuration would read."""
_FORWARD_AUTH = re.compile(
    r"http://(?P<service>[A-Za-z0-9][A-Za-z0-9_.-]{0,62})(?::(?P<port>[0-9]{1,5}))?"
    r"(?P<path>/[A-Za-z0-9._~/%-]{0,200}(?:\?[A-Za-z0-9._~%&=-]{0,200})?)?"
)
_REALM = re.compile(r"[A-Za-z0-9 _.,:/=+*()@!#%&?~-]{1,64}")
_ORIGIN = re.compile(r"https?://[a-z0-9]([a-z0-9.-]{0,252}[a-z0-9])?(:[0-9]{1,5})?")
_RATE = re.compile(r"([0-9]{1,6})/(s|m)")
_RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "upgrade",
        "te",
        "trailer",
        "keep-alive",
        "proxy-connection",
        "x-forwarded-for",
        "x-real-ip",
        "x-request-id",
    }
)
"""Headers the proxy itself keeps right (framing, the client's address): no label may set them."""


@dataclass(frozen=True, slots=True, order=True)
class RateLimit:
    count: int
    """Requests allowed per `seconds` from one client address..."""
    seconds: int
    """...in each window of this many seconds (1 or 60)."""
    burst: int
    """Requests one client may make within a window before it is refused (at least `count`)."""


@dataclass(frozen=True, slots=True, order=True)
class ForwardAuth:
    """Each request first asked of an auth service (a Swarm service on the network the route's
    service is reached over); a 2xx answer lets it through, any other is the client's answer."""

    service: str
    port: int
    path: str
    """The path (and query) asked, `/` at least; the client's method, URI and host travel in
    X-Forwarded-Method, X-Forwarded-Uri, X-Forwarded-Host, X-Forwarded-Proto."""
    request_headers: tuple[str, ...] = ()
    """The client's headers sent to the auth service as they are (no other header is)."""
    response_headers: tuple[str, ...] = ()
    """The auth service's answer headers set on the request to the task (a client's own
    headers of these names never reach the task)."""
    upstream: str = ""
    """The upstream of the auth service's tasks on that network (the routing model names it)."""


@dataclass(frozen=True, slots=True, order=True)
class Policy:
    allow_ips: tuple[str, ...] = ()
    """Networks (CIDR, normalised) whose clients may reach the service; empty: everyone."""
    rate_limit: RateLimit | None = None
    request_headers: tuple[tuple[str, str], ...] = ()
    """(name, value) set on the request to the task; an empty value removes the header."""
    response_headers: tuple[tuple[str, str], ...] = ()
    """(name, value) set on the response to the client; an empty value removes the header."""
    cors_origins: tuple[str, ...] = ()
    """Origins allowed cross-origin requests (`*`: any); empty: no CORS handling."""
    retries: int | None = None
    """Retries of an idempotent request on another task after a connection error or a 502, 503
    or 504; None: the proxy's default (ProxyNextUpstreamTries - 1 on nginx, none on HAProxy)."""
    auth_basic: str = ""
    """The Docker secret (htpasswd) whose users may pass; empty: no authentication."""
    auth_realm: str = ""
    """The realm a 401 names; empty: the name of the service that owns the route."""
    forward_auth: ForwardAuth | None = None

    def __bool__(self) -> bool:
        return self != Policy()

    def summary(self) -> str:
        """One short column for `interlock routes`: what applies, not every value."""
        parts = []
        if self.auth_basic:
            parts.append("basic auth")
        if self.forward_auth:
            parts.append(f"forward auth {self.forward_auth.service}")
        if self.allow_ips:
            parts.append(f"allow {len(self.allow_ips)} nets")
        if self.rate_limit:
            unit = "s" if self.rate_limit.seconds == 1 else "m"
            parts.append(f"rate {self.rate_limit.count}/{unit}")
        if self.request_headers or self.response_headers:
            parts.append("headers")
        if self.cors_origins:
            parts.append("cors")
        if self.retries is not None:
            parts.append(f"retries {self.retries}")
        return ", ".join(parts) or "-"


def address_list(raw: str) -> tuple[str, ...]:
    """Comma-separated IPv4/IPv6 addresses or networks (CIDR), normalised and sorted."""
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if not items:
        raise GrammarError("no address given; allowed: comma-separated IPs or CIDRs (v4 or v6)")
    if len(items) > MAX_ADDRESSES:
        raise GrammarError(f"{len(items)} entries; at most {MAX_ADDRESSES} are allowed")
    networks = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise GrammarError(
                f"{item[:64]!r} is not an IP address or CIDR (such as 10.0.0.0/8 or 2001:db8::/32)"
            ) from None
    return tuple(sorted({str(n) for n in networks}))


def rate(raw: str) -> tuple[int, int]:
    """`N/s` or `N/m`: (count, window seconds)."""
    match = _RATE.fullmatch(raw.strip())
    if not match or int(match.group(1)) < 1:
        raise GrammarError("not a rate; allowed: N/s or N/m with N a whole number from 1 to 999999 (e.g. 10/s)")
    return int(match.group(1)), 1 if match.group(2) == "s" else 60


def burst(raw: str) -> int:
    text = raw.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 7 or not 1 <= int(text) <= 1_000_000:
        raise GrammarError("allowed: a whole number from 1 to 1000000")
    return int(text)


def header_pairs(raw: str) -> tuple[tuple[str, str], ...]:
    """`Name: value` pairs separated by `;`; an empty value removes the header."""
    items = [item.strip() for item in raw.split(";") if item.strip()]
    if not items:
        raise GrammarError("no header given; allowed: 'Name: value' pairs separated by ';'")
    if len(items) > MAX_HEADERS:
        raise GrammarError(f"{len(items)} headers; at most {MAX_HEADERS} are allowed")
    pairs: dict[str, tuple[str, str]] = {}
    for item in items:
        name, colon, value = item.partition(":")
        name, value = name.strip(), value.strip()
        if not colon or not HEADER_NAME.fullmatch(name):
            raise GrammarError(
                f"{item[:64]!r}: allowed: 'Name: value', the name a letter then up to 63 of A-Z a-z 0-9 -"
            )
        if name.lower() in _RESERVED_HEADERS:
            raise GrammarError(f"{name} is kept by the proxy itself; it cannot be set by a label")
        if not HEADER_VALUE.fullmatch(value):
            raise GrammarError(
                f"the value of {name} is not allowed: up to 256 of A-Z a-z 0-9, space and "
                "_ . , : / = + * ( ) @ ! # % & ? ~ -"
            )
        if name.lower() in pairs:
            raise GrammarError(f"{name} is given twice")
        pairs[name.lower()] = (name, value)
    return tuple(sorted(pairs.values(), key=lambda pair: pair[0].lower()))


def origin_list(raw: str) -> tuple[str, ...]:
    """`*`, or comma-separated origins (`https://app.example.com[:port]`), lower case, sorted."""
    text = raw.strip()
    if text == "*":
        return ("*",)
    items = [item.strip().lower().rstrip("/") for item in text.split(",") if item.strip()]
    if not items:
        raise GrammarError("no origin given; allowed: * or comma-separated origins such as https://app.example.com")
    if len(items) > MAX_ORIGINS:
        raise GrammarError(f"{len(items)} origins; at most {MAX_ORIGINS} are allowed")
    for item in items:
        if not _ORIGIN.fullmatch(item):
            raise GrammarError(
                f"{item[:64]!r} is not an origin; allowed: * or scheme://host[:port], such as https://app.example.com"
            )
    return tuple(sorted(set(items)))


def forward_auth_url(raw: str) -> tuple[str, int, str]:
    """`http://SERVICE[:PORT][/PATH[?QUERY]]`: (service, port, path)."""
    match = _FORWARD_AUTH.fullmatch(raw.strip())
    port = int(match.group("port") or 80) if match else 0
    if not match or not 1 <= port <= 65535 or ".." in (match.group("path") or ""):
        raise GrammarError(
            "not an auth service URL; allowed: http://SERVICE[:PORT][/PATH], SERVICE a Swarm service on the "
            "network this service is reached over, PATH of A-Z a-z 0-9 . _ ~ / % - (and ?query)"
        )
    return match.group("service"), port, match.group("path") or "/"


def header_names(raw: str) -> tuple[str, ...]:
    """Comma-separated header names, sorted and each once (case-insensitively)."""
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if not items:
        raise GrammarError("no header name given; allowed: comma-separated header names such as Cookie, X-User")
    if len(items) > MAX_HEADERS:
        raise GrammarError(f"{len(items)} headers; at most {MAX_HEADERS} are allowed")
    names: dict[str, str] = {}
    for item in items:
        if not HEADER_NAME.fullmatch(item):
            raise GrammarError(f"{item[:64]!r} is not a header name; allowed: a letter then up to 63 of A-Z a-z 0-9 -")
        if item.lower() in _RESERVED_HEADERS:
            raise GrammarError(f"{item} is kept by the proxy itself; it cannot be named by a label")
        names.setdefault(item.lower(), item)
    return tuple(sorted(names.values(), key=str.lower))


def realm(raw: str) -> str:
    text = raw.strip()
    if not _REALM.fullmatch(text):
        raise GrammarError("not a realm; allowed: 1-64 of A-Z a-z 0-9, space and _ . , : / = + * ( ) @ ! # % & ? ~ -")
    return text


def retry_count(raw: str) -> int:
    text = raw.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 1 or int(text) > 5:
        raise GrammarError("allowed: a whole number from 0 to 5")
    return int(text)
