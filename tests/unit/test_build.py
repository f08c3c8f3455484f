"""Semantics of the build step that golden files cannot show on their own."""

from __future__ import annotations

from typing import Any

import pytest

from interlock.config import default_config
from interlock.model.build import Exclusion, build
from interlock.model.docker_json import snapshot_from_api
from interlock.model.labels import parse_labels
from interlock.model.routing import Routing
from interlock.model.snapshot import Service
from interlock.render.nginx import render_nginx
from interlock.testing.swarm_json import swarm_json

EXTENSION = default_config().extensions["default"]


def routing_of(*services: dict[str, Any], clusters: tuple[str, ...] = ("",)) -> Routing:
    return build(snapshot_from_api(swarm_json({"services": list(services)})), clusters).routings[clusters[0]]


def service(name: str, replicas: int = 1, **labels: str) -> dict[str, Any]:
    full = {f"com.docker.lb.{k}": v for k, v in labels.items()}
    return {"name": name, "networks": ["demo"], "replicas": replicas, "labels": full}


def test_equal_snapshots_give_byte_identical_output() -> None:
    services = [service(f"s{i}", replicas=i % 3 + 1, hosts=f"h{i}.local", port="80") for i in range(20)]
    document = swarm_json({"services": services})
    # The API lists objects in no promised order.
    shuffled = {key: list(reversed(value)) for key, value in document.items()}
    first = render_nginx(build(snapshot_from_api(document)).routings[""], EXTENSION).text
    second = render_nginx(build(snapshot_from_api(shuffled)).routings[""], EXTENSION).text
    assert first == second


def test_vip_mode_output_does_not_change_with_task_count() -> None:
    outputs = {
        render_nginx(
            routing_of(service("v", replicas=n, hosts="v.local", port="80", backend_mode="vip")),
            EXTENSION,
        ).text
        for n in (0, 1, 5)
    }
    assert len(outputs) == 1


def test_vip_mode_output_changes_when_the_service_goes() -> None:
    with_vip = render_nginx(routing_of(service("v", hosts="v.local", port="80", backend_mode="vip")), EXTENSION)
    without = render_nginx(routing_of(), EXTENSION)
    assert with_vip.targets_id != without.targets_id


def test_task_mode_follows_task_count() -> None:
    routing = routing_of(service("t", replicas=3, hosts="t.local", port="80"))
    assert len(routing.upstream("t.local").servers) == 3


def test_canary_merges_servers_by_task_count() -> None:
    routing = routing_of(
        service("v1", replicas=4, hosts="demo.local", port="8080"),
        service("v2", replicas=1, hosts="demo.local", port="8080"),
    )
    servers = routing.upstream("demo.local").servers
    assert [s.service for s in servers].count("v1") == 4
    assert [s.service for s in servers].count("v2") == 1
    assert routing.hosts[0].services == ("v1", "v2")


def test_draining_task_is_not_a_target() -> None:
    svc = service("r", replicas=1, hosts="r.local", port="80")
    svc["stopping"] = 2
    svc["starting"] = 1
    assert len(routing_of(svc).upstream("r.local").servers) == 1


def test_clusters_partition_services() -> None:
    east = service("e", hosts="e.local", port="80", service_cluster="east")
    default = service("d", hosts="d.local", port="80")
    result = build(snapshot_from_api(swarm_json({"services": [east, default]})), ("", "east"))
    assert [h.name for h in result.routings["east"].hosts] == ["e.local"]
    assert [h.name for h in result.routings[""].hosts] == ["d.local"]


def test_secrets_and_networks_the_proxy_needs() -> None:
    routing = routing_of(service("s", hosts="s.local", port="80", ssl_cert="s.crt", ssl_key="s.key"))
    assert routing.secrets == ("s.crt", "s.key")
    assert routing.networks == ("demo",)


def test_service_without_lb_labels_is_ignored_silently() -> None:
    assert parse_labels(Service(id="x", name="plain", created_ns=0)) == (None, ())


