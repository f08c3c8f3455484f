"""The core's publishing and API on a fake swarm and a fake clock (no Docker)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from interlock.config import default_config, load_config
from interlock.edges.peer_http import signed_headers
from interlock.edges.role_identities import new_pair
from interlock.render.bundle import RenderedConfig
from interlock.roles.core import Core
from interlock.testing.fakes import FakeClock, FakeSwarm
from interlock.wire.certificates import CertificateBundle
from interlock.wire.delta import ClusterStateDelta, apply_delta
from interlock.wire.messages import (
    ClusterState,
    ClusterTraffic,
    ConfigRef,
    ExtensionReport,
    ProxyConfig,
    ProxyReport,
    ProxyTraffic,
    decode,
    encode,
)
from interlock.wire.traffic import RouteTraffic

TOKEN = "extension-token-0123456789"
OPERATOR = "operator-token-0123456789"


def app_service(name: str, replicas: int = 1) -> dict[str, Any]:
    return {
        "name": name,
        "networks": ["n"],
        "replicas": replicas,
        "labels": {"com.docker.lb.hosts": f"{name}.local", "com.docker.lb.port": "80"},
    }


@pytest.fixture
async def core(tmp_path: Path) -> AsyncIterator[tuple[Core, FakeSwarm, TestClient[Any, Any]]]:
    source = FakeSwarm(secrets=("t.crt", "t.key"))
    (tmp_path / "certificates").mkdir()
    core = Core(
        default_config(),
        source,
        None,
        service_name="interlock",
        extension_tokens={"default": TOKEN},
        operator_token=OPERATOR,
        core_url="http://tasks.interlock:8080",
        clock=FakeClock(),
        certificates_dir=tmp_path / "certificates",
    )
    client = TestClient(TestServer(core.api.app()))
    await client.start_server()
    yield core, source, client
    await client.close()


async def get(
    client: TestClient[Any, Any], path: str, params: dict[str, str] | None = None, *, token: str = ""
) -> ClientResponse:
    """A GET signed as the roles sign them: with the operator's token for the status, else with
    the extension's."""
    path_qs = path + ("?" + urlencode(params) if params else "")
    key = token or (OPERATOR if path == "/v1/status" else TOKEN)
    return await client.get(path_qs, headers=signed_headers(key, "GET", path_qs))


async def post(client: TestClient[Any, Any], path: str, body: bytes, *, token: str = TOKEN) -> ClientResponse:
    return await client.post(path, data=body, headers=signed_headers(token, "POST", path, body))


async def test_nothing_is_published_before_the_first_full_list(core: Any) -> None:
    instance, _, client = core
    assert (await client.get("/health")).status == 503
    response = await get(client, "/v1/clusters/default/state", {"wait": "0"})
    assert response.status == 304
    await instance.watcher.resync()
    assert (await client.get("/health")).status == 200


async def test_api_refuses_calls_without_the_token(core: Any) -> None:
    instance, _, client = core
    await instance.watcher.resync()
    for headers in ({}, {"Authorization": "Bearer wrong-token-000000000"}, {"Authorization": TOKEN}):
        assert (await client.get("/v1/clusters/default/state", headers=headers)).status == 401
        assert (await client.get("/v1/status", headers=headers)).status == 401
        assert (await client.post("/v1/clusters/default/report", data=b"{}", headers=headers)).status == 401


async def test_each_extension_acts_only_for_its_own_cluster_and_only_the_operator_reads_the_status() -> None:
    config = load_config("[Extensions.default]\n[Extensions.east]\nServiceCluster = 'east'\nPublishMode = 'host'\n")
    tokens = {"default": "default-token-0123456789", "east": "east-token-0123456789abc"}
    core = Core(
        config,
        FakeSwarm(extensions=("default", "east")),
        None,
        service_name="interlock",
        extension_tokens=tokens,
        operator_token=OPERATOR,
        core_url="http://unused",
        clock=FakeClock(),
    )
    await core.watcher.resync()
    async with TestClient(TestServer(core.api.app())) as client:
        assert (await get(client, "/v1/clusters/east/state", token=tokens["east"])).status == 200
        # East's extension (or proxy, or anyone holding its token) cannot follow or report for default.
        assert (await get(client, "/v1/clusters/default/state", token=tokens["east"])).status == 401
        report = encode(ExtensionReport("default", "", None, "forged"))
        assert (await post(client, "/v1/clusters/default/report", report, token=tokens["east"])).status == 401
        assert core.board.slots["default"].report is None
        # A cluster not configured has no token at all.
        assert (await get(client, "/v1/clusters/west/state", token=tokens["east"])).status == 401
        assert (await get(client, "/v1/status", token=tokens["default"])).status == 401
        assert (await get(client, "/v1/status")).status == 200


