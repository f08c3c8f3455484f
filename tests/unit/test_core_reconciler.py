"""The core's reconciler and board on a fake swarm: what services it creates, updates, recreates
and removes, and which proxy configuration it stores. No Docker."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from interlock.config import CoreConfig, load_config
from interlock.constants import LABEL_SPEC
from interlock.model.docker_json import snapshot_from_api
from interlock.render.bundle import RenderedConfig
from interlock.roles.core.board import Board
from interlock.roles.core.reconciler import BODY_WAIT, RESYNC, Reconciler
from interlock.testing.fakes import FakeClock, FakeSwarm
from interlock.wire.messages import ConfigRef, ExtensionReport, ProxyConfig

CONFIG = load_config("""
[Extensions.default]
PublishMode = "host"
[Extensions.east]
ServiceCluster = "east"
ProxyReplicas = 1
""")
TLS_APP: dict[str, Any] = {
    "name": "shop",
    "networks": ["apps"],
    "labels": {
        "com.docker.lb.hosts": "shop.local",
        "com.docker.lb.port": "80",
        "com.docker.lb.ssl_cert": "shop.crt",
        "com.docker.lb.ssl_key": "shop.key",
    },
}


def setup(config: CoreConfig = CONFIG, apps: list[dict[str, Any]] | None = None) -> tuple[FakeSwarm, Board, Reconciler]:
    swarm = FakeSwarm({"services": apps or []}, secrets=("shop.crt", "shop.key"), extensions=tuple(config.extensions))
    swarm.image_ids = {"interlock:0.1.0": "sha256:one"}
    board = Board(config, gate_on_proxies=True, clock=FakeClock(), epoch="e")
    reconciler = Reconciler(config, swarm, board, owner="interlock", core_url="http://tasks.interlock:8080")
    return swarm, board, reconciler


def round_trip(swarm: FakeSwarm, board: Board, reconciler: Reconciler) -> list[tuple[str, str]]:
    """One watcher pass and one reconcile round; the writes it made."""
    before = len(swarm.writes)
    board.publish(snapshot_from_api({**swarm.list_swarm(), "secrets": swarm.list_secrets()}))
    reconciler.reconcile_once()
    return swarm.writes[before:]


def env(swarm: FakeSwarm, name: str) -> list[str]:
    service = swarm.service(name)
    assert service is not None
    return list(service["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"])


def test_first_round_creates_every_extension_and_proxy_then_nothing_changes() -> None:
    swarm, board, reconciler = setup()
    assert sorted(round_trip(swarm, board, reconciler)) == [
        ("create", "interlock-extension"),
        ("create", "interlock-extension-east"),
        ("create", "interlock-proxy"),
        ("create", "interlock-proxy-east"),
    ]
    assert round_trip(swarm, board, reconciler) == [], "an unchanged swarm is not touched"


def test_no_role_is_deployed_before_swarm_gives_the_control_network_its_subnet() -> None:
    """A role deployed without the control subnets in its environment would listen on every
    address (on a busy manager Swarm allocates a new network's subnet seconds after it is made)."""
    swarm, board, reconciler = setup()
    swarm.control_subnet = None
    assert round_trip(swarm, board, reconciler) == []
    swarm.control_subnet = "10.9.0.0/24"
    assert len(round_trip(swarm, board, reconciler)) == 4
    for role in ("interlock-extension", "interlock-proxy-east"):
        assert "INTERLOCK_CONTROL_SUBNETS=10.9.0.0/24" in env(swarm, role)


def test_a_deleted_proxy_service_is_recreated_and_nothing_else_touched() -> None:
    swarm, board, reconciler = setup()
    round_trip(swarm, board, reconciler)
    proxy = swarm.service("interlock-proxy-east")
    assert proxy is not None
    swarm.remove_service(proxy["ID"])
    assert round_trip(swarm, board, reconciler) == [("create", "interlock-proxy-east")]


def test_a_rebuilt_image_under_the_same_tag_rolls_every_role() -> None:
    swarm, board, reconciler = setup()
    round_trip(swarm, board, reconciler)
    assert "INTERLOCK_IMAGE_ID=sha256:one" in env(swarm, "interlock-proxy")
    swarm.image_ids = {"interlock:0.1.0": "sha256:two"}
    assert sorted(round_trip(swarm, board, reconciler)) == [
        ("update", "interlock-extension"),
        ("update", "interlock-extension-east"),
        ("update", "interlock-proxy"),
        ("update", "interlock-proxy-east"),
    ]
    assert "INTERLOCK_IMAGE_ID=sha256:two" in env(swarm, "interlock-extension-east")


def validated(version: int, config_id: str) -> ProxyConfig:
    rendered = RenderedConfig(f"# {config_id}\nevents {{}}\n", config_id)
    return ProxyConfig(version, rendered.digest, config_id, rendered.text)


def test_a_proxy_updated_anyway_gets_the_newest_validated_configuration() -> None:
    swarm, board, reconciler = setup()
    round_trip(swarm, board, reconciler)
    old, new = validated(1, "cfg1"), validated(2, "cfg2")
    assert board.note_config("default", old)
    board.slots["default"].report = ExtensionReport("default", "", ConfigRef.of(new, 100))
    assert round_trip(swarm, board, reconciler) == [], "a new configuration alone does not restart proxies"
    assert reconciler.to_ask == set(), "nor is its body asked for"
    # A new app on a new network: the proxy must join it, and waits for the newest configuration.
    swarm.set_apps(
        {"services": [{**TLS_APP, "labels": {k: v for k, v in TLS_APP["labels"].items() if "ssl" not in k}}]}
    )
    assert round_trip(swarm, board, reconciler) == []
    assert reconciler.to_ask == {"default"}, "the core asks its extension for the body"
    assert board.note_config("default", new)
    writes = round_trip(swarm, board, reconciler)
    assert writes[0] == ("create-config", f"interlock-proxy-default-{new.digest[:12]}")
    assert ("update", "interlock-proxy") in writes
    proxy = swarm.service("interlock-proxy")
    assert proxy is not None
    mounted = proxy["Spec"]["TaskTemplate"]["ContainerSpec"]["Configs"]
    assert [c["ConfigName"] for c in mounted] == [f"interlock-proxy-default-{new.digest[:12]}"]
    assert round_trip(swarm, board, reconciler) == [], "the stored configuration does not change the spec hash"


def test_a_proxy_update_goes_on_with_the_configuration_held_when_the_newest_does_not_come() -> None:
    swarm, board, reconciler = setup()
    round_trip(swarm, board, reconciler)
    old, new = validated(1, "cfg1"), validated(2, "cfg2")
    board.note_config("default", old)
    board.slots["default"].report = ExtensionReport("default", "", ConfigRef.of(new, 100))
    swarm.set_apps(
        {"services": [{**TLS_APP, "labels": {k: v for k, v in TLS_APP["labels"].items() if "ssl" not in k}}]}
    )
    assert round_trip(swarm, board, reconciler) == [] and reconciler.to_ask == {"default"}
    assert isinstance(board.clock, FakeClock)
    board.clock.now += BODY_WAIT + 1
    writes = round_trip(swarm, board, reconciler)
    assert writes[0] == ("create-config", f"interlock-proxy-default-{old.digest[:12]}")


def test_a_configuration_a_starting_task_or_a_rollback_would_mount_is_not_removed() -> None:
    """Docker lets a config go once no service's spec names it, but a task made from the spec
    before (still starting) mounts it, and so would a rollback to the previous spec. Seen on a
    cluster: two proxy updates close together, the first one's new task failed "config not
    found", and the roll took out both proxies at once."""
    swarm, board, reconciler = setup()
    round_trip(swarm, board, reconciler)

    def update_to(version: int, networks: int) -> str:
        board.note_config("default", validated(version, f"cfg{version}"))
        labels = {"com.docker.lb.port": "80"}
        apps = [
            {"name": f"app{n}", "networks": [f"net{n}"], "labels": {**labels, "com.docker.lb.hosts": f"app{n}.local"}}
            for n in range(networks)
        ]
        swarm.set_apps({"services": apps})
        assert ("update", "interlock-proxy") in round_trip(swarm, board, reconciler)
        proxy = swarm.service("interlock-proxy")
        assert proxy is not None
        return str(proxy["Spec"]["TaskTemplate"]["ContainerSpec"]["Configs"][0]["ConfigID"])

    def stored() -> set[str]:
        return set(swarm.config_objects)

    first = update_to(1, networks=1)
    proxy = swarm.service("interlock-proxy")
    assert proxy is not None
    starting = {
        "ID": "task-1",
        "ServiceID": proxy["ID"],
        "Status": {"State": "starting"},
        "DesiredState": "running",
        "Spec": {"ContainerSpec": {"Configs": [{"ConfigID": first}]}},
    }
    swarm.owned_tasks.append(starting)
    second = update_to(2, networks=2)
    third = update_to(3, networks=3)
    assert {first, second, third} <= stored(), "the starting task's and the rollback's configurations are kept"

    starting["Status"]["State"] = "failed"
    round_trip(swarm, board, reconciler)
    assert first not in stored(), "a configuration nothing can mount any more is removed"
    assert {second, third} <= stored()
    update_to(4, networks=4)
    assert second not in stored() and third in stored()


def test_an_extension_no_longer_configured_is_removed_with_its_proxy() -> None:
    swarm, board, reconciler = setup()
    round_trip(swarm, board, reconciler)
    smaller = load_config('[Extensions.default]\nPublishMode = "host"\n')
    board2 = Board(smaller, gate_on_proxies=True, clock=FakeClock(), epoch="e")
    reconciler2 = Reconciler(smaller, swarm, board2, owner="interlock", core_url="http://tasks.interlock:8080")
    assert sorted(round_trip(swarm, board2, reconciler2)) == [
        ("remove", "interlock-extension-east"),
        ("remove", "interlock-proxy-east"),
    ]


def test_nothing_is_deployed_without_the_control_network_or_tokens() -> None:
    swarm, board, reconciler = setup()
    swarm.control_network = False
    assert round_trip(swarm, board, reconciler) == []


def tls_app_beside_the_core() -> tuple[FakeSwarm, Board, Reconciler]:
    """A TLS service, and the core's own service (with one secret of its own) to mount into."""
    swarm, board, reconciler = setup(apps=[TLS_APP])
    core = {
        "Name": "interlock",
        "Labels": {},
        "TaskTemplate": {"ContainerSpec": {"Secrets": [{"File": {"Name": "x"}}]}},
    }
    swarm.create_service(core)
    return swarm, board, reconciler


def test_the_core_mounts_the_certificate_secrets_hosts_name_and_the_proxy_none() -> None:
    """A new TLS service replaces no proxy task: it is routed at once, the core mounts its
    secrets (Swarm replaces the core's task, which costs no request) and sends the certificate."""
    swarm, board, reconciler = tls_app_beside_the_core()
    round_trip(swarm, board, reconciler)  # the proxy joins the app's network
    round_trip(swarm, board, reconciler)
    state = board.slots["default"].state
    assert state is not None and [h.name for h in state.routing.hosts] == ["shop.local"], "routed at once"
    proxy = swarm.service("interlock-proxy")
    assert proxy is not None
    mounted = [s["SecretName"] for s in proxy["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"]]
    assert not {"shop.crt", "shop.key"} & set(mounted), "the proxy mounts no certificate"
    own = swarm.service("interlock")
    assert own is not None
    assert [
        (m["SecretName"], m["File"]["Name"], m["File"]["Mode"])
        for m in own["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"][1:]
    ] == [
        ("shop.crt", "certificates/shop.crt", 0o400),
        ("shop.key", "certificates/shop.key", 0o400),
    ]
    assert ("update", "interlock") not in round_trip(swarm, board, reconciler), "mounted once"
    # The service goes: the core lets go of its secrets (they can then be removed).
    swarm.set_apps({"services": []})
    assert ("update", "interlock") in round_trip(swarm, board, reconciler)
    own = swarm.service("interlock")
    assert own is not None and len(own["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"]) == 1


def test_a_refused_certificate_stays_mounted_while_its_service_is_left_out_for_it() -> None:
    """Unmounted, the core's next task could not read it, would route the service again and
    mount it once more: a restart every few seconds (and its problem shown only in between)."""
    swarm, board, reconciler = tls_app_beside_the_core()
    round_trip(swarm, board, reconciler)
    round_trip(swarm, board, reconciler)

    def mounted() -> list[str]:
        own = swarm.service("interlock")
        assert own is not None
        return [m["SecretName"] for m in own["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"][1:]]

    assert mounted() == ["shop.crt", "shop.key"]
    assert board.note_refused_certificates(
        {("shop.crt", "shop.key"): ("ssl_cert", "'shop.crt' is not a PEM certificate")}
    )
    round_trip(swarm, board, reconciler)
    state = board.slots["default"].state
    assert state is not None and state.routing.hosts == (), "left out"
    assert ("update", "interlock") not in round_trip(swarm, board, reconciler)
    assert mounted() == ["shop.crt", "shop.key"], "still mounted: the next core task finds it refused too"
    swarm.set_apps({"services": []})
    round_trip(swarm, board, reconciler)
    assert mounted() == [], "the service gone, the core lets go of them"


async def test_a_refused_pair_leaves_out_its_service_until_made_again_under_a_new_id() -> None:
    swarm, board, _ = setup(config=load_config("[Extensions.default]\n"), apps=[TLS_APP])
    board.proxies = None  # routed at once: this test is about refusals, not attachments
    board.publish(snapshot_from_api({**swarm.list_swarm(), "secrets": swarm.list_secrets()}))
    first = board.slots["default"].state
    assert first is not None and [h.name for h in first.routing.hosts] == ["shop.local"]
    assert board.note_refused_certificates(
        {("shop.crt", "shop.key"): ("ssl_cert", "'shop.crt' is not a PEM certificate")}
    )
    board.publish(snapshot_from_api({**swarm.list_swarm(), "secrets": swarm.list_secrets()}))
    second = board.slots["default"].state
    assert second is not None and second.routing.hosts == ()
    assert "cannot be loaded ('shop.crt' is not a PEM" in second.problems[0].reason
    assert second.problems[0].label == "com.docker.lb.ssl_cert"
    # The operator removes the secret and creates a good one under the same name: a new ID.
    swarm.secret_ids["shop.crt"] = "a-new-id"
    board.publish(snapshot_from_api({**swarm.list_swarm(), "secrets": swarm.list_secrets()}))
    third = board.slots["default"].state
    assert third is not None and [h.name for h in third.routing.hosts] == ["shop.local"]


async def test_the_long_poll_answers_when_a_new_state_is_published() -> None:
    swarm, board, _ = setup(config=load_config("[Extensions.default]\n"))
    board.publish(snapshot_from_api({**swarm.list_swarm(), "secrets": swarm.list_secrets()}))
    first = board.slots["default"].state
    assert first is not None
    assert await board.state_after("default", first.tag, 0.05) is None
    swarm.set_apps({"services": [{**TLS_APP, "name": "web", "labels": {"com.docker.lb.hosts": "web.local"}}]})
    waiter = asyncio.create_task(board.state_after("default", first.tag, 5))
    await asyncio.sleep(0)
    await board.publish_and_notify(snapshot_from_api({**swarm.list_swarm(), "secrets": swarm.list_secrets()}))
    second = await waiter
    assert second is not None and second.version == first.version + 1


def test_every_owned_spec_carries_its_hash() -> None:
    swarm, board, reconciler = setup()
    round_trip(swarm, board, reconciler)
    assert all(s["Spec"]["Labels"].get(LABEL_SPEC) for s in swarm.owned.values())


async def test_the_composed_core_routes_a_new_service_and_recreates_a_deleted_proxy() -> None:
    """The whole core on fakes: watcher -> board -> reconciler, in fake time."""
    from interlock.roles.core import Core
    from interlock.testing.fakes import inline

    swarm = FakeSwarm({"services": []})
    clock = FakeClock()
    config = load_config("[Extensions.default]\n")
    core = Core(
        config,
        swarm,
        swarm,
        service_name="interlock",
        extension_tokens={"default": "t" * 20},
        operator_token="o" * 20,
        core_url="http://x",
        clock=clock,
        offload=inline,
    )
    task = asyncio.create_task(core.run())
    await clock.advance(0.1)
    assert {n for _, n in swarm.writes} == {"interlock-extension", "interlock-proxy"}
    # The app's network is new to the proxy: the proxy is attached first, then the app routed.
    web = {
        "name": "web",
        "networks": ["apps"],
        "labels": {"com.docker.lb.hosts": "web.local", "com.docker.lb.port": "80"},
    }
    swarm.set_apps({"services": [web]})
    await clock.advance(0.1)
    assert ("update", "interlock-proxy") in swarm.writes
    await clock.advance(0.2)  # the next settle poll lists the proxy with its new network
    state = core.board.slots["default"].state
    assert state is not None and [h.name for h in state.routing.hosts] == ["web.local"]
    proxy = swarm.service("interlock-proxy")
    assert proxy is not None
    swarm.remove_service(proxy["ID"])
    await clock.advance(RESYNC + 0.1)
    assert swarm.writes[-1] == ("create", "interlock-proxy"), "recreated by the periodic round"
    task.cancel()


def test_a_core_started_without_tokens_creates_them_and_mounts_them_into_its_own_service() -> None:
    from interlock.roles.core import bootstrap_tokens

    config = load_config("[Extensions.default]\n[Extensions.east]\nServiceCluster = 'east'\nPublishMode = 'host'\n")
    swarm = FakeSwarm(tokens=False)
    swarm.create_service({"Name": "my-core", "TaskTemplate": {"ContainerSpec": {"Image": "interlock:0.1.0"}}})
    bootstrap_tokens(swarm, "my-core", config)
    created = [
        ("create-secret", "interlock-operator-token"),
        ("create-secret", "interlock-extension-token-default"),
        ("create-secret", "interlock-extension-token-east"),
        ("create-secret", "interlock-proxy-token-default"),
        ("create-secret", "interlock-proxy-token-east"),
    ]
    # Then a TLS key pair for the core and each extension: a certificate secret, then its key's.
    tls = [w for w in swarm.writes[1 + len(created) :] if w[0] == "create-secret"]
    assert len(tls) == 6 and all(n.startswith("interlock-tls-") for _, n in tls)
    assert [n.rsplit("-", 1)[1] for _, n in tls] == ["cert", "key"] * 3
    assert swarm.writes[1:] == [*created, *tls, ("update", "my-core")]
    created += tls
    core = swarm.service("my-core")
    assert core is not None
    mounted = core["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"]
    # Every extension's own token, the operator's and the core's own TLS key; no proxy token
    # (the core never calls a proxy) and no other role's key.
    assert [(s["File"]["Name"], s["File"]["Mode"]) for s in mounted] == [
        ("interlock-operator-token", 0o400),
        ("interlock-extension-token-default", 0o400),
        ("interlock-extension-token-east", 0o400),
        ("interlock-tls.pem", 0o400),
    ]
    assert mounted[-1]["SecretName"] == tls[1][1], "the core's key secret"
    # Started again (say its task restarted before the update landed): the secrets are reused.
    bootstrap_tokens(swarm, "my-core", config)
    assert [w for w in swarm.writes if w[0] == "create-secret"] == created
    core = swarm.service("my-core")
    assert core is not None and len(core["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"]) == 4


def test_the_bootstrap_says_which_service_it_could_not_find() -> None:
    from interlock.errors import InterlockError
    from interlock.roles.core import bootstrap_tokens

    with pytest.raises(InterlockError, match="service 'nowhere' was not found"):
        bootstrap_tokens(FakeSwarm(tokens=False), "nowhere", load_config("[Extensions.default]\n"))


def test_a_stacks_network_the_proxies_left_is_removed_once_the_stack_is_gone_and_no_other() -> None:
    """`docker stack rm` cannot remove the stack's network while a proxy is on it; the core
    finishes the job once it has detached its proxies, and leaves every other network alone."""
    stack = {"com.docker.stack.namespace": "shop"}

    def app(name: str, network: str, *extra: tuple[str, str]) -> dict[str, Any]:
        labels = {"com.docker.lb.hosts": f"{name.replace('_', '-')}.local", "com.docker.lb.port": "80", **dict(extra)}
        return {"name": name, "networks": [network], "labels": labels}

    networks = [
        {"name": "shop_apps", "labels": stack},
        {"name": "plain-net"},
        {"name": "other_apps", "labels": {"com.docker.stack.namespace": "other"}},
    ]
    web = app("shop_web", "shop_apps", *stack.items())
    plain = app("plain", "plain-net")
    other = app("other_web", "other_apps", ("com.docker.stack.namespace", "other"))
    other_worker = {
        "name": "other_worker",
        "networks": ["other_apps"],
        "labels": {"com.docker.stack.namespace": "other"},
    }
    swarm = FakeSwarm(
        {"services": [web, plain, other, other_worker], "networks": networks}, extensions=tuple(CONFIG.extensions)
    )
    swarm.image_ids = {"interlock:0.1.0": "sha256:one"}
    board = Board(CONFIG, gate_on_proxies=True, clock=FakeClock(), epoch="e")
    reconciler = Reconciler(CONFIG, swarm, board, owner="interlock", core_url="http://tasks.interlock:8080")
    round_trip(swarm, board, reconciler)
    proxy = swarm.service("interlock-proxy")
    assert proxy is not None and len(proxy["Spec"]["TaskTemplate"]["Networks"]) >= 4, "on every app network"

    # `docker stack rm shop`, the plain service removed, and stack other's routed service gone
    # while its worker stays on the network.
    swarm.set_apps({"services": [other_worker], "networks": networks})
    writes = round_trip(swarm, board, reconciler)
    assert ("update", "interlock-proxy") in writes
    assert [w for w in swarm.writes if w[0] == "remove network"] == [("remove network", "shop_apps")]
    assert round_trip(swarm, board, reconciler) == [], "nothing else is removed, then or later"
