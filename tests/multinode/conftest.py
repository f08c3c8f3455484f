"""Multi-node fixtures: this machine's swarm grown by scripts/cluster to a manager and two
workers (each a dockerd in its own network namespace), with Interlock deployed by `interlock up`
from tests/multinode/interlock.toml. Runs after the single-node end-to-end tests, and leaves the
swarm as it found it (one node, Interlock removed), unless INTERLOCK_KEEP_CLUSTER is set."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.swarm import E2E_LABEL, IMAGE, INTERLOCK, REPO, sh

CLUSTER = str(REPO / "scripts" / "cluster")
NETWORK = "mn-apps"


@dataclass(frozen=True)
class Node:
    hostname: str
    address: str
    role: str

    @property
    def docker(self) -> list[str]:
        """The docker CLI pointed at this node's own daemon."""
        return ["docker", "-H", f"unix:///run/{self.hostname}/run/docker.sock"]


@dataclass(frozen=True)
class Cluster:
    manager: Node
    """This machine's node: the first manager, where the tests run the Docker CLI."""
    workers: tuple[Node, ...]
    managers: tuple[Node, ...] = ()
    """The other managers (test_failover adds two)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/multinode/" in str(item.fspath):
            item.add_marker(pytest.mark.swarm)
            item.add_marker(pytest.mark.multinode)
    # The failover tests last: the two managers they add stay until the session's teardown,
    # and on this machine three managers hold leader elections under load ("The swarm does
    # not have a leader", once in the middle of a rolling test); one manager never does.
    items.sort(key=lambda item: "/multinode/test_failover" in str(item.fspath))


def current_cluster() -> Cluster:
    """The swarm's ready nodes: this machine's, the workers and the other managers, by host name."""
    here = sh("docker", "info", "--format", "{{.Swarm.NodeID}}").strip()
    ids = sh("docker", "node", "ls", "-q").split()
    nodes = {
        n["ID"]: Node(n["Description"]["Hostname"], n["Status"]["Addr"], n["Spec"]["Role"])
        for n in json.loads(sh("docker", "node", "inspect", *ids))
        if n["Status"]["State"] == "ready"
    }
    others = sorted((n for i, n in nodes.items() if i != here), key=lambda n: n.hostname)
    return Cluster(
        nodes[here], tuple(n for n in others if n.role == "worker"), tuple(n for n in others if n.role == "manager")
    )


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    state = subprocess.run(
        ["docker", "info", "--format", "{{.Swarm.LocalNodeState}}"], capture_output=True, text=True, check=False
    )
    if state.stdout.strip() != "active":
        if os.environ.get("INTERLOCK_REQUIRE_SWARM"):
            pytest.fail("a Docker swarm is required (INTERLOCK_REQUIRE_SWARM is set) but none is active")
        pytest.skip("no active Docker swarm; run scripts/setup --swarm")
    # While developing, INTERLOCK_KEEP_CLUSTER leaves the nodes and Interlock up for the next run.
    with deployed(keep=bool(os.environ.get("INTERLOCK_KEEP_CLUSTER"))) as grown:
        yield grown


CONFIG = Path(__file__).with_name("interlock.toml")
CORE_ON_THIS_NODE = 'CoreConstraints = ["node.labels.com.docker.interlock.made-by==scripts/swarm"]'
CORE_ON_THE_ADDED_MANAGERS = 'CoreConstraints = ["node.labels.com.docker.interlock.made-by==scripts/cluster"]'


@contextmanager
def with_two_more_managers(workdir: Path) -> Iterator[Cluster]:
    """The deployed swarm grown by two managers (three in all) and the core moved onto them,
    so that losing the core's node leaves a quorum. Afterwards the core stays there (moving it
    back took some 40 s of the suite): the failover tests run last, and the session's teardown
    removes the core and the managers.

    With Docker's own dispatcher heartbeat (5 s), not the 2 s scripts/cluster sets for the
    node-loss tests: a worker whose Swarm session ran through the lost manager finds that out
    when its next heartbeat there times out (up to a period plus 5 s), and the leader marks a
    worker Down three periods after its last heartbeat. At 2 s that came first: the leader
    rescheduled the worker's tasks, so its proxy and apps were stopped and started again when
    it came back a second later (seen as refused connections, once as a 503)."""
    sh(CLUSTER, "up", "2", "--managers", "2", timeout=600)
    sh("docker", "swarm", "update", "--dispatcher-heartbeat", "5s")
    config = workdir / "failover.toml"
    config.write_text(CONFIG.read_text().replace(CORE_ON_THIS_NODE, CORE_ON_THE_ADDED_MANAGERS))
    try:
        # The workers take the new period from their next heartbeat's answer, long before the
        # core has moved.
        sh(INTERLOCK, "up", "-c", str(config), "--wait", "240", timeout=400)
        yield current_cluster()
    finally:
        sh("docker", "swarm", "update", "--dispatcher-heartbeat", "2s", check=False)


ANCHOR = "mn-anchor"
HAP_PORT = 8081
"""The hap cluster's published HTTP port (HAProxy, a proxy on each worker)."""


def anchored() -> None:
    """A service the hap cluster routes on mn-apps for the whole session, as a production
    cluster has: its proxies are on mn-apps from the start, so the tests' services there never
    make them join it (or leave it when the last one goes)."""
    if subprocess.run(["docker", "service", "inspect", ANCHOR], capture_output=True, check=False).returncode == 0:
        return
    labels = {"com.docker.lb.hosts": "anchor.mn", "com.docker.lb.port": "8080", "com.docker.lb.service_cluster": "hap"}
    sh(
        *("docker", "service", "create", "-d", "--quiet", "--name", ANCHOR, "--network", NETWORK),
        *(f for k, v in labels.items() for f in ("--label", f"{k}={v}")),
        *("--constraint", "node.role==worker", "--label", f"{E2E_LABEL}=1"),
        IMAGE,
        "demo-app",
    )


@contextmanager
def deployed(*, keep: bool = False) -> Iterator[Cluster]:
    """The swarm grown by two workers, Interlock deployed from tests/multinode/interlock.toml;
    afterwards (unless `keep`) Interlock, the network and the workers removed again."""
    sh(str(REPO / "scripts" / "build-images"), timeout=900)
    sh(CLUSTER, "up", "2", timeout=600)
    try:
        if subprocess.run(["docker", "network", "inspect", NETWORK], capture_output=True, check=False).returncode:
            sh("docker", "network", "create", "-d", "overlay", "--attachable", NETWORK)
        anchored()
        sh(INTERLOCK, "up", "-c", str(CONFIG), "--wait", "240", timeout=400)
        yield current_cluster()
    finally:
        if not keep:
            sh(INTERLOCK, "down", timeout=300, check=False)
            sh("docker", "service", "rm", ANCHOR, check=False)
            sh("docker", "network", "rm", NETWORK, check=False)
            sh(CLUSTER, "down", timeout=300)
