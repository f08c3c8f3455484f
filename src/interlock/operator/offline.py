"""The operator's offline build: the swarm as the Docker API lists it (`capture_snapshot`), the
core's configuration as its Docker config holds it, and routes and problems computed here from
both with the core's own pipeline when the core cannot be asked.

Imports no role and no network client but the Docker API's.
"""

from __future__ import annotations

from interlock.config import CoreConfig, load_config
from interlock.constants import CORE_SERVICE
from interlock.edges.docker_source import DockerSwarmSource, RawSnapshot
from interlock.edges.swarm_ops import SwarmOps
from interlock.model.build import build
from interlock.model.docker_json import snapshot_from_api
from interlock.swarm.records import ServiceRecord
from interlock.wire.status import CoreInfo, CoreStatus, ProblemView, routes_table


def core_config(ops: SwarmOps, core: ServiceRecord | None) -> CoreConfig | None:
    """The configuration the core service runs with (its Docker config)."""
    configs = core.config_ids if core else ()
    return load_config(ops.config_data(configs[0]).decode()) if configs else None


def local_status(ops: SwarmOps, core: ServiceRecord | None) -> CoreStatus:
    """Routes and problems computed here from the Docker API (the core was not reachable)."""
    config = core_config(ops, core)
    clusters = tuple(e.service_cluster for e in config.extensions.values()) if config else ("",)
    result = build(
        snapshot_from_api(capture_snapshot(ops)),
        clusters,
        **(config.build_options if config else {}),
    )
    return CoreStatus(
        ready=False,
        core=CoreInfo(CORE_SERVICE if core else None),
        routes=tuple(row for r in result.routings.values() for row in routes_table(r)),
        problems=tuple(ProblemView.of(p) for p in result.problems),
        note="the core was not reachable from this node; routes and problems computed locally",
    )


def capture_snapshot(ops: SwarmOps | None = None) -> RawSnapshot:
    """The swarm's services, tasks, networks, nodes and secrets (names, never data) in the
    Docker API's shape."""
    source = DockerSwarmSource((ops or SwarmOps.from_environment()).client)
    return {**source.list_swarm(), "secrets": source.list_secrets()}
