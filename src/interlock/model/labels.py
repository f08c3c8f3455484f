"""The `com.docker.lb.*` label table and the parser that reads a service's labels with it.

`LABELS` is the single declaration of every label: name, grammar, default and meaning. The README
reference is generated from it (`interlock labels --markdown`) and a test checks the two agree.
`parse_labels` never raises: each bad value becomes a `Problem`, and a service with any error is
left out of routing while every other service is still routed. Pure; model layer.
"""

from __future__ import annotations

import difflib
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from interlock.errors import GrammarError
from interlock.model import grammar, policy
from interlock.model.grammar import Url
from interlock.model.policy import ForwardAuth, Policy, RateLimit
from interlock.model.snapshot import LABEL_PREFIX, Service
from interlock.problems import Problem, Severity


@dataclass(frozen=True, slots=True)
class LabelSpec:
    """One label: how it is written, what it accepts and what it does."""

    name: str
    """The part after `com.docker.lb.`."""
    allowed: str
    """The grammar in words, as shown to users."""
    default: str
    meaning: str
    example: str
    parse: Callable[[str], Any]

    @property
    def key(self) -> str:
        return LABEL_PREFIX + self.name


@dataclass(frozen=True, slots=True, order=True)
class Redirect:
    """`source,target`: requests for the source host are answered 302 to target + request URI."""

    source: Url
    target: Url


def _redirect_list(raw: str) -> tuple[Redirect, ...]:
    items = [item.strip() for item in raw.split(";") if item.strip()]
    if not items:
        raise GrammarError("no redirect given; allowed: source,target pairs separated by ';'")
    redirects = []
    for item in items:
        parts = [p.strip() for p in item.split(",")]
        if len(parts) != 2:
            raise GrammarError(f"{item!r} is not a pair; allowed: <source URL>,<target URL> separated by ';'")
        redirects.append(
            Redirect(
                source=grammar.url(parts[0], require_scheme=False),
                target=grammar.url(parts[1], require_scheme=True),
            )
        )
    return tuple(dict.fromkeys(redirects))


_BOOL = "true or false"


POLICY_LABELS = (
    "auth_basic",
    "auth_basic_realm",
    "allow_ips",
    "rate_limit",
    "rate_limit_burst",
    "request_headers",
    "response_headers",
    "cors_origins",
    "retries",
    "forward_auth",
    "forward_auth_headers",
    "forward_auth_response_headers",
)
"""The labels that make a service's `Policy`."""


