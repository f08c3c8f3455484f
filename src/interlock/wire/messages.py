"""Messages between roles and their JSON codecs (msgspec, strict on the schema version).

core -> extension: `ClusterState` (the routing model of one cluster plus the extension's
settings and the problems). extension -> proxy agent: `ProxyConfig` (validated nginx.conf and
its targets document; the core also stores it as the Docker config proxies start from).
agent -> extension and extension -> core: `ProxyReport`, `ExtensionReport` (sized by the
change: the configuration only by `ConfigRef`; the core asks for the whole `ProxyConfig` only
when it must store one), and the proxies' request counts in `ClusterTraffic`. Pure; wire layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec

from interlock.errors import WireError
from interlock.model.routing import Routing
from interlock.problems import Problem
from interlock.wire.traffic import RouteTraffic, TrafficNames

SCHEMA = 1

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ClusterState:
    version: int
    """Increases whenever the routing or settings of the cluster change."""
    cluster: str
    extension: str
    """Name of the `[Extensions.NAME]` table."""
    routing: Routing
    config: dict[str, Any]
    """The extension's settings, as `ExtensionConfig.model_dump(by_alias=True, mode="json")`."""
    problems: tuple[Problem, ...] = ()
    epoch: str = ""
    """Changes when the core restarts; with `version` it names the state (the long-poll tag)."""
    schema: int = SCHEMA

    @property
    def tag(self) -> str:
        return f"{self.epoch}.{self.version}"


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    version: int
    """The ClusterState version it was rendered from."""
    digest: str
    config_id: str
    text: str
    targets: str = ""
    """The servers of the HTTP upstreams (dynamic upstreams); empty when they are in `text`."""
    targets_id: str = ""
    names: TrafficNames = field(default_factory=TrafficNames)
    """How the agent names the requests it counts (routes, tasks, where nginx sends them)."""
    schema: int = SCHEMA


@dataclass(frozen=True, slots=True)
class ConfigRef:
    """A `ProxyConfig` by its ids: what a report says of the configuration it is about."""

    version: int
    digest: str
    config_id: str
    targets_id: str = ""
    size: int = 0
    """Bytes of the whole `ProxyConfig` as encoded, for operators and the core's storage."""

    @classmethod
    def of(cls, config: ProxyConfig, size: int) -> ConfigRef:
        return cls(config.version, config.digest, config.config_id, config.targets_id, size)


@dataclass(frozen=True, slots=True)
class ProxyReport:
    proxy: str
    """The proxy container's host name (its short container ID)."""
    config_id: str
    """Id of the configuration nginx is confirmed to serve ('' before the first)."""
    digest: str
    ok: bool
    error: str = ""
    reloads: int = 0
    targets_id: str = ""
    """Id of the targets document nginx is confirmed to use ('' without dynamic upstreams)."""
    target_updates: int = 0
    """Changes applied to the running nginx without a reload."""
    leaving: bool = False
    """The proxy is stopping: the extension forgets it now instead of when its reports stop."""
    traffic: tuple[RouteTraffic, ...] = ()
    """Requests this proxy answered, by route and service, since its agent started."""
    active_connections: int = 0
    """Client connections open on the proxy now."""
    certificates: str = ""
    """Tag of the certificates the proxy serves ('' before the first)."""
    schema: int = SCHEMA


@dataclass(frozen=True, slots=True)
class ExtensionReport:
    extension: str
    cluster: str
    config: ConfigRef | None
    """The newest configuration that passed validation (the core asks for its body when it
    must store one)."""
    validation_error: str = ""
    proxies: tuple[ProxyReport, ...] = field(default_factory=tuple)
    left_out: tuple[tuple[str, str], ...] = ()
    """(service, what nginx -t said with it): services whose routes made the configuration fail,
    found by bisection and left out of `config`; the core then leaves them out of the state."""
    state_version: int = 0
    """The newest ClusterState `config` reflects (a state that changed nothing in the rendered
    configuration keeps `config` and still counts); 0 before the first."""
    schema: int = SCHEMA


@dataclass(frozen=True, slots=True)
class ProxyTraffic:
    proxy: str
    traffic: tuple[RouteTraffic, ...] = ()
    active_connections: int = 0


@dataclass(frozen=True, slots=True)
class ClusterTraffic:
    """extension -> core, once a second while it changes: what each proxy of the cluster
    counted. Apart from `ExtensionReport`, which is sent when the cluster's state or a proxy's
    changes."""

    proxies: tuple[ProxyTraffic, ...] = ()
    schema: int = SCHEMA


def encode(message: object) -> bytes:
    return msgspec.json.encode(message)


def decode(data: bytes, kind: type[T]) -> T:
    """Decode `data` as `kind`, refusing other schema versions."""
    try:
        message = msgspec.json.decode(data, type=kind)
    except msgspec.DecodeError as exc:
        raise WireError(f"not a valid {kind.__name__}: {exc}") from exc
    if getattr(message, "schema", SCHEMA) != SCHEMA:
        raise WireError(f"{kind.__name__} schema {getattr(message, 'schema', '?')} is not {SCHEMA}")
    return message
