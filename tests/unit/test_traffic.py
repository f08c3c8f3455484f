"""How requests are named and counted (interlock.wire.traffic), on a fake clock: nginx's lines
with retries across tasks, HAProxy's counters across a reload, the 10-second rates, and the
routes table of `interlock routes` with traffic summed over proxies."""

from __future__ import annotations

from interlock.wire.status import RouteRow, with_traffic
from interlock.wire.traffic import (
    HAProxyCounters,
    Namer,
    RouteTraffic,
    Sample,
    Tally,
    TrafficNames,
    nginx_sample,
)

NAMES = TrafficNames(
    "edge",
    "/sock",
    (("shop", "shop.test", "/"), ("api", "api.test", "/v1"), ("api", "www.test", "/api")),
    (("shop", "10.0.0.5:80", "stable"), ("shop", "10.0.0.6:80", "canary"), ("api", "10.0.0.7:8080", "api")),
)


def line(*fields: str) -> bytes:
    return b"<190>Dec  3 09:07:43 interlock: " + "|".join(fields).encode()


def test_an_nginx_line_names_host_path_and_the_service_whose_task_answered() -> None:
    namer = Namer(NAMES)
    sample = nginx_sample(line("shop.test", "shop", "200", "512", "0.004", "10.0.0.6:80", "200"), namer)
    assert sample == Sample("shop.test", "/", "canary", 1, 1, 512, 0, 0, 0.004)
    # One upstream on two hosts: the server name tells which route.
    sample = nginx_sample(line("www.test", "api", "404", "10", "0.010", "10.0.0.7:8080", "404"), namer)
    assert sample is not None and (sample.host, sample.path, sample.status_class) == ("www.test", "/api", 3)


def test_a_retry_counts_the_failed_try_and_names_the_task_that_answered() -> None:
    sample = nginx_sample(
        line("shop.test", "shop", "200", "99", "0.2", "10.0.0.5:80, 10.0.0.6:80", "502, 200"), Namer(NAMES)
    )
    assert sample is not None
    assert (sample.service, sample.upstream_errors, sample.retries) == ("canary", 1, 1)


def test_unknown_hosts_and_unreadable_lines() -> None:
    namer = Namer(NAMES)
    sample = nginx_sample(line("_", "-", "503", "190", "0.000", "-", "-"), namer)
    assert sample is not None and (sample.host, sample.path, sample.service) == ("(unknown)", "", "")
    assert nginx_sample(b"garbage", namer) is None
    assert nginx_sample(line("shop.test", "shop", "x", "1", "0", "-", "-"), namer) is None


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
    tally = Tally()
    for seconds in (0.001, 0.02, 0.02, 3.0, 60.0):
        tally.add(Sample("shop.test", "/", "stable", 1, seconds=seconds), 1.0)
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