LABELS: tuple[LabelSpec, ...] = (
    LabelSpec(
        "hosts",
        "comma-separated DNS names (RFC 1123; unicode is converted to IDNA A-labels)",
        "none",
        "Host names (HTTP Host header, or TLS SNI) routed to this service. Required unless default_backend=true.",
        "app.example.com,www.example.com",
        grammar.hostname_list,
    ),
    LabelSpec(
        "port",
        "a whole number 1-65535",
        "the service's only published target port",
        "Port the tasks listen on. The proxy connects to task IP:port (no published port "
        "needed); in host mode it uses the port the task publishes for this target port.",
        "8080",
        grammar.port,
    ),
    LabelSpec(
        "network",
        "a Docker network name the service is attached to",
        "the service's only network",
        "Network on which the proxy reaches the tasks. Needed when the service is on several "
        "networks; stacks use the prefixed name (stack_net).",
        "demo_frontend",
        grammar.network_name,
    ),
    LabelSpec(
        "context_root",
        "an absolute path of plain segments (A-Z a-z 0-9 . _ ~ -)",
        "none (whole host)",
        "Route only this path prefix of the host to the service. Several services may share a "
        "host with different context roots.",
        "/app",
        grammar.url_path,
    ),
    LabelSpec(
        "context_root_rewrite",
        _BOOL,
        "false",
        "Strip the context root before proxying (/app/x reaches the task as /x); a bare /app is answered 301 to /app/.",
        "true",
        grammar.boolean,
    ),
    LabelSpec(
        "ssl_cert",
        "a Docker secret name",
        "none",
        "Terminate TLS for the service's hosts with this certificate secret (PEM). The core reads the "
        "secret and sends the certificate to the proxies, which serve it by SNI with no restart.",
        "app.example.com.cert",
        grammar.secret_name,
    ),
    LabelSpec(
        "ssl_key",
        "a Docker secret name",
        "the ssl_cert secret (a combined PEM)",
        "Private key secret for ssl_cert.",
        "app.example.com.key",
        grammar.secret_name,
    ),
    LabelSpec(
        "ssl_acme",
        _BOOL,
        "false",
        "Terminate TLS for the service's hosts with one certificate the core orders from the ACME "
        "server of its [ACME] table (HTTP-01, answered by every proxy) and renews. Not with ssl_cert "
        "or ssl_passthrough.",
        "true",
        grammar.boolean,
    ),
    LabelSpec(
        "ssl_only",
        _BOOL,
        "false",
        "Answer plain-HTTP requests for the service's hosts with a 302 to https on the proxy's published TLS port.",
        "true",
        grammar.boolean,
    ),
    LabelSpec("ssl_backend", _BOOL, "false", "The proxy speaks TLS to the tasks.", "true", grammar.boolean),
    LabelSpec(
        "ssl_backend_tls_verify",
        "none or required",
        "none",
        "With ssl_backend, whether the proxy verifies the tasks' certificates.",
        "required",
        grammar.one_of("none", "required"),
    ),
    LabelSpec(
        "backend_protocol",
        "http or grpc",
        "http",
        "What the proxy speaks to the tasks: HTTP/1.1, or gRPC (HTTP/2; in clear, or TLS with ssl_backend). "
        "gRPC clients reach the host over TLS (ssl_cert), where the proxy speaks HTTP/2.",
        "grpc",
        grammar.one_of("http", "grpc"),
    ),
    LabelSpec(
        "ssl_passthrough",
        _BOOL,
        "false",
        "Forward the raw TLS stream, chosen by SNI, to the tasks, which terminate TLS "
        "themselves. No headers are added; plain HTTP for the host redirects to https.",
        "true",
        grammar.boolean,
    ),
    LabelSpec(
        "websocket_endpoints",
        "comma-separated absolute paths",
        "none",
        "Paths proxied with HTTP/1.1 Upgrade/Connection headers for websockets.",
        "/ws,/events",
        grammar.path_list,
    ),
    LabelSpec(
        "sticky_session_cookie",
        "a cookie name (a letter, then A-Z a-z 0-9 _)",
        "none",
        "Choose the task by a consistent hash of this cookie's value.",
        "session",
        grammar.cookie_name,
    ),
    LabelSpec(
        "ip_hash",
        _BOOL,
        "false",
        "Choose the task by the client IP address.",
        "true",
        grammar.boolean,
    ),
    LabelSpec(
        "redirects",
        "';'-separated pairs '<source URL>,<target URL>'",
        "none",
        "Requests whose host matches a source (one of this service's hosts) get 302 to the "
        "target followed by the original URI. A source with a scheme applies on that "
        "listener only.",
        "http://old.example.com,https://new.example.com",
        _redirect_list,
    ),
    LabelSpec(
        "service_cluster",
        "a name of up to 63 of A-Z a-z 0-9 _ . -",
        "'' (the default cluster)",
        "Only the extension and proxy whose ServiceCluster equals this route the service.",
        "us-east",
        grammar.cluster_name,
    ),
    LabelSpec(
        "backend_mode",
        "task, vip or default (= task)",
        "task",
        "task: targets are the task IPs. vip: the single target is the service's virtual IP "
        "(no reconfiguration on scaling; no sticky sessions, websockets or canary).",
        "vip",
        grammar.one_of("task", "vip", "default"),
    ),
    LabelSpec(
        "default_backend",
        _BOOL,
        "false",
        "Serve every host no other service claims (HTTP default server and TLS SNI default).",
        "true",
        grammar.boolean,
    ),
    LabelSpec(
        "max_fails",
        "a whole number 0-100",
        "nginx's 1",
        "Failed attempts within fail_timeout after which a task is skipped for fail_timeout.",
        "3",
        grammar.small_count,
    ),
    LabelSpec(
        "fail_timeout",
        "a time such as 10s (units ms, s, m, h; whole seconds, rounded up)",
        "nginx's 10s",
        "Window for max_fails, and how long a failed task is skipped.",
        "30s",
        grammar.nginx_seconds,
    ),
    LabelSpec(
        "auth_basic",
        "a Docker secret name",
        "none",
        "HTTP basic authentication: the secret holds htpasswd lines (bcrypt, apr1 or SHA-crypt hashes); "
        "requests without a valid user and password get 401 with WWW-Authenticate. nginx clusters only.",
        "shop-users",
        grammar.secret_name,
    ),
    LabelSpec(
        "auth_basic_realm",
        "1-64 of A-Z a-z 0-9, space and _ . , : / = + * ( ) @ ! # % & ? ~ -",
        "the name of the service that owns the route",
        "The realm the 401 of auth_basic names.",
        "Shop",
        policy.realm,
    ),
    LabelSpec(
        "allow_ips",
        "comma-separated IPs or CIDRs (v4 or v6)",
        "everyone",
        "Only clients from these addresses reach the service; others get 403. The client address is the "
        "connection's, or the PROXY protocol's / X-Forwarded-For's where the extension's TrustedProxies says so.",
        "10.0.0.0/8,2001:db8::/32",
        policy.address_list,
    ),
    LabelSpec(
        "rate_limit",
        "N/s or N/m",
        "none",
        "Requests per client address to this service, counted across the proxy's workers; past the burst "
        "the proxy answers 429 with Retry-After.",
        "10/s",
        policy.rate,
    ),
    LabelSpec(
        "rate_limit_burst",
        "a whole number 1-1000000",
        "the rate's N",
        "With rate_limit: requests one client may make within one window (second or minute).",
        "20",
        policy.burst,
    ),
    LabelSpec(
        "request_headers",
        "'Name: value' pairs separated by ';'",
        "none",
        "Headers set on the request to the task; an empty value removes the header.",
        "X-Tenant: blue; X-Debug:",
        policy.header_pairs,
    ),
    LabelSpec(
        "response_headers",
        "'Name: value' pairs separated by ';'",
        "none",
        "Headers set on the response to the client; an empty value removes the header.",
        "Strict-Transport-Security: max-age=31536000",
        policy.header_pairs,
    ),
    LabelSpec(
        "cors_origins",
        "* or comma-separated origins",
        "none",
        "Cross-origin requests from these origins: the proxy answers preflight OPTIONS with 204 and adds "
        "Access-Control-Allow-Origin to answers for them.",
        "https://app.example.com",
        policy.origin_list,
    ),
    LabelSpec(
        "retries",
        "a whole number 0-5",
        "nginx: ProxyNextUpstreamTries - 1; HAProxy: after connect errors only",
        "Retries of an idempotent request (GET, HEAD, OPTIONS, PUT, DELETE) on another task after a "
        "connection error or a 502, 503 or 504. A try that fails at connect (nothing was sent) goes on "
        "to another task for any method, up to 6 tasks; on nginx it does not count against this "
        "number (unless 0), on HAProxy it does once this label is set.",
        "2",
        policy.retry_count,
    ),
    LabelSpec(
        "forward_auth",
        "http://SERVICE[:PORT][/PATH]",
        "none",
        "Each request is first sent (GET, no body) to this auth service, a Swarm service on the network "
        "this service is reached over: a 2xx answer lets it through, any other answer is the client's. "
        "nginx clusters only.",
        "http://auth:9000/check",
        policy.forward_auth_url,
    ),
    LabelSpec(
        "forward_auth_headers",
        "comma-separated header names",
        "none",
        "The client's headers sent to forward_auth as they are (besides X-Forwarded-Method, -Uri, -Host, "
        "-Proto and -For, which always go).",
        "Cookie,Authorization",
        policy.header_names,
    ),
    LabelSpec(
        "forward_auth_response_headers",
        "comma-separated header names",
        "none",
        "Headers of forward_auth's 2xx answer set on the request to the task; a client's own headers of "
        "these names never reach the task.",
        "X-User",
        policy.header_names,
    ),
)

