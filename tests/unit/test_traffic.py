"""How requests are named and counted (interlock.wire.traffic), on a fake clock: nginx's Lua
counters with retries across tasks, HAProxy's counters across a reload, the 10-second rates, and the
routes table of `interlock routes` with traffic summed over proxies."""

from __future__ import annotations

from interlock.wire.haproxy_counters import HAProxyCounters
from interlock.wire.status import RouteRow, with_traffic
from interlock.wire.traffic import (
    Namer,
    NginxCounters,
    RouteTraffic,
    Sample,
    Tally,
    TrafficNames,
)

NAMES = TrafficNames(
    "edge",
    (("shop", "shop.test", "/"), ("api", "api.test", "/v1"), ("api", "www.test", "/api")),
    (("shop", "10.0.0.5:80", "stable"), ("shop", "10.0.0.6:80", "canary"), ("api", "10.0.0.7:8080", "api")),
)


def counters(*lines: str) -> str:
    return "".join(line.replace("|", "\t") + "\n" for line in lines)


def test_nginx_counters_name_host_path_and_the_service_whose_task_answered() -> None:
    namer, tally, reader = Namer(NAMES), Tally(), NginxCounters()
    reader.read(
        counters(
            "shop.test|shop|10.0.0.6:80|2|n|3",
            "shop.test|shop|10.0.0.6:80|2|b|512",
            "shop.test|shop|10.0.0.5:80|5|n|1",
            "shop.test|shop|10.0.0.5:80|5|e|2",
            "shop.test|shop|10.0.0.5:80|5|r|1",
            # An upstream one service serves: no address read, the service is that one.
            "api.test|api|*|2|n|6",
            # One upstream on two hosts: the server name tells which route.
            "www.test|api|10.0.0.7:8080|4|n|2",
            "_|-|*|5|n|4",
        ),
        namer,
        tally,
        1.0,
    )
    counts = {(t.host, t.path, t.service): t for t in tally.report(1.0)}
    assert counts["shop.test", "/", "canary"].responses == (0, 3, 0, 0, 0)
    assert counts["shop.test", "/", "canary"].bytes_sent == 512
    stable = counts["shop.test", "/", "stable"]
    assert (stable.responses, stable.upstream_errors, stable.retries) == ((0, 0, 0, 0, 1), 2, 1)
    assert counts["www.test", "/api", "api"].responses == (0, 0, 0, 2, 0)
    assert counts["api.test", "/v1", "api"].responses == (0, 6, 0, 0, 0)
    # A host no service routes: nginx's default server, no task.
    assert counts["(unknown)", "", ""].responses == (0, 0, 0, 0, 4)


def test_nginx_totals_become_increments_and_survive_an_eviction() -> None:
    namer, tally, reader = Namer(NAMES), Tally(), NginxCounters()
    for total in (5, 9, 2):  # the last: evicted from the shared dict, counted again from 0
        reader.read(counters(f"shop.test|shop|10.0.0.5:80|2|n|{total}"), namer, tally, 1.0)
    (traffic,) = tally.report(1.0)
    assert traffic.responses == (0, 11, 0, 0, 0)
    reader.read("garbage\nshop.test\tshop\tx\n", namer, tally, 1.0)
    assert tally.unreadable == 2


def test_rates_cover_the_last_ten_whole_seconds() -> None:
    tally = Tally()
    for second in range(100, 120):
        for _ in range(3):
            tally.add(Sample("shop.test", "/", "stable", 1), second + 0.5)
        tally.add(Sample("shop.test", "/", "stable", 4), second + 0.5)
    (traffic,) = tally.report(120.2)
    assert traffic.responses == (0, 60, 0, 0, 20)
    assert (traffic.rate, traffic.rate_5xx) == (4.0, 1.0)
    # Traffic stopped: the rate falls to 0 within the window, the counters stay.
    (later,) = tally.report(131.0)
    assert (later.rate, later.requests) == (0.0, 80)


