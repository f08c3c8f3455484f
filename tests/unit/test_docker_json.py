"""The Docker API JSON converter, on a snapshot captured from a real swarm."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from interlock.errors import SnapshotFormatError
from interlock.model.docker_json import parse_timestamp_ns, snapshot_from_api

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
