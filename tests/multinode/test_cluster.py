"""Interlock on a manager and two workers, through the proxies' published ports on each node's
address: placement and least privilege, every route from every proxy, tasks and host-mode apps
on every node (through the workers' nginx and HAProxy proxies), two clusters on disjoint nodes
sharing ports, a proxy catching up after it was cut off."""

from __future__ import annotations

import json
import subprocess
import time
from functools import partial

import pytest
import requests

from tests.e2e.swarm import lb, poll, service, sh, unique
from tests.multinode.conftest import HAP_PORT, NETWORK, Cluster, Node
from tests.multinode.scenario import PORT, answered, get_at, lose_a_worker, running_nodes, task_addresses, veth_of


def proxy_address(node: Node, cluster: Cluster) -> str:
    """Where this machine reaches a node's host-mode proxy: loopback for its own node."""
    return "127.0.0.1" if node == cluster.manager else node.address


def test_the_core_on_a_manager_proxies_where_their_constraints_put_them(cluster: Cluster) -> None:
    workers = sorted(w.hostname for w in cluster.workers)
    manager = [cluster.manager.hostname]
    expected = {
        "interlock": manager,
        "interlock-proxy": workers,  # one default proxy on each worker
        "interlock-proxy-hap": workers,  # one HAProxy proxy on each worker
        "interlock-proxy-east": manager,
        "interlock-extension": manager,
    }

    # A role may be between two tasks (the core is replaced when its certificate mounts change,
    # as after the ACME test's services go): while Swarm stops the old task, none is desired
    # running. Placement is what this test is about, so it waits for that to settle.
    def placed() -> bool | None:
        actual = {name: running_nodes(name) for name in expected}
        assert actual == expected
        return True

    poll(placed, what="each role on its nodes", timeout=60)


def test_no_container_on_a_worker_mounts_the_docker_socket(cluster: Cluster) -> None:
    for worker in cluster.workers:
        containers = sh(*worker.docker, "ps", "-q").split()
        assert containers, f"{worker.hostname} runs the proxy"
        inspected = json.loads(sh(*worker.docker, "inspect", *containers))
        sources = {m.get("Source", "") for c in inspected for m in c["Mounts"]}
        assert not any("docker.sock" in s for s in sources), sources


# The two clusters whose proxies are on the workers in host mode: (its label, its port).
ON_THE_WORKERS = {"nginx": ({}, PORT), "haproxy": ({"service_cluster": "hap"}, HAP_PORT)}


@pytest.mark.parametrize("kind", ON_THE_WORKERS)
def test_every_proxy_answers_every_route_from_tasks_on_every_node(cluster: Cluster, kind: str) -> None:
    cluster_label, port = ON_THE_WORKERS[kind]
    name = unique("spread")
    host = f"{name}.mn"
    extra = ("--replicas-max-per-node", "1")
    labels = lb(hosts=host, port="8080", **cluster_label)
    with service(name, labels=labels, networks=(NETWORK,), replicas=3, extra=extra):
        poll(lambda: len(running_nodes(name)) == 3 or None, what="a task on each node", timeout=90)
        for worker in cluster.workers:
            poll(partial(answered, worker.address, host, port), what=f"{host} through {worker.hostname}", timeout=60)

            def every_task_answered(w: Node = worker) -> set[str] | None:
                # Recomputed each time: Swarm replaces a task that fails to start, with a new address.
                expected = {f"{a}:8080" for a in task_addresses(name)}
                seen = {get_at(w.address, host, port=port).headers.get("x-upstream-addr", "") for _ in range(12)}
                return seen if len(expected) == 3 and seen == expected else None

            poll(every_task_answered, what=f"all three tasks through {worker.hostname}", timeout=90)


@pytest.mark.parametrize("kind", ON_THE_WORKERS)
def test_a_host_mode_app_is_reached_at_its_node_address_from_every_proxy(cluster: Cluster, kind: str) -> None:
    cluster_label, port = ON_THE_WORKERS[kind]
    name = unique("hostmode")
    host = f"{name}.mn"
    node = cluster.workers[-1]
    published = 18080 if kind == "nginx" else 18081
    extra = (
        *("--publish", f"mode=host,target=8080,published={published}"),
        *("--constraint", f"node.hostname=={node.hostname}"),
    )
    with service(name, labels=lb(hosts=host, port="8080", **cluster_label), networks=(NETWORK,), extra=extra):
        assert poll(lambda: requests.get(f"http://{node.address}:{published}/", timeout=5), what="the app itself").ok
        for worker in cluster.workers:
            response = poll(partial(answered, worker.address, host, port), what=f"{host} via {worker.hostname}")
            assert response.headers["x-upstream-addr"] == f"{node.address}:{published}"


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


@pytest.mark.parametrize("fault", ["link", "daemon"])
def test_a_lost_worker_costs_no_request_through_the_surviving_proxy(cluster: Cluster, fault: str) -> None:
    """Under load through the other proxy no request fails, before Swarm notices as after; the
    lost task leaves the targets once Swarm marks the node Down; once back, the node's proxy
    serves again (see tests/multinode/scenario.py)."""
    figures = lose_a_worker(cluster, fault)
    print("\n" + figures.describe())
    assert figures.failed == 0, (
        f"{figures.outcomes}; seconds after the fault, the first failures: {figures.failures[:5]}, the last: "
        f"{figures.failures[-3:]}\n{figures.history}"
    )
    assert figures.requests > 1000, "the load ran throughout"
