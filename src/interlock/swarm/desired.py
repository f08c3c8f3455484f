"""What the core wants running: one extension and one proxy service spec per `[Extensions.NAME]`,
from the configuration, each cluster's routing, and the Docker objects the core looked up.

`desired_services` is a pure function, golden-tested like nginx.conf (tests/golden/services); the
core's reconciler compares its output with the services it owns and applies the difference. The
proxy spec comes without the Docker config holding the newest validated proxy configuration:
that is stored only when the proxy is created or updated anyway (`proxy_with_config`), so it
never causes an update by itself. Pure; swarm layer.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from interlock.config.schema import CoreConfig
from interlock.constants import (
    CONTROL_NETWORK,
    CORE_IDENTITY,
    LABEL_SPEC,
    OPERATOR_TOKEN,
    extension_identity,
    extension_token_secret,
    proxy_token_secret,
)
from interlock.model.routing import Routing
from interlock.swarm.records import Ref
from interlock.swarm.specs import ClusterRefs, TLSPair, extension_spec, proxy_spec


@dataclass(frozen=True, slots=True)
class SwarmFacts:
    """The Docker objects one reconcile round looked up (IDs by name)."""

    control_network: Ref | None
    secrets: Mapping[str, str]
    """Secret name -> ID."""
    networks: Mapping[str, str]
    """Network name -> ID."""
    subnets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Network name -> the subnets Swarm allocated it (control and monitoring matter)."""
    image_ids: Mapping[str, str] = field(default_factory=dict)
    """Image reference -> what it resolves to on the manager."""
    owner: str = "interlock"
    """The core's service name: the owner label of everything it creates."""
    core_url: str = "http://tasks.interlock:8080"
    tls: Mapping[str, TLSPair] = field(default_factory=dict)
    """TLS identity -> its pair of secrets (`tls_pairs`)."""


@dataclass(frozen=True, slots=True)
class DesiredCluster:
    name: str
    """The `[Extensions.NAME]` table."""
    extension: dict[str, Any]
    proxy: dict[str, Any]
    """The proxy spec without a stored proxy configuration; its hash is the one compared."""
    refs: ClusterRefs


@dataclass(frozen=True, slots=True)
class DesiredServices:
    clusters: tuple[DesiredCluster, ...] = ()
    missing: str = ""
    """Why nothing can be deployed yet ('' when everything needed exists)."""
    notes: tuple[str, ...] = ()
    """Things the operator should know (e.g. configured networks that do not exist)."""

    @property
    def names(self) -> frozenset[str]:
        return frozenset(n for c in self.clusters for n in (c.extension["Name"], c.proxy["Name"]))


def core_tokens(config: CoreConfig) -> tuple[str, ...]:
    """The token secrets the core holds: the operator's, then every extension's own."""
    return (OPERATOR_TOKEN, *(extension_token_secret(name) for name in sorted(config.extensions)))


def tls_identities(config: CoreConfig) -> tuple[str, ...]:
    """The server roles `config` runs, each with its own TLS key pair: the core, every extension."""
    return (CORE_IDENTITY, *(extension_identity(name) for name in sorted(config.extensions)))


def all_tokens(config: CoreConfig) -> tuple[str, ...]:
    """Every token secret `config` needs: the core's, and each extension's proxy token."""
    return (*core_tokens(config), *(proxy_token_secret(name) for name in sorted(config.extensions)))


def images(config: CoreConfig) -> tuple[str, ...]:
    """Every image the extensions and proxies run (the reconciler resolves their identity)."""
    return tuple(
        sorted({e.image for e in config.extensions.values()} | {e.proxy_image for e in config.extensions.values()})
    )


