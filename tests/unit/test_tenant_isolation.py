"""One tenant cannot hurt another: what a cluster's roles report acts only on that cluster's own
services (and a report cannot name certificates at all: the core reads them itself), a refused
certificate is blamed on the pair that formed it (never on a key another service uses),
findings go with the service that caused them, and each cluster is told only its own problems.
On the real core's board, with a fake swarm."""

from __future__ import annotations

from typing import Any

from interlock.config import load_config
from interlock.model.docker_json import snapshot_from_api
from interlock.roles.core.board import Board
from interlock.testing.fakes import FakeClock, FakeSwarm
from interlock.wire.messages import ExtensionReport

CONFIG = load_config(
    "[Extensions.default]\n[Extensions.bank]\nServiceCluster = 'bank'\nPublishedPort = 81\nPublishedSSLPort = 444\n"
)


def app(name: str, cluster: str = "", **labels: str) -> dict[str, Any]:
    full = {"com.docker.lb.hosts": f"{name}.example", "com.docker.lb.port": "80"}
    full.update({f"com.docker.lb.{k}": v for k, v in labels.items()})
    if cluster:
        full["com.docker.lb.service_cluster"] = cluster
    return {"name": name, "networks": ["n"], "replicas": 1, "labels": full}


BANK = app("bank", "bank", ssl_cert="bank.crt", ssl_key="bank.key")
NEIGHBOUR = app("neighbour", ssl_cert="neighbour.crt", ssl_key="neighbour.key")
ATTACKER = app("attacker", ssl_cert="attacker.crt", ssl_key="bank.key")
ATTACKER_HERE = app("attacker", "bank", ssl_cert="attacker.crt", ssl_key="bank.key")
SECRETS = ("bank.crt", "bank.key", "neighbour.crt", "neighbour.key", "attacker.crt")


def board_with(*apps: dict[str, Any]) -> tuple[FakeSwarm, Board]:
    swarm = FakeSwarm({"services": list(apps)}, secrets=SECRETS, extensions=tuple(CONFIG.extensions))
    board = Board(CONFIG, gate_on_proxies=False, clock=FakeClock(), epoch="e")
    publish(swarm, board)
    return swarm, board


def publish(swarm: FakeSwarm, board: Board) -> None:
    board.publish(snapshot_from_api({**swarm.list_swarm(), "secrets": swarm.list_secrets()}))


def hosts(board: Board, extension: str) -> list[str]:
    state = board.slots[extension].state
    assert state is not None
    return [h.name for h in state.routing.hosts]


def refuse(board: Board, swarm: FakeSwarm, cert: str, key: str) -> None:
    """The core could not load `cert` with `key` (as `Core.read_certificates` finds)."""
    if board.note_refused_certificates({(cert, key): ("ssl_key", f"{key!r} is not the private key of {cert!r}")}):
        publish(swarm, board)


async def test_a_victims_key_named_beside_another_certificate_leaves_only_the_attacker_out() -> None:
    for attacker, extension in ((ATTACKER, "default"), (ATTACKER_HERE, "bank")):
        swarm, board = board_with(BANK, NEIGHBOUR, attacker)
        assert "attacker.example" in hosts(board, extension)
        # The core cannot load attacker.crt with bank.key.
        refuse(board, swarm, "attacker.crt", "bank.key")
        assert "attacker.example" not in hosts(board, extension)
        assert "bank.example" in hosts(board, "bank"), "the victim's TLS host is still routed"
        assert "neighbour.example" in hosts(board, "default")
        # Once the attacker's service is gone, nothing of its refusal is left.
        swarm.set_apps({"services": [BANK, NEIGHBOUR]}, event=False)
        publish(swarm, board)
        assert all(not slot.exclusions for slot in board.slots.values())
        assert hosts(board, "bank") == ["bank.example"]


async def test_a_cluster_cannot_leave_out_another_clusters_service() -> None:
    _, board = board_with(BANK, NEIGHBOUR)
    # Bisection results of the default cluster naming the bank's service.
    report = ExtensionReport("default", "", None, "", left_out=(("bank", 'duplicate location "/"'),))
    await board.note_report("default", report)
    assert hosts(board, "bank") == ["bank.example"]
    assert not board.slots["default"].exclusions and not board.slots["bank"].exclusions
    # The bank's own extension can.
    await board.note_report("bank", ExtensionReport("bank", "bank", None, "", left_out=(("bank", "duplicate"),)))
    assert hosts(board, "bank") == []


async def test_a_left_out_service_comes_back_when_its_labels_change() -> None:
    swarm, board = board_with(BANK, NEIGHBOUR)
    await board.note_report("default", ExtensionReport("default", "", None, "", left_out=(("neighbour", "dup"),)))
    assert "neighbour.example" not in hosts(board, "default")
    relabelled = {**NEIGHBOUR, "labels": {**NEIGHBOUR["labels"], "com.docker.lb.hosts": "n2.example"}}
    swarm.set_apps({"services": [BANK, relabelled]}, event=False)
    publish(swarm, board)
    assert hosts(board, "default") == ["n2.example"]


def test_each_cluster_is_told_only_its_own_problems() -> None:
    broken_bank = app("broken", "bank", port="eighty")
    broken_here = app("mine", port="eighty")
    _, board = board_with(BANK, broken_bank, broken_here)
    bank, default = board.slots["bank"].state, board.slots["default"].state
    assert bank is not None and default is not None
    assert [p.service for p in bank.problems] == ["broken"]
    assert [p.service for p in default.problems] == ["mine"]
    assert {p.service for p in board.problems} == {"broken", "mine"}, "the operator sees every problem"
