"""ACME on the swarm, with Debian's pebble as the ACME server (run as a Swarm service from a
local image): a service labelled `ssl_acme=true` is served over TLS, on both kinds, with a
certificate that chains to pebble's root; a restarted core orders nothing again; pebble issues
certificates valid for 150 s and tests/e2e/interlock.toml renews 100 s before expiry, so a
renewal comes within a minute and is served with no proxy task replaced; a challenge that cannot
succeed is a problem of that service, with pebble's reason, and other services keep serving.

Pebble's validation asks the proxies themselves: pebble-challtestsrv, in the same container,
is its DNS server, and the test points each host name at its cluster's proxy task on e2e-a
(where the proxies listen on port 80, pebble's `httpPort`). Pebble is on the control network
too, where the core finds it by name as it would a public ACME server by DNS.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator

import pytest

from interlock.constants import LABEL_ACME
from tests.e2e.pebble import issued, resolve, running_pebble
from tests.e2e.swarm import (
    CLUSTERS,
    INTERLOCK,
    Cluster,
    force_update,
    get,
    lb,
    poll,
    service,
    settled,
    settled_update,
    sh,
    task_ips,
    unique,
)

pytestmark = pytest.mark.usefixtures("interlock")


def proxy_tasks() -> set[str]:
    found = set()
    for proxy in PROXIES.values():
        found |= set(sh("docker", "service", "ps", "-q", "--filter", "desired-state=running", proxy).split())
    return found


def acme_secrets(host: str) -> set[str]:
    """The names of the secrets the core made for `host`'s certificates."""
    listed = sh("docker", "secret", "ls", "--filter", f"label={LABEL_ACME}", "--format", "{{.Name}} {{.Labels}}")
    return {line.split()[0] for line in listed.splitlines() if host in line}


def problems() -> list[dict[str, str]]:
    """`interlock problems --json` ([] while the core does not answer)."""
    run = subprocess.run([INTERLOCK, "problems", "--json"], capture_output=True, text=True, check=False, timeout=60)
    try:
        return list(json.loads(run.stdout)) if run.returncode == 0 else []
    except ValueError:
        return []


def core_task() -> str | None:
    """The core's running task, once its status answers."""
    tasks = sh("docker", "service", "ps", "-q", "--filter", "desired-state=running", "interlock").split()
    status = subprocess.run([INTERLOCK, "status"], capture_output=True, check=False, timeout=60)
    return tasks[0] if len(tasks) == 1 and status.returncode == 0 else None


def core_mounts() -> set[str]:
    spec = json.loads(sh("docker", "service", "inspect", "interlock"))[0]["Spec"]
    return {m["SecretName"] for m in spec["TaskTemplate"]["ContainerSpec"].get("Secrets") or ()}


PROXIES = {"nginx": "interlock-proxy", "haproxy": "interlock-proxy-hap"}


@pytest.fixture(scope="module")
def pebble(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_pebble(tmp_path_factory.mktemp("pebble"), ("e2e-a",)) as root:
        yield root


def point_at_proxy(host: str, cluster: Cluster) -> None:
    """Pebble's DNS answers `host` with the address of the cluster's proxy task on e2e-a."""
    resolve(host, sorted(poll(lambda: task_ips(PROXIES[cluster.kind], "e2e-a") or None, what="proxy address"))[0])


def test_ssl_acme_is_served_with_pebbles_certificate_on_both_kinds_kept_over_a_restart_and_renewed(
    pebble: str,
) -> None:
    names = {c.kind: unique(f"acme-{c.kind}") for c in CLUSTERS}
    hosts = {kind: f"{name}.e2e.test" for kind, name in names.items()}
    for cluster in CLUSTERS:
        point_at_proxy(hosts[cluster.kind], cluster)
    tasks = proxy_tasks()
    started = time.monotonic()
    with (
        service(names["nginx"], labels=lb(hosts=hosts["nginx"], port="8080", ssl_acme="true")),
        service(names["haproxy"], labels=lb(hosts=hosts["haproxy"], port="8080", ssl_acme="true") | CLUSTERS[1].labels),
    ):
        first = {}
        for cluster in CLUSTERS:
            host = hosts[cluster.kind]
            first[cluster.kind] = poll(
                lambda h=host, port=cluster.https: issued(h, port, pebble),  # type: ignore[misc]
                what=f"{host} issued",
                timeout=180,
            )
        print(f"\nssl_acme=true -> first handshake with pebble's certificate: {time.monotonic() - started:.1f}s")

        # The core restarted: it reads back what it holds and orders nothing again. (It first
        # restarts by itself, to mount the new secrets.)
        made = {kind: acme_secrets(host) for kind, host in hosts.items()}
        poll(lambda: set().union(*made.values()) <= core_mounts() or None, what="the core mounting its certificates")
        before = poll(core_task, what="the core serving")
        poll(lambda: settled_update("interlock"), what="the core's own update of its service done", timeout=120)
        force_update("interlock")
        poll(lambda: core_task() not in (None, before), what="a new core serving", timeout=120)
        for cluster in CLUSTERS:
            settled(cluster.http)
            host = hosts[cluster.kind]
            assert issued(host, cluster.https, pebble) == first[cluster.kind]
            assert acme_secrets(host) == made[cluster.kind], "the restarted core ordered again"

        # Renewal: 100 s before the 150 s certificates expire, served with no proxy restart.
        for cluster in CLUSTERS:
            host = hosts[cluster.kind]

            def renewed(host: str = host, cluster: Cluster = cluster) -> str | None:
                serial = issued(host, cluster.https, pebble)
                return serial if serial not in (None, first[cluster.kind]) else None

            poll(renewed, what=f"{host} renewed", timeout=150)
        assert proxy_tasks() == tasks, "no proxy task was replaced"


def test_a_challenge_that_fails_is_a_problem_with_pebbles_reason_and_others_keep_serving(pebble: str) -> None:
    # No DNS record: pebble's DNS answers 127.0.0.1, where nothing serves port 80.
    broken, fine = unique("acme-broken"), unique("acme-fine")
    with (
        service(broken, labels=lb(hosts=f"{broken}.e2e.test", port="8080", ssl_acme="true")),
        service(fine, labels=lb(hosts=f"{fine}.e2e.test", port="8080")),
    ):

        def reported() -> dict[str, str] | None:
            # The core's word: while it restarts the CLI computes problems itself, without ACME's.
            return next((p for p in problems() if p.get("service") == broken and "ACME order" in p["reason"]), None)

        problem = poll(reported, what="the failed order as a problem", timeout=120)
        assert problem["label"] == "com.docker.lb.ssl_acme"
        assert "connection" in problem["reason"].lower(), problem
        assert not [p for p in problems() if p.get("service") == fine]
        assert poll(lambda: get(f"{fine}.e2e.test").status_code == 200 or None, what="the other service served")
