"""HTTP routing on a real swarm, through the proxy's published port (spec §6 items 24-47, 57-68, 73)."""

from __future__ import annotations

import asyncio
import collections
import json

import aiohttp
import pytest

from tests.e2e.swarm import (
    INTERLOCK,
    Cluster,
    get,
    lb,
    poll,
    routed,
    service,
    settled,
    sh,
    task_ips,
    unique,
    until_routed,
    upstreams,
)

pytestmark = pytest.mark.usefixtures("interlock")


def test_host_routing_several_hosts_and_upstream_headers(cluster: Cluster) -> None:
    name = unique("web")
    with service(name, labels=lb(hosts=f"{name}.local,www.{name}.local", port="8080") | cluster.labels):
        response = until_routed(f"{name}.local", port=cluster.http, what=f"{name}.local to answer 200")
        body = response.json()
        assert body["headers"]["Host"] == f"{name}.local"
        assert body["headers"]["X-Forwarded-Proto"] == "http"
        assert body["headers"]["X-Real-IP"]
        assert body["headers"]["X-Request-ID"] == response.headers["x-request-id"]
        for header in ("x-request-id", "x-proxy-id", "x-server-info", "x-upstream-addr", "x-upstream-response-time"):
            assert header in response.headers
        assert response.headers["x-server-info"].startswith("interlock/")
        # The Host header match ignores a :port suffix.
        assert get(f"www.{name}.local:{cluster.http}", port=cluster.http).status_code == 200
        assert get(f"nobody-{name}.local", port=cluster.http).status_code == 503


def test_scaling_is_picked_up_and_removal_stops_routing(cluster: Cluster) -> None:
    name = unique("scale")
    host = f"{name}.local"
    with service(name, labels=lb(hosts=host, port="8080") | cluster.labels, replicas=1):
        until_routed(host, port=cluster.http, what="first task routed")
        sh("docker", "service", "scale", "-d", f"{name}=3")
        poll(lambda: len(set(upstreams(host, 12, port=cluster.http))) == 3, what="three tasks in rotation")
        assert set(a.split(":")[0] for a in upstreams(host, 6, port=cluster.http)) == task_ips(name, "e2e-a")
    poll(routed(host, port=cluster.http, status=503), what="removed service no longer routed")


def _settled_proxy_counters(port: int) -> tuple[int, int]:
    """(reloads, target changes without a reload) summed over the running proxies of the
    cluster behind `port`, once every one serves the newest configuration and targets."""
    proxies = settled(port)["proxies"]
    return sum(p["reloads"] for p in proxies), sum(p["target_updates"] for p in proxies)


def test_scaling_moves_targets_without_reloading_the_proxies(cluster: Cluster) -> None:
    """nginx (DynamicUpstreams) swaps its targets through Lua; HAProxy fills server slots
    through its runtime API."""
    name = unique("noreload")
    host = f"{name}.local"
    port = cluster.http
    with service(name, labels=lb(hosts=host, port="8080") | cluster.labels, replicas=1):
        until_routed(host, port=port, what="first task routed")
        reloads, updates = _settled_proxy_counters(port)
        sh("docker", "service", "scale", "-d", f"{name}=3")
        poll(lambda: len(set(upstreams(host, 12, port=port))) == 3, what="three tasks in rotation")
        sh("docker", "service", "scale", "-d", f"{name}=2")
        poll(
            lambda: set(a.split(":")[0] for a in upstreams(host, 8, port=port)) == task_ips(name, "e2e-a"),
            what="two tasks",
        )
        sh("docker", "service", "update", "-d", "--force", name)
        poll(
            lambda: (
                sh("docker", "service", "inspect", "-f", "{{.UpdateStatus.State}}", name).strip() == "completed"
                and set(a.split(":")[0] for a in upstreams(host, 8, port=port)) == task_ips(name, "e2e-a")
            ),
            what="the replaced tasks in rotation",
        )
        reloads_after, updates_after = _settled_proxy_counters(port)
        assert reloads_after == reloads, "scaling and a rolling update only move targets: no reload"
        assert updates_after > updates, "the moves were applied to the running proxy"


