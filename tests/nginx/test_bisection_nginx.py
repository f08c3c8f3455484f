"""The safety net with real `nginx -t`: when a state's configuration is refused because of one
service, the extension serves everyone else at once and names that service; the core then
leaves it out as a problem of its own. A failure that is no service's (the operator's settings)
keeps the last good configuration, as before."""

from __future__ import annotations

import pytest

from interlock.config import default_config
from interlock.config.schema import ExtensionConfig
from interlock.edges.peer_http import PeerClient
from interlock.model.build import build
from interlock.model.docker_json import snapshot_from_api
from interlock.model.routing import Routing
from interlock.roles.core.board import Board
from interlock.roles.extension import Extension
from interlock.testing.fakes import FakeClock
from interlock.testing.swarm_json import swarm_json
from interlock.wire.messages import ClusterState, ExtensionReport

pytestmark = pytest.mark.nginx

# An operator's template that prints a line nginx does not know on one host only: a stand-in
# for any value that passes every rule and still breaks nginx.
BREAKS_ONE_HOST = """{% extends "nginx.conf.j2" %}
{% block http_server %}{% if host.name == "broken.example" %}
        no_such_directive on;
{% endif %}{% endblock %}
"""

SNAPSHOT = swarm_json(
    {
        "services": [
            {
                "name": name,
                "networks": ["apps"],
                "labels": {"com.docker.lb.hosts": f"{name}.example", "com.docker.lb.port": "8080"},
            }
            for name in ("alpha", "broken", "gamma", "delta", "omega")
        ]
    }
)


def extension_config(template: str = BREAKS_ONE_HOST, **settings: object) -> ExtensionConfig:
    # A server block per host, for the template to break one: without run-time routing.
    return default_config(Template=template, Config={"RuntimeRouting": False, **settings}).extensions["default"]


def new_extension() -> Extension:
    return Extension(name="default", core=PeerClient("http://127.0.0.1:9", "unused-token-0123"), proxy_token="p" * 16)


def state(routing: Routing, ext: ExtensionConfig, version: int = 1) -> ClusterState:
    return ClusterState(version, "", "default", routing, ext.model_dump(by_alias=True, mode="json"), epoch="e")


async def test_one_service_that_breaks_nginx_is_left_out_and_the_others_are_served(nginx: str) -> None:
    ext = extension_config()
    routing = build(snapshot_from_api(SNAPSHOT)).routings[""]
    extension = new_extension()
    await extension.apply(state(routing, ext))

    assert extension.current is not None, extension.validation_error
    text = extension.current.text
    assert "server_name broken.example;" not in text
    for name in ("alpha", "gamma", "delta", "omega"):
        assert f"server_name {name}.example;" in text, text
    assert extension.left_out == {"broken": 'unknown directive "no_such_directive"'}
    assert extension.validation_error == ""


async def test_the_core_makes_the_left_out_service_a_problem_until_its_labels_change(nginx: str) -> None:
    config = default_config(Template=BREAKS_ONE_HOST)
    board = Board(config, gate_on_proxies=False, clock=FakeClock(), epoch="e")
    snapshot = snapshot_from_api(SNAPSHOT)
    board.publish(snapshot)
    report = ExtensionReport("default", "", None, left_out=(("broken", 'unknown directive "no_such_directive"'),))
    await board.note_report("default", report)

    slot = board.slots["default"]
    assert slot.state is not None and slot.state.version == 2
    assert "broken.example" not in [h.name for h in slot.state.routing.hosts]
    (problem,) = slot.state.problems
    assert problem.service == "broken"
    assert "refused its cluster's configuration with this service's routes (unknown directive" in problem.reason

    # The same services, "broken" with another host name: tried again.
    relabelled = SNAPSHOT | {"services": [dict(s) for s in SNAPSHOT["services"]]}
    broken = next(s for s in relabelled["services"] if s["Spec"]["Name"] == "broken")
    broken["Spec"] = broken["Spec"] | {"Labels": broken["Spec"]["Labels"] | {"com.docker.lb.hosts": "fixed.example"}}
    board.publish(snapshot_from_api(relabelled))
    assert slot.state.problems == ()
    assert "fixed.example" in [h.name for h in slot.state.routing.hosts]


async def test_a_failure_that_is_no_services_keeps_the_last_good_configuration(nginx: str) -> None:
    routing = build(snapshot_from_api(SNAPSHOT)).routings[""]
    extension = new_extension()
    good = extension_config("")
    await extension.apply(state(routing, good, 1))
    served = extension.current
    assert served is not None

    everywhere = '{% extends "nginx.conf.j2" %}{% block http %}    no_such_directive on;\n{% endblock %}'
    await extension.apply(state(routing, extension_config(everywhere), 2))
    assert extension.current == served
    assert extension.left_out == {}
    assert 'unknown directive "no_such_directive"' in extension.validation_error