LABELS_BY_KEY: dict[str, LabelSpec] = {spec.key: spec for spec in LABELS}


@dataclass(frozen=True, slots=True)
class ServiceLabels:
    """A service's labels, parsed and checked against each other."""

    hosts: tuple[str, ...] = ()
    port: int | None = None
    network: str | None = None
    context_root: str = "/"
    context_root_rewrite: bool = False
    ssl_cert: str = ""
    ssl_key: str = ""
    ssl_acme: bool = False
    ssl_only: bool = False
    ssl_backend: bool = False
    ssl_backend_tls_verify: str = "none"
    backend_protocol: str = "http"
    ssl_passthrough: bool = False
    websocket_endpoints: tuple[str, ...] = ()
    sticky_session_cookie: str = ""
    ip_hash: bool = False
    redirects: tuple[Redirect, ...] = ()
    service_cluster: str = ""
    backend_mode: str = "task"
    default_backend: bool = False
    max_fails: int | None = None
    fail_timeout: str | None = None
    allow_ips: tuple[str, ...] = ()
    rate_limit: tuple[int, int] | None = None
    rate_limit_burst: int | None = None
    request_headers: tuple[tuple[str, str], ...] = ()
    response_headers: tuple[tuple[str, str], ...] = ()
    cors_origins: tuple[str, ...] = ()
    auth_basic: str = ""
    auth_basic_realm: str = ""
    retries: int | None = None
    forward_auth: tuple[str, int, str] | None = None
    forward_auth_headers: tuple[str, ...] = ()
    forward_auth_response_headers: tuple[str, ...] = ()

    @property
    def policy(self) -> Policy | None:
        """The service's policy, as its proxies apply it (None: nothing to apply)."""
        limit = None
        if self.rate_limit is not None:
            count, seconds = self.rate_limit
            limit = RateLimit(count, seconds, max(count, self.rate_limit_burst or count))
        policy = Policy(
            self.allow_ips,
            limit,
            self.request_headers,
            self.response_headers,
            self.cors_origins,
            self.retries,
            self.auth_basic,
            self.auth_basic_realm,
            ForwardAuth(*self.forward_auth, self.forward_auth_headers, self.forward_auth_response_headers)
            if self.forward_auth
            else None,
        )
        return policy or None