def test_one_bad_service_does_not_affect_the_others() -> None:
    bad = service("bad", hosts="bad.local", port="eighty")
    good = service("good", hosts="good.local", port="80")
    result = build(snapshot_from_api(swarm_json({"services": [bad, good]})))
    assert [h.name for h in result.routings[""].hosts] == ["good.local"]
    assert [(p.service, p.label) for p in result.problems] == [("bad", "com.docker.lb.port")]


def test_conflict_winner_does_not_depend_on_task_counts() -> None:
    older = service("older", replicas=0, hosts="x.local", port="80")
    newer = service("newer", replicas=3, hosts="x.local", port="80", ip_hash="true")
    result = build(snapshot_from_api(swarm_json({"services": [older, newer]})))
    # The older service owns the host even with no task running, so the newer one never takes
    # it over (and loses it again) as tasks come and go.
    assert result.routings[""].hosts == ()
    assert any(p.service == "newer" and "already routed by service older" in p.reason for p in result.problems)


def test_host_mode_uses_the_ipv4_binding_of_each_task() -> None:
    # As captured from Docker 20.10 with IPv6 on: 0.0.0.0:32772 and [::]:32771, family not named.
    document = swarm_json(
        {
            "services": [
                {
                    "name": "hm",
                    "host_ports": [8080],
                    "labels": {"com.docker.lb.hosts": "hm.local", "com.docker.lb.port": "8080"},
                }
            ]
        }
    )
    document["tasks"][0]["Status"]["PortStatus"]["Ports"] = [
        {"Protocol": "tcp", "TargetPort": 8080, "PublishedPort": 32772, "PublishMode": "host"},
        {"Protocol": "tcp", "TargetPort": 8080, "PublishedPort": 32771, "PublishMode": "host"},
    ]
    servers = build(snapshot_from_api(document)).routings[""].upstream("hm.local").servers
    assert [(s.address, s.port) for s in servers] == [("192.0.2.10", 32772)]


def test_an_exclusion_leaves_out_only_its_service_in_its_own_cluster() -> None:
    bad = service("bad", hosts="bad.local", port="80", ssl_cert="bad.crt", ssl_key="bad.key")
    shares_key = service("shares", hosts="shares.local", port="80", ssl_cert="ok.crt", ssl_key="bad.key")
    good = service("good", hosts="good.local", port="80", ssl_cert="good.crt", ssl_key="good.key")
    plain = service("plain", hosts="plain.local", port="80")
    other = service("other", hosts="other.local", port="80", ssl_cert="bad.crt", ssl_key="bad.key", service_cluster="b")
    snapshot = snapshot_from_api(swarm_json({"services": [bad, shares_key, good, plain, other]}))
    by_name = {s.name: s for s in snapshot.services}
    exclusion = Exclusion(
        "ssl_cert", "the proxy cannot load this certificate and key (not PEM); not routed", ("", "", "")
    )
    result = build(snapshot, ("", "b"), exclusions={"": {by_name["bad"].label_key: exclusion}})
    routing = result.routings[""]
    assert [h.name for h in routing.hosts] == ["good.local", "plain.local", "shares.local"]
    assert [h.name for h in result.routings["b"].hosts] == ["other.local"], "another cluster's finding"
    (problem,) = result.problems
    assert (problem.service, problem.label) == ("bad", "com.docker.lb.ssl_cert")
    assert problem.reason == exclusion.reason
    assert result.problems_of("b") == () and result.problems_of("") == (problem,)
    # An exclusion one cluster keeps for a service of another does nothing.
    result = build(snapshot, ("", "b"), exclusions={"": {by_name["other"].label_key: exclusion}})
    assert [h.name for h in result.routings["b"].hosts] == ["other.local"]
    # A secret made again under the same name (a new ID) is tried again.
    stale = Exclusion("ssl_cert", "x", ("an-old-id", "", ""))
    result = build(snapshot, ("", "b"), exclusions={"": {by_name["bad"].label_key: stale}})
    assert "bad.local" in [h.name for h in result.routings[""].hosts]


