"""The Docker API JSON converter, on a snapshot captured from a real swarm."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from interlock.errors import SnapshotFormatError
from interlock.model.docker_json import parse_timestamp_ns, snapshot_from_api
from interlock.testing.swarm_json import swarm_json

DATA = Path(__file__).parent.parent / "data"


def test_real_snapshot_converts() -> None:
    snapshot = snapshot_from_api(json.loads((DATA / "swarm-basic.json").read_text()))
    web = next(s for s in snapshot.services if s.name == "web")
    assert dict(web.labels)["com.docker.lb.hosts"] == "demo.local"
    assert len(web.network_ids) == 2
    host_task = next(t for t in snapshot.tasks if t.host_ports)
    # The API repeats host-mode PortStatus entries; they are kept once.
    assert len(host_task.host_ports) == 1
    assert host_task.host_ports[0].published_port == 32768
    assert snapshot.nodes[0].address == "192.0.2.2"
    assert any(n.ingress for n in snapshot.networks)


def test_timestamps_keep_nanoseconds_for_ordering() -> None:
    early = parse_timestamp_ns("2026-11-29T07:30:24.97Z")
    late = parse_timestamp_ns("2026-11-29T07:30:24.976884802Z")
    assert early < late
    assert parse_timestamp_ns("") == 0


@pytest.mark.parametrize("document", [[], {"services": [{}]}, {"servics": []}, {"tasks": [{"ID": "x", "Slot": "one"}]}])
def test_malformed_snapshots_are_reported(document: object) -> None:
    with pytest.raises(SnapshotFormatError):
        snapshot_from_api(document)  # type: ignore[arg-type]


def _swarm_with_addresses(task_addresses: list[str], node_address: str) -> dict[str, list[dict[str, Any]]]:
    document = swarm_json(
        {
            "services": [{"name": "web", "networks": ["apps"], "labels": {"com.docker.lb.hosts": "w.example"}}],
            "nodes": [{"name": "n1", "address": node_address}],
        }
    )
    document["tasks"][0]["NetworksAttachments"][0]["Addresses"] = task_addresses
    return document


@pytest.mark.parametrize(
    ("reported", "kept"),
    [
        (["fd00::0a/64"], ("fd00::a",)),
        (["[fd00::b]"], ("fd00::b",)),
        ([" 10.0.0.7/24\n"], ("10.0.0.7",)),
        (["10.0.0.7; evil", "not an address"], ()),
    ],
)
def test_docker_addresses_become_plain_ips_and_unusable_ones_are_left_out(
    reported: list[str], kept: tuple[str, ...]
) -> None:
    snapshot = snapshot_from_api(_swarm_with_addresses(reported, "[2001:db8::1]"))
    assert snapshot.tasks[0].attachments[0].addresses == kept
    assert snapshot.nodes[0].address == "2001:db8::1"