@dataclass(slots=True)
class _Reader:
    service: Service
    labels: dict[str, str]
    problems: list[Problem] = field(default_factory=list)

    def report(self, name: str, reason: str, severity: Severity = Severity.ERROR) -> None:
        key = name if name == "-" else LABEL_PREFIX + name
        value = self.labels.get(key, "-")
        self.problems.append(Problem(self.service.name, key, value, reason, severity, service_id=self.service.id))

    @property
    def has_error(self) -> bool:
        return any(p.severity is Severity.ERROR for p in self.problems)


def _refuse_invisible(text: str) -> None:
    # Checked once for every label, before any grammar trims or normalises the value.
    # isprintable() is False for every category refused here (and for non-ASCII spaces, which
    # the grammars refuse anyway), so the per-character scan only runs to name the culprit.
    if text.isprintable():
        return
    for char in text:
        if unicodedata.category(char) in _INVISIBLE:
            raise GrammarError(
                f"contains the control or invisible character U+{ord(char):04X}; label values are printable text"
            )


_INVISIBLE = frozenset({"Cc", "Cf", "Zl", "Zp", "Co", "Cs", "Cn"})


def service_cluster_of(service: Service) -> str | None:
    """The cluster a service asks for, or None when the label is invalid."""
    raw = service.label_map.get(LABEL_PREFIX + "service_cluster", "")
    try:
        return grammar.cluster_name(raw)
    except GrammarError:
        return None