def test_the_latency_histogram_is_cumulative() -> None:
    namer, tally, reader = Namer(NAMES), Tally(), NginxCounters()
    reader.read(
        counters("shop.test|shop|h1|1", "shop.test|shop|h3|2", "shop.test|shop|h10|1", "shop.test|shop|h12|1"),
        namer,
        tally,
        1.0,
    )
    reader.read(counters("shop.test|shop|h1|1", "shop.test|shop|s|63.041"), namer, tally, 2.0)
    buckets, total = tally.histogram(("shop.test", "/"))
    assert dict(buckets)["0.005"] == 1 and dict(buckets)["0.025"] == 3 and dict(buckets)["5.0"] == 4
    assert buckets[-1] == ("+Inf", 5) and total == 63.041


STAT_HEADER = (
    "# pxname,svname,scur,bout,econ,eresp,wretr,wredis,type,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,addr,"
)


def stat(rows: list[str]) -> str:
    return "\n".join([STAT_HEADER, *rows]) + "\n"


def test_haproxy_counters_become_samples_per_service_and_survive_a_reload() -> None:
    counters, namer, tally = HAProxyCounters(), Namer(NAMES), Tally()

    def read(rows: list[str]) -> None:
        for sample in counters.samples(stat(rows), namer):
            tally.add(sample, 1.0)

    read(
        [
            "interlock_http,FRONTEND,5,0,0,0,0,0,0,0,0,0,0,0,,",
            "interlock_tls,FRONTEND,2,0,0,0,0,0,0,0,0,0,0,0,,",
            "interlock_terminator,FRONTEND,2,0,0,0,0,0,0,0,0,0,0,0,,",
            "interlock_status,FRONTEND,1,0,0,0,0,0,0,0,0,0,0,0,,",
            "shop,s1,0,100,0,0,0,0,2,0,10,0,0,0,10.0.0.5:80,",
            "shop,s2,0,50,1,0,1,0,2,0,5,0,0,0,10.0.0.6:80,",
            # The backend counts its servers' answers plus its own (two 503s without a task).
            "shop,BACKEND,0,170,1,0,1,0,1,0,15,0,0,2,,",
            "interlock_status,BACKEND,0,0,0,0,0,0,1,0,99,0,0,0,,",
        ]
    )
    counts = {(t.host, t.service): t for t in tally.report(1.0)}
    assert counts["shop.test", "stable"].responses == (0, 10, 0, 0, 0)
    assert counts["shop.test", "canary"].responses == (0, 5, 0, 0, 0)
    assert counts["shop.test", "canary"].upstream_errors == 1 and counts["shop.test", "canary"].retries == 1
    assert counts["shop.test", ""].responses == (0, 0, 0, 0, 2) and counts["shop.test", ""].bytes_sent == 20
    assert counters.active_connections == 7
    # A reload: a new worker starts from zero; its counts add to what was counted.
    read(["shop,s1,0,10,0,0,0,0,2,0,1,0,0,0,10.0.0.5:80,", "shop,BACKEND,0,10,0,0,0,0,1,0,1,0,0,0,,"])
    read(["shop,s1,0,30,0,0,0,0,2,0,3,0,0,0,10.0.0.5:80,", "shop,BACKEND,0,30,0,0,0,0,1,0,3,0,0,0,,"])
    counts = {(t.host, t.service): t for t in tally.report(1.0)}
    assert counts["shop.test", "stable"].responses == (0, 13, 0, 0, 0)


def test_routes_get_the_traffic_of_every_proxy_of_their_cluster() -> None:
    rows = (
        RouteRow("edge", "shop.test", "/", ("stable",), ("10.0.0.5:80",), "none"),
        RouteRow("other", "shop.test", "/", ("x",), ("10.0.1.5:80",), "none"),
    )
    proxy1 = RouteTraffic("shop.test", "/", "stable", (0, 8, 0, 0, 2), 1, 0, 0, 2.0, 0.5)
    proxy2 = RouteTraffic("shop.test", "/", "canary", (0, 10, 0, 0, 0), 1, 0, 0, 2.0, 0.0)
    edge, other = with_traffic(rows, {"edge": [proxy1, proxy2]})
    assert (edge.responses, edge.requests, edge.rps, edge.share_5xx) == ((0, 18, 0, 0, 2), 20, 4.0, 0.125)
    assert other.requests == 0 and other.rps == 0.0


