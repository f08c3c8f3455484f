"""The core's ACME desk with a fake ACME server and an in-memory swarm: one order per host set,
its challenges in the bundle until the proxies serve them, the issued pair kept as two secrets
of Interlock's own and read back by a restarted core (no second order), renewal before expiry,
and a failed order as a problem of that service alone."""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

import pytest

from interlock.config import load_config
from interlock.constants import LABEL_ACME, LABEL_OWNER
from interlock.edges.acme_client import AcmeFailed, Issued, KeyType, Publish
from interlock.model.docker_json import snapshot_from_api
from interlock.problems import Severity
from interlock.roles.core.acme import AcmeDesk, Names
from interlock.roles.core.board import Board
from interlock.roles.core.certificates import CertificateDesk
from interlock.testing.fakes import FakeClock, FakeSwarm
from interlock.wire.messages import ExtensionReport, ProxyReport
from interlock.wire.status import routes_table, with_acme_expiry

CONFIG = load_config(
    """
[ACME]
Directory = "https://acme.test/dir"
AgreeToTerms = true
RenewBefore = "720h"
[Extensions.default]
"""
)
DAY = 86400.0
APPS = {
    "services": [
        {
            "name": "shop",
            "networks": ["apps"],
            "labels": {"com.docker.lb.hosts": "b.shop.test,a.shop.test", "com.docker.lb.port": "80"}
            | {"com.docker.lb.ssl_acme": "true"},
        },
        {
            "name": "plain",
            "networks": ["apps"],
            "labels": {"com.docker.lb.hosts": "plain.test", "com.docker.lb.port": "80"},
        },
    ]
}


class FakeAcme:
    """An ACME server that issues at once (or refuses with `refusal`), after publishing one
    challenge and noting what the cluster's bundle held meanwhile."""

    def __init__(self, desk: Callable[[], AcmeDesk], lifetime: float = 90 * DAY) -> None:
        self.desk, self.lifetime = desk, lifetime
        self.orders: list[Names] = []
        self.challenges_seen: list[tuple[tuple[str, str], ...]] = []
        self.refusal = ""

    def order(self, names: Names, key_type: KeyType, publish: Publish) -> Issued:
        self.orders.append(names)
        try:
            publish({"tok": "tok.print"})
            self.challenges_seen.append(self.desk().certificates.bundles["default"].challenges)
            if self.refusal:
                raise AcmeFailed(self.refusal)
            n = len(self.orders)
            return Issued(names, f"CHAIN {n}\n", f"KEY {n}\n", self.desk().clock.wall() + self.lifetime)
        finally:
            publish({})


class Harness:
    def __init__(self, swarm: FakeSwarm, tmp_path: Path, clock: FakeClock) -> None:
        self.swarm, self.clock = swarm, clock
        self.board = Board(CONFIG, gate_on_proxies=False, clock=clock, service_name="interlock")
        self.certificates = CertificateDesk(self.board, tmp_path)
        self.acme = FakeAcme(lambda: self.desk)
        self.desk = AcmeDesk(
            CONFIG.acme,  # type: ignore[arg-type]
            self.board,
            self.certificates,
            swarm,
            owner="interlock",
            client=lambda key, ca: self.acme,
            clock=clock,
        )
        self.board.publish(snapshot_from_api({**swarm_list(swarm)}))
        self.certificates.read()

    async def proxies_follow(self) -> None:
        """The cluster's one proxy serves each bundle as soon as it is made."""
        while True:
            bundle = self.certificates.bundles.get("default")
            if bundle is not None:
                report = ProxyReport("p1", "", "", True, certificates=bundle.tag)
                self.board.slots["default"].report = ExtensionReport("default", "", None, proxies=(report,))
            await asyncio.sleep(0.005)

    def served_hosts(self) -> dict[str, str]:
        bundle = self.certificates.bundles["default"]
        return {host: c.chain for host, c in bundle.by_host().items()}


def swarm_list(swarm: FakeSwarm) -> Mapping[str, object]:
    return {**swarm.list_swarm(), "secrets": swarm.list_secrets()}


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    swarm = FakeSwarm(APPS)
    running = Harness(swarm, tmp_path, FakeClock(start=1_000_000.0))
    follower = asyncio.create_task(running.proxies_follow())
    yield running
    follower.cancel()


