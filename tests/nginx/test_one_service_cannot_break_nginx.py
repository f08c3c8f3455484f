"""Values that pass the label rules, or that Docker reports, must never make nginx refuse the
cluster's configuration (one service would block every later change): IPv6 targets and
sub-second fail_timeout, checked with real `nginx -t`."""

from __future__ import annotations

from pathlib import Path

import pytest

from interlock.edges.nginx_check import check_routing
from interlock.model.build import build
from interlock.model.docker_json import snapshot_from_api
from interlock.render.nginx import render_nginx
from interlock.testing.swarm_json import swarm_json
from tests.unit.test_render_properties import EXTENSION as DEFAULT_EXTENSION

# These check the server blocks nginx.conf holds per host: without run-time routing.
EXTENSION = DEFAULT_EXTENSION.model_copy(
    update={"config": DEFAULT_EXTENSION.nginx.model_copy(update={"runtime_routing": False})}
)

pytestmark = pytest.mark.nginx


def test_ipv6_targets_and_a_sub_second_fail_timeout_pass_nginx_t(nginx: str, tmp_path: Path) -> None:
    labels = {
        "com.docker.lb.hosts": "v6.example",
        "com.docker.lb.port": "8080",
        "com.docker.lb.fail_timeout": "500ms",
        "com.docker.lb.max_fails": "2",
    }
    document = swarm_json({"services": [{"name": "v6", "networks": ["apps"], "replicas": 2, "labels": labels}]})
    document["tasks"][0]["NetworksAttachments"][0]["Addresses"] = ["fd00::a/64"]
    document["tasks"][1]["NetworksAttachments"][0]["Addresses"] = ["[fd00::b]"]
    result = build(snapshot_from_api(document))
    assert not result.problems, result.problems
    routing = result.routings[""]
    text = render_nginx(routing, EXTENSION).text
    assert "[fd00::a]:8080 max_fails=2 fail_timeout=1s;" in text
    assert "[fd00::b]:8080" in text
    checked = check_routing(routing, EXTENSION, workdir=tmp_path, nginx=nginx)
    assert checked.ok, checked.output + "\n" + text


@pytest.mark.parametrize(
    "labels",
    [
        {"com.docker.lb.context_root": "/nginx_status"},
        {"com.docker.lb.websocket_endpoints": "/nginx_status"},
        {"com.docker.lb.context_root": "/nginx_status", "com.docker.lb.context_root_rewrite": "true"},
    ],
)
def test_an_app_path_named_like_the_status_page_is_the_apps(labels: dict[str, str], nginx: str, tmp_path: Path) -> None:
    """/nginx_status is the app's on a public host: nginx's status is only on its loopback
    status port, so no duplicate location for nginx to refuse, and the path reaches the app."""
    base = {"com.docker.lb.hosts": "app.example", "com.docker.lb.port": "8080"}
    document = swarm_json({"services": [{"name": "app", "networks": ["apps"], "labels": base | labels}]})
    result = build(snapshot_from_api(document))
    assert not result.problems, result.problems
    routing = result.routings[""]
    text = render_nginx(routing, EXTENSION).text
    checked = check_routing(routing, EXTENSION, workdir=tmp_path, nginx=nginx)
    assert checked.ok, checked.output + "\n" + text
    server = text.split("server_name app.example;", 1)[1].split("\n    }\n", 1)[0]
    assert "stub_status" not in server, server


def test_the_status_page_is_on_the_loopback_status_port_only(nginx: str, tmp_path: Path) -> None:
    """nginx's counters are nobody's business on the public listeners: neither a routed host nor
    an unknown one answers /nginx_status; the agent reads it on 127.0.0.1."""
    base = {"com.docker.lb.hosts": "app.example", "com.docker.lb.port": "8080"}
    routing = build(
        snapshot_from_api(swarm_json({"services": [{"name": "app", "networks": ["apps"], "labels": base}]}))
    )
    text = render_nginx(routing.routings[""], EXTENSION).text
    status_server = text.split("listen 127.0.0.1:", 1)[1].split("\n    }\n", 1)[0]
    assert text.count("stub_status") == 1 and "stub_status" in status_server, text
