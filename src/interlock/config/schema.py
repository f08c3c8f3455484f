"""The configuration schema: every core, `[Extensions.NAME]` and nginx `Config` key.

Keys match case-insensitively (as Interlock's Go decoder did: `RlimitNoFile` is `RLimitNoFile`).
Unknown keys are rejected with the list of allowed ones. Values that end up in nginx syntax are
checked against allow-list patterns here, so a bad file stops at load time. Pure.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Literal

import jinja2
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from interlock import __version__
from interlock.config.durations import parse_duration
from interlock.constants import CONTROL_NETWORK, INTERNAL_PORTS, MANAGER_CONSTRAINT
from interlock.model.labels import POLICY_LABELS

_NO_BASIC_AUTH = (
    "basic authentication is built for nginx clusters only: HAProxy checks passwords only against a "
    "userlist in its configuration, which Interlock keeps in a Docker config; route the service through an "
    "nginx cluster (com.docker.lb.service_cluster)"
)
_NO_FORWARD_AUTH = (
    "forward authentication is built for nginx clusters only: HAProxy has no subrequest to ask an auth "
    "service with; route the service through an nginx cluster (com.docker.lb.service_cluster)"
)
_FORWARD_AUTH_LABELS = ("forward_auth", "forward_auth_headers", "forward_auth_response_headers")


def _pattern(regex: str, allowed: str) -> AfterValidator:
    compiled = re.compile(regex)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"{value!r} is not allowed; allowed: {allowed}")
        return value

    return AfterValidator(check)


def _duration(value: str) -> str:
    parse_duration(value)
    return value


def _single_line(value: str) -> str:
    if any(ch in value for ch in "\r\n\x00"):
        raise ValueError("must be a single line (no newline, carriage return or NUL)")
    return value


def _raw_directive(value: str) -> str:
    _single_line(value)
    text = value.strip()
    if not (text.endswith(";") or text.endswith("}")):
        raise ValueError(f"{value!r} is not a complete nginx directive; it must end with ';' (or '}}' for a block)")
    return value


def _haproxy_line(value: str) -> str:
    """One HAProxy configuration line (GlobalOptions, DefaultOptions): the operator's by design,
    but one line, so it cannot open a section of its own."""
    _single_line(value)
    if not value.strip():
        raise ValueError("an empty line is not an option")
    return value


def _template(value: str) -> str:
    """A Jinja2 template that parses (what it prints is checked when it renders)."""
    if value:
        try:
            jinja2.Environment().parse(value)
        except jinja2.TemplateSyntaxError as exc:
            raise ValueError(f"not a Jinja2 template: line {exc.lineno}: {exc.message}") from exc
    return value


DEBUG_ARGS = frozenset({"-D", "--debug"})


def _role_args(value: tuple[str, ...]) -> tuple[str, ...]:
    """Interlock's `Args`/`ProxyArgs`: `-D` (debug logging) is what Interlock's own configs set;
    empty strings (Interlock 3.0.0 wrote `[""]`) mean nothing. Anything else has no meaning for
    these roles, and is refused here rather than crash-looping the service."""
    unknown = [a for a in value if a and a not in DEBUG_ARGS]
    if unknown:
        raise ValueError(f"{unknown[0]!r} is not allowed; allowed: -D or --debug (debug logging), or nothing")
    return value


RoleArgs = Annotated[tuple[str, ...], AfterValidator(_role_args)]

_NET_SYSCTL = re.compile(r"net\.(ipv4|ipv6)\.[a-z0-9_.]+|net\.core\.somaxconn")
_SYSCTL_VALUE = re.compile(r"[0-9]+( [0-9]+)*")
DEFAULT_PROXY_SYSCTLS = {
    "net.ipv4.tcp_retries2": "3",
    "net.ipv4.tcp_keepalive_time": "3",
    "net.ipv4.tcp_keepalive_intvl": "1",
    "net.ipv4.tcp_keepalive_probes": "3",
}
"""A node that vanishes (its link cut) sends no reset. A request nginx wrote into a kept-alive
connection to one of its tasks would hang for proxy_read_timeout: with 3 retransmissions the
kernel gives up on unacknowledged data after about 3 s instead of about 15 minutes; and a request
the task had already acknowledged (nothing left to retransmit) is found dead by keepalive probes
(nginx sets `proxy_socket_keepalive`) after about 6 s. Either way nginx then retries it on another
task. The keepalive timings apply only to sockets that ask for keepalive: nginx's upstream ones."""