def test_context_roots_with_and_without_rewrite_share_a_host(cluster: Cluster) -> None:
    host = f"{unique('ctx')}.local"
    shop, blog = unique("shop"), unique("blog")
    shop_labels = lb(hosts=host, port="8080", context_root="/shop", context_root_rewrite="true") | cluster.labels
    with (
        service(shop, labels=shop_labels),
        service(blog, labels=lb(hosts=host, port="8080", context_root="/blog") | cluster.labels),
    ):
        port = cluster.http
        rewritten = until_routed(host, "/shop/cart?x=1", port=port, what="/shop routed").json()
        assert rewritten["path"] == "/cart?x=1"
        kept = until_routed(host, "/blog/post", port=port, what="/blog routed").json()
        assert kept["path"] == "/blog/post"
        # Each context root reaches only its own service.
        shop_ips, blog_ips = task_ips(shop, "e2e-a"), task_ips(blog, "e2e-a")
        assert get(host, "/shop/", port=port).headers["x-upstream-addr"].split(":")[0] in shop_ips
        assert get(host, "/blog/", port=port).headers["x-upstream-addr"].split(":")[0] in blog_ips
        bare = get(host, "/shop", port=port)
        assert bare.status_code == 301
        assert bare.headers["Location"] == "/shop/"
        assert get(host, "/blog", port=port).json()["path"] == "/blog"
        assert get(host, "/elsewhere", port=port).status_code == 404


def test_redirects_answer_302_with_location(cluster: Cluster) -> None:
    name = unique("redir")
    old, new = f"old-{name}.local", f"new-{name}.local"
    labels = lb(hosts=f"{old},{new}", port="8080", redirects=f"http://{old},http://{new};") | cluster.labels
    with service(name, labels=labels):
        until_routed(new, port=cluster.http, what="target host routed")
        response = get(old, "/path?q=1", port=cluster.http)
        assert response.status_code == 302
        assert response.headers["Location"] == f"http://{new}/path?q=1"


def test_sticky_cookie_keeps_a_client_on_one_task(cluster: Cluster) -> None:
    name = unique("sticky")
    host = f"{name}.local"
    labels = lb(hosts=host, port="8080", sticky_session_cookie="session") | cluster.labels
    with service(name, labels=labels, replicas=3):
        poll(lambda: len(set(upstreams(host, 9, port=cluster.http))) == 3, what="three tasks up")
        chosen = {}
        for value in (f"user{i}" for i in range(12)):
            seen = set(upstreams(host, 8, port=cluster.http, cookies={"session": value}))
            assert len(seen) == 1, f"cookie {value} reached {seen}"
            chosen[value] = seen.pop()
        assert len(set(chosen.values())) >= 2, "different cookies should spread over the tasks"


def test_ip_hash_keeps_a_client_address_on_one_task(cluster: Cluster) -> None:
    name = unique("iphash")
    host = f"{name}.local"
    with service(name, labels=lb(hosts=host, port="8080", ip_hash="true") | cluster.labels, replicas=3):
        poll(
            lambda: len(task_ips(name, "e2e-a")) == 3 and get(host, port=cluster.http).status_code == 200,
            what="three tasks up",
        )
        poll(lambda: len(sh(INTERLOCK, "routes", "--json").split(host)) > 1, what="routes listed")
        settled(cluster.http)
        assert len(set(upstreams(host, 30, port=cluster.http))) == 1


async def _websocket_roundtrip(host: str, port: int) -> list[str]:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(
            f"http://127.0.0.1:{port}/ws", headers={"Host": host}, timeout=aiohttp.ClientWSTimeout(ws_close=5)
        ) as ws,
    ):
        messages = [(await ws.receive(timeout=5)).data]
        await ws.send_str("ping")
        messages.append((await ws.receive(timeout=5)).data)
        return messages


def _try_websocket_roundtrip(host: str, port: int) -> list[str] | None:
    """The round trip, or None when the handshake is refused. A CI run once got a 503 here right
    after a 101 for the same host, cause not found; polling keeps such a moment from failing the
    run, and a websocket route that does not work still fails at the deadline."""
    try:
        return asyncio.run(_websocket_roundtrip(host, port))
    except aiohttp.WSServerHandshakeError:
        return None


