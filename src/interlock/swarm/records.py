"""The Swarm objects the core's reconciler and token bootstrap read, as small typed records: what
`edges/swarm_ops.py` makes of the Engine API's JSON, so no Docker JSON travels past the edge
(only the specs we send, which `specs` builds), and `Ref`, a Docker object by ID and
name. Pure; swarm layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

LIVE_TASK_STATES = frozenset({"new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running"})


@dataclass(frozen=True, slots=True)
class Ref:
    """A Docker object by ID and name."""

    id: str
    name: str
    subnets: tuple[str, ...] = ()
    """For a network: the subnets Swarm allocated it (where roles find their address on it)."""


@dataclass(frozen=True, slots=True)
class SecretMount:
    """A secret a service mounts, and the file name it has in the tasks."""

    secret: Ref
    file: str


@dataclass(frozen=True, slots=True)
class ServiceRecord:
    """A service as the core and the operator need it: to compare its spec, update or remove
    it, and find what its tasks mount."""

    id: str
    name: str
    version: int
    """The object version an update must name (Swarm's optimistic locking)."""
    spec_hash: str
    """`com.docker.interlock.spec` of its spec: what we last sent it ('' for another's)."""
    config_ids: tuple[str, ...] = ()
    """The Docker configs its tasks mount."""
    previous_config_ids: tuple[str, ...] = ()
    """The Docker configs of its previous spec: what a rollback's tasks mount."""
    labels: Mapping[str, str] = field(default_factory=dict)
    image: str = ""
    image_id: str = ""
    """What the image's tag resolved to on the manager when the spec was written (a role's
    INTERLOCK_IMAGE_ID), '' when not known."""
    secrets: tuple[SecretMount, ...] = ()
    network_ids: tuple[str, ...] = ()
    update_state: str = ""
    """Swarm's UpdateStatus.State ('' before any update)."""


@dataclass(frozen=True, slots=True)
class TaskRecord:
    id: str
    service_id: str
    node_id: str
    state: str
    desired_state: str
    created: str = ""
    container_id: str = ""
    addresses: tuple[tuple[str, str], ...] = ()
    """(network ID, address without its prefix length) of each attachment."""
    config_ids: tuple[str, ...] = ()
    """The Docker configs its container mounts (from the spec it was made from)."""

    @property
    def running(self) -> bool:
        return self.state == "running" and self.desired_state == "running"

    @property
    def live(self) -> bool:
        """Not yet in a final state: it may still start, run or be stopping."""
        return self.state in LIVE_TASK_STATES

    def address_on(self, network_id: str) -> str | None:
        return next((a for n, a in self.addresses if n == network_id), None)


@dataclass(frozen=True, slots=True)
class NodeRecord:
    id: str
    address: str
    state: str = ""


@dataclass(frozen=True, slots=True)
class NetworkRecord:
    id: str
    name: str
    subnets: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SecretRecord:
    """A secret's identity and labels (never its data), or a config's."""

    id: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    created: str = ""
    """When it was made (the Engine's timestamp): the newest of several TLS pairs wins."""

    @property
    def ref(self) -> Ref:
        return Ref(self.id, self.name)
