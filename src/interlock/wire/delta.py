"""A cluster's state as a change from the one before (core -> extension), so a one-service change
moves that service's hosts and upstreams, not the whole routing of 10,000 hosts.

`state_delta(old, new)` names what changed by name (hosts, upstreams and passthrough upstreams
set or removed; the services' age order as removals and insertions), and `apply_delta(old,
delta)` rebuilds exactly `new` from `old`: the routing's tuples are sorted by name, which both
sides know, so the order needs no sending. A delta that does not fit the state it is applied to
(another base, a name that is not there) raises WireError; the caller then asks for the whole
state. Pure; wire layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from interlock.errors import WireError
from interlock.model.routing import Routing, Upstream, VirtualHost
from interlock.problems import Problem
from interlock.wire.messages import SCHEMA, ClusterState

Named = TypeVar("Named", VirtualHost, Upstream)


@dataclass(frozen=True, slots=True)
class OrderDelta:
    """A sequence of unique names as a change: names removed, then (index, name) inserted."""

    removed: tuple[str, ...] = ()
    inserted: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ClusterStateDelta:
    base_version: int
    """The version of the state (same epoch) this applies to."""
    version: int
    cluster: str
    extension: str
    config: dict[str, Any]
    problems: tuple[Problem, ...]
    epoch: str
    hosts: tuple[VirtualHost, ...] = ()
    """Hosts new or changed."""
    hosts_removed: tuple[str, ...] = ()
    default_host: VirtualHost | None = None
    default_host_changed: bool = False
    upstreams: tuple[Upstream, ...] = ()
    upstreams_removed: tuple[str, ...] = ()
    passthrough_upstreams: tuple[Upstream, ...] = ()
    passthrough_removed: tuple[str, ...] = ()
    networks: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()
    services_by_age: OrderDelta = OrderDelta()
    schema: int = SCHEMA

    @property
    def base_tag(self) -> str:
        return f"{self.epoch}.{self.base_version}"


def _changed(old: Sequence[Named], new: Sequence[Named]) -> tuple[tuple[Named, ...], tuple[str, ...]]:
    before = {item.name: item for item in old}
    after = {item.name for item in new}
    return tuple(i for i in new if before.get(i.name) != i), tuple(n for n in before if n not in after)


def _applied(old: Sequence[Named], changed: Sequence[Named], removed: Sequence[str], what: str) -> tuple[Named, ...]:
    items = {item.name: item for item in old}
    for name in removed:
        if items.pop(name, None) is None:
            raise WireError(f"the state delta removes {what} {name[:80]!r}, which the state it applies to has not")
    items.update((item.name, item) for item in changed)
    return tuple(items[name] for name in sorted(items))


def order_delta(old: Sequence[str], new: Sequence[str]) -> OrderDelta:
    """`new` from `old` (each of unique names, common names in the same relative order)."""
    kept = set(new)
    before = set(old)
    return OrderDelta(
        tuple(n for n in old if n not in kept), tuple((i, n) for i, n in enumerate(new) if n not in before)
    )


def apply_order(old: Sequence[str], delta: OrderDelta) -> tuple[str, ...]:
    removed = set(delta.removed)
    result = [n for n in old if n not in removed]
    for index, name in delta.inserted:
        if not 0 <= index <= len(result):
            raise WireError(f"the state delta inserts {name[:80]!r} at {index}, past the end")
        result.insert(index, name)
    return tuple(result)


def state_delta(old: ClusterState, new: ClusterState) -> ClusterStateDelta:
    """`new` as a change from `old` (a state of the same cluster and epoch)."""
    a, b = old.routing, new.routing
    hosts, hosts_removed = _changed(a.hosts, b.hosts)
    upstreams, upstreams_removed = _changed(a.upstreams, b.upstreams)
    passthrough, passthrough_removed = _changed(a.passthrough_upstreams, b.passthrough_upstreams)
    return ClusterStateDelta(
        base_version=old.version,
        version=new.version,
        cluster=new.cluster,
        extension=new.extension,
        config=new.config,
        problems=new.problems,
        epoch=new.epoch,
        hosts=hosts,
        hosts_removed=hosts_removed,
        default_host=b.default_host,
        default_host_changed=a.default_host != b.default_host,
        upstreams=upstreams,
        upstreams_removed=upstreams_removed,
        passthrough_upstreams=passthrough,
        passthrough_removed=passthrough_removed,
        networks=b.networks,
        secrets=b.secrets,
        services_by_age=order_delta(a.services_by_age, b.services_by_age),
    )


def apply_delta(old: ClusterState, delta: ClusterStateDelta) -> ClusterState:
    """The state `delta` describes, rebuilt from `old`; WireError when it is not its base."""
    if old.tag != delta.base_tag or old.cluster != delta.cluster:
        raise WireError(f"the state delta applies to {delta.base_tag}, not to {old.tag}")
    a = old.routing
    routing = Routing(
        cluster=a.cluster,
        hosts=_applied(a.hosts, delta.hosts, delta.hosts_removed, "host"),
        default_host=delta.default_host if delta.default_host_changed else a.default_host,
        upstreams=_applied(a.upstreams, delta.upstreams, delta.upstreams_removed, "upstream"),
        passthrough_upstreams=_applied(
            a.passthrough_upstreams, delta.passthrough_upstreams, delta.passthrough_removed, "upstream"
        ),
        networks=delta.networks,
        secrets=delta.secrets,
        services_by_age=apply_order(a.services_by_age, delta.services_by_age),
    )
    return replace(
        old,
        version=delta.version,
        extension=delta.extension,
        routing=routing,
        config=delta.config,
        problems=delta.problems,
        epoch=delta.epoch,
    )
