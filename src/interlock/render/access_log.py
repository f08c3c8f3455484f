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
    return Token(",".join(user_token(name) for name in sorted({s.service for s in upstream.servers})))


def _cluster(routing: Routing) -> str:
    return user_token(routing.cluster) if routing.cluster else ""


def nginx_json_format(routing: Routing) -> Token:
    """The `log_format ... escape=json` string of nginx (its variables JSON-escaped by nginx)."""
    return operator_string(
        '{"time":$msec,"request_id":"$request_id","cluster":"' + _cluster(routing) + '",'
        '"client":"$remote_addr","host":"$host","method":"$request_method","uri":"$request_uri",'
        '"status":$status,"bytes_sent":$bytes_sent,"upstream":"$proxy_host","service":"$interlock_service",'
        '"upstream_addr":"$upstream_addr","upstream_status":"$upstream_status",'
        '"request_time":$request_time,"upstream_response_time":"$upstream_response_time"}'
    )


def haproxy_json_format(routing: Routing) -> Token:
    """HAProxy's `log-format` string; the client's host and URI pass its `json` converter."""
    return operator_string(
        '{"time":%Ts.%ms,"request_id":"%ID","cluster":"' + _cluster(routing) + '",'
        '"client":"%ci","host":"%[var(txn.host),json(utf8s)]","method":"%HM",'
        '"uri":"%[capture.req.uri,json(utf8s)]","status":%ST,"bytes_sent":%B,"upstream":"%b",'
        '"service":"%[var(txn.service)]","upstream_addr":"%si:%sp","request_ms":%Ta,"connect_ms":%Tc,'
        '"response_ms":%Tr,"termination":"%ts"}'
    )


__all__ = ["haproxy_json_format", "nginx_json_format", "services_of"]
