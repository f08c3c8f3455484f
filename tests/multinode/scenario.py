"""One worker lost under load, measured: the scenario the node-loss test asserts on and
bench/node_loss.py reports. Through the proxy on the other worker, a bounded load runs while the
worker is cut off (`link`: its link goes down, its tasks keep running unreachable and no reset is
ever sent; `daemon`: its dockerd is killed, its containers keep answering), until Swarm marks it
Down and its task left the targets; then it comes back."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.e2e.swarm import INTERLOCK, lb, poll, service, sh, task_history, unique
from tests.multinode.conftest import CLUSTER, NETWORK, Cluster, Node
from tests.multinode.load import Load

PORT = 8080


@dataclass(frozen=True)
class LossFigures:
    fault: str
    requests: int
    failed: int
    outcomes: dict[str, int]
    slowest_s: float
    swarm_down_s: float
    """From the fault to Swarm marking the node Down."""
    targets_left_after_down_s: float
    """From Swarm marking the node Down to the lost task gone from the core's routes (each poll
    is a `docker exec`, so this is accurate to about a second)."""
    node_ready_s: float
    """From the node coming back to Swarm marking it Ready."""
    proxy_back_s: float
    """From the node coming back to its proxy answering the route."""
    used_again_s: float
    """From the node coming back to a task on it being a target again."""
    survivor_lag_s: float = 0.0
    """From the core's routes having every task to the surviving proxy answering the route."""
    failures: list[tuple[float, str]] = field(default_factory=list)
    """Each failed request: seconds from the fault (negative: before it), outcome."""
    history: str = ""
    """What the proxies and Swarm showed at the end: for a failure message."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return (
            f"node loss ({self.fault}): {self.requests} requests, {self.failed} failed {self.outcomes}, slowest "
            f"{self.slowest_s:.1f}s; Swarm marked the node Down after {self.swarm_down_s:.1f}s, its task left the "
            f"targets {self.targets_left_after_down_s:.1f}s later; back: Ready after {self.node_ready_s:.1f}s, "
            f"its proxy served after {self.proxy_back_s:.1f}s, a task on it was a target again after "
            f"{self.used_again_s:.1f}s; the surviving proxy served the route {self.survivor_lag_s:.1f}s after the "
            "core's routes had it"
        )


def get_at(address: str, host: str, path: str = "/", port: int = PORT) -> requests.Response:
    """One request on a fresh connection to the proxy at `address`."""
    return requests.get(f"http://{address}:{port}{path}", headers={"Host": host}, timeout=5)


def answered(address: str, host: str, port: int = PORT) -> requests.Response | None:
    """The proxy's answer when it is a 200, else None (for `poll`)."""
    response = get_at(address, host, port=port)
    return response if response.status_code == 200 else None


def steadily_answered(address: str, host: str, times: int = 20) -> bool | None:
    """`times` answers in a row are 200s. Right after the reload that routes a new host, the
    proxy's old nginx workers answer the previous configuration (503) for a moment while a
    new one already answers 200: a load started on the first 200 would count those."""
    return all(answered(address, host) for _ in range(times)) or None


def running_nodes(service_name: str) -> list[str]:
    out = sh("docker", "service", "ps", "--filter", "desired-state=running", "--format", "{{.Node}}", service_name)
    return sorted(out.split())


def task_addresses(service_name: str, node: str = "") -> set[str]:
    """Overlay addresses of the service's running tasks (on `node` only, when given)."""
    filters = ["--filter", "desired-state=running", *(["--filter", f"node={node}"] if node else [])]
    ids = sh("docker", "service", "ps", "-q", *filters, service_name).split()
    if not ids:
        return set()
    return {
        address.split("/")[0]
        for task in json.loads(sh("docker", "inspect", *ids))
        for attachment in task.get("NetworksAttachments") or ()
        if attachment["Network"]["Spec"]["Name"] == NETWORK
        for address in attachment["Addresses"]
    }


def node_state(hostname: str) -> str:
    return sh("docker", "node", "inspect", hostname, "--format", "{{.Status.State}}").strip()


def targets_of(host: str) -> set[str]:
    rows = json.loads(sh(INTERLOCK, "routes", "--json"))
    return {t for r in rows if r["host"] == host for t in r["targets"]}


def all_tasks_routed(name: str, host: str) -> bool | None:
    """A running task on each of the three nodes, and exactly those tasks are the targets
    (recomputed on every call: Swarm may still replace a task right after a node came back)."""
    if len(running_nodes(name)) != 3:
        return None
    expected = {f"{a}:{PORT}" for a in task_addresses(name)}
    return (len(expected) == 3 and targets_of(host) == expected) or None


def veth_of(node: Node) -> str:
    return "ilk-v" + node.address.rsplit(".", 1)[1]


