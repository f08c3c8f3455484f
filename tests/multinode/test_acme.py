"""ACME with two proxy replicas on two workers: pebble validates each host set at a different
replica (its DNS points each host at one of them), so both orders succeed only if the core
pushed every challenge to every replica before telling pebble to validate; then each replica
serves each issued certificate, chained to pebble's root, on its node's published TLS port."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.e2e.pebble import issued, resolve, running_pebble
from tests.e2e.swarm import lb, poll, service, task_ips, unique
from tests.multinode.conftest import NETWORK, Cluster

ON_THIS_NODE = ("--constraint", "node.labels.com.docker.interlock.made-by==scripts/swarm")


@pytest.fixture(scope="module")
def pebble(tmp_path_factory: pytest.TempPathFactory, cluster: Cluster) -> Iterator[str]:
    # The image is built here, so pebble runs on this machine's node.
    with running_pebble(tmp_path_factory.mktemp("pebble"), (NETWORK,), extra=ON_THIS_NODE) as root:
        yield root


def test_every_replica_answers_the_challenges_and_serves_the_issued_certificates(
    cluster: Cluster, pebble: str, tmp_path: Path
) -> None:
    replicas = sorted(poll(lambda: task_ips("interlock-proxy", NETWORK) or None, what="the proxies' addresses"))
    assert len(replicas) == 2, replicas
    hosts = [f"{unique('acme-replica')}.mn" for _ in replicas]
    for host, replica in zip(hosts, replicas, strict=True):
        resolve(host, replica)
    with ExitStack() as services:
        for host in hosts:
            services.enter_context(
                service(host.split(".")[0], labels=lb(hosts=host, port="8080", ssl_acme="true"), networks=(NETWORK,))
            )
        for host in hosts:
            for worker in cluster.workers:
                poll(
                    lambda h=host, w=worker.address: issued(h, 8443, pebble, w),  # type: ignore[misc]
                    what=f"{host}'s issued certificate through {worker.hostname}",
                    timeout=180,
                )