async def test_one_order_for_the_host_set_served_at_once_and_kept_as_interlocks_own_secrets(harness: Harness) -> None:
    desk = harness.desk
    await asyncio.to_thread(desk.load)
    assert desk.due() == [("a.shop.test", "b.shop.test")]
    await desk.order(("a.shop.test", "b.shop.test"))

    assert harness.acme.orders == [("a.shop.test", "b.shop.test")]
    assert harness.acme.challenges_seen == [(("tok", "tok.print"),)], "the token was in the bundle while validated"
    assert harness.certificates.bundles["default"].challenges == (), "and gone after"
    assert harness.served_hosts() == {"a.shop.test": "CHAIN 1\n", "b.shop.test": "CHAIN 1\n"}
    made = {n: harness.swarm.secret_labels[n] for n in harness.swarm.secret_ids if n.startswith("interlock-acme-")}
    assert len(made) == 3, "an account key, the certificate and its key"
    assert all(labels[LABEL_OWNER] == "interlock" for labels in made.values())
    assert {labels[LABEL_ACME] for labels in made.values()} == {"account", "a.shop.test,b.shop.test"}
    mounts = desk.mounts()
    assert mounts is not None and {r.name for r in mounts} == set(made)
    assert desk.due() == []


async def test_a_restarted_core_reads_what_it_holds_back_and_does_not_order_again(
    harness: Harness, tmp_path: Path
) -> None:
    await asyncio.to_thread(harness.desk.load)
    await harness.desk.order(("a.shop.test", "b.shop.test"))
    # The next core: the secrets are mounted in its task.
    mounted = tmp_path / "next"
    mounted.mkdir()
    held = harness.desk.held[("a.shop.test", "b.shop.test")]
    (mounted / held.cert.name).write_text("CHAIN 1\n")
    (mounted / held.key.name).write_text("KEY 1\n")
    again = Harness(harness.swarm, mounted, harness.clock)
    await asyncio.to_thread(again.desk.load)
    assert again.desk.due() == []
    assert again.desk.pairs() == {("a.shop.test", "b.shop.test"): held.pair}
    assert again.acme.orders == []


async def test_renewal_before_expiry_replaces_the_certificate_and_retires_the_old_secrets(harness: Harness) -> None:
    desk = harness.desk
    await asyncio.to_thread(desk.load)
    names = ("a.shop.test", "b.shop.test")
    await desk.order(names)
    first = desk.held[names]
    await harness.clock.advance(61 * DAY)  # 29 days left: inside RenewBefore (30 days)
    assert desk.due() == [names]
    await desk.order(names)
    assert harness.served_hosts()["a.shop.test"] == "CHAIN 2\n"
    await asyncio.to_thread(desk.tidy)
    assert first.cert.name not in harness.swarm.secret_ids and first.key.name not in harness.swarm.secret_ids


async def test_a_failed_order_is_a_problem_of_that_service_alone_and_waits_before_retrying(harness: Harness) -> None:
    desk = harness.desk
    await asyncio.to_thread(desk.load)
    harness.acme.refusal = "a.shop.test: Connection refused (connection)"
    await desk.order(("a.shop.test", "b.shop.test"))
    problems = [p for p in harness.board.problems if p.label == "com.docker.lb.ssl_acme"]
    assert [(p.service, p.severity) for p in problems] == [("shop", Severity.ERROR)]
    assert "Connection refused (connection)" in problems[0].reason
    assert harness.board.slots["default"].state is not None
    assert {h.name for h in harness.board.slots["default"].state.routing.hosts} >= {"plain.test", "a.shop.test"}
    assert harness.certificates.bundles["default"].challenges == ()
    assert desk.due() == [], "backing off"
    await harness.clock.advance(31)
    assert desk.due() == [("a.shop.test", "b.shop.test")]
    harness.acme.refusal = ""
    await desk.order(("a.shop.test", "b.shop.test"))
    assert [p for p in harness.board.problems if p.label == "com.docker.lb.ssl_acme"] == []


async def test_no_mount_change_while_an_order_runs(harness: Harness) -> None:
    await asyncio.to_thread(harness.desk.load)
    harness.desk.busy = True
    assert harness.desk.mounts() is None


async def test_routes_show_the_tls_mode_acme_and_the_certificates_expiry(harness: Harness) -> None:
    rows = tuple(row for s in harness.board.slots.values() if s.state for row in routes_table(s.state.routing))
    assert {r.host: r.tls for r in with_acme_expiry(rows, harness.desk.expiries())} == {
        "a.shop.test": "acme, ordering",
        "b.shop.test": "acme, ordering",
        "plain.test": "none",
    }
    await asyncio.to_thread(harness.desk.load)
    await harness.desk.order(("a.shop.test", "b.shop.test"))
    shown = {r.host: r.tls for r in with_acme_expiry(rows, harness.desk.expiries())}
    expiry = datetime.datetime.fromtimestamp(harness.clock.wall() + 90 * DAY, datetime.UTC)
    assert shown["a.shop.test"] == f"acme, until {expiry:%Y-%m-%d %H:%M}Z"