def _sysctls(value: dict[str, str]) -> dict[str, str]:
    """Only the network namespace's own sysctls (they touch nothing outside the proxy's
    container), with numeric values."""
    for key, setting in value.items():
        if not _NET_SYSCTL.fullmatch(key):
            raise ValueError(
                f"{key!r} is not allowed; allowed: net.ipv4.*, net.ipv6.* or net.core.somaxconn (the container's own)"
            )
        if not _SYSCTL_VALUE.fullmatch(str(setting)):
            raise ValueError(f"{key} = {setting!r} is not allowed; allowed: whole numbers separated by spaces")
    return value


Sysctls = Annotated[dict[str, str], AfterValidator(_sysctls)]
Duration = Annotated[str, AfterValidator(_duration)]
Size = Annotated[str, _pattern(r"[0-9]+[kKmMgG]?", "a size such as 8k, 32m or 1024")]


def size_bytes(size: str) -> int:
    """A `Size` (nginx's notation: 8k, 32m, 1g, or bytes) in bytes."""
    unit = size[-1].lower()
    scale = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(unit)
    return int(size[:-1]) * scale if scale else int(size)


def _networks(values: tuple[str, ...]) -> tuple[str, ...]:
    networks = []
    for value in values:
        try:
            networks.append(str(ipaddress.ip_network(value.strip(), strict=False)))
        except ValueError:
            raise ValueError(f"{value[:64]!r} is not an IP address or CIDR (such as 10.0.0.0/8)") from None
    return tuple(networks)


Networks = Annotated[tuple[str, ...], AfterValidator(_networks)]
NginxTime = Annotated[str, _pattern(r"[0-9]+(ms|s|m|h|d)?", "a time such as 75s, 500ms or 1m")]
FilePath = Annotated[str, _pattern(r"/[A-Za-z0-9._/-]*", "an absolute path of A-Z a-z 0-9 . _ / -")]
LogFormat = Annotated[str, _pattern(r"[^'\\\r\n\x00]*", "one line without ' or \\")]
RawDirective = Annotated[str, AfterValidator(_raw_directive)]
HAProxyLine = Annotated[str, AfterValidator(_haproxy_line)]
Port = Annotated[int, Field(ge=1, le=65535)]


AccessLogFormat = Literal["text", "json"]
"""The proxies' request log: `text` (the kind's usual line; nginx's `MainLogFormat`) or `json`
(one JSON object a request, the same keys on both kinds: docs/CONFIGURATION.md)."""


