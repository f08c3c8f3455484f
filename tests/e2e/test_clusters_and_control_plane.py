"""Service clusters, least privilege, and a data plane that outlives its control plane
(spec §6 items 5-7, 17, 21-22, 69-72; issue 3)."""

from __future__ import annotations

import json
import time

import pytest

from tests.e2e.swarm import EAST_HTTP, HTTP, get, lb, poll, service, sh, unique, until_routed

pytestmark = pytest.mark.usefixtures("interlock")


def test_two_service_clusters_on_different_ports_ignore_each_others_hosts() -> None:
    east, default = unique("east"), unique("west")
    # east's proxy has no fixed Networks: it joins e2e-east itself when a service needs it.
    with (
        service(east, labels=lb(hosts=f"{east}.local", port="8080", service_cluster="east"), networks=("e2e-east",)),
        service(default, labels=lb(hosts=f"{default}.local", port="8080")),
    ):
        until_routed(f"{east}.local", port=EAST_HTTP, what="east service on the east proxy", timeout=120)
        until_routed(f"{default}.local", port=HTTP, what="default service on the default proxy")
        assert get(f"{east}.local", port=HTTP).status_code == 503
        assert get(f"{default}.local", port=EAST_HTTP).status_code == 503
        # east's Template extends the built-in one with a header; the default cluster has none.
        assert get(f"{east}.local", port=EAST_HTTP).headers.get("x-interlock-cluster") == "east"
        assert "x-interlock-cluster" not in get(f"{default}.local", port=HTTP).headers
        proxy = json.loads(sh("docker", "service", "inspect", "interlock-proxy-east"))[0]
        attached = {n["Target"] for n in proxy["Spec"]["TaskTemplate"]["Networks"]}
        assert json.loads(sh("docker", "network", "inspect", "e2e-east"))[0]["Id"] in attached


def test_proxies_are_found_by_the_interlock_label_and_only_the_core_has_the_socket() -> None:
    proxies = sh("docker", "service", "ls", "-q", "--filter", "label=type=com.docker.interlock.core.proxy").split()
    assert len(proxies) == 3, "default, east and hap"
    services = {
        s["Spec"]["Name"]: s
        for s in json.loads(
            sh(
                "docker",
                "service",
                "inspect",
                "interlock",
                "interlock-extension",
                "interlock-extension-east",
                "interlock-extension-hap",
                "interlock-proxy",
                "interlock-proxy-east",
                "interlock-proxy-hap",
            )
        )
    }
    for name, spec in services.items():
        mounts = spec["Spec"]["TaskTemplate"]["ContainerSpec"].get("Mounts") or []
        has_socket = any(m.get("Source") == "/var/run/docker.sock" for m in mounts)
        assert has_socket == (name == "interlock"), f"{name}: docker socket mounted={has_socket}"
    assert services["interlock"]["Spec"]["TaskTemplate"]["Placement"]["Constraints"] == ["node.role==manager"]
    proxy_container = sh(
        "docker", "ps", "-q", "--filter", "label=com.docker.swarm.service.name=interlock-proxy"
    ).split()[0]
    probe = sh(
        "docker", "exec", proxy_container, "python3", "-c", "import os; print(os.path.exists('/var/run/docker.sock'))"
    ).strip()
    assert probe == "False"
    # Only services join the control network; `docker run --network interlock` cannot.
    assert sh("docker", "network", "inspect", "interlock", "--format", "{{.Attachable}}").strip() == "false"


def _scale(**replicas: int) -> None:
    sh("docker", "service", "scale", "-d", *(f"{k.replace('_', '-')}={v}" for k, v in replicas.items()))


def test_proxy_keeps_serving_without_core_and_extension_and_catches_up() -> None:
    kept, late = unique("kept"), unique("late")
    with service(kept, labels=lb(hosts=f"{kept}.local", port="8080")):
        until_routed(f"{kept}.local", what="service routed before the outage")
        _scale(interlock=0, interlock_extension=0)
        try:
            poll(
                lambda: (
                    not sh("docker", "ps", "-q", "--filter", "label=com.docker.swarm.service.name=interlock").strip()
                    and not sh(
                        "docker", "ps", "-q", "--filter", "label=com.docker.swarm.service.name=interlock-extension"
                    ).strip()
                ),
                what="core and extension gone",
            )
            with service(late, labels=lb(hosts=f"{late}.local", port="8080")):
                statuses = []
                deadline = time.monotonic() + 8
                while time.monotonic() < deadline:
                    statuses.append(get(f"{kept}.local").status_code)
                assert set(statuses) == {200}, f"{statuses.count(200)} of {len(statuses)} requests answered 200"
                assert get(f"{late}.local").status_code == 503
                _scale(interlock=1, interlock_extension=1)
                until_routed(f"{late}.local", what="service created during the outage routed after it", timeout=120)
                assert get(f"{kept}.local").status_code == 200
        finally:
            _scale(interlock=1, interlock_extension=1)