def test_a_reading_taken_while_tasks_move_names_the_tasks_of_both_configurations() -> None:
    moved = TrafficNames("edge", NAMES.routes, (("shop", "10.0.0.9:80", "stable"), ("api", "10.0.0.7:8080", "api")))
    counters, tally = HAProxyCounters(), Tally()
    # The agent names the new configuration's tasks before the proxy takes it: a request the old
    # task answered, read after the move, and one the new task answered, read before the agent
    # heard back from the proxy, both keep their service.
    namer = Namer(moved, previous=Namer(NAMES))
    rows = [
        "shop,s1,0,10,0,0,0,0,2,0,1,0,0,0,10.0.0.5:80,",
        "shop,s2,0,10,0,0,0,0,2,0,1,0,0,0,10.0.0.9:80,",
        "shop,BACKEND,0,20,0,0,0,0,1,0,2,0,0,0,,",
    ]
    for sample in counters.samples(stat(rows), namer):
        tally.add(sample, 1.0)
    assert {(t.service, t.responses) for t in tally.report(1.0)} == {("stable", (0, 2, 0, 0, 0))}
    # One level only: the configuration before the previous one names nothing any more.
    assert Namer(NAMES, previous=namer).service("shop", "10.0.0.5:80") == "stable"
    assert Namer(moved, previous=Namer(moved, previous=Namer(NAMES))).service("shop", "10.0.0.5:80") == ""


def responses_after(*readings: list[str]) -> set[tuple[str, tuple[int, ...]]]:
    """(service, responses by class) counted over successive `show stat` readings."""
    counters, namer, tally = HAProxyCounters(), Namer(NAMES), Tally()
    for rows in readings:
        for sample in counters.samples(stat(rows), namer):
            tally.add(sample, 1.0)
    return {(t.service, t.responses) for t in tally.report(1.0)}


def test_a_reading_between_a_servers_count_and_its_backends_names_no_answer_without_a_task() -> None:
    # HAProxy counts a server's response when its head arrives, the backend's when the stream
    # ends: a reading in between sees the server one ahead, the next one sees the backend catch up.
    assert responses_after(
        ["shop,s1,0,100,0,0,0,0,2,0,5,0,0,0,10.0.0.5:80,", "shop,BACKEND,0,100,0,0,0,0,1,0,4,0,0,0,,"],
        ["shop,s1,0,100,0,0,0,0,2,0,5,0,0,0,10.0.0.5:80,", "shop,BACKEND,0,100,0,0,0,0,1,0,5,0,0,0,,"],
        # Then a real answer without a task (a 503) is still one.
        ["shop,s1,0,100,0,0,0,0,2,0,6,0,0,0,10.0.0.5:80,", "shop,BACKEND,0,100,0,0,0,0,1,0,5,0,0,1,,"],
        ["shop,s1,0,100,0,0,0,0,2,0,6,0,0,0,10.0.0.5:80,", "shop,BACKEND,0,100,0,0,0,0,1,0,6,0,0,1,,"],
    ) == {("stable", (0, 6, 0, 0, 0)), ("", (0, 0, 0, 0, 1))}


def test_a_slot_back_from_maintenance_with_another_task_counts_only_what_that_task_answered() -> None:
    # A slot out of rotation is not in `show stat no-maint`, but HAProxy keeps its totals.
    assert responses_after(
        ["shop,s1,0,100,0,0,0,0,2,0,10,0,0,0,10.0.0.5:80,", "shop,BACKEND,0,100,0,0,0,0,1,0,10,0,0,0,,"],
        ["shop,BACKEND,0,100,0,0,0,0,1,0,10,0,0,0,,"],
        ["shop,s1,0,120,0,0,0,0,2,0,12,0,0,0,10.0.0.6:80,", "shop,BACKEND,0,120,0,0,0,0,1,0,12,0,0,0,,"],
    ) == {("stable", (0, 10, 0, 0, 0)), ("canary", (0, 2, 0, 0, 0))}
