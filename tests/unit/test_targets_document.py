"""The targets document and the deltas the proxy agent sends a running nginx (pure)."""

from __future__ import annotations

import pytest

from interlock.errors import UnsafeValue
from interlock.model.routing import Balance, RedirectRule, Route, Routing, Server, TLSMode, Upstream, VirtualHost
from interlock.render.targets import check_targets, fail_timeout_ms, render_targets, targets_delta


def routing(**servers: tuple[str, ...]) -> Routing:
    upstreams = tuple(
        Upstream(name, tuple(Server(address, 8080, name) for address in addresses))
        for name, addresses in sorted(servers.items())
    )
    return Routing("", upstreams=upstreams)


def test_document_lists_every_upstream_with_its_rule_and_servers() -> None:
    text = render_targets(
        Routing(
            "",
            upstreams=(
                Upstream("a.local", (Server("10.0.0.2", 80, "a", max_fails=3, fail_timeout="2m"),)),
                Upstream("b.local", (Server("10.0.0.3", 81, "b"),), Balance.COOKIE, cookie="sid"),
            ),
        )
    ).text
    header, *lines = text.splitlines()
    assert header.startswith("interlock targets 1 ")
    assert lines == [
        "upstream a.local round_robin - a",
        "server 10.0.0.2 80 3 120000",
        "upstream b.local cookie sid b",
        "server 10.0.0.3 81 1 10000",
    ]


def test_ip_hash_setting_applies_to_round_robin_upstreams() -> None:
    assert "upstream a ip_hash - a" in render_targets(routing(a=("10.0.0.2",)), ip_hash=True).text


def test_the_id_follows_the_servers() -> None:
    one, same, other = (render_targets(routing(a=ips)) for ips in (("10.0.0.2",), ("10.0.0.2",), ("10.0.0.3",)))
    assert one.targets_id == same.targets_id != other.targets_id


def test_delta_holds_only_changed_new_and_removed_upstreams() -> None:
    old = render_targets(routing(a=("10.0.0.2",), b=("10.0.0.3",), c=("10.0.0.4",))).text
    new = render_targets(routing(a=("10.0.0.2",), b=("10.0.0.5", "10.0.0.6"), d=("10.0.0.7",)))
    assert targets_delta(old, new.text).splitlines() == [
        f"interlock targets 1 {new.targets_id} delta",
        "upstream b round_robin - b",
        "server 10.0.0.5 8080 1 10000",
        "server 10.0.0.6 8080 1 10000",
        "upstream d round_robin - d",
        "server 10.0.0.7 8080 1 10000",
        "remove c",
    ]


def test_delta_from_nothing_is_every_upstream() -> None:
    new = render_targets(routing(a=("10.0.0.2",)))
    assert targets_delta("", new.text).splitlines()[1:] == new.text.splitlines()[1:]


def test_delta_refuses_what_is_not_a_document() -> None:
    with pytest.raises(ValueError, match="first line"):
        targets_delta("", "upstream a round_robin -\n")


@pytest.mark.parametrize(("value", "ms"), [(None, 10_000), ("0", 0), ("500ms", 500), ("30", 30_000), ("1h", 3_600_000)])
def test_fail_timeout_in_milliseconds(value: str | None, ms: int) -> None:
    assert fail_timeout_ms(value) == ms


def test_a_value_outside_the_grammar_stops_the_render() -> None:
    with pytest.raises(UnsafeValue):
        render_targets(routing(**{"a b": ("10.0.0.2",)}))


def test_with_routes_every_host_is_a_block_of_its_routes_and_redirects() -> None:
    upstreams = (
        Upstream("app", (Server("10.0.0.2", 80, "app"), Server("10.0.0.3", 80, "canary")), grpc=True),
        Upstream("web", (Server("10.0.0.4", 80, "web"),), tls=True, tls_verify=True),
    )
    hosts = (
        VirtualHost(
            "web.test",
            TLSMode.TERMINATE,
            "c",
            "k",
            ssl_only=True,
            redirects=(RedirectRule("http", "https://new.test"),),
            routes=(Route("/", "web", websocket=True), Route("/app", "app", rewrite=True)),
        ),
    )
    default = VirtualHost("_", routes=(Route("/", "web"),))
    text = render_targets(Routing("", hosts=hosts, default_host=default, upstreams=upstreams), routes=True).text
    assert text.splitlines()[-6:] == [
        "host web.test 1 1",
        "redirect http https://new.test",
        "route / web https-verify wo",
        "route /app app grpc r",
        "host _ 0 0",
        "route / web https-verify o",
    ]
    check_targets(text)


def test_a_delta_sets_upstreams_before_hosts_and_removes_last() -> None:
    def doc(*names: str) -> str:
        upstreams = tuple(Upstream(n, (Server("10.0.0.2", 80, n),)) for n in names)
        hosts = tuple(VirtualHost(f"{n}.test", routes=(Route("/", n),)) for n in names)
        return render_targets(Routing("", hosts=hosts, upstreams=upstreams), routes=True).text

    assert targets_delta(doc("a", "b"), doc("b", "c")).splitlines()[1:] == [
        "upstream c round_robin - c",
        "server 10.0.0.2 80 1 10000",
        "host c.test 0 0",
        "route / c http o",
        "drop a.test",
        "remove a",
    ]


@pytest.mark.parametrize(
    "line",
    ["route / a http o", "host a 2 0", "upstream a round_robin -", "server 1.2.3.4 80 1 1", "route x a http o"],
)
def test_the_schema_check_names_a_line_out_of_place_or_of_shape(line: str) -> None:
    body = "host h 0 0\n" if line.startswith("route x") else ""
    with pytest.raises(ValueError, match="line"):
        check_targets(f"interlock targets 1 00\n{body}{line}\n")


def test_the_extension_refuses_a_document_outside_the_grammar_without_nginx() -> None:
    from interlock.config import default_config
    from interlock.edges.proxy_kinds import check_proxy_targets

    ext = default_config().extensions["default"]
    good = render_targets(routing(a=("10.0.0.2",)), routes=True).text
    assert check_proxy_targets(good, ext).ok
    bad = check_proxy_targets(good + "route / a http o\n", ext)
    assert not bad.ok and "targets document: line not understood here: 'route / a http o'" in bad.output
