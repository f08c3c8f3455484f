"""Interlock on a manager and two workers, through the proxies' published ports on each node's
address: placement and least privilege, every route from every proxy, tasks and host-mode apps
on every node, two clusters on disjoint nodes sharing ports, a proxy catching up after it was
cut off."""

from __future__ import annotations

import json
import subprocess
import time
from functools import partial
from pathlib import Path

import pytest
import requests

from tests.e2e.swarm import INTERLOCK, lb, poll, service, sh, unique
from tests.multinode.conftest import CLUSTER, NETWORK, Cluster, Node
from tests.multinode.load import Load

PORT = 8080


def get_at(address: str, host: str, path: str = "/") -> requests.Response:
    """One request on a fresh connection to the proxy at `address`."""
    return requests.get(f"http://{address}:{PORT}{path}", headers={"Host": host}, timeout=5)


def answered(address: str, host: str, status: int = 200) -> requests.Response | None:
    response = get_at(address, host)
    return response if response.status_code == status else None


def proxy_address(node: Node, cluster: Cluster) -> str:
    """Where this machine reaches a node's host-mode proxy: loopback for its own node."""
    return "127.0.0.1" if node == cluster.manager else node.address


def running_nodes(service_name: str) -> list[str]:
    out = sh("docker", "service", "ps", "--filter", "desired-state=running", "--format", "{{.Node}}", service_name)
    return sorted(out.split())


def task_addresses(service_name: str) -> set[str]:
    return task_addresses_on(service_name)


def task_addresses_on(service_name: str, node: str = "") -> set[str]:
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


def test_the_core_on_a_manager_proxies_where_their_constraints_put_them(cluster: Cluster) -> None:
    workers = sorted(w.hostname for w in cluster.workers)
    assert running_nodes("interlock") == [cluster.manager.hostname]
    assert running_nodes("interlock-proxy") == workers, "one default proxy on each worker"
    assert running_nodes("interlock-proxy-east") == [cluster.manager.hostname]
    assert running_nodes("interlock-extension") == [cluster.manager.hostname]


def test_no_container_on_a_worker_mounts_the_docker_socket(cluster: Cluster) -> None:
    for worker in cluster.workers:
        containers = sh(*worker.docker, "ps", "-q").split()
        assert containers, f"{worker.hostname} runs the proxy"
        inspected = json.loads(sh(*worker.docker, "inspect", *containers))
        sources = {m.get("Source", "") for c in inspected for m in c["Mounts"]}
        assert not any("docker.sock" in s for s in sources), sources


def test_every_proxy_answers_every_route_from_tasks_on_every_node(cluster: Cluster) -> None:
    name = unique("spread")
    host = f"{name}.mn"
    extra = ("--replicas-max-per-node", "1")
    with service(name, labels=lb(hosts=host, port="8080"), networks=(NETWORK,), replicas=3, extra=extra):
        poll(lambda: len(running_nodes(name)) == 3 or None, what="a task on each node", timeout=90)
        expected = {f"{a}:8080" for a in task_addresses(name)}
        assert len(expected) == 3
        for worker in cluster.workers:
            poll(partial(answered, worker.address, host), what=f"{host} through {worker.hostname}", timeout=60)

            def every_task_answered(w: Node = worker) -> set[str] | None:
                seen = {get_at(w.address, host).headers.get("x-upstream-addr", "") for _ in range(12)}
                return seen if seen == expected else None

            poll(every_task_answered, what=f"all three tasks through {worker.hostname}", timeout=30)


def test_a_host_mode_app_is_reached_at_its_node_address_from_every_proxy(cluster: Cluster) -> None:
    name = unique("hostmode")
    host = f"{name}.mn"
    node = cluster.workers[-1]
    extra = ("--publish", "mode=host,target=8080,published=18080", "--constraint", f"node.hostname=={node.hostname}")
    with service(name, labels=lb(hosts=host, port="8080"), networks=(NETWORK,), extra=extra):
        assert poll(lambda: requests.get(f"http://{node.address}:18080/", timeout=5), what="the app itself").ok
        for worker in cluster.workers:
            response = poll(partial(answered, worker.address, host), what=f"{host} via {worker.hostname}")
            assert response.headers["x-upstream-addr"] == f"{node.address}:18080"


def test_two_clusters_on_disjoint_nodes_share_the_published_ports(cluster: Cluster) -> None:
    west, east = unique("west"), unique("east")
    with (
        service(west, labels=lb(hosts=f"{west}.mn", port="8080"), networks=(NETWORK,)),
        service(east, labels=lb(hosts=f"{east}.mn", port="8080", service_cluster="east"), networks=(NETWORK,)),
    ):
        manager = proxy_address(cluster.manager, cluster)
        poll(lambda: answered(manager, f"{east}.mn"), what="east served on the manager's port 8080")
        for worker in cluster.workers:
            poll(partial(answered, worker.address, f"{west}.mn"), what=f"west served by {worker.hostname}")
            assert get_at(worker.address, f"{east}.mn").status_code == 503, "east is not the workers' cluster"
        assert get_at(manager, f"{west}.mn").status_code == 503, "west is not the manager's cluster"