class _Section(BaseModel):
    """Base for every table: case-insensitive keys, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True, validate_default=True)

    @model_validator(mode="before")
    @classmethod
    def _match_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        canonical = {}
        for name, info in cls.model_fields.items():
            alias = info.alias or name
            canonical[alias.lower()] = alias
            canonical[name.lower()] = alias
        matched: dict[str, Any] = {}
        for key, value in data.items():
            target = canonical.get(str(key).lower())
            if target is None:
                allowed = ", ".join(sorted({info.alias or n for n, info in cls.model_fields.items()}))
                raise ValueError(f"unknown key {key!r}; allowed keys: {allowed}")
            matched[target] = value
        return matched


class NginxConfig(_Section):
    """`[Extensions.NAME.Config]` for the nginx extension (Interlock's keys, plus a few of ours)."""

    kind: Literal["nginx"] = Field("nginx", alias="Kind")
    """The extension's `Kind`, copied here by `ExtensionConfig` to say which keys the table has."""
    version: str = Field("", alias="Version")
    http_version: Literal["1.0", "1.1"] = Field("1.1", alias="HTTPVersion")
    user: Annotated[str, _pattern(r"[a-z_][a-z0-9_-]{0,31}", "a user name of a-z 0-9 _ -")] = Field(
        "nginx", alias="User"
    )
    pid_path: FilePath = Field("/var/run/proxy.pid", alias="PidPath")
    max_connections: Annotated[int, Field(ge=1, le=1_000_000)] = Field(1024, alias="MaxConnections")
    connect_timeout: Annotated[int, Field(ge=1, le=3600)] = Field(5, alias="ConnectTimeout")
    send_timeout: Annotated[int, Field(ge=1, le=86400)] = Field(600, alias="SendTimeout")
    read_timeout: Annotated[int, Field(ge=1, le=86400)] = Field(600, alias="ReadTimeout")
    ip_hash: bool = Field(False, alias="IPHash")
    admin_user: str = Field("", alias="AdminUser")
    admin_pass: str = Field("", alias="AdminPass")
    ssl_opts: str | int = Field("", alias="SSLOpts")
    ssl_default_dh_param: Annotated[int, Field(ge=0, le=16384)] = Field(1024, alias="SSLDefaultDHParam")
    ssl_default_dh_param_path: Annotated[str, _pattern(r"(/[A-Za-z0-9._/-]*)?", "empty or an absolute path")] = Field(
        "", alias="SSLDefaultDHParamPath"
    )
    ssl_verify: Literal["required", "none", "optional"] = Field("required", alias="SSLVerify")
    worker_processes: Annotated[int, Field(ge=1, le=1024)] | Literal["auto"] = Field(1, alias="WorkerProcesses")
    rlimit_nofile: Annotated[int, Field(ge=1, le=10_000_000)] = Field(65535, alias="RLimitNoFile")
    ssl_ciphers: Annotated[
        str, _pattern(r"[A-Za-z0-9:!+@_.-]+", "an OpenSSL cipher list of A-Z a-z 0-9 : ! + @ _ . -")
    ] = Field("HIGH:!aNULL:!MD5", alias="SSLCiphers")
    ssl_protocols: Annotated[
        str,
        _pattern(
            r"(SSLv3|TLSv1(\.[0-3])?)( (SSLv3|TLSv1(\.[0-3])?))*",
            "space-separated TLSv1, TLSv1.1, TLSv1.2, TLSv1.3",
        ),
    ] = Field("TLSv1.2", alias="SSLProtocols")
    access_log_path: FilePath = Field("/dev/stdout", alias="AccessLogPath")
    error_log_path: FilePath = Field("/dev/stdout", alias="ErrorLogPath")
    main_log_format: LogFormat = Field(
        '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
        '"$http_referer" "$http_user_agent" "$http_x_forwarded_for"',
        alias="MainLogFormat",
    )
    trace_log_format: LogFormat = Field(
        '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
        '"$http_referer" "$http_user_agent" "$http_x_forwarded_for" $request_id $msec '
        "$request_time $upstream_connect_time $upstream_header_time $upstream_response_time",
        alias="TraceLogFormat",
    )
    keepalive_timeout: NginxTime = Field("75s", alias="KeepaliveTimeout")
    client_max_body_size: Size = Field("32m", alias="ClientMaxBodySize")
    client_body_buffer_size: Size = Field("8k", alias="ClientBodyBufferSize")
    client_header_buffer_size: Size = Field("1k", alias="ClientHeaderBufferSize")
    large_client_header_buffers: Annotated[
        str, _pattern(r"[0-9]+ [0-9]+[kKmM]?", "a count and a size such as '4 8k'")
    ] = Field("4 8k", alias="LargeClientHeaderBuffers")
    client_body_timeout: NginxTime = Field("60s", alias="ClientBodyTimeout")
    underscores_in_headers: bool = Field(False, alias="UnderscoresInHeaders")
    hide_info_headers: bool = Field(False, alias="HideInfoHeaders")
    access_log_format: AccessLogFormat = Field("text", alias="AccessLogFormat")
    http2: bool = Field(True, alias="HTTP2")
    """Offer HTTP/2 (ALPN h2) on the TLS listeners, beside HTTP/1.1."""
    traffic_metrics: bool = Field(True, alias="TrafficMetrics")
    """Count requests per route in nginx (Lua, in each worker), for the proxy agent's metrics."""
    traffic_dict_size: Size = Field("32m", alias="TrafficDictSize")
    """The shared memory the counters are added up in (only pages in use are resident); a fixed
    size, so that it outlives reloads."""
    certificates_dict_size: Size = Field("32m", alias="CertificatesDictSize")
    """The shared memory the TLS certificates and keys are held in (about 5 kB a certificate;
    only pages in use are resident). Also the largest certificates document the agent may post."""
    server_names_hash_bucket_size: Annotated[int, Field(ge=32, le=65536)] = Field(
        128, alias="ServerNamesHashBucketSize"
    )
    upstream_zone_size: Annotated[int, Field(ge=0, le=1_048_576)] = Field(0, alias="UpstreamZoneSize")
    global_options: tuple[RawDirective, ...] = Field((), alias="GlobalOptions")
    http_options: tuple[RawDirective, ...] = Field((), alias="HTTPOptions")
    tcp_options: tuple[RawDirective, ...] = Field((), alias="TCPOptions")
    # Ours, beyond Interlock:
    unknown_host_status: Literal[404, 503] = Field(503, alias="UnknownHostStatus")
    acme_challenges: bool = Field(False, alias="AcmeChallenges")
    """Answer ACME HTTP-01 challenges on `/.well-known/acme-challenge/` from the tokens the core
    sends. Set for every cluster when the core's `[ACME]` table is present."""
    trusted_proxies: Networks = Field((), alias="TrustedProxies")
    """Networks of the load balancers in front of the proxies: for a plain-HTTP request from one
    of them, the client address (allow_ips, rate_limit, logs, X-Real-IP) is the last one it added
    to X-Forwarded-For. Empty: always the connection's."""
    limits_dict_size: Size = Field("10m", alias="LimitsDictSize")
    """The shared dict counting requests per client for `rate_limit` (run-time routing)."""
    stream_module_path: Annotated[str, _pattern(r"(/[A-Za-z0-9._/-]*)?", "empty (built in) or an absolute path")] = (
        Field("/usr/lib/nginx/modules/ngx_stream_module.so", alias="StreamModulePath")
    )
    worker_shutdown_timeout: NginxTime = Field("10s", alias="WorkerShutdownTimeout")
    proxy_next_upstream_tries: Annotated[int, Field(ge=0, le=10)] = Field(2, alias="ProxyNextUpstreamTries")
    upstream_keepalive: Annotated[int, Field(ge=0, le=10000)] = Field(32, alias="UpstreamKeepalive")
    dynamic_upstreams: bool = Field(False, alias="DynamicUpstreams")
    # Hosts, routes and tasks change in the running nginx (render/lua/targets.lua); a reload
    # only for listeners, the passthrough set, certificates and global settings.
    runtime_routing: bool = Field(True, alias="RuntimeRouting")
    lua_module_paths: tuple[
        Annotated[str, _pattern(r"/[A-Za-z0-9._/-]*", "an absolute path to an nginx module")], ...
    ] = Field(
        ("/usr/lib/nginx/modules/ndk_http_module.so", "/usr/lib/nginx/modules/ngx_http_lua_module.so"),
        alias="LuaModulePaths",
    )

    @property
    def admin_pass_secret(self) -> str:
        """nginx has no stats page: no password secret to mount."""
        return ""

    @property
    def clear_text_password(self) -> bool:
        """nginx reads no AdminPass (Interlock's key, accepted and unused)."""
        return False


class HAProxyConfig(_Section):
    """`[Extensions.NAME.Config]` for the HAProxy extension (`Kind = "haproxy"`): Interlock's
    HAProxy keys, with its defaults, plus a few of ours."""

    kind: Literal["haproxy"] = Field("haproxy", alias="Kind")
    """The extension's `Kind`, copied here by `ExtensionConfig` to say which keys the table has."""

    @property
    def clear_text_password(self) -> bool:
        """The stats page's password is in the core's configuration, not in a secret."""
        return bool(self.admin_pass)

    @model_validator(mode="after")
    def _one_password(self) -> HAProxyConfig:
        if self.admin_pass and self.admin_pass_secret:
            raise ValueError("AdminPass and AdminPassSecret both set; keep the password in the secret only")
        return self

    pid_path: FilePath = Field("/var/run/proxy.pid", alias="PidPath")
    max_connections: Annotated[int, Field(ge=1, le=1_000_000)] = Field(1024, alias="MaxConnections")
    connect_timeout: Annotated[int, Field(ge=1, le=3600)] = Field(5, alias="ConnectTimeout")
    """Seconds to connect to a server."""
    client_timeout: Annotated[int, Field(ge=1, le=86400)] = Field(600, alias="ClientTimeout")
    """Seconds of client inactivity."""
    server_timeout: Annotated[int, Field(ge=1, le=86400)] = Field(600, alias="ServerTimeout")
    """Seconds of server inactivity."""
    admin_user: Annotated[str, _pattern(r"[A-Za-z0-9._-]{0,64}", "up to 64 of A-Z a-z 0-9 . _ -")] = Field(
        "", alias="AdminUser"
    )
    admin_pass: Annotated[str, _pattern(r"[A-Za-z0-9._~!@%^*+=-]{0,128}", "up to 128 of A-Z a-z 0-9 ._~!@%^*+=-")] = (
        Field("", alias="AdminPass")
    )
    """In clear text in the core's configuration; `AdminPassSecret` keeps it in a Docker secret."""
    admin_pass_secret: Annotated[str, _pattern(r"([A-Za-z0-9][A-Za-z0-9_.-]{0,63})?", "a Docker secret name")] = Field(
        "", alias="AdminPassSecret"
    )
    """A Docker secret holding the stats page's password: mounted into the proxy only, handed to
    HAProxy in its environment, never in a configuration or on the wire."""
    ssl_opts: Annotated[
        str, _pattern(r"[a-z0-9-]+( [a-z0-9-]+)*|", "space-separated bind options such as no-tls-tickets")
    ] = Field("", alias="SSLOpts")
    ssl_default_dh_param: Annotated[int, Field(ge=0, le=16384)] = Field(1024, alias="SSLDefaultDHParam")
    ssl_verify: Literal["required", "none"] = Field("required", alias="SSLVerify")
    ssl_ciphers: Annotated[
        str, _pattern(r"[A-Za-z0-9:!+@_.-]+", "an OpenSSL cipher list of A-Z a-z 0-9 : ! + @ _ . -")
    ] = Field("HIGH:!aNULL:!MD5", alias="SSLCiphers")
    ssl_protocols: Annotated[
        str,
        _pattern(r"TLSv1(\.[0-3])?( TLSv1(\.[0-3])?)*", "space-separated TLSv1, TLSv1.1, TLSv1.2, TLSv1.3"),
    ] = Field("TLSv1.2", alias="SSLProtocols")
    """The oldest listed is the minimum version offered."""
    global_options: tuple[HAProxyLine, ...] = Field((), alias="GlobalOptions")
    default_options: tuple[HAProxyLine, ...] = Field((), alias="DefaultOptions")
    # Ours, beyond Interlock:
    unknown_host_status: Literal[404, 503] = Field(503, alias="UnknownHostStatus")
    acme_challenges: bool = Field(False, alias="AcmeChallenges")
    """Answer ACME HTTP-01 challenges on `/.well-known/acme-challenge/` from the tokens the core
    sends. Set for every cluster when the core's `[ACME]` table is present."""
    trusted_proxies: Networks = Field((), alias="TrustedProxies")
    """Networks of the load balancers in front of the proxies: for a plain-HTTP request from one
    of them, the client address (allow_ips, rate_limit, logs, X-Real-IP) is the last one it added
    to X-Forwarded-For. Empty: always the connection's."""
    ip_hash: bool = Field(False, alias="IPHash")
    """As nginx's: every backend that would balance round robin keeps a client address on one
    task (`balance source`)."""
    client_max_body_size: Size = Field("32m", alias="ClientMaxBodySize")
    """As nginx's: a request declaring a larger body (Content-Length) gets 413; 0: no limit."""
    hard_stop_after: Annotated[int, Field(ge=1, le=3600)] = Field(30, alias="HardStopAfter")
    """Seconds an old process may keep serving its connections after a reload."""
    hide_info_headers: bool = Field(False, alias="HideInfoHeaders")
    access_log_format: AccessLogFormat = Field("text", alias="AccessLogFormat")
    http2: bool = Field(True, alias="HTTP2")
    """Offer HTTP/2 (ALPN h2) on the TLS listeners, beside HTTP/1.1."""


DEFAULT_IMAGE = f"interlock:{__version__}"
DEFAULT_CONSTRAINTS = ("node.platform.os==linux",)


class ExtensionConfig(_Section):
    """`[Extensions.NAME]`: one extension + proxy pair (a service cluster)."""

    kind: Literal["nginx", "haproxy"] = Field("nginx", alias="Kind")
    """Which proxy; without `Kind`, an `Image` or `ProxyImage` naming haproxy chooses HAProxy."""
    image: str = Field(DEFAULT_IMAGE, alias="Image")
    args: RoleArgs = Field((), alias="Args")
    labels: dict[str, str] = Field(default_factory=dict, alias="Labels")
    container_labels: dict[str, str] = Field(default_factory=dict, alias="ContainerLabels")
    constraints: tuple[str, ...] = Field(DEFAULT_CONSTRAINTS, alias="Constraints")
    placement_preferences: tuple[str, ...] = Field((), alias="PlacementPreferences")
    service_name: str = Field("", alias="ServiceName")
    proxy_image: str = Field(DEFAULT_IMAGE, alias="ProxyImage")
    proxy_args: RoleArgs = Field((), alias="ProxyArgs")
    proxy_labels: dict[str, str] = Field(default_factory=dict, alias="ProxyLabels")
    proxy_container_labels: dict[str, str] = Field(default_factory=dict, alias="ProxyContainerLabels")
    proxy_sysctls: Sysctls = Field(default_factory=lambda: dict(DEFAULT_PROXY_SYSCTLS), alias="ProxySysctls")
    proxy_service_name: str = Field("", alias="ProxyServiceName")
    proxy_config_path: FilePath = Field("/etc/nginx/nginx.conf", alias="ProxyConfigPath")
    proxy_replicas: Annotated[int, Field(ge=0, le=1000)] = Field(2, alias="ProxyReplicas")
    proxy_stop_signal: Annotated[str, _pattern(r"SIG[A-Z0-9]+", "a signal name such as SIGQUIT")] = Field(
        "SIGQUIT", alias="ProxyStopSignal"
    )
    proxy_stop_grace_period: Duration = Field("5s", alias="ProxyStopGracePeriod")
    proxy_drain_period: Duration = Field("2s", alias="ProxyDrainPeriod")
    """How long a stopping proxy keeps serving while its `/_interlock/health` answers 503, so
    that a load balancer in front of host-mode proxies takes it out before it stops."""
    proxy_constraints: tuple[str, ...] = Field(DEFAULT_CONSTRAINTS, alias="ProxyConstraints")
    proxy_placement_preferences: tuple[str, ...] = Field((), alias="ProxyPlacementPreferences")
    proxy_update_delay: Duration = Field("0s", alias="ProxyUpdateDelay")
    service_cluster: Annotated[
        str, _pattern(r"([A-Za-z0-9][A-Za-z0-9_.-]{0,62})?", "up to 63 of A-Z a-z 0-9 _ . -")
    ] = Field("", alias="ServiceCluster")
    publish_mode: Literal["ingress", "host"] = Field("ingress", alias="PublishMode")
    published_port: Port = Field(8080, alias="PublishedPort")
    target_port: Port = Field(80, alias="TargetPort")
    published_ssl_port: Port = Field(8443, alias="PublishedSSLPort")
    target_ssl_port: Port = Field(443, alias="TargetSSLPort")
    template: Annotated[str, AfterValidator(_template)] = Field("", alias="Template")
    """Replaces the built-in nginx template (Jinja2; see docs/CONFIGURATION.md)."""
    config: Annotated[NginxConfig | HAProxyConfig, Field(discriminator="kind")] = Field(
        default_factory=NginxConfig, alias="Config"
    )
    """The keys of its `Kind`: `NginxConfig` or `HAProxyConfig` (read them as `.nginx`, `.haproxy`)."""
    networks: tuple[str, ...] | None = Field(None, alias="Networks")
    hitless_service_update: bool = Field(False, alias="HitlessServiceUpdate")
    config_image: str = Field("", alias="ConfigImage")
    config_service_name: str = Field("", alias="ConfigServiceName")

    @model_validator(mode="before")
    @classmethod
    def _config_of_its_kind(cls, data: Any) -> Any:
        """Copy the extension's kind into `Config`, so it is read with that kind's keys."""
        if not isinstance(data, dict):
            return data
        keys = {str(k).lower(): k for k in data}
        kind = data.get(keys.get("kind", ""), "")
        if not kind:
            images = " ".join(str(data.get(keys.get(k, ""), "")) for k in ("image", "proxyimage"))
            kind = "haproxy" if "haproxy" in images.lower() else "nginx"
            data = {**data, "Kind": kind}
        config_key = keys.get("config", "Config")
        config = data.get(config_key, {})
        if isinstance(config, dict):
            own = {k: v for k, v in config.items() if str(k).lower() != "kind"}
            said = [v for k, v in config.items() if str(k).lower() == "kind"]
            if said and said[0] != kind:
                raise ValueError(f"Config.Kind is {said[0]!r} but the extension's Kind is {kind!r}; set Kind once")
            data = {**data, config_key: {**own, "Kind": kind}}
        return data

    @property
    def nginx(self) -> NginxConfig:
        """The nginx keys; only for `Kind = "nginx"`."""
        if not isinstance(self.config, NginxConfig):
            raise TypeError(f"an extension of kind {self.kind!r} has no nginx settings")
        return self.config

    @property
    def haproxy(self) -> HAProxyConfig:
        """The HAProxy keys; only for `Kind = "haproxy"`."""
        if not isinstance(self.config, HAProxyConfig):
            raise TypeError(f"an extension of kind {self.kind!r} has no HAProxy settings")
        return self.config

    @model_validator(mode="after")
    def _drain_within_grace(self) -> ExtensionConfig:
        drain, grace = parse_duration(self.proxy_drain_period), parse_duration(self.proxy_stop_grace_period)
        if drain and drain >= grace:
            raise ValueError(
                f"ProxyDrainPeriod = {self.proxy_drain_period!r} is not shorter than ProxyStopGracePeriod = "
                f"{self.proxy_stop_grace_period!r}: Swarm would kill the proxy before it finished its requests; "
                "make the grace period longer (a few seconds more than the drain)"
            )
        return self

    @model_validator(mode="after")
    def _ports_differ(self) -> ExtensionConfig:
        if self.target_port == self.target_ssl_port:
            raise ValueError(f"TargetPort and TargetSSLPort are both {self.target_port}; they must differ")
        if self.published_port == self.published_ssl_port:
            raise ValueError(f"PublishedPort and PublishedSSLPort are both {self.published_port}; they must differ")
        for key, port in (("TargetPort", self.target_port), ("TargetSSLPort", self.target_ssl_port)):
            if port in INTERNAL_PORTS:
                taken = ", ".join(str(p) for p in INTERNAL_PORTS)
                raise ValueError(
                    f"{key} = {port} is a port the proxy uses inside its container ({taken}); pick another"
                )
        return self


class AcmeConfig(_Section):
    """`[ACME]`: certificates the core orders for services labelled `com.docker.lb.ssl_acme=true`
    (HTTP-01, answered by every proxy replica of the service's cluster)."""

    directory: Annotated[str, _pattern(r"https://[A-Za-z0-9.:\[\]/_~%-]+", "an https:// URL")] = Field(
        ..., alias="Directory"
    )
    """The ACME server's directory URL, such as https://acme-v02.api.letsencrypt.org/directory."""
    email: Annotated[str, _pattern(r"([A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+)?", "an e-mail address")] = Field(
        "", alias="Email"
    )
    agree_to_terms: bool = Field(False, alias="AgreeToTerms")
    ca_certificate: Annotated[
        str, _pattern(r"([A-Za-z0-9][A-Za-z0-9_.-]{0,63})?", "a Docker secret name: A-Z a-z 0-9 _ . -")
    ] = Field("", alias="CACertificate")
    """A Docker secret holding the CA bundle to trust the ACME server with (a private or test CA);
    empty: the system's CAs."""
    renew_before: Duration = Field("720h", alias="RenewBefore")
    key_type: Literal["ec256", "rsa2048"] = Field("ec256", alias="KeyType")

    @field_validator("agree_to_terms")
    @classmethod
    def _agreed(cls, agreed: bool) -> bool:
        if not agreed:
            raise ValueError("must be true: the ACME server's terms of service must be agreed to before it issues")
        return agreed

    @property
    def renew_before_seconds(self) -> float:
        return parse_duration(self.renew_before)


_EXTENSION_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,36}[A-Za-z0-9])?")
"""`interlock-extension-token-NAME` must stay a valid Docker secret name (64 characters at most)."""