async def test_versions_change_only_when_routing_changes_and_long_poll_waits(core: Any) -> None:
    instance, source, client = core
    source.set_apps({"services": [app_service("a")]}, event=False)
    await instance.watcher.resync()
    first = decode(await (await get(client, "/v1/clusters/default/state")).read(), ClusterState)
    assert [h.name for h in first.routing.hosts] == ["a.local"]
    await instance.watcher.resync()  # same swarm: same state, nothing new to send
    unchanged = await get(client, "/v1/clusters/default/state", {"after": first.tag, "wait": "0.2"})
    assert unchanged.status == 304
    source.set_apps({"services": [app_service("a", replicas=2)]}, event=False)
    await instance.watcher.resync()
    second = decode(
        await (await get(client, "/v1/clusters/default/state", {"after": first.tag})).read(),
        ClusterState,
    )
    assert second.version == first.version + 1
    assert len(second.routing.upstreams[0].servers) == 2


async def test_status_shows_routes_problems_and_what_proxies_serve(core: Any) -> None:
    """...and each route's traffic, summed over the cluster's proxies."""
    instance, source, client = core
    source.set_apps(
        {"services": [app_service("a"), {"name": "bad", "networks": ["n"], "labels": {"com.docker.lb.hosts": "x;y"}}]},
        event=False,
    )
    await instance.watcher.resync()
    report = ExtensionReport(
        "default",
        "",
        ConfigRef(1, RenderedConfig("# cfg1", "cfg1", "t", "tgt1").digest, "cfg1", "tgt1"),
        "",
        (
            ProxyReport("proxy1", "cfg1", "d", True, targets_id="tgt1", target_updates=3, certificates="c1"),
            ProxyReport("proxy2", "cfg1", "d", True),
        ),
    )
    assert (await post(client, "/v1/clusters/default/report", encode(report))).status == 200
    traffic = ClusterTraffic(
        (
            ProxyTraffic("proxy1", (RouteTraffic("a.local", "/", "a", (0, 5, 0, 0, 1), 900, 1, 0, 0.5, 0.1),), 4),
            ProxyTraffic("proxy2", (RouteTraffic("a.local", "/", "a", (0, 4, 0, 0, 0), 1, 0, 0, 0.5, 0.0),)),
            # A proxy the extension no longer lists (gone) is not counted.
            ProxyTraffic("gone", (RouteTraffic("a.local", "/", "a", (0, 99, 0, 0, 0), 1, 0, 0, 9.0, 0.0),)),
        )
    )
    assert (await post(client, "/v1/clusters/default/traffic", encode(traffic))).status == 200
    status = await (await get(client, "/v1/status")).json()
    assert status["routes"][0]["host"] == "a.local"
    assert status["routes"][0]["responses"] == [0, 9, 0, 0, 1]
    assert status["routes"][0]["rps"] == 1.0
    assert status["routes"][0]["share_5xx"] == 0.1
    assert status["problems"][0]["service"] == "bad"
    assert status["clusters"][0]["config_id"] == "cfg1"
    assert status["clusters"][0]["proxies"][0] == {
        "proxy": "proxy1",
        "config_id": "cfg1",
        "targets_id": "tgt1",
        "ok": True,
        "error": "",
        "reloads": 0,
        "target_updates": 3,
        "active_connections": 4,
        "certificates": "c1",
    }


def tls_service(name: str) -> dict[str, Any]:
    service = app_service(name)
    service["labels"] = {**service["labels"], "com.docker.lb.ssl_cert": "t.crt", "com.docker.lb.ssl_key": "t.key"}
    return service


async def test_a_certificate_pair_the_core_cannot_load_leaves_out_its_service_for_good(core: Any) -> None:
    instance, source, client = core
    (instance.certificates.shelf.directory / "t.crt").write_text("not a certificate\n")
    (instance.certificates.shelf.directory / "t.key").write_text("not a key\n")
    source.set_apps({"services": [app_service("a"), tls_service("t")]}, event=False)
    await instance.watcher.resync()
    state = decode(await (await get(client, "/v1/clusters/default/state")).read(), ClusterState)
    assert [h.name for h in state.routing.hosts] == ["a.local"]
    (problem,) = state.problems
    assert problem.service == "t" and problem.label == "com.docker.lb.ssl_cert"
    assert "cannot be loaded ('t.crt' is not a PEM certificate" in problem.reason
    # The service stays out, and a resync does not bring it back.
    await instance.watcher.resync()
    unchanged = await get(client, "/v1/clusters/default/state", {"after": state.tag, "wait": "0.2"})
    assert unchanged.status == 304


