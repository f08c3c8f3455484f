"""A service's policy as the rules of its HAProxy backend: an allow-list (`deny` unless the
source is in it), a rate limit (a stick table of the backend counting each client's requests
over the window; `return 429` past the burst), request and response headers (`set-header`,
`del-header`), CORS (a preflight answered with `return 204`, allowed answers marked), and
retries (layer-7 retries of idempotent requests on another server). Basic and forward
authentication are refused on HAProxy clusters by the core; a backend that names one anyway lets
nobody through.

Every value passed the label grammars (model/policy.py) and is checked again here before it is
printed: networks and origins as plain words, header values double-quoted with `%` doubled
(HAProxy reads them as log-format strings). Pure; render layer; HAProxy only.
"""

from __future__ import annotations

from interlock.errors import UnsafeValue
from interlock.model.policy import HEADER_NAME, HEADER_VALUE, Policy
from interlock.render.quoting import Token, user_token

PREFLIGHT_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"


def _name(name: str) -> str:
    if not HEADER_NAME.fullmatch(name):
        raise UnsafeValue(f"refusing header name {name!r}")
    return name


def _value(value: str) -> str:
    """A header value as a double-quoted HAProxy log-format string."""
    if not HEADER_VALUE.fullmatch(value):
        raise UnsafeValue(f"refusing header value {value!r}")
    return '"' + value.replace("%", "%%") + '"'


def policy_lines(policy: Policy | None) -> tuple[Token, ...]:
    """The backend rules of `policy` (none without one), in the order they apply."""
    if policy is None:
        return ()
    lines = []
    if policy.auth_basic or policy.forward_auth:
        # The core refuses auth_basic and forward_auth on HAProxy clusters; should such a routing
        # reach this renderer anyway, nobody passes.
        lines += [
            "# basic or forward authentication is not built for HAProxy: nobody passes.",
            "http-request deny deny_status 503",
        ]
    if policy.allow_ips:
        networks = " ".join(user_token(n) for n in policy.allow_ips)
        lines += [
            "# allow_ips: other clients are refused.",
            f"http-request deny deny_status 403 unless {{ src {networks} }}",
        ]
    if policy.rate_limit is not None:
        seconds, burst = int(policy.rate_limit.seconds), int(policy.rate_limit.burst)
        lines += [
            "# rate_limit: each client's requests over the window, counted in this backend's table.",
            f"stick-table type ipv6 size 100k expire {seconds}s store http_req_rate({seconds}s)",
            "http-request track-sc2 src",
            f"http-request return status 429 hdr Retry-After {seconds} if {{ sc_http_req_rate(2) gt {burst} }}",
        ]
    if policy.cors_origins:
        if policy.cors_origins == ("*",):
            lines.append('http-request set-var(txn.cors) str("*") if { req.hdr(origin) -m found }')
        else:
            origins = " ".join(user_token(o) for o in policy.cors_origins)
            lines.append(f"http-request set-var(txn.cors) req.hdr(origin) if {{ req.hdr(origin) -i -m str {origins} }}")
        lines += [
            "http-request return status 204 hdr Access-Control-Allow-Origin %[var(txn.cors)]"
            f' hdr Access-Control-Allow-Methods "{PREFLIGHT_METHODS}"'
            " hdr Access-Control-Allow-Headers %[req.hdr(access-control-request-headers)]"
            " hdr Access-Control-Max-Age 600 hdr Vary Origin"
            " if METH_OPTIONS { var(txn.cors) -m found } { req.hdr(access-control-request-method) -m found }",
            "http-response set-header Access-Control-Allow-Origin %[var(txn.cors)] if { var(txn.cors) -m found }",
            "http-response set-header Vary Origin if { var(txn.cors) -m found }",
        ]
    if policy.retries is not None:
        lines += [
            "# retries: an idempotent request tries another task after a connection error, 502, 503 or 504.",
            f"retries {int(policy.retries)}",
            "retry-on conn-failure empty-response response-timeout 502 503 504",
            "option redispatch 1",
            "http-request disable-l7-retry unless { method GET HEAD OPTIONS PUT DELETE }",
        ]
    for direction, headers in (("http-request", policy.request_headers), ("http-response", policy.response_headers)):
        for name, value in headers:
            if value:
                lines.append(f"{direction} set-header {_name(name)} {_value(value)}")
            else:
                lines.append(f"{direction} del-header {_name(name)}")
    return tuple(Token(line) for line in lines)
