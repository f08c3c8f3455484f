"""The policy labels' grammars: what each accepts (normalised), what it refuses and how it says
so, and what combinations are refused; a bad policy label excludes its service alone."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from interlock.config import load_config
from interlock.errors import GrammarError
from interlock.model.build import build
from interlock.model.docker_json import snapshot_from_api
from interlock.model.policy import (
    Policy,
    RateLimit,
    address_list,
    burst,
    forward_auth_url,
    header_pairs,
    origin_list,
    rate,
)
from interlock.testing.swarm_json import swarm_json


def test_addresses_are_normalised_networks_v4_and_v6() -> None:
    assert address_list(" 10.1.2.3/8, 192.168.1.7 ,2001:DB8::1/32") == ("10.0.0.0/8", "192.168.1.7/32", "2001:db8::/32")


@pytest.mark.parametrize("bad", ["", "10.0.0.0/33", "example.com", "10.0.0.0/8;rm", "1.2.3.4 5.6.7.8"])
def test_a_bad_address_is_refused_with_what_is_allowed(bad: str) -> None:
    with pytest.raises(GrammarError, match=r"IP|address"):
        address_list(bad)


def test_rates_and_bursts() -> None:
    assert rate("10/s") == (10, 1)
    assert rate(" 600/m ") == (600, 60)
    for bad in ("0/s", "10/h", "10", "ten/s", "-1/s", "1000000/s"):
        with pytest.raises(GrammarError, match="N/s or N/m"):
            rate(bad)
    assert burst("20") == 20
    with pytest.raises(GrammarError):
        burst("0")


def test_headers_are_pairs_an_empty_value_removes_and_the_proxys_own_are_refused() -> None:
    assert header_pairs("X-Tenant: blue; X-Debug:; Cache-Control: max-age=60, public") == (
        ("Cache-Control", "max-age=60, public"),
        ("X-Debug", ""),
        ("X-Tenant", "blue"),
    )
    for bad, said in (
        ("Host: evil", "kept by the proxy"),
        ("X-Forwarded-For: 1.2.3.4", "kept by the proxy"),
        ("X-A: $host", "not allowed"),
        ('X-A: "quoted"', "not allowed"),
        ("X-A: a\\b", "not allowed"),
        ("X A: b", "Name: value"),
        ("X-A b", "Name: value"),
        ("X-A: 1; x-a: 2", "twice"),
    ):
        with pytest.raises(GrammarError, match=said):
            header_pairs(bad)


@given(st.text(max_size=80))
def test_a_header_value_that_passes_holds_no_character_a_proxy_reads_as_syntax(text: str) -> None:
    try:
        pairs = header_pairs(f"X-Test: {text}")
    except GrammarError:
        return
    value = pairs[0][1]
    assert not set(value) & set("\"'\\$;{}\n\r\t`")


def test_origins() -> None:
    assert origin_list("*") == ("*",)
    assert origin_list("https://App.Example.com/, http://localhost:3000") == (
        "http://localhost:3000",
        "https://app.example.com",
    )
    for bad in ("app.example.com", "ftp://x.example", "https://x.example/path", "https://x.example, *"):
        with pytest.raises(GrammarError, match="origin"):
            origin_list(bad)


def shop_and_other(labels: dict[str, str]) -> list[dict[str, object]]:
    """Two services on their own hosts; `labels` added to shop's."""
    return [
        {
            "name": "shop",
            "networks": ["n"],
            "labels": {"com.docker.lb.hosts": "shop.local", "com.docker.lb.port": "80"} | labels,
        },
        {
            "name": "other",
            "networks": ["n"],
            "labels": {"com.docker.lb.hosts": "other.local", "com.docker.lb.port": "80"},
        },
    ]


def routed(labels: dict[str, str]) -> tuple[set[str], list[str]]:
    services = shop_and_other(labels)
    result = build(snapshot_from_api(swarm_json({"services": services})))
    return {h.name for h in result.routings[""].hosts}, [p.describe() for p in result.problems if p.severity == "error"]


