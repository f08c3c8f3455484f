"""The README's quickstart command, run on a clean swarm (this file runs last: it resets the swarm)."""

from __future__ import annotations

import json
import subprocess

from tests.e2e.swarm import INTERLOCK, REPO, get, poll, sh


def test_quickstart_on_a_clean_swarm() -> None:
    address = sh("hostname", "-I").split()[0]
    sh("docker", "swarm", "leave", "--force", check=False)
    sh("docker", "swarm", "init", "--advertise-addr", address)
    proc = subprocess.run(
        [str(REPO / "scripts" / "quickstart")], capture_output=True, text=True, timeout=900, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    response = json.loads(lines[-2])
    assert response["headers"]["Host"] == "demo.local"
    assert response["path"] == "/quickstart"
    assert "publishing the proxy in host mode" in proc.stdout
    assert get("demo.local").status_code == 200
    status = json.loads(sh(INTERLOCK, "status", "--json"))
    assert status["ready"] is True
    assert status["clusters"][0]["proxies"], status
    # Running it again changes nothing and still ends routed.
    again = subprocess.run(
        [str(REPO / "scripts" / "quickstart")], capture_output=True, text=True, timeout=600, check=False
    )
    assert again.returncode == 0 and "is up to date" in again.stdout, again.stdout + again.stderr


def test_down_removes_what_up_created_and_nothing_else() -> None:
    subprocess.run(
        ["docker", "secret", "create", "users-own-secret", "-"], input="x", text=True, check=False, capture_output=True
    )
    sh(INTERLOCK, "down", timeout=300)
    services = sh("docker", "service", "ls", "--format", "{{.Name}}").split()
    assert services == ["demo"], services
    assert not [c for c in sh("docker", "config", "ls", "--format", "{{.Name}}").split() if c.startswith("interlock")]
    secrets = sh("docker", "secret", "ls", "--format", "{{.Name}}").split()
    assert "users-own-secret" in secrets and not [s for s in secrets if s.startswith("interlock")]

    # The node drops a removed swarm network from its list a moment later.
    def networks_once_control_network_is_gone() -> list[str] | None:
        names = sh("docker", "network", "ls", "--format", "{{.Name}}").split()
        return None if "interlock" in names else names

    networks = poll(networks_once_control_network_is_gone, what="control network gone")
    assert "demo" in networks
    sh("docker", "secret", "rm", "users-own-secret")
    # And up again, as the quickstart leaves it.
    sh(INTERLOCK, "up", timeout=400)
    assert get("demo.local").status_code in (200, 503)
