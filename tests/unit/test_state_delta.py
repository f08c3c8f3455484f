"""A state sent as a change from the one before rebuilds exactly the state the core published,
for any two routings (hypothesis over sets of services), and is small when little changed."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from interlock.config import default_config
from interlock.errors import WireError
from interlock.model.build import build
from interlock.model.docker_json import snapshot_from_api
from interlock.testing.swarm_json import swarm_json
from interlock.wire.delta import apply_delta, state_delta
from interlock.wire.messages import ClusterState, encode

SETTINGS = default_config().extensions["default"].model_dump(by_alias=True, mode="json")
KINDS = ["plain", "path", "tls", "passthrough", "default", "canary"]


def service(index: int, kind: str, replicas: int) -> dict[str, Any]:
    labels = {"com.docker.lb.hosts": f"h{index % 7}.local", "com.docker.lb.port": "80"}
    if kind == "path":
        labels["com.docker.lb.context_root"] = f"/p{index}"
    elif kind == "tls":
        labels |= {"com.docker.lb.hosts": f"t{index}.local", "com.docker.lb.ssl_cert": "c.pem"}
    elif kind == "passthrough":
        labels |= {"com.docker.lb.hosts": f"pt{index}.local", "com.docker.lb.ssl_passthrough": "true"}
    elif kind == "default":
        labels["com.docker.lb.default_backend"] = "true"
    elif kind == "canary":
        labels["com.docker.lb.hosts"] = "canary.local"
    return {"name": f"s{index}", "networks": ["n"], "replicas": replicas, "labels": labels, "created": index}


SWARMS = st.dictionaries(st.integers(0, 30), st.tuples(st.sampled_from(KINDS), st.integers(0, 3)), max_size=20).map(
    lambda chosen: [service(i, kind, replicas) for i, (kind, replicas) in sorted(chosen.items())]
)


def state(version: int, services: list[dict[str, Any]]) -> ClusterState:
    routing = build(snapshot_from_api(swarm_json({"services": services}))).routings[""]
    return ClusterState(version, "", "default", routing, SETTINGS, epoch="e")


@settings(max_examples=200, deadline=None)
@given(SWARMS, SWARMS)
def test_a_delta_rebuilds_exactly_the_newer_state(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> None:
    old, new = state(1, before), state(2, after)
    assert apply_delta(old, state_delta(old, new)) == new


def test_a_one_service_change_among_many_is_a_small_delta() -> None:
    many = [service(i, "plain", 2) | {"labels": {"com.docker.lb.hosts": f"a{i}.local"}} for i in range(2000)]
    for entry in many:
        entry["labels"]["com.docker.lb.port"] = "80"
    old = state(1, many)
    new = state(2, [*many, service(5000, "tls", 1)])
    delta = state_delta(old, new)
    assert len(encode(delta)) < 8_000 and 50 * len(encode(delta)) < len(encode(new))
    assert apply_delta(old, delta) == new


def test_a_delta_for_another_base_is_refused() -> None:
    old, new = state(1, [service(1, "plain", 1)]), state(3, [service(2, "plain", 1)])
    with pytest.raises(WireError, match=r"applies to e\.1, not to e\.2"):
        apply_delta(state(2, []), state_delta(old, new))
