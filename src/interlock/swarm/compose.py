"""A stack file (Compose) as the swarm would hold it once `docker stack deploy` ran it, for
`interlock lint`: a `Snapshot` (services named `<stack>_<name>` with their `deploy: labels:`,
networks and secrets under the names Swarm
gives them, one running task per service) that the routing model checks with the core's own
rules, and the problems only a file shows: `com.docker.lb.*` labels under `labels:` (the
container's) instead of `deploy: labels:`, a network no proxy can join, a label naming a secret
by the name the file declares instead of the name Swarm gives it, a file that is not a stack.

Pure: takes the parsed YAML documents (the CLI reads them), imports no I/O library and no role.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from interlock.model.build import SECRET_LABELS
from interlock.model.snapshot import (
    LABEL_PREFIX,
    Network,
    NetworkAttachment,
    Node,
    PortBinding,
    Secret,
    Service,
    Snapshot,
    Task,
)
from interlock.problems import Problem

_NODE = Node("lint-node", "lint-node", "192.0.2.1", role="manager")
_SUBNET = ipaddress.ip_network("10.200.0.0/16")


@dataclass(frozen=True, slots=True)
class StackFile:
    snapshot: Snapshot
    problems: tuple[Problem, ...]
    """What only the file shows (the routing model finds the rest)."""


def merged(documents: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Compose files given in order, each overriding the one before (mappings merged key by
    key, anything else replaced), as `docker stack deploy -c a.yml -c b.yml` reads them."""
    result: dict[str, Any] = {}
    for document in documents:
        result = _merge(result, document)
    return result


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _mapping(value: Any) -> dict[str, str]:
    """Compose's two ways of writing labels: a mapping, or a list of `key=value`."""
    if isinstance(value, Mapping):
        return {str(k): "" if v is None else str(v) for k, v in value.items()}
    if isinstance(value, list):
        return dict(str(item).partition("=")[::2] for item in value)
    return {}


def _table(value: Any) -> dict[str, Any]:
    """A mapping of the file, or an empty one for what is not (`networks: {apps: }` is None)."""
    return dict(value) if isinstance(value, Mapping) else {}


def _swarm_name(stack: str, key: str, raw: Any) -> str:
    spec = _table(raw)
    if spec.get("name"):
        return str(spec["name"])
    return key if spec.get("external") else f"{stack}_{key}"


def _ports(service: Mapping[str, Any]) -> tuple[PortBinding, ...]:
    found = []
    for port in service.get("ports") or ():
        if isinstance(port, Mapping):
            target, published = str(port.get("target", "")), str(port.get("published") or "0")
            mode = str(port.get("mode", "ingress"))
        else:
            # "8080:80", "127.0.0.1:8080:80/tcp" or "80": the last part is the task's port.
            published, _, target = str(port).split("/")[0].rpartition(":")
            published, mode = published.rpartition(":")[2] or "0", "ingress"
        if target.isdigit() and published.isdigit():
            found.append(PortBinding(int(target), int(published), mode=mode))
    return tuple(found)