def test_a_proxy_cut_off_while_routes_change_serves_the_newest_ones_when_back(cluster: Cluster) -> None:
    """A worker loses its link for a few seconds (less than Swarm takes to call it Down): the
    routes created meanwhile are served by the other proxy at once, and by this one as soon as
    its link is back."""
    cut, other = cluster.workers[-1], cluster.workers[0]
    veth = veth_of(cut)
    name = unique("missed")
    host = f"{name}.mn"
    subprocess.run(["ip", "link", "set", veth, "down"], check=True)
    try:
        with service(
            name, labels=lb(hosts=host, port="8080"), networks=(NETWORK,), extra=("--constraint", "node.role==manager")
        ):
            poll(lambda: answered(other.address, host), what=f"{host} through {other.hostname}", timeout=60)
            subprocess.run(["ip", "link", "set", veth, "up"], check=True)
            back = time.monotonic()
            poll(lambda: answered(cut.address, host), what=f"{host} through {cut.hostname} once back", timeout=60)
            print(f"\n{cut.hostname} served the route {time.monotonic() - back:.1f}s after its link came back")
    finally:
        subprocess.run(["ip", "link", "set", veth, "up"], check=False)


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
    expected = {f"{a}:8080" for a in task_addresses(name)}
    return (len(expected) == 3 and targets_of(host) == expected) or None


def cut_off(node: Node, fault: str) -> None:
    """`link`: the node's link goes down (tasks keep running, unreachable, and no reset is ever
    sent). `daemon`: its dockerd is killed (its containers keep answering)."""
    if fault == "link":
        subprocess.run(["ip", "link", "set", veth_of(node), "down"], check=True)
    else:
        pid = Path(f"/run/{node.hostname}/docker.pid").read_text().strip()
        subprocess.run(["kill", "-9", pid], check=True)


def restore(node: Node, fault: str) -> None:
    if fault == "link":
        subprocess.run(["ip", "link", "set", veth_of(node), "up"], check=True)
    else:
        sh(CLUSTER, "up", "2", timeout=300)  # starts the node's daemon again; it rejoins by itself


def veth_of(node: Node) -> str:
    return "ilk-v" + node.address.rsplit(".", 1)[1]


@pytest.mark.parametrize("fault", ["link", "daemon"])
def test_a_lost_worker_costs_no_request_through_the_surviving_proxy(cluster: Cluster, fault: str) -> None:
    """Under load through the other proxy no request fails, before Swarm notices as after; the
    lost task leaves the targets once Swarm marks the node Down; once back, the node's proxy
    serves again."""
    cut, survivor = cluster.workers[-1], cluster.workers[0]
    name = unique(f"loss-{fault}")
    host = f"{name}.mn"
    extra = ("--replicas-max-per-node", "1")
    with service(name, labels=lb(hosts=host, port="8080"), networks=(NETWORK,), replicas=3, extra=extra):
        poll(partial(all_tasks_routed, name, host), what="a task on each node, all three routed", timeout=120)
        lost = {f"{a}:8080" for a in task_addresses_on(name, cut.hostname)}
        assert len(lost) == 1
        with Load(survivor.address, host, max_seconds=150) as load:
            time.sleep(3)
            cut_off(cut, fault)
            cut_at = time.monotonic()
            try:
                poll(lambda: node_state(cut.hostname) == "down" or None, what="Swarm marking the node Down", timeout=60)
                swarm_noticed = time.monotonic() - cut_at
                poll(lambda: not (targets_of(host) & lost) or None, what="the lost task leaving the targets")
                interlock_reacted = time.monotonic() - cut_at
                time.sleep(3)
            finally:
                restore(cut, fault)
            back_at = time.monotonic()
            poll(lambda: node_state(cut.hostname) == "ready" or None, what="the node Ready again", timeout=90)
            node_ready = time.monotonic() - back_at
            poll(lambda: answered(cut.address, host), what=f"{cut.hostname}'s proxy serving again", timeout=120)
            proxy_back = time.monotonic() - back_at
            time.sleep(2)
        print(
            f"\nnode loss ({fault}): {load.total} requests through {survivor.hostname}, {load.failed} failed "
            f"({dict(load.outcomes)}), slowest {load.slowest:.1f}s; Swarm marked the node Down after "
            f"{swarm_noticed:.1f}s, its task left the targets {interlock_reacted - swarm_noticed:.1f}s later; "
            f"back: node Ready after {node_ready:.1f}s, its proxy served after {proxy_back:.1f}s"
        )
        assert load.failed == 0, dict(load.outcomes)
        assert load.total > 1000, "the load ran throughout"