def cut_off(node: Node, fault: str) -> None:
    if fault == "link":
        subprocess.run(["ip", "link", "set", veth_of(node), "down"], check=True)
    else:
        pid = Path(f"/run/{node.hostname}/run/docker.pid").read_text().strip()
        subprocess.run(["kill", "-9", pid], check=True)


def restore(node: Node, fault: str) -> None:
    if fault == "link":
        subprocess.run(["ip", "link", "set", veth_of(node), "up"], check=True)
    else:
        sh(CLUSTER, "up", timeout=300)  # starts the node's daemon again; it rejoins by itself


def lose_a_worker(cluster: Cluster, fault: str) -> LossFigures:
    cut, survivor = cluster.workers[-1], cluster.workers[0]
    name = unique(f"loss-{fault}")
    host = f"{name}.mn"
    extra = ("--replicas-max-per-node", "1")
    with service(name, labels=lb(hosts=host, port=str(PORT)), networks=(NETWORK,), replicas=3, extra=extra):
        poll(lambda: all_tasks_routed(name, host), what="a task on each node, all three routed", timeout=120)
        routed_at = time.monotonic()
        lost = {f"{a}:{PORT}" for a in task_addresses(name, cut.hostname)}
        assert len(lost) == 1, lost
        # The load is through this proxy: it must know the route first (the core's routes,
        # polled above, say what the proxies are told, not that they have it yet).
        poll(lambda: answered(survivor.address, host), what=f"{host} through {survivor.hostname}", timeout=60)
        survivor_at, survivor_wall = time.monotonic(), time.time()
        with Load(survivor.address, host, max_seconds=150) as load:
            poll(lambda: load.total > 100 or None, what="the load running")
            cut_off(cut, fault)
            cut_at = time.monotonic()
            try:
                poll(lambda: node_state(cut.hostname) == "down" or None, what="Swarm marking the node Down", timeout=60)
                down_at = time.monotonic()
                poll(lambda: not (targets_of(host) & lost) or None, what="the lost task leaving the targets")
                left_at = time.monotonic()
                # Load through the surviving proxy once the lost task is out of its targets.
                time.sleep(1)
            finally:
                restore(cut, fault)
            back_at = time.monotonic()
            poll(lambda: node_state(cut.hostname) == "ready" or None, what="the node Ready again", timeout=90)
            ready_at = time.monotonic()
            poll(lambda: answered(cut.address, host), what=f"{cut.hostname}'s proxy serving again", timeout=120)
            served_at = time.monotonic()
            # Swarm places the replica it could not run meanwhile on the returning node again.
            poll(lambda: all_tasks_routed(name, host), what="a task on the returning node routed again", timeout=120)
            used_at = time.monotonic()
            # Load once the returning node's task is a target again.
            time.sleep(1)
            history = _history(name, host, survivor, since=survivor_wall - 5) if load.failed else ""
    return LossFigures(
        fault=fault,
        requests=load.total,
        failed=load.failed,
        outcomes=dict(load.outcomes),
        slowest_s=round(load.slowest, 2),
        swarm_down_s=round(down_at - cut_at, 2),
        targets_left_after_down_s=round(left_at - down_at, 2),
        node_ready_s=round(ready_at - back_at, 2),
        proxy_back_s=round(served_at - back_at, 2),
        used_again_s=round(used_at - back_at, 2),
        survivor_lag_s=round(survivor_at - routed_at, 2),
        failures=[(round(at - (cut_at - load.started), 2), what) for at, what in load.failures],
        history=history,
    )


def proxy_log(node: Node, since: float) -> str:
    """The log of the default cluster's proxy on `node` since `since` (a time.time())."""
    containers = sh(*node.docker, "ps", "-q", "--filter", "label=com.docker.swarm.service.name=interlock-proxy").split()
    logs = (
        subprocess.run(
            [*node.docker, "logs", "-t", "--since", f"{since:.0f}", container],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=60,
            check=False,
        ).stdout
        for container in containers
    )
    # Both streams interleaved; by timestamp, which starts every line.
    return "\n".join(sorted("".join(logs).splitlines()))


def _history(name: str, host: str, survivor: Node, since: float) -> str:
    tasks = task_history(name)
    nodes = sh("docker", "node", "ls", "--format", "{{.Hostname}} {{.Status}} {{.Availability}}", check=False)
    # What the surviving proxy said of its tries (nginx: "connect() failed (113: ...)").
    said = [line for line in proxy_log(survivor, since).splitlines() if "[error]" in line or "[warn]" in line]
    errors = "\n".join(said[-30:])
    return (
        f"tasks:\n{tasks}\nnodes:\n{nodes}\ntargets of {host} now: {sorted(targets_of(host))}\n"
        f"the surviving proxy's errors and warnings (last 30 of {len(said)}):\n{errors}"
    )