def stack_snapshot(
    compose: Mapping[str, Any], stack: str, file: str = "the stack file", live: Snapshot | None = None
) -> StackFile:
    """`compose` (merged documents) deployed as `stack`; with `live`, beside the live swarm's
    services, networks and secrets (a host the file takes that a live service has is a
    conflict)."""
    problems: list[Problem] = []
    services_spec = compose.get("services")
    if not isinstance(services_spec, Mapping) or not services_spec:
        problems.append(Problem(file, "-", "", "no services: mapping; not a stack file"))
        return StackFile(live or Snapshot(secrets=()), tuple(problems))
    networks_spec = {"default": None, **_table(compose.get("networks"))}
    secrets_spec = _table(compose.get("secrets"))
    networks = {key: _swarm_name(stack, key, spec) for key, spec in networks_spec.items()}
    drivers = {key: str(_table(spec).get("driver") or "overlay") for key, spec in networks_spec.items()}
    declared_secrets = {key: _swarm_name(stack, key, spec) for key, spec in secrets_spec.items()}
    live_networks = {n.name: n for n in (live.networks if live else ())}
    network_records = {
        name: live_networks.get(name)
        or Network(f"lint-net-{name}", name, drivers[key], "swarm" if drivers[key] == "overlay" else "local")
        for key, name in networks.items()
    }
    newest = max((s.created_ns for s in live.services), default=0) if live else 0
    services, tasks = [], []
    addresses = _SUBNET.hosts()
    for index, (key, raw) in enumerate(services_spec.items()):
        spec = _table(raw)
        name = f"{stack}_{key}"
        deploy = _table(spec.get("deploy"))
        labels = _mapping(deploy.get("labels"))
        wanted = spec.get("networks") or ["default"]
        keys = list(wanted) if isinstance(wanted, (list, Mapping)) else ["default"]
        joined = [network_records[networks[k]] for k in keys if k in networks]
        for unknown in (k for k in keys if k not in networks):
            problems.append(
                Problem(name, "-", str(unknown), "names a network the file does not declare under networks:")
            )
        problems.extend(_misplaced_labels(name, _mapping(spec.get("labels")), labels))
        if any(k.startswith(LABEL_PREFIX) for k in labels):
            problems.extend(_network_problems(name, [(k, drivers.get(k, "overlay")) for k in keys if k in networks]))
            problems.extend(_secret_problems(name, labels, declared_secrets))
        service_id = f"lint-{index}"
        service = Service(
            id=service_id,
            name=name,
            created_ns=newest + 1 + index,  # newer than every live service: the file is deployed last
            labels=tuple(sorted(labels.items())),
            network_ids=tuple(n.id for n in joined),
            endpoint_mode=str(deploy.get("endpoint_mode") or "vip"),
            ports=_ports(spec),
            stack=stack,
        )
        services.append(service)
        attachments = tuple(NetworkAttachment(n.id, (f"{next(addresses)}/16",)) for n in joined)
        host_ports = tuple(p for p in service.ports if p.mode == "host")
        tasks.append(Task(f"{service_id}-1", service_id, _NODE.id, 1, "running", "running", attachments, host_ports))
    secrets = {Secret(f"lint-secret-{n}", n) for n in declared_secrets.values()}
    snapshot = Snapshot(
        services=(*(live.services if live else ()), *services),
        tasks=(*(live.tasks if live else ()), *tasks),
        networks=tuple({n.id: n for n in (*(live.networks if live else ()), *network_records.values())}.values()),
        nodes=(*(live.nodes if live else ()), _NODE),
        secrets=(*(live.secrets or () if live else ()), *sorted(secrets, key=lambda s: s.name)),
    )
    return StackFile(snapshot, tuple(problems))


def _misplaced_labels(service: str, container: Mapping[str, str], deploy: Mapping[str, str]) -> list[Problem]:
    return [
        Problem(
            service,
            key,
            value,
            "is under labels: (the container's), where Interlock does not read it; put it under deploy: labels:",
        )
        for key, value in sorted(container.items())
        if key.startswith(LABEL_PREFIX) and key not in deploy
    ]


def _network_problems(service: str, networks: Iterable[tuple[str, str]]) -> list[Problem]:
    return [
        Problem(
            service,
            "-",
            key,
            f"network {key} has driver {driver}, which a proxy cannot join; routed services need "
            "overlay networks (driver: overlay, the default in a stack)",
        )
        for key, driver in networks
        if driver != "overlay"
    ]


def _secret_problems(service: str, labels: Mapping[str, str], declared: Mapping[str, str]) -> list[Problem]:
    found = []
    for label in SECRET_LABELS:
        named = labels.get(LABEL_PREFIX + label, "").strip()
        if named in declared and declared[named] != named:
            reason = (
                f"names the secret by its name in the file; Swarm creates it as {declared[named]!r}, "
                "which is the name the label must give"
            )
            found.append(Problem(service, LABEL_PREFIX + label, named, reason))
    return found
