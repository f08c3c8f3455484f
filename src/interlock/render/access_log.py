"""The JSON request log (`AccessLogFormat = "json"`): one JSON object a request, for a log
shipper or the proxy agent to read without a parser of its own.

Both kinds print the same keys for the same things: `time` (Unix seconds, millisecond
resolution), `request_id` (the `X-Request-ID` sent to the task), `cluster`, `client`, `host`,
`method`, `uri`, `status`, `bytes_sent`, `upstream` (the backend: a host, or a host and context
root), `service` (the services whose tasks serve it, comma-separated; `-` for none, as for a
host no service routes), `upstream_addr`. Timings
are each proxy's own: nginx's `request_time` and `upstream_response_time` in seconds (as nginx
measures them), HAProxy's `request_ms`, `connect_ms`, `response_ms` in milliseconds (-1 when
the step did not happen) and its `termination` state. What came from the client (host, URI) is
JSON-escaped by the proxy; the rest is Interlock's own words. Pure; render layer.
"""

from __future__ import annotations

from interlock.model.routing import Routing, Upstream
from interlock.render.quoting import Token, operator_string, user_token


def services_of(upstream: Upstream) -> Token:
    """The services whose tasks serve `upstream`, comma-separated ("" when none runs)."""
    return Token(",".join(user_token(name) for name in upstream.service_names))


_SHARED = (
    # key, nginx's value, HAProxy's value, whether it is a JSON string (else a number). The
    # cluster's value is the routing's own name, the same on both kinds.
    ("time", "$msec", "%Ts.%ms", False),
    ("request_id", "$request_id", "%ID", True),
    ("cluster", "", "", True),
    ("client", "$remote_addr", "%ci", True),
    ("host", "$host", "%[var(txn.host),json(utf8s)]", True),
    ("method", "$request_method", "%HM", True),
    ("uri", "$request_uri", "%[capture.req.uri,json(utf8s)]", True),
    ("status", "$status", "%ST", False),
    ("bytes_sent", "$bytes_sent", "%B", False),
    ("upstream", "$proxy_host", "%b", True),
    ("service", "$interlock_service", "%[var(txn.service)]", True),
    ("upstream_addr", "$upstream_addr", "%si:%sp", True),
)
"""The keys both kinds log, in order; each kind's own timings follow them."""
_NGINX_TIMINGS = (
    ("upstream_status", "$upstream_status", True),
    ("request_time", "$request_time", False),
    ("upstream_response_time", "$upstream_response_time", True),
)
_HAPROXY_TIMINGS = (
    ("request_ms", "%Ta", False),
    ("connect_ms", "%Tc", False),
    ("response_ms", "%Tr", False),
    ("termination", "%ts", True),
)


def _json_format(routing: Routing, fields: list[tuple[str, str, bool]]) -> Token:
    cluster = user_token(routing.cluster) if routing.cluster else ""
    members = (
        f'"{key}":"{cluster if key == "cluster" else value}"' if quoted else f'"{key}":{value}'
        for key, value, quoted in fields
    )
    return operator_string("{" + ",".join(members) + "}")


def nginx_json_format(routing: Routing, *, upstream: str = "$proxy_host") -> Token:
    """The `log_format ... escape=json` string of nginx (its variables JSON-escaped by nginx);
    `upstream` is the variable naming the upstream (the router's, with run-time routing)."""
    fields = [(k, upstream if k == "upstream" else nginx, q) for k, nginx, _, q in _SHARED]
    return _json_format(routing, fields + list(_NGINX_TIMINGS))


def haproxy_json_format(routing: Routing) -> Token:
    """HAProxy's `log-format` string; the client's host and URI pass its `json` converter."""
    return _json_format(routing, [(k, haproxy, q) for k, _, haproxy, q in _SHARED] + list(_HAPROXY_TIMINGS))


__all__ = ["haproxy_json_format", "nginx_json_format", "services_of"]
