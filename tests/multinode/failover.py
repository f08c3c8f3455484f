"""The manager running the core lost under load, measured: the scenario test_failover asserts on
and bench/node_loss.py reports. With three managers and the core on one of the two that
scripts/cluster added, a bounded load runs through a worker's proxy while that manager is cut off
(link down: the core keeps running there, isolated, its daemon without a quorum). A service is
created at the cut and another once Swarm runs the core on another manager; both must be routed."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from tests.e2e.swarm import INTERLOCK, lb, poll, service, sh, task_history, unique
from tests.multinode.conftest import NETWORK, Cluster
from tests.multinode.load import Load
from tests.multinode.scenario import PORT, answered, cut_off, node_state, proxy_log, restore, steadily_answered

ON_WORKERS = ("--constraint", "node.role==worker")


@dataclass(frozen=True)
class FailoverFigures:
    lost: str
    """The manager that ran the core."""
    moved_to: str
    """Where Swarm started the core again."""
    requests: int
    failed: int
    outcomes: dict[str, int]
    failures: list[tuple[float, str]]
    """Each failed request: seconds from the cut (negative: before it), outcome."""
    stale_retries: int
    slowest_s: float
    swarm_down_s: float
    """From the cut to Swarm marking the manager Down."""
    core_running_after_down_s: float
    """From Swarm marking it Down to the new core task running on another manager."""
    created_at_cut_routed_s: float
    """From the cut to the service created at that moment answering through the proxy."""
    created_after_routed_s: float
    """From creating a service once the new core runs to it answering through the proxy."""
    created_after_task_running_s: float
    """Swarm's part of that: from creating the service to its task running (Swarm's timestamps)."""
    cut_at_utc: str = ""
    """When the link went down, to read the logs by."""
    proxy_log: str = ""
    """When a request failed: what the worker's proxy logged from 30 s before the cut on (which
    configuration and targets it served when), with Docker's timestamps."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        return (
            f"manager failover ({self.lost} -> {self.moved_to}): {self.requests} requests, {self.failed} failed "
            f"{self.outcomes} {self.failures[:20]}, {self.stale_retries} stale keep-alive retries, slowest "
            f"{self.slowest_s:.1f}s; Swarm marked the manager Down after "
            f"{self.swarm_down_s:.1f}s, the core ran on {self.moved_to} {self.core_running_after_down_s:.1f}s later; "
            f"a service created at the cut was routed after {self.created_at_cut_routed_s:.1f}s, one created then "
            f"in {self.created_after_routed_s:.1f}s (its task ran after {self.created_after_task_running_s:.1f}s); "
            f"the cut at {self.cut_at_utc}"
        )


def core_node() -> str | None:
    """Where the core task Swarm wants runs and is running, if one is."""
    out = sh(
        "docker",
        "service",
        "ps",
        "--filter",
        "desired-state=running",
        "--format",
        "{{.Node}} {{.CurrentState}}",
        "interlock",
    )
    running = [line.split()[0] for line in out.splitlines() if " Running " in f"{line} "]
    return running[0] if len(running) == 1 else None


def seconds_to_running(name: str) -> float:
    """From the service's creation to its (one) task running, by Swarm's own timestamps."""
    created = json.loads(sh("docker", "service", "inspect", name))[0]["CreatedAt"]
    task = json.loads(sh("docker", "inspect", sh("docker", "service", "ps", "-q", name).split()[0]))[0]
    assert task["Status"]["State"] == "running", task["Status"]
    return (_timestamp(task["Status"]["Timestamp"]) - _timestamp(created)).total_seconds()


def _timestamp(text: str) -> datetime:
    """Docker's RFC 3339 time with nanoseconds, to microseconds."""
    head, _, tail = text.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(tail + '000000')[:6]}+00:00")


def where_things_stand(name: str) -> str:
    """For a failure message: the service's tasks and what the core says."""
    tasks = task_history(name)
    core = task_history("interlock")
    return f"tasks of {name}:\n{tasks}\ncore tasks:\n{core}\ninterlock status:\n{sh(INTERLOCK, 'status', check=False)}"


def lose_the_core_manager(cluster: Cluster) -> FailoverFigures:
    lost_name = core_node()
    lost = next((m for m in cluster.managers if m.hostname == lost_name), None)
    assert lost is not None, f"the core runs on {lost_name}, not on a manager scripts/cluster added"
    survivor = cluster.workers[0]
    name, at_cut, after = unique("fo"), unique("fo-cut"), unique("fo-after")
    labels = {n: lb(hosts=f"{n}.mn", port=str(PORT)) for n in (name, at_cut, after)}
    with service(name, labels=labels[name], networks=(NETWORK,), replicas=2, extra=ON_WORKERS):
        poll(
            lambda: steadily_answered(survivor.address, f"{name}.mn"), what="the app routed through the worker's proxy"
        )
        with Load(survivor.address, f"{name}.mn", max_seconds=150) as load:
            poll(lambda: load.total > 100 or None, what="the load running")
            cut_off(lost, "link")
            cut_at, cut_wall = time.monotonic(), time.time()
            try:
                with service(at_cut, labels=labels[at_cut], networks=(NETWORK,), extra=ON_WORKERS):
                    poll(lambda: node_state(lost.hostname) == "down" or None, what="Swarm marking it Down", timeout=60)
                    down_at = time.monotonic()
                    moved_to = poll(lambda: core_node() not in (None, lost.hostname) and core_node(), what="a new core")
                    core_at = time.monotonic()
                    poll(lambda: answered(survivor.address, f"{at_cut}.mn"), what="the service made at the cut routed")
                    at_cut_routed = time.monotonic()
                    with service(after, labels=labels[after], networks=(NETWORK,), extra=ON_WORKERS):
                        created = time.monotonic()
                        try:
                            poll(
                                lambda: answered(survivor.address, f"{after}.mn"), what="the service made after routed"
                            )
                        except AssertionError as failed:
                            raise AssertionError(f"{failed}\n{where_things_stand(after)}") from None
                        after_routed = time.monotonic()
                        task_running = seconds_to_running(after)
            finally:
                restore(lost, "link")
    poll(lambda: node_state(lost.hostname) == "ready" or None, what="the manager Ready again", timeout=90)
    return FailoverFigures(
        cut_at_utc=datetime.fromtimestamp(cut_wall, UTC).isoformat(timespec="milliseconds"),
        proxy_log=proxy_log(survivor, since=cut_wall - 30) if load.failed else "",
        lost=lost.hostname,
        moved_to=str(moved_to),
        requests=load.total,
        failed=load.failed,
        outcomes=dict(load.outcomes),
        failures=[(round(t - (cut_at - load.started), 2), outcome) for t, outcome in load.failures],
        stale_retries=load.stale_retries,
        slowest_s=round(load.slowest, 2),
        swarm_down_s=round(down_at - cut_at, 2),
        core_running_after_down_s=round(core_at - down_at, 2),
        created_at_cut_routed_s=round(at_cut_routed - cut_at, 2),
        created_after_routed_s=round(after_routed - created, 2),
        created_after_task_running_s=round(task_running, 2),
    )
