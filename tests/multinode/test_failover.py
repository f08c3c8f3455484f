"""Manager failover: three managers, the core on one of the two scripts/cluster adds; that
manager is lost under load. Proxies keep serving with no failed request, Swarm starts the core
on another manager, services created meanwhile and afterwards are routed, and `interlock status`
on this machine reaches the core wherever it runs. Runs after test_cluster (it grows the swarm)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.e2e.swarm import INTERLOCK, sh
from tests.multinode.conftest import Cluster, with_two_more_managers
from tests.multinode.failover import core_node, lose_the_core_manager


@pytest.fixture(scope="module")
def managers(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with with_two_more_managers(tmp_path_factory.mktemp("failover")) as grown:
        yield grown


def test_status_on_this_machine_asks_the_core_on_another_manager(managers: Cluster) -> None:
    """The core's API is on the control network only; `interlock status` reaches it from here
    through a one-shot probe, instead of computing routes itself."""
    where = core_node()
    assert where in {m.hostname for m in managers.managers}, where
    status = json.loads(sh(INTERLOCK, "status", "--json"))
    assert status["ready"] is True, status
    assert not status.get("note"), status["note"]
    assert {c["extension"] for c in status["clusters"]} == {"default", "east", "hap"}
    assert not sh("docker", "service", "ls", "-q", "--filter", "label=com.docker.interlock.role=status-probe")


def test_losing_the_core_manager_costs_no_request_and_routing_resumes(managers: Cluster) -> None:
    figures = lose_the_core_manager(managers)
    print("\n" + figures.describe())
    # Each failure with its time from the cut and what it looked like; the proxy's log says
    # which configuration and targets it served then.
    assert figures.failed == 0, f"{figures.describe()}\nthe worker's proxy logged:\n{figures.proxy_log}"
    assert figures.requests > 1000, "the load ran throughout"
    assert figures.moved_to != figures.lost
