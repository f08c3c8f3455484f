"""Frozen snapshot types: the facts about a swarm that routing needs, and nothing more.

Built at the edge from the Docker Engine API's JSON (see `docker_json`), or by tests directly.
Must not import docker, I/O modules, or anything above the model layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

LABEL_PREFIX = "com.docker.lb."


STACK_NAMESPACE = "com.docker.stack.namespace"
"""The label `docker stack deploy` puts on what a stack creates: the stack's name."""


@dataclass(frozen=True, slots=True, order=True)
class PortBinding:
    """A published port: in host mode per task (`Status.PortStatus`), else on the service."""

    target_port: int
    published_port: int
    protocol: str = "tcp"
    mode: str = "ingress"


@dataclass(frozen=True, slots=True, order=True)
class NetworkAttachment:
    """A task's addresses (without prefix length) on one network."""

    network_id: str
    addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Task:
    """One task of a service, as far as routing cares."""

    id: str
    service_id: str
    node_id: str
    slot: int
    state: str
    desired_state: str
    attachments: tuple[NetworkAttachment, ...] = ()
    host_ports: tuple[PortBinding, ...] = ()
    network_ids: tuple[str, ...] = ()
    """Networks in the task's spec (known before the task has addresses)."""

    @property
    def is_serving(self) -> bool:
        """Running now and meant to keep running.

        Swarm sets the desired state to `shutdown` before it signals the container, so a task
        leaves the targets before it is stopped. Swarm reports a task with a healthcheck as
        `starting` until the check passes, so `running` also means healthy.
        """
        return self.state == "running" and self.desired_state == "running"


@dataclass(frozen=True, slots=True)
class VirtualIP:
    """A service's virtual IP on one network (endpoint mode `vip`)."""

    network_id: str
    address: str


LabelKey = tuple[str, tuple[tuple[str, str], ...]]
"""A service as its labels make it: its ID and its `com.docker.lb.*` labels."""


@dataclass(frozen=True, slots=True)
class Service:
    """A Swarm service: identity, `com.docker.lb.*` labels, networks and endpoint."""

    id: str
    name: str
    created_ns: int
    """Creation time in nanoseconds since the epoch: the conflict tie-breaker (oldest wins)."""
    labels: tuple[tuple[str, str], ...] = ()
    """Only the `com.docker.lb.*` labels, sorted by name."""
    network_ids: tuple[str, ...] = ()
    endpoint_mode: str = "vip"
    virtual_ips: tuple[VirtualIP, ...] = ()
    ports: tuple[PortBinding, ...] = ()
    stack: str = ""
    """The stack it was deployed with (`com.docker.stack.namespace`), '' for none."""
    container_labels: tuple[tuple[str, str], ...] = ()
    """`com.docker.lb.*` labels set on the container spec instead (compose `labels:` rather than
    `deploy.labels`): Interlock does not route by them, it says where they belong."""

    @property
    def label_map(self) -> Mapping[str, str]:
        return dict(self.labels)

    @property
    def label_key(self) -> LabelKey:
        """This service as its labels make it: the same until its labels change."""
        return (self.id, self.labels)


@dataclass(frozen=True, slots=True)
class Network:
    id: str
    name: str
    driver: str = "overlay"
    scope: str = "swarm"
    ingress: bool = False


@dataclass(frozen=True, slots=True)
class Node:
    id: str
    hostname: str
    address: str
    role: str = "worker"
    state: str = "ready"
    availability: str = "active"


@dataclass(frozen=True, slots=True)
class Secret:
    """A Docker secret's identity (never its data): a secret made again under the same name has
    a new ID."""

    id: str
    name: str
    interlocks_own: bool = False
    """Made by Interlock (its control-channel tokens, anything `interlock up` or the core
    created): never a certificate a label may name."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything routing reads, in one immutable value."""

    services: tuple[Service, ...] = ()
    tasks: tuple[Task, ...] = ()
    networks: tuple[Network, ...] = ()
    nodes: tuple[Node, ...] = ()
    secrets: tuple[Secret, ...] | None = None
    """The swarm's secrets; None when not listed (a snapshot file without them): then labels
    naming a secret are not checked against the list."""

    def node_ready(self, node_id: str) -> bool:
        """Whether the node can run and report its tasks: one that is down (or otherwise not
        `ready`) still lists its tasks as they were when it left. An unlisted node counts as ready."""
        return not any(n.id == node_id and n.state != "ready" for n in self.nodes)

    def secret_id(self, name: str) -> str:
        """The ID of the secret called `name`, '' when there is none (or none were listed)."""
        return next((s.id for s in self.secrets or () if s.name == name), "")
