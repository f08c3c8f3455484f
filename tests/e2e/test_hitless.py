"""Routing changes cost no request, on both kinds: while three hosts are created and removed and a
3-task service rolls, a keep-alive client that never retries (like Python `requests`) sees
only 200s. nginx is not reloaded at all (the same worker processes before and after); HAProxy
reloads for a new host (seamlessly) and moves tasks through its runtime API."""

from __future__ import annotations

import time
from contextlib import ExitStack

import pytest

from tests.e2e.clients import NeverRetryingHTTP
from tests.e2e.swarm import (
    Cluster,
    get,
    lb,
    poll,
    routed,
    service,
    settled,
    sh,
    unique,
    until_routed,
)

pytestmark = pytest.mark.usefixtures("interlock")

CLIENT_SECONDS = 300
CLIENT_REQUESTS = 150_000


def nginx_workers() -> dict[str, set[str]]:
    """The nginx worker processes of every running proxy task of the cluster (a reload or a
    restart starts new ones)."""
    found = {}
    label = "label=com.docker.swarm.service.name=interlock-proxy"
    for container in sh("docker", "ps", "-q", "--filter", label).split():
        # "nginx[:]" so that this script and its grep, whose command lines hold the pattern, do
        # not match it themselves; `true`: the last grep's miss is not the script's failure.
        script = (
            'for p in /proc/[0-9]*; do grep -qa "nginx[:] worker" $p/cmdline 2>/dev/null && echo ${p#/proc/}; done;'
            " true"
        )
        found[container] = set(sh("docker", "exec", container, "sh", "-c", script).split())
    return found


def test_hosts_come_and_go_and_a_service_rolls_without_a_failed_request(cluster: Cluster) -> None:
    name = unique("steady")
    host = f"{name}.local"
    port = cluster.http
    # Stop-first, one task at a time: the proxy stops sending to a task before it is stopped.
    # Swarm watches each new task for 1 s, not 5 (its health check already gated "running").
    roll = ("--update-parallelism", "1", "--update-order", "stop-first", "--update-monitor", "1s")
    with service(name, labels=lb(hosts=host, port="8080") | cluster.labels, replicas=3, extra=roll):
        until_routed(host, port=port, what=f"{host} routed")
        poll(lambda: len({get(host, port=port).headers["x-upstream-addr"] for _ in range(12)}) == 3, what="3 tasks")
        before = settled(port)["proxies"]
        processes = nginx_workers()
        assert all(processes.values()) or cluster.kind != "nginx", processes
        started = int(time.time())
        with NeverRetryingHTTP(host, port, seconds=CLIENT_SECONDS, limit=CLIENT_REQUESTS) as client:
            others = [unique("churn") for _ in range(3)]
            with ExitStack() as stack:
                for other in others:
                    stack.enter_context(service(other, labels=lb(hosts=f"{other}.local", port="8080") | cluster.labels))
                for other in others:
                    poll(routed(f"{other}.local", port=port), what=f"{other}.local routed", timeout=120)
            for other in others:
                poll(routed(f"{other}.local", port=port, status=503), what=f"{other}.local gone")
            sh("docker", "service", "update", "-d", "--force", name)
            poll(
                lambda: (
                    sh("docker", "service", "inspect", "-f", "{{.UpdateStatus.State}}", name).strip() == "completed"
                ),
                what="the rolling update",
                timeout=180,
            )
            settled(port)
        outcomes = client.outcomes
        after = settled(port)["proxies"]
        assert set(outcomes) == {"200"}, (
            f"a client that never retries saw {dict(outcomes)}; failures: {client.failures}; "
            f"the proxy's log meanwhile, but its 200s:\n{proxy_log_without_200s(cluster, started)}"
        )
        assert outcomes["200"] > 500, outcomes
        assert sum(p["target_updates"] for p in after) > sum(p["target_updates"] for p in before)
        if cluster.kind == "nginx":
            assert sum(p["reloads"] for p in after) == sum(p["reloads"] for p in before), "no reload"
            assert nginx_workers() == processes, "the same nginx workers served throughout"


def proxy_log_without_200s(cluster: Cluster, since: int) -> str:
    """The cluster's proxy log since `since` (epoch seconds), without the lines of 200 answers:
    reloads, worker exits, and the requests that did not end well."""
    name = cluster.labels.get("com.docker.lb.service_cluster", "")
    service_name = f"interlock-proxy-{name}" if name else "interlock-proxy"
    log = sh("docker", "service", "logs", "--timestamps", "--since", str(since), service_name, check=False)
    return "\n".join(line for line in log.splitlines() if " 200 " not in line)[-20000:]
