"""A service is routed only once every proxy task can reach it (network); until then it is held
back with a warning. A certificate is never waited for: the proxies mount none (the core sends
them), so a TLS service is routed as soon as its network is attached."""

from __future__ import annotations

from typing import Any

from interlock.model.build import ProxyAttachments, build, proxy_attachments
from interlock.model.docker_json import snapshot_from_api
from interlock.testing.swarm_json import swarm_json

APP = {"name": "app", "networks": ["apps"], "labels": {"com.docker.lb.hosts": "app.local", "com.docker.lb.port": "80"}}
TLS = {
    "name": "tls",
    "networks": ["apps"],
    "labels": {"com.docker.lb.hosts": "tls.local", "com.docker.lb.port": "80", "com.docker.lb.ssl_cert": "tls.pem"},
}


def _with_proxy(
    document: dict[str, Any], task_networks: list[list[str]], spec_networks: list[str], secrets: list[str]
) -> dict[str, Any]:
    ids = {n["Name"]: n["Id"] for n in document["networks"]}
    proxy = {
        "ID": "proxy",
        "Spec": {
            "Name": "interlock-proxy",
            "TaskTemplate": {
                "Networks": [{"Target": ids.get(n, n)} for n in spec_networks],
                "ContainerSpec": {"Secrets": [{"SecretName": s} for s in secrets]},
            },
        },
    }
    tasks = [
        {
            "ID": f"pt{i}",
            "ServiceID": "proxy",
            "DesiredState": "running",
            "Status": {"State": "running"},
            "Spec": {
                "Networks": [{"Target": ids.get(n, n)} for n in nets],
                "ContainerSpec": {"Secrets": [{"SecretName": s} for s in secrets]},
            },
        }
        for i, nets in enumerate(task_networks)
    ]
    return {**document, "services": [*document["services"], proxy], "tasks": [*document["tasks"], *tasks]}


def test_attachments_are_what_every_proxy_task_and_the_spec_share() -> None:
    document = _with_proxy(swarm_json({"services": [APP]}), [["apps", "other"], ["other"]], ["apps", "other"], ["x"])
    attached = proxy_attachments(snapshot_from_api(document), "interlock-proxy")
    # An old task without "apps" is still running: wait for it to be replaced.
    assert attached == ProxyAttachments(frozenset({"other"}))


def test_a_proxy_task_still_stopping_counts_until_it_has_stopped_unless_its_node_is_down() -> None:
    """A replaced proxy drains and finishes its requests before it exits: a route over a network
    it is not on would hold its clients until the connect timeout, and its stop with them."""
    document = _with_proxy(swarm_json({"services": [APP]}), [["apps"], []], ["apps"], [])
    stopping = document["tasks"][-1]
    stopping["DesiredState"] = "shutdown"
    node = document["nodes"][0]
    stopping["NodeID"] = node["ID"]

    def attached() -> frozenset[str]:
        return proxy_attachments(snapshot_from_api(document), "interlock-proxy").networks

    assert attached() == frozenset(), "the old task still serves, without the network"
    stopping["Status"]["State"] = "shutdown"
    assert attached() == frozenset({"apps"}), "it has stopped"
    stopping["Status"]["State"] = "running"
    node["Status"]["State"] = "down"
    assert attached() == frozenset({"apps"}), "reported running on a node that is down: not waited for"


def _secrets(*names: str) -> list[dict[str, Any]]:
    return [{"ID": f"id-{n}", "Spec": {"Name": n}} for n in names]


def test_held_back_until_attached_then_routed() -> None:
    document = {**swarm_json({"services": [APP, TLS]}), "secrets": _secrets("tls.pem")}
    proxies = {"": "interlock-proxy"}
    waiting = build(snapshot_from_api(_with_proxy(document, [[]], [], [])), proxies=proxies)
    routing = waiting.routings[""]
    assert routing.hosts == ()
    assert routing.networks == ("apps",) and routing.secrets == ("tls.pem",)
    assert {p.service for p in waiting.problems if "waiting for every proxy task" in p.reason} == {"app", "tls"}
    ready = build(snapshot_from_api(_with_proxy(document, [["apps"]], ["apps"], [])), proxies=proxies)
    assert [h.name for h in ready.routings[""].hosts] == ["app.local", "tls.local"], "no secret waited for"
    assert ready.routings[""].secrets == ("tls.pem",), "what the core mounts"


def test_missing_secret_is_an_error_naming_it() -> None:
    result = build(snapshot_from_api({**swarm_json({"services": [TLS]}), "secrets": []}))
    assert [(p.service, p.label, p.reason) for p in result.problems] == [
        ("tls", "com.docker.lb.ssl_cert", "no Docker secret named 'tls.pem'; create it first")
    ]


def test_secrets_are_not_checked_when_the_snapshot_does_not_list_them() -> None:
    result = build(snapshot_from_api(swarm_json({"services": [TLS]})))
    assert result.problems == ()
