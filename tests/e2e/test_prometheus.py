"""A real Prometheus (Debian's package, in an image built like ours) on the monitoring network
(`MonitoringNetwork`), finding every role by Swarm's DNS (`tasks.SERVICE`), as docs/PRODUCTION.md
tells operators to: it scrapes the proxies, the extensions and the core without joining the
control network, and a PromQL query gives the request rate of a host after traffic to it."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.e2e.swarm import HAP_HTTP, HTTP, INTERLOCK, get, lb, poll, service, sh, unique, until_routed

MONITORING = "interlock-monitoring"
PROMETHEUS_IMAGE = "interlock-prometheus:bookworm"
PROMETHEUS_PORT = 19090
SCRAPE_CONFIG = """
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: interlock
    dns_sd_configs:
      - names: [tasks.interlock, tasks.interlock-extension, tasks.interlock-proxy, tasks.interlock-proxy-hap]
        type: A
        port: 9180
        refresh_interval: 2s
"""


@pytest.fixture(scope="module")
def prometheus(interlock: None) -> Iterator[str]:
    """Prometheus as a Swarm service on the monitoring network only, its API on a host port."""
    name = unique("prometheus")
    config = unique("prometheus-yml")
    subprocess.run(["docker", "config", "create", config, "-"], input=SCRAPE_CONFIG, text=True, check=True)
    sh(
        "docker",
        "service",
        "create",
        "-d",
        "--quiet",
        "--name",
        name,
        "--network",
        MONITORING,
        "--config",
        f"source={config},target=/etc/prometheus.yml",
        "--publish",
        f"mode=host,target=9090,published={PROMETHEUS_PORT}",
        PROMETHEUS_IMAGE,
        "--config.file=/etc/prometheus.yml",
        "--storage.tsdb.path=/tmp/prometheus",
    )
    try:
        poll(
            lambda: requests.get(f"http://127.0.0.1:{PROMETHEUS_PORT}/-/ready", timeout=2).ok or None,
            what="Prometheus to be ready",
            timeout=120,
        )
        yield name
    finally:
        sh("docker", "service", "rm", name, check=False)
        # The config can go once the task that mounts it is gone.
        poll(
            lambda: (
                subprocess.run(["docker", "config", "rm", config], capture_output=True, check=False).returncode == 0
            ),
            what=f"config {config} to be removed",
            timeout=60,
        )


API = f"http://127.0.0.1:{PROMETHEUS_PORT}/api/v1"


def query(promql: str) -> list[dict[str, Any]]:
    answer = requests.get(f"{API}/query", params={"query": promql}, timeout=5).json()
    assert answer["status"] == "success", answer
    return list(answer["data"]["result"])


def reached(promql: str, at_least: float) -> list[dict[str, Any]] | None:
    """The query's result once its values add up to `at_least`."""
    result = query(promql)
    return result if result and sum(float(r["value"][1]) for r in result) >= at_least else None


def test_prometheus_scrapes_every_role_on_the_monitoring_network_only(prometheus: str) -> None:
    def all_up() -> list[dict[str, Any]] | None:
        targets = requests.get(f"{API}/targets", timeout=5).json()["data"]["activeTargets"]
        healthy = [t for t in targets if t["health"] == "up"]
        return targets if len(healthy) >= 4 and len(healthy) == len(targets) else None

    targets = poll(all_up, what="Prometheus to scrape every role", timeout=90)
    names = {t["discoveredLabels"]["__meta_dns_name"] for t in targets}
    assert names == {
        "tasks.interlock",
        "tasks.interlock-extension",
        "tasks.interlock-proxy",
        "tasks.interlock-proxy-hap",
    }
    # Prometheus is on the monitoring network, not on the control network.
    attached = json.loads(sh("docker", "service", "inspect", "-f", "{{json .Spec.TaskTemplate.Networks}}", prometheus))
    names = {sh("docker", "network", "inspect", "-f", "{{.Name}}", n["Target"]).strip() for n in attached}
    assert names == {MONITORING}
    # The control plane's metrics are there beside the proxies'.
    assert query("interlock_core_state_version"), "no metrics from the core"


@pytest.mark.parametrize("port", [HTTP, HAP_HTTP], ids=["nginx", "haproxy"])
def test_a_promql_query_gives_the_request_rate_of_a_host(prometheus: str, port: int) -> None:
    name = unique("rate")
    host = f"{name}.local"
    labels = lb(hosts=host, port="8080", **({"service_cluster": "hap"} if port == HAP_HTTP else {}))
    with service(name, labels=labels):
        until_routed(host, port=port, what=f"{host} routed")
        session = requests.Session()
        statuses = [get(host, port=port, session=session).status_code for _ in range(200)]
        assert statuses == [200] * 200
        # Every request is counted (with until_routed's), under the service whose task answered.
        total = f'sum by (service) (interlock_requests_total{{host="{host}",code="2xx"}})'
        counted = poll(lambda: reached(total, 201), what=f"{total} to reach 201", timeout=60)
        assert [(r["metric"]["service"], float(r["value"][1])) for r in counted] == [(name, 201.0)]
        rate = f'sum(rate(interlock_requests_total{{host="{host}"}}[30s]))'

        def rising() -> list[dict[str, Any]] | None:
            # A rate needs the counter to grow between two scrapes: the first scrape may come
            # after the 201 were all counted, so keep a little traffic going until it shows.
            for _ in range(10):
                get(host, port=port, session=session)
            result = query(rate)
            return result if result and float(result[0]["value"][1]) > 0 else None

        poll(rising, what=f"{rate} above 0", timeout=60, interval=1)

        # `interlock routes` has the same counts, and the route's rate over the last 10 s.
        def routed_traffic() -> dict[str, Any] | None:
            rows = json.loads(sh(INTERLOCK, "routes", "--json"))
            row = next((r for r in rows if r["host"] == host), None)
            return row if row and sum(row["responses"]) >= 201 else None

        row = poll(routed_traffic, what=f"interlock routes to count 201 requests for {host}", timeout=60)
        assert row["responses"][1] >= 201 and row["responses"][4] == 0, row
        table = sh(INTERLOCK, "routes")
        assert table.splitlines()[0].split()[-3:] == ["RPS", "5XX", "REQUESTS"], table
