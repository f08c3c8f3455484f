"""What listens where, tried from the containers an attacker would use (issue 20): an app on an
application network the proxies share reaches the proxies' public port but not their metrics
(9180); a service on the monitoring network reaches every role's metrics but no role's API.
Each refusal is checked beside a connection that must succeed from the same container, so the
test cannot pass because nothing connects at all."""

from __future__ import annotations

import subprocess

import pytest

from interlock.constants import EXTENSION_PORT, METRICS_PORT
from tests.e2e.swarm import poll, service, sh, task_ips, unique

pytestmark = pytest.mark.usefixtures("interlock")

MONITORING = "interlock-monitoring"
CORE_PORT = 8090  # tests/e2e/interlock.toml's ListenAddr
CONNECTS = "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 3).close()"


def container_of(name: str) -> str:
    def running() -> str | None:
        ids = sh("docker", "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={name}").split()
        return ids[0] if ids else None

    return poll(running, what=f"a running container of {name}", timeout=120)


def addresses_on(service_name: str, network: str) -> set[str]:
    return poll(lambda: task_ips(service_name, network) or None, what=f"{service_name}'s address on {network}")


def connects(container: str, address: str, port: int) -> bool:
    """Whether a TCP connection from `container` to `address`:`port` is taken within 3 s."""
    command = ["docker", "exec", container, "python3", "-c", CONNECTS, address, str(port)]
    return subprocess.run(command, capture_output=True, check=False, timeout=30).returncode == 0


@pytest.mark.parametrize("proxy", ["interlock-proxy", "interlock-proxy-hap"])
def test_an_app_on_a_shared_network_reaches_the_proxy_but_not_its_metrics(proxy: str) -> None:
    name = unique("neighbour")
    with service(name):
        app = container_of(name)
        for address in addresses_on(proxy, "e2e-a"):
            assert connects(app, address, 80), f"the control case: {proxy} serves its TargetPort at {address}"
            assert not connects(app, address, METRICS_PORT), f"{proxy}'s metrics answer an app at {address}"


def test_the_monitoring_network_reaches_every_roles_metrics_and_no_api() -> None:
    name = unique("scraper")
    with service(name, networks=(MONITORING,)):
        scraper = container_of(name)
        for role, api_port in (("interlock", CORE_PORT), ("interlock-extension", EXTENSION_PORT)):
            for address in addresses_on(role, MONITORING):
                assert connects(scraper, address, METRICS_PORT), f"the control case: {role}'s metrics at {address}"
                assert not connects(scraper, address, api_port), f"{role}'s API answers the monitoring network"
        for proxy in ("interlock-proxy", "interlock-proxy-hap"):
            for address in task_ips(proxy, MONITORING):
                assert connects(scraper, address, METRICS_PORT), f"{proxy}'s metrics at {address}"
