"""Build Docker-Engine-API-shaped snapshot JSON from a compact description.

Golden cases and benchmarks describe services in a few lines (name, labels, networks, running
and stopping tasks, host-mode ports); this expands them into the JSON `GET /services`, `/tasks`,
`/networks` and `/nodes` return, so the same converter as production reads them. IDs and
addresses are derived from names, so output is deterministic. Pure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any


def fake_id(*parts: object) -> str:
    return hashlib.sha1("/".join(str(p) for p in parts).encode()).hexdigest()[:25]


def _timestamp(order: int) -> str:
    minutes, seconds = divmod(order, 60)
    hours, minutes = divmod(minutes, 60)
    return f"2026-01-01T{hours % 24:02d}:{minutes:02d}:{seconds:02d}.000000000Z"


def swarm_json(description: Mapping[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Expand `{services: [...], nodes: [...], networks: [...]}` into API-shaped JSON.

    A service entry takes: name, labels, networks (names), replicas (running tasks), starting
    (tasks not yet running), stopping (running but desired shutdown), endpoint_mode,
    host_ports (target ports published in host mode), ports (target ports published in ingress
    mode) and created (an ordering number; default: position in the list). A node entry takes
    name, address, role and state (default `ready`).
    """
    nodes_in = list(description.get("nodes") or [{"name": "node-1", "address": "192.0.2.10"}])
    nodes = [
        {
            "ID": fake_id("node", n["name"]),
            "Description": {"Hostname": n["name"]},
            "Spec": {"Role": n.get("role", "manager"), "Availability": "active", "Labels": {}},
            "Status": {"State": n.get("state", "ready"), "Addr": n["address"]},
        }
        for n in nodes_in
    ]
    services_in: Sequence[Mapping[str, Any]] = description.get("services") or []
    network_names = list(
        dict.fromkeys(
            [n["name"] for n in description.get("networks") or []]
            + [net for s in services_in for net in s.get("networks", [])]
        )
    )
    network_labels = {n["name"]: n.get("labels") or {} for n in description.get("networks") or []}
    networks = [
        {
            "Id": fake_id("net", name),
            "Name": name,
            "Driver": "overlay",
            "Scope": "swarm",
            "Ingress": False,
            "IPAM": {"Config": [{"Subnet": f"10.{i + 1}.0.0/16"}]},
            "Labels": dict(network_labels.get(name, {})),
        }
        for i, name in enumerate(network_names)
    ]
    net_index = {name: i + 1 for i, name in enumerate(network_names)}
    next_host = dict.fromkeys(network_names, 10)
    services, tasks = [], []
    for position, svc in enumerate(services_in):
        sid = fake_id("service", svc["name"])
        nets = list(svc.get("networks", []))
        host_ports = list(svc.get("host_ports", []))
        ports = [{"Protocol": "tcp", "TargetPort": p, "PublishMode": "host"} for p in host_ports]
        ports += [
            {
                "Protocol": "tcp",
                "TargetPort": p,
                "PublishedPort": 30000 + p % 1000,
                "PublishMode": "ingress",
            }
            for p in svc.get("ports", [])
        ]
        mode = svc.get("endpoint_mode", "vip")
        vips = (
            [{"NetworkID": fake_id("net", n), "Addr": f"10.{net_index[n]}.0.2/16"} for n in nets]
            if mode == "vip"
            else []
        )
        services.append(
            {
                "ID": sid,
                "CreatedAt": _timestamp(int(svc.get("created", position))),
                "Spec": {
                    "Name": svc["name"],
                    "Labels": dict(svc.get("labels", {})),
                    "TaskTemplate": {"Networks": [{"Target": fake_id("net", n)} for n in nets]},
                    "EndpointSpec": {"Mode": mode},
                },
                "Endpoint": {
                    "Spec": {"Mode": mode, "Ports": ports},
                    "Ports": ports,
                    "VirtualIPs": vips,
                },
            }
        )
        states = (
            ["running"] * int(svc.get("replicas", 1))
            + ["starting"] * int(svc.get("starting", 0))
            + ["stopping"] * int(svc.get("stopping", 0))
        )
        for slot, state in enumerate(states, start=1):
            node = nodes[(slot - 1) % len(nodes)]
            attachments = []
            for n in nets:
                host = next_host[n]
                next_host[n] += 1
                attachments.append(
                    {
                        "Network": {"ID": fake_id("net", n), "Spec": {"Name": n}},
                        "Addresses": [f"10.{net_index[n]}.{host // 250}.{host % 250 + 2}/16"],
                    }
                )
            status_ports = [
                {
                    "Protocol": "tcp",
                    "TargetPort": p,
                    "PublishedPort": 32768 + slot - 1 + 100 * i,
                    "PublishMode": "host",
                }
                for i, p in enumerate(host_ports)
            ]
            tasks.append(
                {
                    "ID": fake_id("task", svc["name"], slot),
                    "ServiceID": sid,
                    "NodeID": node["ID"],
                    "Slot": slot,
                    "Status": {
                        "State": "running" if state == "stopping" else state,
                        "PortStatus": {"Ports": status_ports},
                    },
                    "DesiredState": "shutdown" if state == "stopping" else "running",
                    "NetworksAttachments": attachments,
                }
            )
    return {"services": services, "tasks": tasks, "networks": networks, "nodes": nodes}