def test_a_service_gets_its_policy_on_every_route_to_it() -> None:
    labels = {
        "com.docker.lb.allow_ips": "10.0.0.0/8",
        "com.docker.lb.rate_limit": "5/s",
        "com.docker.lb.rate_limit_burst": "8",
    }
    services = [
        {
            "name": "shop",
            "networks": ["n"],
            "labels": {"com.docker.lb.hosts": "a.local,b.local", "com.docker.lb.port": "80"} | labels,
        }
    ]
    routing = build(snapshot_from_api(swarm_json({"services": services}))).routings[""]
    assert {u.policy for u in routing.upstreams} == {Policy(("10.0.0.0/8",), RateLimit(5, 1, 8))}
    assert routing.upstreams[0].policy is not None and routing.upstreams[0].policy.summary() == "allow 1 nets, rate 5/s"


@pytest.mark.parametrize(
    ("labels", "said"),
    [
        ({"com.docker.lb.request_headers": "Host: x"}, "request_headers"),
        ({"com.docker.lb.rate_limit_burst": "5"}, "without rate_limit"),
        ({"com.docker.lb.rate_limit": "10/s", "com.docker.lb.rate_limit_burst": "5"}, "at least N"),
        ({"com.docker.lb.ssl_passthrough": "true", "com.docker.lb.allow_ips": "10.0.0.0/8"}, "passthrough"),
        ({"com.docker.lb.auth_basic_realm": "Shop"}, "without auth_basic"),
        ({"com.docker.lb.auth_basic": "users", "com.docker.lb.auth_basic_realm": 'Sh"op'}, "not a realm"),
        ({"com.docker.lb.auth_basic": "users;x"}, "not a Docker secret name"),
        ({"com.docker.lb.auth_basic": "interlock-operator-token"}, "Interlock's own secret"),
        ({"com.docker.lb.ssl_passthrough": "true", "com.docker.lb.auth_basic": "users"}, "passthrough"),
        ({"com.docker.lb.forward_auth": "http://auth:9000/"}, "no Swarm service named 'auth'"),
    ],
)
def test_a_bad_policy_label_excludes_its_service_alone(labels: dict[str, str], said: str) -> None:
    hosts, errors = routed(labels)
    assert hosts == {"other.local"}
    assert any(said in e and "service shop" in e for e in errors), errors


def test_interlock_routes_shows_each_routes_policies_in_one_short_column() -> None:
    from interlock.wire.status import routes_table

    labels = {"com.docker.lb.cors_origins": "*", "com.docker.lb.response_headers": "X-Frame-Options: DENY"}
    services = shop_and_other(labels)
    routing = build(snapshot_from_api(swarm_json({"services": services}))).routings[""]
    assert {row.host: row.policies for row in routes_table(routing)} == {
        "shop.local": "headers, cors",
        "other.local": "-",
    }


def test_basic_auth_names_its_realm_or_the_service_that_owns_the_route() -> None:
    services = [
        {
            "name": "shop",
            "networks": ["n"],
            "labels": {
                "com.docker.lb.hosts": "shop.local",
                "com.docker.lb.port": "80",
                "com.docker.lb.auth_basic": "u",
            },
        },
        {
            "name": "club",
            "networks": ["n"],
            "labels": {
                "com.docker.lb.hosts": "club.local",
                "com.docker.lb.port": "80",
                "com.docker.lb.auth_basic": "u",
                "com.docker.lb.auth_basic_realm": "Members only",
            },
        },
    ]
    routing = build(snapshot_from_api(swarm_json({"services": services}))).routings[""]
    realms = {u.name: u.policy.auth_realm for u in routing.upstreams if u.policy}
    assert realms == {"shop.local": "shop", "club.local": "Members only"}
    assert routing.credential_secrets() == ("u",)
    assert "u" in routing.secrets  # the core mounts it
    assert routing.upstreams[0].policy is not None and routing.upstreams[0].policy.summary() == "basic auth"


def test_a_cluster_that_cannot_apply_a_label_refuses_it_for_its_services_alone() -> None:
    services = shop_and_other({"com.docker.lb.auth_basic": "users"})
    refused = {"": {"auth_basic": "basic authentication is built for nginx clusters only"}}
    result = build(snapshot_from_api(swarm_json({"services": services})), refused_labels=refused)
    assert {h.name for h in result.routings[""].hosts} == {"other.local"}
    [problem] = [p for p in result.problems if p.service == "shop"]
    assert problem.label.endswith("auth_basic") and "nginx clusters only; not routed" in problem.reason


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ("http://auth:9000/check", ("auth", 9000, "/check")),
        ("http://auth", ("auth", 80, "/")),
        (" http://auth_svc.v2:8080/a/b?next=%2F&x=1 ", ("auth_svc.v2", 8080, "/a/b?next=%2F&x=1")),
    ],
)
def test_a_forward_auth_url_names_a_service_its_port_and_path(raw: str, parsed: tuple[str, int, str]) -> None:
    assert forward_auth_url(raw) == parsed


