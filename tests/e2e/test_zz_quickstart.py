"""The README's quickstart command, and `down`/`up` as an operator runs them (this file runs
last: it resets Interlock, and a swarm that the project's scripts made)."""

from __future__ import annotations

import json
import subprocess

from tests.e2e.swarm import INTERLOCK, REPO, get, poll, routed, sh

MADE_BY = "com.docker.interlock.made-by"


def swarm_made_by_the_scripts() -> bool:
    """scripts/swarm labels the node of a swarm it initialised; any other swarm is someone's own."""
    label = sh(
        "docker", "node", "inspect", "self", "--format", f'{{{{ index .Spec.Labels "{MADE_BY}" }}}}', check=False
    )
    return label.strip() == "scripts/swarm"


def control_network_listed() -> bool:
    return "interlock" in sh("docker", "network", "ls", "--format", "{{.Name}}").split()


def test_quickstart_from_a_clean_start() -> None:
    if swarm_made_by_the_scripts():
        # A swarm the test command made: start from no swarm at all, as on a fresh machine.
        address = sh("hostname", "-I").split()[0]
        sh("docker", "swarm", "leave", "--force", check=False)
        fresh_swarm = True
    else:
        # Someone's own swarm is never left: start from no Interlock and no demo service.
        sh(INTERLOCK, "down", timeout=300)
        sh("docker", "service", "rm", "demo", check=False)
        fresh_swarm = False
    proc = subprocess.run(
        [str(REPO / "scripts" / "quickstart")], capture_output=True, text=True, timeout=900, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    if fresh_swarm:
        assert f"advertising {address}" in proc.stdout + proc.stderr
        assert swarm_made_by_the_scripts(), "the new swarm is marked as the scripts' own"
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
    out = sh(INTERLOCK, "down", timeout=300)
    assert out.strip().endswith("Interlock is down")
    services = sh("docker", "service", "ls", "--format", "{{.Name}}").split()
    assert services == ["demo"], services
    assert not [c for c in sh("docker", "config", "ls", "--format", "{{.Name}}").split() if c.startswith("interlock")]
    secrets = sh("docker", "secret", "ls", "--format", "{{.Name}}").split()
    assert "users-own-secret" in secrets and not [s for s in secrets if s.startswith("interlock")]
    # `down` returned only once the control network was gone: no waiting here.
    assert not control_network_listed()
    assert "demo" in sh("docker", "network", "ls", "--format", "{{.Name}}").split()
    sh("docker", "secret", "rm", "users-own-secret")


def test_down_then_up_at_once_three_times() -> None:
    """An operator's `interlock down && interlock up`: `up` must not find what `down` is still
    removing (it once failed with `network ... not found`)."""
    for _ in range(3):
        sh(INTERLOCK, "down", timeout=300)
        assert not control_network_listed()
        out = sh(INTERLOCK, "up", timeout=400)
        assert "Interlock is up" in out, out
        assert control_network_listed()
    poll(routed("demo.local"), what="the demo routed after the last up", timeout=120)