def test_certificate_pairs_name_the_certificate_for_a_combined_pem() -> None:
    routing = routing_of(service("c", hosts="c.local", port="80", ssl_cert="combined.pem"))
    assert set(routing.terminated_pairs().values()) == {("combined.pem", "combined.pem")}


def test_labels_only_on_the_container_are_a_warning_naming_the_right_place() -> None:
    document = swarm_json({"services": [{"name": "web", "networks": ["n"]}]})
    container = document["services"][0]["Spec"]["TaskTemplate"].setdefault("ContainerSpec", {})
    container["Labels"] = {"com.docker.lb.hosts": "web.local", "com.docker.lb.port": "80", "other": "x"}
    (problem,) = build(snapshot_from_api(document)).problems
    assert (problem.service, problem.label, problem.severity) == ("web", "-", "warning")
    assert problem.reason.startswith("com.docker.lb.hosts, com.docker.lb.port are set on the container")
    assert "compose `deploy: labels:`" in problem.reason
    # Set in both places: the service's labels are read, nothing to say.
    document["services"][0]["Spec"]["Labels"] = dict(container["Labels"])
    assert build(snapshot_from_api(document)).problems == ()


@pytest.mark.parametrize(
    "name",
    [
        "interlock-extension-token",
        "interlock-extension-token-east",
        "interlock-proxy-token-default",
        "interlock-operator-token",
    ],
)
def test_a_label_cannot_pull_interlocks_own_secrets_into_the_proxies(name: str) -> None:
    """ssl_cert=interlock-extension-token-east would mount a control-channel token into every proxy."""
    token = service("steal", hosts="steal.local", port="80", ssl_cert=name)
    made = service("made", hosts="made.local", port="80", ssl_cert="ok.crt", ssl_key="interlock-cfg-key")
    good = service("good", hosts="good.local", port="80", ssl_cert="good.crt")
    document = swarm_json({"services": [token, made, good]})
    document["secrets"] = [
        {"ID": "s1", "Spec": {"Name": name, "Labels": {}}},
        {"ID": "s2", "Spec": {"Name": "interlock-cfg-key", "Labels": {"com.docker.interlock.owner": "interlock"}}},
        {"ID": "s3", "Spec": {"Name": "ok.crt", "Labels": {}}},
        {"ID": "s4", "Spec": {"Name": "good.crt", "Labels": {}}},
    ]
    result = build(snapshot_from_api(document))
    routing = result.routings[""]
    assert [h.name for h in routing.hosts] == ["good.local"]
    assert set(routing.secrets) == {"good.crt"}
    assert [(p.service, p.label.rsplit(".", 1)[1]) for p in result.problems] == [
        ("made", "ssl_key"),
        ("steal", "ssl_cert"),
    ]
    assert all("Interlock's own secret" in p.reason for p in result.problems)
    # Named by a token's name, it is refused even when the snapshot does not list secrets.
    del document["secrets"]
    assert [p.service for p in build(snapshot_from_api(document)).problems] == ["steal"]


def test_a_service_joining_anothers_host_is_said_and_can_be_kept_to_its_stack() -> None:
    """A newer service copying another's hosts takes a share of its traffic: never silently."""
    lb = {"com.docker.lb.hosts": "shop.example", "com.docker.lb.port": "80"}
    owner = {"name": "shop", "networks": ["apps"], "labels": lb | {"com.docker.stack.namespace": "shop"}}
    canary = {"name": "shop-v2", "networks": ["apps"], "labels": lb | {"com.docker.stack.namespace": "shop"}}
    other = {"name": "intruder", "networks": ["apps"], "labels": lb | {"com.docker.stack.namespace": "other"}}
    snapshot = snapshot_from_api(swarm_json({"services": [owner, canary, other]}))

    anyone = build(snapshot)
    assert len(anyone.routings[""].upstream("shop.example").servers) == 3
    assert [(p.service, p.severity, "shop (older)" in p.reason) for p in anyone.problems] == [
        ("intruder", "warning", True),
        ("shop-v2", "warning", True),
    ]

    same_stack = build(snapshot, host_sharing="stack")
    assert {s.service for s in same_stack.routings[""].upstream("shop.example").servers} == {"shop", "shop-v2"}
    refused = [p for p in same_stack.problems if p.service == "intruder"]
    assert [(p.severity, p.label) for p in refused] == [("error", "com.docker.lb.hosts")]
    assert "HostSharing" in refused[0].reason and "stack shop" in refused[0].reason


