"""An impostor on the control network (issue 10): a service that takes the core's and the
extension's names as aliases on the `interlock` network, so Swarm's DNS gives its addresses to
the roles that look for them. With the real core and extension scaled to zero it is the only
answer, and every call comes to it. It must receive no credential (only signatures), and its
forged state and configuration must change no route; once the real roles are back, routing goes
on as before."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from interlock.config import default_config
from interlock.model.routing import Route, Routing, Server, Upstream, VirtualHost
from interlock.wire.messages import ClusterState, ProxyConfig, encode
from tests.e2e.swarm import IMAGE, get, lb, poll, service, sh, unique, until_routed

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
    """The requests the impostor's task logged so far."""
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
            "docker", "service", "create", "-d", "--quiet", "--name", impostor, "--network", network,
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

    # No credential: every call carries a fresh HMAC, never a token or anything reusable.
    assert calls
    signatures = []
    for call in calls:
        headers = {k.lower(): v for k, v in call["headers"].items()}
        assert re.fullmatch(r"Interlock [0-9a-f]{64}", headers.get("authorization", "")), call
        assert set(headers) <= {
            "host", "authorization", "x-interlock-time", "x-interlock-nonce", "accept", "accept-encoding",
            "user-agent", "content-type", "content-length",
        }, call  # fmt: skip
        signatures.append(headers["authorization"])
    assert len(set(signatures)) == len(signatures), "no signature is sent twice"


def _while_the_impostor_is_the_only_answer(impostor: str, kept: str, never_routed: str) -> list[dict[str, Any]]:
    """Scale the core and the default extension to zero until the extensions (east's still
    runs) and the default proxy have called the impostor; what is served meanwhile must not
    change. Returns the calls it logged."""
    poll(lambda: sh("docker", "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={impostor}"),
         what="impostor running", timeout=60)  # fmt: skip
    scale(interlock=0, interlock_extension=0)
    try:

        def both_asked() -> list[dict[str, Any]] | None:
            calls = calls_to(impostor)
            paths = {c["path"].split("?")[0] for c in calls}
            asked_state = any(p.startswith("/v1/clusters/") and p.endswith("/state") for p in paths)
            return calls if asked_state and "/v1/config" in paths else None

        calls = poll(both_asked, what="an extension and the proxy calling the impostor", timeout=90)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            assert get(f"{kept}.local").status_code == 200
            assert get(EVIL).status_code == get(never_routed).status_code
        return calls
    finally:
        scale(interlock=1, interlock_extension=1)