@pytest.mark.parametrize(
    "bad",
    [
        "https://auth/check",
        "http://auth:0/",
        "http://auth:99999/",
        "http://au th/",
        "http://auth/$host",
        "auth:80",
        "http://auth/../x",
    ],
)
def test_a_bad_forward_auth_url_is_refused_with_what_is_allowed(bad: str) -> None:
    with pytest.raises(GrammarError, match=r"allowed: http://SERVICE\[:PORT\]\[/PATH\]"):
        forward_auth_url(bad)


def forward_auth_swarm(auth_networks: list[str], **labels: str) -> dict[str, object]:
    return {
        "services": [
            {
                "name": "shop",
                "networks": ["apps"],
                "labels": {"com.docker.lb.hosts": "shop.local", "com.docker.lb.port": "80"}
                | {f"com.docker.lb.{k}": v for k, v in labels.items()},
            },
            {"name": "auth", "networks": auth_networks, "labels": {}, "replicas": 2},
            {
                "name": "other",
                "networks": ["apps"],
                "labels": {"com.docker.lb.hosts": "other.local", "com.docker.lb.port": "80"},
            },
        ]
    }


def test_forward_auth_asks_the_auth_services_tasks_on_the_network_the_service_is_reached_over() -> None:
    labels = {"forward_auth": "http://auth:9000/check", "forward_auth_response_headers": "X-User, x-user, X-Groups"}
    result = build(snapshot_from_api(swarm_json(forward_auth_swarm(["apps"], **labels))))
    routing = result.routings[""]
    shop = routing.upstream("shop.local")
    assert shop.policy is not None and shop.policy.forward_auth is not None
    auth = shop.policy.forward_auth
    assert (auth.service, auth.port, auth.path, auth.response_headers) == (
        "auth",
        9000,
        "/check",
        ("X-Groups", "X-User"),
    )
    assert auth.upstream == "forward_auth.auth.9000.apps"
    upstream = routing.upstream(auth.upstream)
    assert len(upstream.servers) == 2 and {s.port for s in upstream.servers} == {9000}
    assert shop.policy.summary() == "forward auth auth"
    assert not [p for p in result.problems if p.severity == "error"]


@pytest.mark.parametrize(
    ("auth_networks", "labels", "said"),
    [
        (["apps"], {"forward_auth": "http://nobody:9000/"}, "no Swarm service named 'nobody'"),
        (["elsewhere"], {"forward_auth": "http://auth:9000/"}, "is not on network apps"),
        (["apps"], {"forward_auth_headers": "Cookie"}, "without forward_auth"),
        (["apps"], {"forward_auth": "http://auth/", "forward_auth_response_headers": "Host"}, "kept by the proxy"),
    ],
)
def test_a_forward_auth_that_cannot_work_excludes_its_service_alone(
    auth_networks: list[str], labels: dict[str, str], said: str
) -> None:
    result = build(snapshot_from_api(swarm_json(forward_auth_swarm(auth_networks, **labels))))
    assert {h.name for h in result.routings[""].hosts} == {"other.local"}
    errors = [p.describe() for p in result.problems if p.severity == "error"]
    assert any(said in e and "service shop" in e for e in errors), errors


def test_haproxy_clusters_refuse_basic_and_forward_authentication_with_the_reason() -> None:
    config = load_config(
        '[Extensions.default]\n[Extensions.edge]\nKind = "haproxy"\nServiceCluster = "edge"\nPublishedPort = 8081\n'
        "PublishedSSLPort = 8444\n"
    )
    refused = config.refused_labels
    assert "default" not in refused and "" not in refused
    assert set(refused["edge"]) == {
        "auth_basic",
        "auth_basic_realm",
        "forward_auth",
        "forward_auth_headers",
        "forward_auth_response_headers",
    }
    assert "nginx clusters only" in refused["edge"]["forward_auth"]