class CoreConfig(_Section):
    """The top level of Interlock's TOML."""

    listen_addr: Annotated[str, _pattern(r"[A-Za-z0-9.:\[\]-]*:[0-9]{1,5}", "[host]:port such as :8080")] = Field(
        ":8080", alias="ListenAddr"
    )
    docker_url: Annotated[str, _pattern(r"(unix://|tcp://|npipe://|ssh://)\S+", "unix://PATH or tcp://HOST:PORT")] = (
        Field("unix:///var/run/docker.sock", alias="DockerURL")
    )
    tls_ca_cert: str = Field("", alias="TLSCACert")
    tls_cert: str = Field("", alias="TLSCert")
    tls_key: str = Field("", alias="TLSKey")
    allow_insecure: bool = Field(False, alias="AllowInsecure")
    poll_interval: Duration = Field("3s", alias="PollInterval")
    endpoint_override: str = Field("", alias="EndpointOverride")
    host_sharing: Literal["any", "stack"] = Field("any", alias="HostSharing")
    """Who may join a host and path another service routes (taking a share of its traffic):
    any service (Interlock's canary rule), or only services of the owner's stack."""
    monitoring_network: Annotated[
        str, _pattern(r"([A-Za-z0-9][A-Za-z0-9_.-]{0,62})?", "a Docker network name: A-Z a-z 0-9 _ . -")
    ] = Field("", alias="MonitoringNetwork")
    """An overlay `interlock up` makes and attaches every role to, so that a Prometheus on it
    scrapes their metrics (port 9180) without joining the control network. The roles' APIs do
    not listen on it; only their metrics do."""
    monitoring_attachable: bool = Field(False, alias="MonitoringAttachable")
    """Make the monitoring network attachable, so a plain `docker run --network` container (a
    Prometheus not run as a service) can join it. Off by default: then only services, which need
    a manager's API, can."""
    core_constraints: tuple[str, ...] = Field((MANAGER_CONSTRAINT,), alias="CoreConstraints")
    """Where `interlock up` may place the core; node.role==manager always holds (added if missing)."""
    extensions: dict[str, ExtensionConfig] = Field(default_factory=dict, alias="Extensions")
    acme: AcmeConfig | None = Field(None, alias="ACME")

    @field_validator("core_constraints")
    @classmethod
    def _core_on_a_manager(cls, constraints: tuple[str, ...]) -> tuple[str, ...]:
        for constraint in constraints:
            if re.fullmatch(r"\s*node\.role\s*(==\s*worker|!=\s*manager)\s*", constraint):
                raise ValueError(
                    f"{constraint!r} would place the core on a worker; the core runs on a manager "
                    f"(only a manager's API lists services), so CoreConstraints can only narrow which manager"
                )
        return constraints

    @field_validator("monitoring_network")
    @classmethod
    def _not_the_control_network(cls, name: str) -> str:
        if name in (CONTROL_NETWORK, "ingress", "bridge", "host", "none", "docker_gwbridge"):
            raise ValueError(
                f"MonitoringNetwork = {name!r} is a network Interlock or Docker keeps for itself; "
                "name an overlay of its own, such as 'interlock-monitoring'"
            )
        return name

    @model_validator(mode="after")
    def _clusters_are_consistent(self) -> CoreConfig:
        if not self.extensions:
            raise ValueError("no [Extensions.NAME] table; at least one extension (service cluster) is required")
        if self.acme is not None:
            # Every cluster's proxies answer the core's HTTP-01 challenges.
            for name, ext in self.extensions.items():
                answering = ext.config.model_copy(update={"acme_challenges": True})
                self.extensions[name] = ext.model_copy(update={"config": answering})
        seen_clusters: dict[str, str] = {}
        seen_names: dict[str, str] = {}
        ingress_ports: dict[int, str] = {}
        for name, ext in self.extensions.items():
            if not _EXTENSION_NAME.fullmatch(name):
                raise ValueError(
                    f"[Extensions.{name[:80]}]: an extension name is 1 to 38 of A-Z a-z 0-9 _ . -, starting and "
                    "ending with a letter or digit (it names the extension's Docker secrets and services)"
                )
            other = seen_clusters.setdefault(ext.service_cluster, name)
            if other != name:
                raise ValueError(
                    f"Extensions.{other} and Extensions.{name} both serve ServiceCluster "
                    f"{ext.service_cluster!r}; each cluster needs exactly one extension"
                )
            for service_name in (self.extension_service_name(name), self.proxy_service_name(name)):
                if service_name in seen_names:
                    raise ValueError(
                        f"service name {service_name!r} is used twice "
                        f"(Extensions.{seen_names[service_name]} and Extensions.{name})"
                    )
                seen_names[service_name] = name
            if ext.publish_mode == "ingress":
                for port in (ext.published_port, ext.published_ssl_port):
                    holder = ingress_ports.setdefault(port, name)
                    if holder != name:
                        raise ValueError(
                            f"Extensions.{holder} and Extensions.{name} both publish port {port} in ingress mode; "
                            'ingress ports are cluster-wide, so use different ports or PublishMode = "host"'
                        )
        return self

    @property
    def poll_interval_seconds(self) -> float:
        return parse_duration(self.poll_interval)

    @property
    def listen_host(self) -> str:
        """ListenAddr's host, without IPv6 brackets; '' means every address."""
        return self.listen_addr.rpartition(":")[0].strip("[]")

    @property
    def listen_port(self) -> int:
        return int(self.listen_addr.rpartition(":")[2])

    def extension_service_name(self, name: str) -> str:
        return self.extensions[name].service_name or (
            "interlock-extension" if name == "default" else f"interlock-extension-{name}"
        )

    def proxy_service_name(self, name: str) -> str:
        return self.extensions[name].proxy_service_name or (
            "interlock-proxy" if name == "default" else f"interlock-proxy-{name}"
        )

    @property
    def build_options(self) -> dict[str, Any]:
        """What the routing model's `build` takes from this configuration."""
        return {
            "host_sharing": self.host_sharing,
            "acme": self.acme is not None,
            "refused_labels": self.refused_labels,
            "fixed_networks": {
                e.service_cluster: tuple(e.networks) for e in self.extensions.values() if e.networks is not None
            },
        }

    @property
    def refused_labels(self) -> dict[str, dict[str, str]]:
        """Service cluster -> the labels its proxies cannot apply, with why: nginx applies
        per-service policies in its run-time router only; HAProxy has neither basic nor forward
        authentication here."""
        refused: dict[str, dict[str, str]] = {}
        for n, e in self.extensions.items():
            if isinstance(e.config, NginxConfig) and not e.config.runtime_routing:
                why = f"per-service policies need RuntimeRouting = true (the default) in Extensions.{n}.Config"
                refused[e.service_cluster] = dict.fromkeys(POLICY_LABELS, why)
            elif not isinstance(e.config, NginxConfig):
                refused[e.service_cluster] = dict.fromkeys(("auth_basic", "auth_basic_realm"), _NO_BASIC_AUTH)
                refused[e.service_cluster].update(dict.fromkeys(_FORWARD_AUTH_LABELS, _NO_FORWARD_AUTH))
        return refused