def parse_labels(service: Service) -> tuple[ServiceLabels | None, tuple[Problem, ...]]:
    """Read a service's `com.docker.lb.*` labels.

    Returns `(None, ())` for a service without such labels, `(None, problems)` when any error
    excludes it, and `(labels, warnings)` otherwise.
    """
    raw = dict(service.labels)
    if not raw:
        return None, ()
    reader = _Reader(service, raw)
    values: dict[str, Any] = {}
    for key, text in raw.items():
        spec = LABELS_BY_KEY.get(key)
        if spec is None:
            close = difflib.get_close_matches(key, LABELS_BY_KEY, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            reader.report(key.removeprefix(LABEL_PREFIX), f"unknown label, ignored{hint}", Severity.WARNING)
            continue
        try:
            if len(text) > MAX_LABEL_CHARS:
                raise GrammarError(f"{len(text)} characters; at most {MAX_LABEL_CHARS} are allowed in one label")
            _refuse_invisible(text)
            values[spec.name] = spec.parse(text)
        except GrammarError as exc:
            reader.report(spec.name, str(exc))
    labels = ServiceLabels(**values)
    _check_caps(labels, reader)
    _check_combinations(labels, reader)
    if reader.has_error:
        return None, tuple(reader.problems)
    return labels, tuple(reader.problems)


MAX_LABEL_CHARS = 4096
"""Longest label value read: a few KB of labels once made a 272 MB configuration."""
MAX_HOSTS = 100
MAX_WEBSOCKET_ENDPOINTS = 20
MAX_REDIRECTS = 20
MAX_LOCATIONS = 1000
"""Locations one service may add (hosts x (paths + websocket endpoints)), so one service cannot
make the cluster's configuration too big to validate."""


def _check_caps(labels: ServiceLabels, reader: _Reader) -> None:
    for name, count, cap in (
        ("hosts", len(labels.hosts), MAX_HOSTS),
        ("websocket_endpoints", len(labels.websocket_endpoints), MAX_WEBSOCKET_ENDPOINTS),
        ("redirects", len(labels.redirects), MAX_REDIRECTS),
    ):
        if count > cap:
            reader.report(name, f"{count} entries; at most {cap} are allowed per service")
    locations = max(1, len(labels.hosts)) * (1 + len(labels.websocket_endpoints))
    if locations > MAX_LOCATIONS:
        reader.report(
            "websocket_endpoints",
            f"hosts x (1 + websocket endpoints) = {locations} locations; at most {MAX_LOCATIONS} per service",
        )


def _check_combinations(labels: ServiceLabels, reader: _Reader) -> None:
    present = reader.labels
    for name in ("forward_auth_headers", "forward_auth_response_headers"):
        if LABEL_PREFIX + name in present and labels.forward_auth is None:
            reader.report(name, "set without forward_auth; set forward_auth too, or neither")
    if labels.auth_basic_realm and not labels.auth_basic:
        reader.report("auth_basic_realm", "set without auth_basic; set both, or neither")
    if labels.rate_limit_burst is not None and labels.rate_limit is None:
        reader.report("rate_limit_burst", "set without rate_limit; set both, or only rate_limit")
    if labels.rate_limit and labels.rate_limit_burst is not None and labels.rate_limit_burst < labels.rate_limit[0]:
        reader.report("rate_limit_burst", f"smaller than the rate's {labels.rate_limit[0]}; allowed: at least N")
    policy_labels = [
        n
        for n in (
            "auth_basic",
            "forward_auth",
            "allow_ips",
            "rate_limit",
            "request_headers",
            "response_headers",
            "cors_origins",
        )
        if LABEL_PREFIX + n in present
    ]
    if labels.ssl_passthrough:
        for name in policy_labels:
            reader.report(
                name, "cannot be combined with ssl_passthrough=true: the proxy does not see passthrough requests"
            )
    if not labels.hosts and not labels.default_backend and "hosts" not in _failed(reader):
        reader.report("hosts", "missing; every routed service needs hosts unless default_backend=true")
    if labels.ssl_key and not labels.ssl_cert:
        reader.report("ssl_key", "set without ssl_cert; set both, or only ssl_cert for a combined PEM")
    if labels.ssl_acme:
        for name, combined in (("ssl_cert", bool(labels.ssl_cert)), ("ssl_passthrough", labels.ssl_passthrough)):
            if combined:
                reader.report(name, "cannot be combined with ssl_acme=true: the certificate is either ordered or named")
        if labels.default_backend:
            reader.report(
                "ssl_acme", "cannot be combined with default_backend=true: ACME needs the host names to order"
            )
    if labels.ssl_passthrough:
        for name, value in (
            ("ssl_cert", labels.ssl_cert),
            ("ssl_backend", labels.ssl_backend),
            ("sticky_session_cookie", labels.sticky_session_cookie),
            ("websocket_endpoints", labels.websocket_endpoints),
            ("redirects", labels.redirects),
            ("backend_protocol", labels.backend_protocol == "grpc"),
        ):
            if value:
                reader.report(
                    name,
                    "cannot be combined with ssl_passthrough=true: the proxy does not decrypt passthrough traffic",
                )
        if labels.context_root != "/":
            reader.report(
                "context_root",
                "cannot be combined with ssl_passthrough=true: the proxy does not see paths of passthrough traffic",
            )
    if labels.default_backend and labels.ssl_passthrough:
        reader.report(
            "default_backend",
            "cannot be combined with ssl_passthrough=true; the default backend must be terminated or plain HTTP",
        )
    if labels.ssl_only and not (labels.ssl_cert or labels.ssl_passthrough or labels.ssl_acme):
        reader.report("ssl_only", "needs ssl_cert, ssl_acme or ssl_passthrough=true: there is no TLS to redirect to")
    if LABEL_PREFIX + "ssl_backend_tls_verify" in present and not labels.ssl_backend:
        reader.report("ssl_backend_tls_verify", "ignored without ssl_backend=true", Severity.WARNING)
    if labels.backend_protocol == "grpc":
        if labels.websocket_endpoints:
            reader.report("websocket_endpoints", "cannot be combined with backend_protocol=grpc: gRPC is not HTTP/1.1")
        if labels.context_root_rewrite:
            reader.report(
                "context_root_rewrite",
                "cannot be combined with backend_protocol=grpc: a gRPC method's path is its name, not to be cut",
            )
        if not (labels.ssl_cert or labels.ssl_acme or labels.ssl_passthrough):
            reader.report(
                "backend_protocol",
                "grpc without ssl_cert: gRPC clients need HTTP/2, which the proxy speaks on TLS only",
                Severity.WARNING,
            )
    if labels.context_root_rewrite and labels.context_root == "/":
        reader.report("context_root_rewrite", "ignored without a context_root", Severity.WARNING)
    if labels.ip_hash and labels.sticky_session_cookie:
        reader.report("ip_hash", "cannot be combined with sticky_session_cookie; choose one")
    if labels.backend_mode == "vip":
        for name, value in (
            ("sticky_session_cookie", labels.sticky_session_cookie),
            ("ip_hash", labels.ip_hash),
            ("websocket_endpoints", labels.websocket_endpoints),
        ):
            if value:
                reader.report(
                    name,
                    "not supported with backend_mode=vip: the proxy sees one virtual IP, "
                    "not the tasks; use backend_mode=task",
                )
    hosts = set(labels.hosts)
    for redirect in labels.redirects:
        if redirect.source.host not in hosts:
            reader.report(
                "redirects",
                f"source host {redirect.source.host!r} is not one of this "
                f"service's hosts ({', '.join(labels.hosts) or 'none'}); add it to hosts",
            )
        if redirect.source.scheme == "https" and not labels.ssl_cert:
            reader.report(
                "redirects",
                f"source {redirect.source.text()!r} is https, but the service "
                "has no ssl_cert, so there is no https listener for it; ignored",
                Severity.WARNING,
            )
        if redirect.source.path:
            reader.report(
                "redirects",
                "a redirect source is a host (with an optional scheme); "
                f"paths are not matched: {redirect.source.text()!r}",
            )


def _failed(reader: _Reader) -> set[str]:
    return {p.label.removeprefix(LABEL_PREFIX) for p in reader.problems}