def desired_services(config: CoreConfig, routings: Mapping[str, Routing | None], facts: SwarmFacts) -> DesiredServices:
    """The extension and proxy specs of every configured extension; `routings` by extension
    name (None before its first state) say which networks the proxy needs."""
    # The operator's token is the core's alone: the services deployed here mount the others.
    lacking = [t for t in all_tokens(config) if t != OPERATOR_TOKEN and t not in facts.secrets]
    lacking += [f"TLS identity {i}" for i in tls_identities(config) if i not in facts.tls]
    if facts.control_network is None or lacking:
        what = f"{', '.join(lacking)}" if lacking else f"control network {CONTROL_NETWORK!r}"
        return DesiredServices(missing=f"{what} missing; run `interlock up`")
    if not facts.control_network.subnets:
        # A role deployed now would not know its control address and would listen everywhere.
        return DesiredServices(missing=f"control network {CONTROL_NETWORK!r} has no subnet yet (Swarm allocates it)")
    clusters = []
    notes = []
    for name, ext in config.extensions.items():
        routing = routings.get(name)
        wanted = ext.networks if ext.networks is not None else (routing.networks if routing else ())
        missing = [n for n in wanted if n not in facts.networks]
        if missing and ext.networks is not None:
            notes.append(f"Extensions.{name}.Networks names networks that do not exist: {', '.join(missing)}")
        monitoring = config.monitoring_network
        if monitoring and monitoring not in facts.networks:
            notes.append(f"MonitoringNetwork {monitoring!r} does not exist; `interlock up` makes it")
        monitoring_ref = (
            Ref(facts.networks[monitoring], monitoring, facts.subnets.get(monitoring, ()))
            if monitoring in facts.networks
            else None
        )
        networks = tuple(
            Ref(facts.networks[n], n) for n in wanted if n in facts.networks and n not in (CONTROL_NETWORK, monitoring)
        )
        admin = ext.config.admin_pass_secret
        if admin and admin not in facts.secrets:
            notes.append(f"Extensions.{name}.Config.AdminPassSecret names no Docker secret {admin!r}; create it")
        refs = ClusterRefs(
            facts.control_network,
            Ref(facts.secrets[extension_token_secret(name)], extension_token_secret(name)),
            Ref(facts.secrets[proxy_token_secret(name)], proxy_token_secret(name)),
            facts.core_url,
            networks,
            owner=facts.owner,
            image_ids=facts.image_ids,
            core_cert=facts.tls[CORE_IDENTITY].cert,
            extension_tls=facts.tls[extension_identity(name)],
            monitoring_network=monitoring_ref,
            admin_pass=Ref(facts.secrets[admin], admin) if admin in facts.secrets else None,
        )
        clusters.append(DesiredCluster(name, extension_spec(config, name, refs), proxy_spec(config, name, refs), refs))
    return DesiredServices(tuple(clusters), notes=tuple(notes))


def certificate_secrets(
    routings: Mapping[str, Routing | None], facts: SwarmFacts, refused_ids: Collection[str] = ()
) -> tuple[Ref, ...]:
    """The certificate and key secrets the core mounts: every one a routed host names, and the
    ones it refused (`refused_ids`, of services left out for them), sorted; the ones that exist.
    A refused secret stays mounted: unmounted, the core's next task could not read it, would
    route its service again and mount it once more, a restart every few seconds."""
    names = {s for routing in routings.values() if routing for s in routing.secrets}
    names |= {name for name, secret_id in facts.secrets.items() if secret_id in refused_ids}
    return tuple(Ref(facts.secrets[n], n) for n in sorted(names) if n in facts.secrets)


def proxy_with_config(config: CoreConfig, cluster: DesiredCluster, stored: Ref | None) -> dict[str, Any]:
    """The proxy spec to send: with the stored proxy configuration mounted, under the hash of the
    spec without it (so the next round compares like with like)."""
    spec = proxy_spec(config, cluster.name, replace(cluster.refs, proxy_config=stored))
    spec["Labels"][LABEL_SPEC] = cluster.proxy["Labels"][LABEL_SPEC]
    return spec
