"""A proxy's configuration sent as a change from the one before rebuilds exactly what the
extension rendered (nginx and HAProxy, static and dynamic upstreams, any two swarms), is small
for a one-service change, and is refused when it does not rebuild the digest it claims."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings

from interlock.config import default_config
from interlock.edges.proxy_kinds import render_proxy
from interlock.errors import WireError
from interlock.model.build import build
from interlock.model.docker_json import snapshot_from_api
from interlock.render.config_delta import TextDelta, apply_config_delta, config_delta
from interlock.roles.runtime import proxy_config
from interlock.testing.swarm_json import swarm_json
from interlock.wire.messages import ProxyConfig, encode
from tests.unit.test_state_delta import SWARMS

EXTENSIONS = [
    default_config().extensions["default"],
    default_config(Config={"DynamicUpstreams": True}).extensions["default"],
    default_config(Kind="haproxy").extensions["default"],
]


def configured(services: list[dict[str, Any]], index: int) -> ProxyConfig:
    routing = build(snapshot_from_api(swarm_json({"services": services}))).routings[""]
    return proxy_config(1, routing, render_proxy(routing, EXTENSIONS[index]))


@settings(max_examples=60, deadline=None)
@given(SWARMS, SWARMS)
def test_a_delta_rebuilds_exactly_the_newer_configuration(before: list[Any], after: list[Any]) -> None:
    for index in range(len(EXTENSIONS)):
        old, new = configured(before, index), configured(after, index)
        assert apply_config_delta(old, config_delta(old, new)) == new


def test_a_one_service_change_among_many_is_a_small_delta() -> None:
    def apps(count: int) -> list[dict[str, Any]]:
        labels = {"com.docker.lb.port": "80"}
        return [
            {
                "name": f"a{i}",
                "networks": ["n"],
                "replicas": 2,
                "labels": {**labels, "com.docker.lb.hosts": f"a{i}.local"},
            }
            for i in range(count)
        ]

    for index in range(len(EXTENSIONS)):
        old, new = configured(apps(1000), index), configured(apps(1001), index)
        delta = config_delta(old, new)
        assert len(encode(delta)) < 20_000 < len(encode(new)), len(encode(delta))
        assert apply_config_delta(old, delta) == new


def test_a_delta_that_does_not_rebuild_its_digest_is_refused() -> None:
    old = configured(
        [{"name": "a", "networks": ["n"], "labels": {"com.docker.lb.hosts": "a.local", "com.docker.lb.port": "80"}}], 0
    )
    new = configured(
        [{"name": "b", "networks": ["n"], "labels": {"com.docker.lb.hosts": "b.local", "com.docker.lb.port": "80"}}], 0
    )
    delta = config_delta(old, new)
    tampered = replace(delta, text=TextDelta(((0, 1, ("# forged",)),)))
    with pytest.raises(WireError, match="not the one the extension rendered"):
        apply_config_delta(old, tampered)
    with pytest.raises(WireError, match="another configuration"):
        apply_config_delta(new, delta)
