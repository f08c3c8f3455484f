"""An impostor on the control network (issue 10): a service that takes the core's and the
extension's names as aliases on the `interlock` network, so Swarm's DNS gives its addresses to
the roles that look for them. With the real core and extension scaled to zero it is the only
answer, and the roles connect to it. The control channel is TLS pinned to each role's own key:
the impostor gets handshakes it cannot complete and not one request (no token, not even a
signature), and its forged state and configuration change no route; once the real roles are
back, routing goes on as before."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from interlock.config import default_config
from interlock.model.routing import Route, Routing, Server, Upstream, VirtualHost
from interlock.wire.messages import ClusterState, ProxyConfig, encode
from tests.e2e.swarm import E2E_LABEL, IMAGE, get, lb, poll, service, sh, unique, until_routed

pytestmark = pytest.mark.usefixtures("interlock")

EVIL = "evil.example"
ALIASES = ("interlock", "tasks.interlock", "interlock-extension", "tasks.interlock-extension")


def forged_messages() -> tuple[bytes, bytes]:
    """A state and a proxy configuration that would route EVIL, well formed but unsigned."""
    routing = Routing(
        cluster="",
        hosts=(VirtualHost(EVIL, routes=(Route("/", "evil"),), services=("evil",)),),
        upstreams=(Upstream("evil", (Server("10.0.5.250", 8080, "evil"),)),),
    )
    settings = default_config().extensions["default"].model_dump(by_alias=True, mode="json")
    state = ClusterState(999, "", "default", routing, settings, epoch="forged")
    text = f"events {{}}\nhttp {{ server {{ listen 80; server_name {EVIL}; return 200 forged; }} }}\n"
    return encode(state), encode(ProxyConfig(999, "forged", "forged", text))


def calls_to(name: str) -> list[dict[str, Any]]:
    """The connections the impostor's task logged so far."""
    container = sh("docker", "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={name}").split()
    if not container:
        return []
    logs = sh("docker", "logs", container[0], check=False)
    return [json.loads(line.split(" ", 1)[1]) for line in logs.splitlines() if line.startswith("IMPOSTOR ")]


def scale(**replicas: int) -> None:
    sh("docker", "service", "scale", "-d", *(f"{k.replace('_', '-')}={v}" for k, v in replicas.items()))


def test_an_impostor_with_the_roles_names_gets_no_credential_and_changes_no_route() -> None:
    kept, late, impostor = unique("kept"), unique("late"), unique("impostor")
    state, config = forged_messages()
    script = Path(__file__).with_name("impostor_app.py").read_text()
    never_routed = f"{unique('nobody')}.local"
    with service(kept, labels=lb(hosts=f"{kept}.local", port="8080")):
        until_routed(f"{kept}.local", what="service routed before the impostor comes")
        network = ",".join(["name=interlock", *(f"alias={a}" for a in ALIASES)])
        sh(
            "docker", "service", "create", "-d", "--quiet", "--label", f"{E2E_LABEL}=1",
            "--name", impostor, "--network", network,
            "--env", f"FORGED_STATE={state.decode()}", "--env", f"FORGED_CONFIG={config.decode()}",
            "--entrypoint", "python3", IMAGE, "-c", script,
        )  # fmt: skip
        try:
            calls = _while_the_impostor_is_the_only_answer(impostor, kept, never_routed)
            with service(late, labels=lb(hosts=f"{late}.local", port="8080")):
                until_routed(f"{late}.local", what="a new service routed with the impostor still there", timeout=120)
                assert get(EVIL).status_code == get(never_routed).status_code
                assert get(f"{kept}.local").status_code == 200
        finally:
            sh("docker", "service", "rm", impostor, check=False)

    # Connections came to both ports, every one a TLS handshake: no request, so nothing to read.
    assert {c["port"] for c in calls} == {8080, 8090}, calls
    assert all(c["tls"] for c in calls), [c for c in calls if not c["tls"]]


def _while_the_impostor_is_the_only_answer(impostor: str, kept: str, never_routed: str) -> list[dict[str, Any]]:
    """Scale the core and the default extension to zero until the extensions (east's still
    runs) and the default proxy have connected to the impostor; what is served meanwhile must
    not change. Returns the connections it logged."""
    poll(lambda: sh("docker", "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={impostor}"),
         what="impostor running", timeout=60)  # fmt: skip
    scale(interlock=0, interlock_extension=0)
    try:

        def both_tried() -> list[dict[str, Any]] | None:
            calls = calls_to(impostor)
            return calls if {c["port"] for c in calls} >= {8080, 8090} else None

        # 8090: an extension looking for the core; 8080: the default proxy for its extension.
        calls = poll(both_tried, what="an extension and the proxy connecting to the impostor", timeout=90)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            assert get(f"{kept}.local").status_code == 200
            assert get(EVIL).status_code == get(never_routed).status_code
        return calls
    finally:
        scale(interlock=1, interlock_extension=1)
