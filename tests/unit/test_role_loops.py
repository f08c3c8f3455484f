"""Each role loop catches every Interlock error at its boundary, reports it, and goes on: a
malformed message from a peer never stops an extension or a proxy agent (fake peers, fake
nginx; no network)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from interlock.config import default_config
from interlock.edges.offline_check import CheckResult
from interlock.errors import PeerUnavailable
from interlock.model.routing import Routing
from interlock.roles import agent as agent_module
from interlock.roles import extension as extension_module
from interlock.roles.agent import Agent, leave
from interlock.roles.extension import Extension
from interlock.testing.fakes import FakeNginx, FakePeer
from interlock.wire.messages import ClusterState, ExtensionReport, ProxyConfig, ProxyReport, decode, encode
from interlock.wire.traffic import TrafficNames

SETTINGS = default_config().extensions["default"].model_dump(by_alias=True, mode="json")


async def until(check: Callable[[], bool], what: str) -> None:
    for _ in range(500):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{what}: not within 5 s")


@pytest.fixture(autouse=True)
def no_nginx_t(monkeypatch: pytest.MonkeyPatch) -> None:
    """Validation itself is tested with real nginx elsewhere; here it always passes."""
    monkeypatch.setattr(extension_module, "check_proxy_rendered", lambda text, routing, ext: CheckResult(True, ""))


async def test_the_extension_goes_on_after_a_malformed_or_invalid_state() -> None:
    good = ClusterState(3, "", "default", Routing(cluster=""), SETTINGS, epoch="e")
    core = FakePeer(
        (200, b"not json"),
        (200, encode(ClusterState(2, "", "default", Routing(cluster=""), {"Bogus": 1}, epoch="e"))),
        PeerUnavailable("connection refused"),
        (200, encode(good)),
    )
    extension = Extension(name="default", core=core, proxy_token="p" * 20)
    task = asyncio.create_task(extension.follow_core())
    await until(lambda: extension.current is not None, "the good state served")
    assert extension.current is not None and extension.current.version == 3
    assert extension.validation_error == "", "cleared once a state validates again"
    task.cancel()


async def test_a_bad_state_is_reported_and_the_last_good_configuration_kept() -> None:
    good = ClusterState(1, "", "default", Routing(cluster=""), SETTINGS, epoch="e")
    core = FakePeer((200, encode(good)), (200, b"{}"))
    extension = Extension(name="default", core=core, proxy_token="p" * 20)
    task = asyncio.create_task(extension.follow_core())
    await until(lambda: bool(extension.validation_error), "the bad state reported")
    assert "not a valid ClusterState" in extension.validation_error
    assert extension.current is not None and extension.current.version == 1
    task.cancel()


async def test_the_extension_sends_its_configuration_when_the_core_asks_and_reports_only_its_ids() -> None:
    good = ClusterState(1, "", "default", Routing(cluster=""), SETTINGS, epoch="e")
    core = FakePeer((200, encode(good)), (202, b'{"send": "config"}'))
    extension = Extension(name="default", core=core, proxy_token="p" * 20)
    follow = asyncio.create_task(extension.follow_core())
    report = asyncio.create_task(extension.report_to_core())
    await until(
        lambda: {"/v1/clusters/default/config", "/v1/clusters/default/report"} <= {path for path, _ in core.posts},
        "the configuration and a report sent",
    )
    follow.cancel()
    report.cancel()
    sent = {path: body for path, body in core.posts}
    assert decode(sent["/v1/clusters/default/config"], ProxyConfig) == extension.current
    said = decode(sent["/v1/clusters/default/report"], ExtensionReport)
    assert said.config is not None and extension.current is not None
    assert (said.config.digest, said.config.size) == (extension.current.digest, len(encode(extension.current)))
    assert len(sent["/v1/clusters/default/report"]) < 1000


async def test_the_agent_goes_on_after_a_malformed_configuration() -> None:
    nginx = FakeNginx()
    extension = FakePeer((200, b"[1, 2]"), (200, encode(ProxyConfig(1, "d1", "id1", "text"))))
    agent = Agent(extension=extension, proxy=nginx, name="p1")
    task = asyncio.create_task(agent.follow())
    await until(lambda: nginx.installs == ["id1"], "the good configuration installed")
    assert agent.error == ""
    # What it serves is reported after each answer, the failure included.
    assert len(extension.posts) >= 2
    task.cancel()


async def test_the_agent_keeps_serving_when_nginx_refuses_a_configuration() -> None:
    nginx = FakeNginx()
    agent = Agent(extension=FakePeer(), proxy=nginx, name="p1")
    await agent.apply(ProxyConfig(1, "d1", "id1", "text"))
    nginx.refuse = "nginx: [emerg] unknown directive"
    await agent.apply(ProxyConfig(2, "d2", "id2", "bad"))
    assert nginx.config_id == "id1" and "unknown directive" in agent.error


async def test_a_stopping_proxy_does_not_wait_for_its_extension_to_hear_it_leaves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The proxy stops while the agent tells the extension it leaves, and an extension that
    never answers holds the agent up only briefly: Swarm kills a proxy still running at the end
    of its grace period."""

    class Unanswering(FakePeer):
        async def post(self, path: str, body: bytes, *, timeout: float = 10) -> tuple[int, bytes]:
            self.posts.append((path, body))
            await asyncio.Event().wait()
            raise AssertionError("never answered")

    monkeypatch.setattr(agent_module, "LEAVING_REPORT_TIMEOUT", 0.05)
    nginx, extension = FakeNginx(), Unanswering()
    agent = Agent(extension=extension, proxy=nginx, name="p1")
    await agent.apply(ProxyConfig(1, "d1", "id1", "text"))
    nginx.started = True
    await asyncio.wait_for(leave(agent, []), 10)
    assert not nginx.started, "the proxy was stopped"
    assert [path for path, _ in extension.posts] == ["/v1/report"]
    assert decode(extension.posts[0][1], ProxyReport).leaving


async def test_the_agent_reports_what_its_meter_counted() -> None:
    """Each report carries the traffic counted so far (what `interlock routes` sums up)."""
    names = TrafficNames("edge", (("shop", "shop.test", "/"),), (("shop", "10.0.0.5:80", "stable"),))
    extension = FakePeer()
    agent = Agent(extension=extension, proxy=FakeNginx(), name="p1")
    await agent.apply(ProxyConfig(1, "d1", "id1", "text", names=names))
    counters = "shop.test\tshop\t10.0.0.5:80\t2\tn\t2\nshop.test\tshop\t10.0.0.5:80\t5\tn\t1\n"
    agent.meter.nginx.read(counters, agent.meter.namer, agent.meter.tally, 100.0)
    await agent.report()
    report = decode(extension.posts[-1][1], ProxyReport)
    (traffic,) = report.traffic
    assert (traffic.host, traffic.path, traffic.service) == ("shop.test", "/", "stable")
    assert traffic.responses == (0, 2, 0, 0, 1)