def test_websocket_upgrade_and_echo(cluster: Cluster) -> None:
    name = unique("ws")
    host = f"{name}.local"
    with service(name, labels=lb(hosts=host, port="8080", websocket_endpoints="/ws") | cluster.labels):
        until_routed(host, port=cluster.http, what="ws service routed")
        raw = get(
            host,
            "/ws",
            port=cluster.http,
            headers={
                "Connection": "Upgrade",
                "Upgrade": "websocket",
                "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            },
            stream=True,
        )
        assert raw.status_code == 101
        raw.close()
        messages = poll(lambda: _try_websocket_roundtrip(host, cluster.http), what="a websocket echo through the proxy")
        assert messages[0].startswith("hello from ")
        assert messages[1] == "echo:ping"


def test_default_backend_serves_unknown_hosts(cluster: Cluster) -> None:
    name = unique("fallback")
    with service(name, labels=lb(default_backend="true", port="8080") | cluster.labels):
        response = until_routed(
            f"unknown-{name}.example", port=cluster.http, what="default backend answers unknown hosts"
        )
        assert response.json()["headers"]["Host"] == f"unknown-{name}.example"
    poll(routed(f"unknown-{name}.example", port=cluster.http, status=503), what="catch-all back after removal")


def test_canary_by_task_count_then_switch(cluster: Cluster) -> None:
    host = f"{unique('canary')}.local"
    v1, v2 = unique("v1"), unique("v2")
    port = cluster.http
    with (
        service(v1, labels=lb(hosts=host, port="8080") | cluster.labels, replicas=4),
        service(v2, labels=lb(hosts=host, port="8080") | cluster.labels, replicas=1),
    ):
        poll(lambda: len(set(upstreams(host, 10, port=port))) == 5, what="five tasks in rotation", timeout=90)
        v2_ips = task_ips(v2, "e2e-a")
        hits = collections.Counter(a.split(":")[0] in v2_ips for a in upstreams(host, 500, port=port))
        share = hits[True] / 500
        assert abs(share - 0.2) <= 0.02, f"v2 got {share:.1%} of 500 requests, expected 20% +-10%"
        sh("docker", "service", "scale", "-d", f"{v1}=0")
        poll(lambda: all(a.split(":")[0] in v2_ips for a in upstreams(host, 20, port=port)), what="all traffic on v2")


def test_network_label_chooses_among_several_networks() -> None:
    name = unique("multinet")
    host = f"{name}.local"
    with service(name, labels=lb(hosts=host, port="8080", network="e2e-b"), networks=("e2e-a", "e2e-b")):
        response = until_routed(host, what="multi-network service routed")
        assert response.headers["x-upstream-addr"].split(":")[0] in task_ips(name, "e2e-b")


def test_host_mode_app_is_reached_at_node_address_and_published_port() -> None:
    name = unique("hostmode")
    host = f"{name}.local"
    with service(name, labels=lb(hosts=host, port="8080"), networks=(), extra=("--publish", "mode=host,target=8080")):
        response = until_routed(host, what="host-mode app routed")
        address, port = response.headers["x-upstream-addr"].rsplit(":", 1)
        node_address = sh("docker", "node", "inspect", "self", "--format", "{{.Status.Addr}}").strip()
        assert address == node_address
        assert int(port) != 8080 and int(port) >= 30000


def test_vip_mode_targets_the_service_virtual_ip() -> None:
    # This kernel has no IPVS, so a VIP does not answer here: check what is rendered.
    name = unique("vip")
    host = f"{name}.local"
    with service(name, labels=lb(hosts=host, port="8080", backend_mode="vip"), replicas=2):
        vip = json.loads(sh("docker", "service", "inspect", name))[0]["Endpoint"]["VirtualIPs"]
        network_id = json.loads(sh("docker", "network", "inspect", "e2e-a"))[0]["Id"]
        address = next(v["Addr"].split("/")[0] for v in vip if v["NetworkID"] == network_id)

        def rendered_route() -> list[dict[str, object]]:
            return [r for r in json.loads(sh(INTERLOCK, "routes", "--json")) if r["host"] == host]

        rows = poll(rendered_route, what="vip route listed")
        assert rows[0]["targets"] == [f"{address}:8080"]


def test_label_problems_are_visible_while_other_routes_work() -> None:
    good, bad = unique("good"), unique("bad")
    with (
        service(good, labels=lb(hosts=f"{good}.local", port="8080")),
        service(bad, labels=lb(hosts=f"{bad}.local", port="80; include /etc/passwd")),
    ):
        until_routed(f"{good}.local", what="good service routed")

        def bad_reported() -> list[dict[str, str]]:
            return [p for p in json.loads(sh(INTERLOCK, "problems", "--json")) if p["service"] == bad]

        problems = poll(bad_reported, what="problem reported")
        assert problems == [
            {
                "service": bad,
                "label": "com.docker.lb.port",
                "value": "80; include /etc/passwd",
                "reason": "not a port; allowed: a whole number from 1 to 65535",
                "severity": "error",
            }
        ]
        assert f"{bad}" in sh(INTERLOCK, "problems")
        assert get(f"{bad}.local").status_code == 503
        assert get(f"{good}.local").status_code == 200


def test_labels_set_only_on_the_container_are_reported_where_they_belong() -> None:
    """A stack file's `labels:` (container) instead of `deploy: labels:` (service): not routed,
    and `interlock problems` says where the labels go."""
    name = unique("misplaced")
    extra = ("--container-label", f"com.docker.lb.hosts={name}.local", "--container-label", "com.docker.lb.port=8080")
    with service(name, extra=extra):

        def reported() -> list[dict[str, str]]:
            return [p for p in json.loads(sh(INTERLOCK, "problems", "--json")) if p["service"] == name]

        (problem,) = poll(reported, what="misplaced labels reported")
        assert problem["severity"] == "warning"
        assert "com.docker.lb.hosts, com.docker.lb.port are set on the container" in problem["reason"]
        assert "deploy: labels:" in problem["reason"]
        assert get(f"{name}.local").status_code == 503
