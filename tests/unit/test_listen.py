"""Where a role listens: loopback and its control-network address for its API, the monitoring
network's too for its metrics, never an application network's; everywhere when run by hand."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from interlock.edges.listen import EVERYWHERE, Listeners, local_ipv4_addresses, role_listeners
from interlock.edges.swarm_ops import with_subnets
from interlock.errors import DockerUnavailable
from interlock.swarm.records import Ref
from interlock.swarm.specs import listen_env

OWN = ["127.0.0.1", "10.0.1.5", "10.0.9.7", "10.0.5.3"]
"""Loopback, the control network, an application network, the monitoring network."""


def test_the_api_listens_on_loopback_and_the_control_network_metrics_on_monitoring_too() -> None:
    env = dict(
        e.split("=", 1) for e in listen_env(Ref("c", "interlock", ("10.0.1.0/24",)), Ref("m", "mon", ("10.0.5.0/24",)))
    )
    assert role_listeners(env, OWN) == Listeners(("127.0.0.1", "10.0.1.5"), ("127.0.0.1", "10.0.1.5", "10.0.5.3"))


def test_without_subnets_or_with_subnets_matching_nothing_a_role_listens_everywhere() -> None:
    assert role_listeners({}, OWN) == Listeners(EVERYWHERE, EVERYWHERE)
    assert listen_env(Ref("c", "interlock"), None) == [], "Swarm allocated no subnet: nothing to say"
    unmatched = {"INTERLOCK_CONTROL_SUBNETS": "192.0.2.0/24"}
    assert role_listeners(unmatched, OWN) == Listeners(EVERYWHERE, EVERYWHERE)


def test_this_machine_has_a_loopback_address() -> None:
    assert "127.0.0.1" in local_ipv4_addresses()


def test_a_new_network_is_read_again_until_swarm_has_given_it_a_subnet() -> None:
    answers: Iterator[dict[str, Any]] = iter(
        [{"IPAM": {"Config": []}}, {"IPAM": {"Config": [{"Subnet": "10.0.7.0/24"}]}}]
    )
    assert with_subnets(Ref("n1", "interlock"), lambda _: next(answers)).subnets == ("10.0.7.0/24",)


def test_a_network_that_never_gets_a_subnet_is_an_error_naming_it() -> None:
    with pytest.raises(DockerUnavailable, match="interlock-monitoring no subnet"):
        with_subnets(Ref("n1", "interlock-monitoring"), lambda _: {"IPAM": {"Config": None}}, within=0.3)