async def test_certificates_go_to_their_extension_over_tls_only_and_as_they_change(core: Any) -> None:
    instance, source, client = core
    both, _ = new_pair("t.local")
    (instance.certificates.shelf.directory / "t.crt").write_bytes(both)
    (instance.certificates.shelf.directory / "t.key").write_bytes(both)
    source.set_apps({"services": [app_service("a"), tls_service("t")]}, event=False)
    await instance.watcher.resync()
    refused = await get(client, "/v1/clusters/default/certificates")
    assert refused.status == 403 and "over TLS only" in await refused.text()
    instance.api.plain_keys = True  # as if over the pinned-TLS listener
    bundle = decode(await (await get(client, "/v1/clusters/default/certificates")).read(), CertificateBundle)
    assert [host for host, _ in bundle.hosts] == ["t.local"]
    (certificate,) = bundle.certificates
    assert certificate.chain.startswith("-----BEGIN CERTIFICATE-----") and "PRIVATE KEY" in certificate.key
    unchanged = await get(client, "/v1/clusters/default/certificates", {"after": bundle.tag, "wait": "0.2"})
    assert unchanged.status == 304
    other = await get(client, "/v1/clusters/default/certificates", token="not-the-extension-token-000")
    assert other.status == 401


@pytest.mark.parametrize("wait", ["nan", "inf", "-1", "soon"])
async def test_a_long_poll_with_a_wait_that_is_no_number_of_seconds_is_refused(core: Any, wait: str) -> None:
    instance, _, client = core
    await instance.watcher.resync()
    response = await get(client, "/v1/clusters/default/state", {"wait": wait})
    assert response.status == 400
    assert "a number of seconds from 0 to 55 is allowed" in await response.text()


async def test_a_configuration_that_is_not_intact_is_not_kept(core: Any) -> None:
    """What the core stores for new proxy tasks is only what its extension rendered: a
    configuration whose digest or id does not match its text is refused, the previous kept."""
    instance, _, client = core
    await instance.watcher.resync()
    text = "# config 0123456789abcdef\nevents {}\n"
    good = RenderedConfig(text, "0123456789abcdef")
    intact = ProxyConfig(1, good.digest, good.config_id, good.text)
    tampered = ProxyConfig(2, good.digest, good.config_id, text + "http { lua_code_cache off; }\n")
    no_id = ProxyConfig(3, RenderedConfig("events {}\n", "x").digest, "0123456789abcdef", "events {}\n")
    assert (await post(client, "/v1/clusters/default/config", encode(intact))).status == 200
    for bad, why in ((tampered, "its digest is not that of its text"), (no_id, "does not carry its id")):
        response = await post(client, "/v1/clusters/default/config", encode(bad))
        assert response.status == 422 and why in (await response.json())["error"]
        assert instance.board.slots["default"].config == intact
        status = await (await get(client, "/v1/status")).json()
        assert why in status["clusters"][0]["validation_error"]


async def test_reports_name_the_configuration_and_the_core_asks_for_its_body_only_when_it_needs_one(
    core: Any,
) -> None:
    """The first configuration an extension names is asked for at once, on the state long-poll
    (202); a later one only when the core must store it; a body over the limit is a 413."""
    instance, _, client = core
    await instance.watcher.resync()
    state = decode(await (await get(client, "/v1/clusters/default/state")).read(), ClusterState)
    first = RenderedConfig("# c1\n", "c1")
    ref = ConfigRef(1, first.digest, "c1", "", 10)
    await post(client, "/v1/clusters/default/report", encode(ExtensionReport("default", "", ref)))
    asked = await get(client, "/v1/clusters/default/state", {"after": state.tag, "wait": "5"})
    assert asked.status == 202 and await asked.json() == {"send": "config"}
    idle = await get(client, "/v1/clusters/default/state", {"after": state.tag, "wait": "0.1"})
    assert idle.status == 304, "asked once"
    body = encode(ProxyConfig(1, first.digest, "c1", first.text))
    assert (await post(client, "/v1/clusters/default/config", body)).status == 200
    second = RenderedConfig("# c2\n", "c2")
    await post(
        client, "/v1/clusters/default/report", encode(ExtensionReport("default", "", ConfigRef(2, second.digest, "c2")))
    )
    idle = await get(client, "/v1/clusters/default/state", {"after": state.tag, "wait": "0.1"})
    assert idle.status == 304, "a newer configuration alone is not asked for"
    assert instance.board.slots["default"].config_stale


async def test_an_extension_holding_the_state_before_gets_only_the_change(core: Any) -> None:
    instance, source, client = core
    source.set_apps({"services": [app_service(f"a{i}") for i in range(50)]}, event=False)
    await instance.watcher.resync()
    first = decode(await (await get(client, "/v1/clusters/default/state")).read(), ClusterState)
    source.set_apps({"services": [app_service(f"a{i}") for i in range(51)]}, event=False)
    await instance.watcher.resync()
    whole = await get(client, "/v1/clusters/default/state", {"after": first.tag})
    change = await get(client, "/v1/clusters/default/state", {"after": first.tag, "delta": "1"})
    assert (whole.status, change.status) == (200, 226)
    newest = decode(await whole.read(), ClusterState)
    delta = decode(await change.read(), ClusterStateDelta)
    assert [h.name for h in delta.hosts] == ["a50.local"]
    assert apply_delta(first, delta) == newest
    # One that holds an older state than the one before gets the whole state.
    older = await get(client, "/v1/clusters/default/state", {"after": "e.0", "delta": "1"})
    assert older.status == 200