@pytest.mark.parametrize("name", ["bad name", "tab\there", "-dash", "x" * 64, "émoji"])
def test_a_service_name_outside_dockers_rule_costs_that_service_not_the_render(name: str) -> None:
    labels = {"com.docker.lb.hosts": "a.example", "com.docker.lb.port": "80"}
    good = {"name": "good", "networks": ["apps"], "labels": labels | {"com.docker.lb.hosts": "b.example"}}
    document = swarm_json({"services": [{"name": name, "networks": ["apps"], "labels": labels}, good]})
    result = build(snapshot_from_api(document))
    routing = result.routings[""]
    assert [h.name for h in routing.hosts] == ["b.example"]
    assert "host b.example " in render_nginx(routing, default_config().extensions["default"]).targets
    (problem,) = result.problems
    assert "service name outside Docker's own rule" in problem.reason


def test_websocket_endpoints_share_their_hosts_upstream() -> None:
    """Hosts x websocket endpoints must not multiply upstream blocks (and their server lines):
    a path served by the same servers the same way uses the host's upstream."""
    hosts = ",".join(f"h{i}.example" for i in range(40))
    endpoints = ",".join(f"/ws{i}" for i in range(20))
    routing = routing_of(service("chat", replicas=3, hosts=hosts, port="80", websocket_endpoints=endpoints))
    assert len(routing.upstreams) == 40
    assert sum(len(h.routes) for h in routing.hosts) == 40 * 21
    assert {r.upstream for r in routing.hosts[0].routes} == {"h0.example"}


def test_grpc_backends_refuse_what_grpc_cannot_be_and_warn_without_tls() -> None:
    """backend_protocol=grpc makes an upstream that speaks HTTP/2 to its tasks; passthrough, a
    rewrite or websocket paths with it exclude the service (nothing else), and without ssl_cert
    a warning says clients will not get HTTP/2."""
    result = build(
        snapshot_from_api(
            swarm_json(
                {
                    "services": [
                        service("ok", hosts="ok.local", ssl_cert="ok.pem", port="50051", backend_protocol="grpc"),
                        service("plain", hosts="plain.local", port="50051", backend_protocol="grpc"),
                        service(
                            "pass", hosts="pass.local", ssl_passthrough="true", port="50051", backend_protocol="grpc"
                        ),
                        service(
                            "cut",
                            hosts="cut.local",
                            ssl_cert="c.pem",
                            context_root="/v1",
                            context_root_rewrite="true",
                            port="50051",
                            backend_protocol="grpc",
                        ),
                        service(
                            "ws",
                            hosts="ws.local",
                            ssl_cert="w.pem",
                            websocket_endpoints="/ws",
                            port="50051",
                            backend_protocol="grpc",
                        ),
                    ]
                }
            )
        )
    )
    routed = {u.name: u.grpc for u in result.routings[""].upstreams}
    assert routed == {"ok.local": True, "plain.local": True}
    assert sorted((p.service, p.label.rsplit(".", 1)[1], p.severity.value) for p in result.problems) == [
        ("cut", "context_root_rewrite", "error"),
        ("pass", "backend_protocol", "error"),
        ("plain", "backend_protocol", "warning"),
        ("ws", "websocket_endpoints", "error"),
    ]
