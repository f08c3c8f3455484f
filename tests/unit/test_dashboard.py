"""The dashboard's page and its event stream, from a hand-made status sequence: what a label
value can do to the page (nothing: it is text), and that each change reaches an open stream
once, without the page asking again."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

from aiohttp.test_utils import TestClient, TestServer

from interlock.dashboard.server import Dashboard, allowed_hosts
from interlock.dashboard.view import fragment, page
from interlock.wire.status import ClusterStatus, CoreInfo, CoreStatus, ProblemView, ProxyStatus, RouteRow

HOSTILE = '<script>alert("x")</script>'


def a_status(*, requests: int = 0, problem_value: str = "x;y") -> CoreStatus:
    cluster = ClusterStatus(
        "default", "", "interlock-extension", "interlock-proxy", 3, 1, 3, "cfg1", "tg1", "", 0.5,
        (ProxyStatus("p1", "cfg1", "tg1", True, "", 2, 5, 7), ProxyStatus("p2", "cfg0", "", True, "", 1, 0)),
    )  # fmt: skip
    route = RouteRow("", "shop.test", "/", ("shop",), ("10.0.0.5:80",), "none", "-", (0, requests, 0, 0, 0), 1.5, 0.0)
    problem = ProblemView("bad", "com.docker.lb.hosts", problem_value, "';' is not allowed in a host name", "error")
    return CoreStatus(True, CoreInfo("interlock"), (cluster,), (route,), (problem,))


def test_the_fragment_shows_clusters_proxies_routes_and_problems() -> None:
    html = fragment(a_status(requests=12), updated="10:00:00")
    assert 'data-proxy="p1"' in html and "in sync" in html and "catching up" in html
    assert '<tr class="route" data-cluster="" data-host="shop.test" data-path="/">' in html
    assert '<td class="num requests">12</td>' in html and '<td class="num rps">1.5</td>' in html
    assert 'data-service="bad"' in html and "is not allowed in a host name" in html
    # p2 does not serve the cluster's newest configuration yet: its targets are pending.
    assert '10.0.0.5:80 <span class="target-state muted">pending</span>' in html


def test_a_label_value_is_text_in_the_page_never_markup() -> None:
    html = page(fragment(a_status(problem_value=HOSTILE), updated="10:00:00"))
    assert HOSTILE not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    # The page's own script is the only one.
    assert html.count("<script>") == 1


async def test_each_change_reaches_an_open_event_stream() -> None:
    statuses = [a_status(requests=1), a_status(requests=1), a_status(requests=2)]
    go = threading.Event()

    def follow() -> Iterator[CoreStatus]:
        yield statuses[0]
        go.wait(10)
        yield from statuses[1:]
        threading.Event().wait()  # the core says nothing more

    dashboard = Dashboard(follow)
    loop = asyncio.get_running_loop()
    threading.Thread(target=dashboard.follow, args=(loop,), daemon=True).start()
    async with TestClient(TestServer(dashboard.app())) as client:
        index = await (await client.get("/")).text()
        assert "<h1>Interlock</h1>" in index and "EventSource" in index
        response = await client.get("/events")
        assert response.headers["Content-Type"] == "text/event-stream"

        async def next_event() -> str:
            lines = []
            while (line := (await response.content.readline()).decode()) != "\n":
                lines.append(line.removeprefix("data: ").rstrip("\n"))
            return "\n".join(lines)

        first = await asyncio.wait_for(next_event(), 10)
        while '<td class="num requests">1</td>' not in first:  # the stream may open before the first status
            first = await asyncio.wait_for(next_event(), 10)
        go.set()
        # The repeated status sends nothing; the changed one is the next event.
        second = await asyncio.wait_for(next_event(), 10)
        assert '<td class="num requests">2</td>' in second
        assert dashboard.version == 2


async def test_the_page_answers_only_to_its_own_address_not_a_rebound_name() -> None:
    dashboard = Dashboard(lambda: iter(()), allowed_hosts("127.0.0.1", 8500))
    async with TestClient(TestServer(dashboard.app())) as client:
        own = await client.get("/", headers={"Host": "127.0.0.1:8500"})
        local = await client.get("/", headers={"Host": "localhost:8500"})
        rebound = await client.get("/", headers={"Host": "attacker.example:8500"})
        assert (own.status, local.status, rebound.status) == (200, 200, 421)
        assert "answers only to" in await rebound.text()
