"""End-to-end fixtures: a real swarm with Interlock deployed by `interlock up`.

The test command (scripts/test) starts dockerd, a one-node swarm and builds the image, and sets
INTERLOCK_REQUIRE_SWARM, so a missing swarm fails there instead of skipping.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.e2e.swarm import (
    CLUSTERS,
    INTERLOCK,
    NETWORKS,
    REPO,
    Cluster,
    proxy_logs,
    remove_leftovers,
    rendered_configs,
    sh,
    unique,
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.swarm)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failing end-to-end test also shows what the proxies serve and what they logged, so a
    failure in CI can be explained from its output alone."""
    report = yield
    if report.failed and call.when == "call" and "/e2e/" in str(item.fspath):
        report.sections.append(("proxies: rendered configuration", rendered_configs()))
        report.sections.append(("proxies: recent log", proxy_logs()))
    return report


def _swarm_active() -> bool:
    proc = subprocess.run(
        ["docker", "info", "--format", "{{.Swarm.LocalNodeState}}"], capture_output=True, text=True, check=False
    )
    return proc.returncode == 0 and proc.stdout.strip() == "active"


@pytest.fixture(scope="session")
def interlock() -> Iterator[None]:
    """Interlock deployed with tests/e2e/interlock.toml (two clusters, host-mode proxies)."""
    if not _swarm_active():
        if os.environ.get("INTERLOCK_REQUIRE_SWARM"):
            pytest.fail("a Docker swarm is required (INTERLOCK_REQUIRE_SWARM is set) but none is active")
        pytest.skip("no active Docker swarm; run scripts/setup --swarm")
    remove_leftovers()
    sh(str(REPO / "scripts" / "build-images"), timeout=900)
    for network in (*NETWORKS, "e2e-east"):
        if subprocess.run(["docker", "network", "inspect", network], capture_output=True, check=False).returncode:
            sh("docker", "network", "create", "-d", "overlay", "--attachable", network)
    sh(INTERLOCK, "up", "-c", str(Path(__file__).with_name("interlock.toml")), "--wait", "180", timeout=400)
    yield


@pytest.fixture(params=CLUSTERS, ids=[c.kind for c in CLUSTERS])
def cluster(request: pytest.FixtureRequest) -> Cluster:
    """Run a routing test against the nginx cluster and the HAProxy one."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory, interlock: None) -> Iterator[dict[str, str]]:
    """Self-signed certificate and key per host, stored as Docker secrets; returns secret names."""
    directory = tmp_path_factory.mktemp("certs")
    names: dict[str, str] = {}
    suffix = unique("s")
    for host in ("a.tls.local", "b.tls.local", "pt.local", "backend.local"):
        cert, key = directory / f"{host}.crt", directory / f"{host}.key"
        sh(
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            f"/CN={host}",
            "-addext",
            f"subjectAltName=DNS:{host}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        )
        for kind, path in (("crt", cert), ("key", key)):
            name = f"{host}.{kind}.{suffix}"
            sh("docker", "secret", "create", name, str(path))
            names[f"{host}.{kind}"] = name
        names[f"{host}.path"] = str(cert)
    yield names
    for entry, name in names.items():
        if not entry.endswith(".path"):
            sh("docker", "secret", "rm", name, check=False)
