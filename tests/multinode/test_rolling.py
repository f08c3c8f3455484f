"""Proxies replaced under load with a load balancer in front that never retries (see
tests/multinode/rolling.py): a service on a new network (the hap cluster's HAProxy proxies join
it and leave it again, one at a time, each drained first), and an upgrade of every role to a new
image (the default cluster's nginx proxies). No request fails; the figures go to
docs/BENCHMARKS.md through bench/proxy_rolls.py."""

from __future__ import annotations

from pathlib import Path

from tests.multinode.conftest import Cluster
from tests.multinode.rolling import RollFigures, new_network, upgrade


def no_failed_request(figures: RollFigures, rolls: int) -> None:
    print("\n" + figures.describe())
    assert figures.failed == 0, f"{figures.describe()}\n{figures.history}"
    assert figures.requests > 1000, "the load ran throughout"
    assert figures.taken_out >= 2 * rolls, "each of the two proxies was drained (taken out) before it stopped"


def test_a_service_on_a_new_network_costs_no_request_while_the_proxies_join_it(
    cluster: Cluster, tmp_path: Path
) -> None:
    no_failed_request(new_network(cluster, tmp_path), rolls=2)


def test_an_upgrade_rolls_every_role_to_the_new_image_with_no_failed_request(cluster: Cluster, tmp_path: Path) -> None:
    """The last multi-node test: every role stays on the new image (the same code) until the
    session removes Interlock; bench/proxy_rolls.py measures the way back too."""
    no_failed_request(upgrade(cluster, tmp_path, back=False), rolls=1)
