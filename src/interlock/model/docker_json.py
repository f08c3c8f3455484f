"""Convert the Docker Engine API's JSON into snapshot types.

Input is what `GET /services`, `/tasks`, `/networks` and `/nodes` return (a snapshot file is one
object holding the four lists). Only routing facts are kept. This is pure: the edge that talks to
Docker calls it, and so does `interlock render --snapshot`. Must not import docker or do I/O.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from interlock.constants import LABEL_MANAGED, LABEL_OWNER, is_interlocks_secret_name
from interlock.errors import SnapshotFormatError
from interlock.model.snapshot import (
    LABEL_PREFIX,
    STACK_NAMESPACE,
    Network,
    NetworkAttachment,
    Node,
    PortBinding,
    Secret,
    Service,
    Snapshot,
    Task,
    VirtualIP,
)

_TIMESTAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$")


def parse_timestamp_ns(text: str) -> int:
    """RFC 3339 with nanoseconds (Go's format) to integer nanoseconds; 0 when absent."""
    if not text:
        return 0
    match = _TIMESTAMP.fullmatch(text)
    if not match:
        raise SnapshotFormatError(f"unreadable timestamp {text!r}")
    base, fraction, zone = match.groups()
    offset = "+00:00" if zone in (None, "Z") else zone
    seconds = int(datetime.fromisoformat(base + offset).timestamp())
    nanos = int((fraction or "0")[:9].ljust(9, "0"))
    return seconds * 1_000_000_000 + nanos


def _ip(text: object) -> str:
    """An address Docker reported, as a plain IP: prefix length, brackets and surrounding space
    dropped, IPv6 compressed; '' when it is not an IP address (nothing unusable reaches a target
    line, and a bad value costs its target, not the snapshot)."""
    plain = str(text or "").strip().split("/", 1)[0].strip("[]")
    try:
        return str(ipaddress.ip_address(plain))
    except ValueError:
        return ""


def _ports(entries: Iterable[Mapping[str, Any]] | None) -> tuple[PortBinding, ...]:
    bindings = (
        PortBinding(
            target_port=int(p.get("TargetPort") or 0),
            published_port=int(p.get("PublishedPort") or 0),
            protocol=str(p.get("Protocol") or "tcp"),
            mode=str(p.get("PublishMode") or "ingress"),
        )
        for p in entries or ()
    )
    # A host-mode port appears once per address family (0.0.0.0 first, then [::]), with the same
    # or a different published port and no family named. Keep the API's order, drop exact echoes.
    return tuple(dict.fromkeys(bindings))


def service_from_api(raw: Mapping[str, Any], network_ids_by_name: Mapping[str, str]) -> Service:
    spec = raw.get("Spec") or {}
    labels = spec.get("Labels") or {}
    template = spec.get("TaskTemplate") or {}
    attached = template.get("Networks") or spec.get("Networks") or []
    # Spec targets are IDs once the daemon stored them, but may be names in hand-made files.
    network_ids = tuple(sorted({network_ids_by_name.get(n.get("Target", ""), n.get("Target", "")) for n in attached}))
    endpoint = raw.get("Endpoint") or {}
    endpoint_spec = endpoint.get("Spec") or spec.get("EndpointSpec") or {}
    return Service(
        id=str(raw["ID"]),
        name=str(spec.get("Name") or raw["ID"]),
        created_ns=parse_timestamp_ns(str(raw.get("CreatedAt") or "")),
        labels=tuple(sorted((k, str(v)) for k, v in labels.items() if k.startswith(LABEL_PREFIX))),
        stack=str(labels.get(STACK_NAMESPACE) or ""),
        network_ids=network_ids,
        endpoint_mode=str(endpoint_spec.get("Mode") or "vip"),
        virtual_ips=tuple(
            VirtualIP(network_id=str(v.get("NetworkID", "")), address=address)
            for v in endpoint.get("VirtualIPs") or ()
            if (address := _ip(v.get("Addr")))
        ),
        ports=_ports(endpoint.get("Ports") or endpoint_spec.get("Ports")),
        container_labels=tuple(
            sorted(
                (k, str(v))
                for k, v in ((template.get("ContainerSpec") or {}).get("Labels") or {}).items()
                if k.startswith(LABEL_PREFIX)
            )
        ),
    )


def task_from_api(raw: Mapping[str, Any]) -> Task:
    status = raw.get("Status") or {}
    attachments = tuple(
        NetworkAttachment(
            network_id=str((a.get("Network") or {}).get("ID", "")),
            addresses=tuple(ip for ip in (_ip(x) for x in a.get("Addresses") or ()) if ip),
        )
        for a in raw.get("NetworksAttachments") or ()
    )
    return Task(
        id=str(raw["ID"]),
        service_id=str(raw.get("ServiceID", "")),
        node_id=str(raw.get("NodeID", "")),
        slot=int(raw.get("Slot") or 0),
        state=str(status.get("State", "")),
        desired_state=str(raw.get("DesiredState", "")),
        attachments=tuple(sorted(attachments)),
        host_ports=_ports((status.get("PortStatus") or {}).get("Ports")),
        network_ids=tuple(sorted(str(n.get("Target", "")) for n in (raw.get("Spec") or {}).get("Networks") or ())),
    )


def network_from_api(raw: Mapping[str, Any]) -> Network:
    return Network(
        id=str(raw.get("Id") or raw.get("ID") or ""),
        name=str(raw.get("Name", "")),
        driver=str(raw.get("Driver", "")),
        scope=str(raw.get("Scope", "")),
        ingress=bool(raw.get("Ingress", False)),
    )


def _secret_from_api(raw: Mapping[str, Any]) -> Secret:
    spec = raw.get("Spec") or {}
    name, labels = str(spec.get("Name", "")), spec.get("Labels") or {}
    own = is_interlocks_secret_name(name) or LABEL_MANAGED in labels or LABEL_OWNER in labels
    return Secret(str(raw["ID"]), name, interlocks_own=own)


def node_from_api(raw: Mapping[str, Any]) -> Node:
    spec = raw.get("Spec") or {}
    status = raw.get("Status") or {}
    address = _ip(status.get("Addr"))
    if address in ("", "0.0.0.0"):
        # Some managers report 0.0.0.0; their raft address (host:port) still names the host.
        address = _ip(str((raw.get("ManagerStatus") or {}).get("Addr", "")).rsplit(":", 1)[0])
    return Node(
        id=str(raw["ID"]),
        hostname=str((raw.get("Description") or {}).get("Hostname", "")),
        address=address,
        role=str(spec.get("Role", "worker")),
        state=str(status.get("State", "")),
        availability=str(spec.get("Availability", "")),
    )


def snapshot_from_api(document: Mapping[str, Any]) -> Snapshot:
    """Build a snapshot from `{"services": [...], "tasks": [...], "networks": [...], "nodes": [...]}`
    and optionally `"secrets": [...]` (each as the Engine API lists them)."""
    if not isinstance(document, Mapping):
        raise SnapshotFormatError("a snapshot is a JSON object with services, tasks, networks, nodes")
    unknown = set(document) - {"services", "tasks", "networks", "nodes", "secrets"}
    if unknown:
        raise SnapshotFormatError(
            f"unknown snapshot keys {sorted(unknown)}; allowed: services, tasks, networks, nodes, secrets"
        )
    try:
        networks = tuple(sorted((network_from_api(n) for n in document.get("networks") or ()), key=lambda n: n.id))
        by_name = {n.name: n.id for n in networks}
        return Snapshot(
            services=tuple(
                sorted(
                    (service_from_api(s, by_name) for s in document.get("services") or ()),
                    key=lambda s: s.id,
                )
            ),
            tasks=tuple(sorted((task_from_api(t) for t in document.get("tasks") or ()), key=lambda t: t.id)),
            networks=networks,
            nodes=tuple(sorted((node_from_api(n) for n in document.get("nodes") or ()), key=lambda n: n.id)),
            secrets=None
            if document.get("secrets") is None
            else tuple(
                sorted(
                    (_secret_from_api(s) for s in document["secrets"]),
                    key=lambda s: (s.name, s.id),
                )
            ),
        )
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        if isinstance(exc, SnapshotFormatError):
            raise
        raise SnapshotFormatError(f"not in the Docker Engine API's shape: {exc!r}") from exc
