"""Role-to-role messages survive a JSON round trip and refuse other schemas."""

from __future__ import annotations

import pytest

from interlock.errors import WireError
from interlock.wire.messages import ClusterState, ConfigRef, ExtensionReport, ProxyConfig, ProxyReport, decode, encode
from tests.golden.cases import CASES, load_case


@pytest.mark.parametrize(
    "case", ["tls-mixed-one-proxy", "context-roots-share-host", "default-backend-tls", "bad-labels-isolated"]
)
def test_cluster_state_round_trip(case: str) -> None:
    loaded = load_case(CASES / f"{case}.txt")
    state = ClusterState(
        7,
        loaded.cluster,
        "default",
        loaded.routing,
        loaded.extension.model_dump(by_alias=True, mode="json"),
        loaded.result.problems,
        epoch="abc",
    )
    assert decode(encode(state), ClusterState) == state
    assert state.tag == "abc.7"


def test_reports_round_trip() -> None:
    report = ExtensionReport(
        "default", "", ConfigRef(3, "d" * 64, "id", "", 4), "", (ProxyReport("p1", "id", "d", True),)
    )
    assert decode(encode(report), ExtensionReport) == report


def test_other_schema_or_garbage_is_refused() -> None:
    with pytest.raises(WireError, match="schema 2"):
        decode(b'{"version": 1, "digest": "", "config_id": "", "text": "", "schema": 2}', ProxyConfig)
    with pytest.raises(WireError, match="not a valid ProxyConfig"):
        decode(b'{"version": "one"}', ProxyConfig)
